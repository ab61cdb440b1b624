"""python -m services.live: the live trading service on port 8003."""

from __future__ import annotations

import sys

from pydantic import ValidationError


def main() -> int:
    from services.live.config import LiveSettings

    try:
        settings = LiveSettings()
    except ValidationError as error:
        print(f"live: bad configuration:\n{error}", file=sys.stderr)
        return 2

    import torch
    import uvicorn

    from services.live.service import LiveService, build_app
    from shared.brokers.oanda import OandaBroker
    from shared.brokers.paper import PaperBroker
    from shared.features.store import FeatureStoreError, load_feature_set
    from shared.instruments import get_instrument
    from shared.live.feeds import OandaCandleFeed, ReplayFeed
    from shared.live.journal import Journal
    from shared.logs import configure_logging
    from shared.oanda import OandaConfigError, load_credentials, make_api
    from shared.runtime import tune_process

    log = configure_logging("live", settings.log_level)
    tune_process()
    torch.set_num_threads(1)  # one decision at a time: a second thread only adds synchronisation
    try:
        instrument = get_instrument(settings.instrument)
        api = None
        if settings.broker == "oanda" or settings.feed == "oanda":
            credentials = load_credentials(require_account=settings.broker == "oanda")
            api = make_api(credentials, timeout_seconds=settings.request_timeout_seconds)
        if settings.broker == "oanda":
            broker = OandaBroker(api, credentials.account_id)
        else:
            spread = instrument.spread_pips if settings.spread_pips is None else settings.spread_pips
            broker = PaperBroker(settings.live_dir / "paper.json", spread_pips=spread, pip_size=instrument.pip_size)
        if settings.feed == "oanda":
            feed = OandaCandleFeed(api, instrument.name)
        else:
            features = load_feature_set(settings.db_path, instrument.name)
            start = int(features.require_sessions(settings.replay_split)[0])
            feed = ReplayFeed(features.bars, start, bars_per_second=settings.replay_bars_per_second)
        journal = Journal(settings.live_dir / "journal.duckdb")
    except (FeatureStoreError, OandaConfigError, ValueError, FileNotFoundError) as error:
        print(f"live: cannot start: {error}", file=sys.stderr)
        return 2
    log.info("starting", extra={"fields": {"broker": settings.broker, "feed": settings.feed,
                                           "simulations": settings.simulations}})
    service = LiveService(settings, broker, feed, journal)
    uvicorn.run(build_app(service), host=settings.host, port=settings.port, log_config=None, access_log=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
