"""python -m services.validation: the validation service on port 8002."""

from __future__ import annotations

import sys

from pydantic import ValidationError


def main() -> int:
    from services.validation.config import ValidationSettings

    try:
        settings = ValidationSettings()
    except ValidationError as error:
        print(f"validation: bad configuration:\n{error}", file=sys.stderr)
        return 2

    import uvicorn

    from services.validation.service import ValidationService, build_app
    from shared.features.store import FeatureStoreError, load_feature_set
    from shared.logs import configure_logging
    from shared.runtime import tune_process
    from shared.validator import GateConfig, ValidationConfig

    log = configure_logging("validation", settings.log_level)
    tune_process()
    try:
        features = load_feature_set(settings.db_path, settings.instrument, settings.granularity)
        features.require_sessions("validation")
        config = ValidationConfig(
            simulations=settings.simulations, mc_runs=settings.mc_runs, seed=settings.seed,
            max_sessions=settings.max_sessions, timeout_seconds=settings.timeout_seconds,
            gate=GateConfig(min_trades=settings.min_trades, min_expectancy_pips=settings.min_expectancy_pips,
                            min_mc_p5_final_pips=settings.min_mc_p5_final_pips,
                            max_drawdown_pips=settings.max_drawdown_pips, score=settings.score),
        )
        service = ValidationService(settings, features, config)
    except (FeatureStoreError, ValueError, FileNotFoundError) as error:
        print(f"validation: cannot start: {error}", file=sys.stderr)
        return 2
    log.info("starting", extra={"fields": {"validation_sessions": int(len(features.sessions["validation"])),
                                           "simulations": settings.simulations}})
    uvicorn.run(build_app(service), host=settings.host, port=settings.port, log_config=None, access_log=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
