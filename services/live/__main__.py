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
    from shared.live.brokers.oanda import OandaBroker
    from shared.live.brokers.paper import PaperBroker
    from shared.live.journal import Journal

    torch.set_num_threads(1)  # one decision at a time: a second thread only adds synchronisation
    names = settings.traded_instruments
    api = None
    if settings.broker == "oanda" or settings.feed == "oanda":
        credentials = load_credentials(require_account=settings.broker == "oanda")
        api = make_api(credentials, timeout_seconds=settings.request_timeout_seconds)
    if settings.broker == "oanda":
        broker = OandaBroker(api, credentials.account_id, stop_loss_pips=settings.stop_loss_pips,
                             price_bound_pips=settings.price_bound_pips)
    elif len(names) > 1:
        # one paper account for every instrument (another file than one instrument's: its layout differs)
        converts = settings.currency() is not None
        broker = PaperBroker.account(settings.live_dir / "paper-account.json",
                                     {name: settings.spread_pips for name in names},
                                     account_currency=settings.account_currency if converts else None)
    else:
        instrument = get_instrument(settings.instrument)
        spread = instrument.spread_pips if settings.spread_pips is None else settings.spread_pips
        broker = PaperBroker(settings.live_dir / "paper.json", spread_pips=spread, pip_size=instrument.pip_size,
                             unit=instrument.unit)
    feed = make_feed(settings, api)
    journal = Journal(settings.live_dir / "journal.duckdb")
    log.info("starting", extra={"fields": {"broker": settings.broker, "feed": settings.feed,
                                           "simulations": settings.simulations, "instruments": list(names)}})
    return build_app(LiveService(settings, broker, feed, journal))


def make_feed(settings: LiveSettings, api=None):
    """One instrument: its feed, as always. Several: a DeskFeed merging one feed per instrument by
    bar time; replayed, each instrument's split from the same bar time on (the latest of their
    first bars), so the replayed market is one."""
    import numpy as np

    from shared.features.store import load_feature_set
    from shared.live.feeds import DeskFeed, OandaCandleFeed, ReplayFeed

    feeds = {}
    for name in settings.traded_instruments:
        if settings.feed == "oanda":
            feeds[name] = OandaCandleFeed(api, name, granularity=settings.granularity)
            continue
        features = load_feature_set(settings.db_path, name, settings.granularity)
        start = int(features.require_sessions(settings.replay_split)[0])
        feeds[name] = ReplayFeed(features.bars, start, bars_per_second=settings.replay_bars_per_second,
                                 granularity=settings.granularity)
    if len(feeds) == 1:
        return next(iter(feeds.values()))
    if settings.feed == "replay":
        first_ns = max(int(feed.bars.ts[feed.position]) for feed in feeds.values())
        for feed in feeds.values():
            feed.position = max(1, int(np.searchsorted(feed.bars.ts, first_ns)))
    return DeskFeed(feeds)


def main() -> int:
    from shared.service.main import run_service

    return run_service("live", LiveSettings, build)


if __name__ == "__main__":
    sys.exit(main())
