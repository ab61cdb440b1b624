"""python -m services.live: the live trading service on port 8003."""

from __future__ import annotations

import logging
import sys

from fastapi import FastAPI

from services.live.config import LiveSettings


def build(settings: LiveSettings, log: logging.Logger) -> FastAPI:
    import torch

    from services.live.service import LiveService, build_app
    from shared.core.instruments import get_instrument
    from shared.core.oanda import load_credentials, make_api
    from shared.features.store import load_feature_set
    from shared.live.brokers.oanda import OandaBroker
    from shared.live.brokers.paper import PaperBroker
    from shared.live.feeds import OandaCandleFeed, ReplayFeed
    from shared.live.journal import Journal

    torch.set_num_threads(1)  # one decision at a time: a second thread only adds synchronisation
    instrument = get_instrument(settings.instrument)
    api = None
    if settings.broker == "oanda" or settings.feed == "oanda":
        credentials = load_credentials(require_account=settings.broker == "oanda")
        api = make_api(credentials, timeout_seconds=settings.request_timeout_seconds)
    if settings.broker == "oanda":
        broker = OandaBroker(api, credentials.account_id, stop_loss_pips=settings.stop_loss_pips,
                             price_bound_pips=settings.price_bound_pips)
    else:
        spread = instrument.spread_pips if settings.spread_pips is None else settings.spread_pips
        broker = PaperBroker(settings.live_dir / "paper.json", spread_pips=spread, pip_size=instrument.pip_size)
    if settings.feed == "oanda":
        feed = OandaCandleFeed(api, instrument.name, granularity=settings.granularity)
    else:
        features = load_feature_set(settings.db_path, instrument.name, settings.granularity)
        start = int(features.require_sessions(settings.replay_split)[0])
        feed = ReplayFeed(features.bars, start, bars_per_second=settings.replay_bars_per_second,
                          granularity=settings.granularity)
    journal = Journal(settings.live_dir / "journal.duckdb")
    log.info("starting", extra={"fields": {"broker": settings.broker, "feed": settings.feed,
                                           "simulations": settings.simulations}})
    return build_app(LiveService(settings, broker, feed, journal))


def main() -> int:
    from shared.service.main import run_service

    return run_service("live", LiveSettings, build)


if __name__ == "__main__":
    sys.exit(main())
