"""python -m services.validation: the validation service on port 8002."""

from __future__ import annotations

import logging
import sys

from fastapi import FastAPI

from services.validation.config import ValidationSettings


def build(settings: ValidationSettings, log: logging.Logger) -> FastAPI:
    from services.validation.service import ValidationService, build_app
    from shared.config import GateConfig, ValidationConfig
    from shared.features.store import load_feature_set

    features = load_feature_set(settings.db_path, settings.instrument, settings.granularity)
    features.require_sessions("validation")
    config = ValidationConfig(
        simulations=settings.simulations, mc_runs=settings.mc_runs, seed=settings.seed,
        max_sessions=settings.max_sessions, timeout_seconds=settings.timeout_seconds,
        gate=GateConfig(min_trades=settings.min_trades, min_expectancy_pips=settings.min_expectancy_pips,
                        min_mc_p5_final_pips=settings.min_mc_p5_final_pips,
                        max_drawdown_pips=settings.max_drawdown_pips, score=settings.score,
                        selection=settings.selection, max_p_value=settings.max_p_value),
    )
    service = ValidationService(settings, features, config)
    log.info("starting", extra={"fields": {"validation_sessions": int(len(features.sessions["validation"])),
                                           "simulations": settings.simulations}})
    return build_app(service)


def main() -> int:
    from shared.service_main import run_service

    return run_service("validation", ValidationSettings, build)


if __name__ == "__main__":
    sys.exit(main())
