"""The live service's risk controls when bars do not come, the daily-loss stop's
trading day, and a restart in replay mode that keeps the features right."""

from __future__ import annotations

import threading
import time
from datetime import datetime, timedelta, timezone

import numpy as np
import pandas as pd
import pytest

from services.live.config import LiveSettings
from services.live.service import LiveService
from shared.config import RiskConfig
from shared.live.brokers.paper import PaperBroker
from shared.live.feeds import ReplayFeed
from shared.live.journal import Journal
from shared.live.trader import LiveTrader, trading_day_start
from tests.live_helpers import load, promote_checkpoint, trading_checkpoint


class _DeadFeed(ReplayFeed):
    """A feed whose history loads and whose every later request fails (OANDA down, say)."""

    def next_bars(self):
        raise ConnectionError("feed unreachable")


def _service(features, data_dir, root, feed) -> LiveService:
    settings = LiveSettings(checkpoint_dir=root, data_dir=data_dir, poll_seconds=0.2,
                            model_wait_seconds=0.2, simulations=4)
    # the keywords take effect (an unknown one is refused: extra="forbid")
    assert (settings.poll_seconds, settings.model_wait_seconds, settings.simulations) == (0.2, 0.2, 4)
    broker = PaperBroker(root / "live" / "paper.json", spread_pips=4.0, pip_size=0.01)
    return LiveService(settings, broker, feed, Journal(root / "live" / "journal.duckdb"))


def test_the_kill_switch_flattens_while_the_feed_fails(features, data_dir, tmp_path):
    """Regression: live.flatten acted only inside on_bar, so with a dead feed it never did
    (and a feed error ended the loop)."""
    promote_checkpoint(tmp_path, trading_checkpoint(features, tmp_path, 64), 64)
    start = int(features.sessions["test"][0])
    service = _service(features, data_dir, tmp_path, _DeadFeed(features.bars, start))
    service.broker.mark(float(features.bars.close[start - 1]))
    service.broker.market_order("GBPJPY", 1, "mm-d-held")  # a position the broker holds from before
    thread = threading.Thread(target=service._run, daemon=True)
    thread.start()
    try:
        deadline = time.time() + 60
        while time.time() < deadline and (service.trader is None or not service.trader.reconciled):
            time.sleep(0.1)
        assert service.trader.position == 1
        (tmp_path / "control").mkdir(exist_ok=True)
        (tmp_path / "control" / "live.flatten").touch()
        # the paper account holds the close before the trader has booked it (its write takes an fsync): wait for both
        while time.time() < deadline and (service.broker.snapshot("GBPJPY").units != 0 or service.trader.position != 0):
            time.sleep(0.1)
        assert service.broker.snapshot("GBPJPY").units == 0 and service.trader.position == 0
        # the flatten is an order like any other (regression: only decisions were counted)
        assert service.metrics.orders.labels(status="filled")._value.get() == 1
        # booked on the last bar seen, so the next bar is still decided on its own after it
        assert service.journal.last_bar_ts().value == int(features.bars.ts[start - 1])
        assert service.metrics.feed_errors._value.get() >= 1 and service.feed_error is not None
        assert thread.is_alive(), "a failing feed does not end the loop"
    finally:
        service.stop.set()
        thread.join(timeout=30)


def test_the_daily_loss_stop_resets_on_the_next_trading_day(features, tmp_path):
    """Regression: once hit, the daily-loss stop (and its metric) held forever."""
    trader = LiveTrader("GBPJPY", PaperBroker(tmp_path / "paper.json", spread_pips=4.0, pip_size=0.01),
                        Journal(tmp_path / "journal.duckdb"), load(trading_checkpoint(features, tmp_path, 64)),
                        features.bars[:3000], simulations=4, risk=RiskConfig(max_daily_loss_pips=50.0))
    trader.reconcile()
    now = datetime(2024, 3, 13, 20, 0, tzinfo=timezone.utc)  # Wednesday 16:00 New York
    trader.daily_pnl_pips(now)
    trader.realized_today = -60.0  # lost 60 pips today
    assert trader.risk_check(0, now) == "daily_loss_limit" and trader.stopped_for_the_day(now)
    assert trader.risk_check(0, now + timedelta(minutes=50)) == "daily_loss_limit"  # 16:50: same trading day
    later = now + timedelta(hours=1, minutes=1)  # 17:01 New York: a new trading day
    assert trader.risk_check(0, later) is None and not trader.stopped_for_the_day(later)


@pytest.mark.parametrize("when, start", [
    ("2024-03-13 20:59", "2024-03-12 21:00"),  # EDT: the day began at 17:00 New York = 21:00 UTC
    ("2024-03-13 21:00", "2024-03-13 21:00"),
    ("2024-01-10 21:59", "2024-01-09 22:00"),  # EST
    ("2024-03-11 04:04", "2024-03-10 21:00"),  # regression: 00:04 EDT after the 23-hour Sunday gave 03-09 22:00
    ("2024-11-04 04:30", "2024-11-03 22:00"),  # the 25-hour Sunday in November
])
def test_trading_days_roll_at_17_new_york(when, start):
    assert trading_day_start(datetime.fromisoformat(when).replace(tzinfo=timezone.utc)) == pd.Timestamp(start)


def test_validation_and_live_share_one_trading_day_across_daylight_saving():
    """Validation's daily P&L groups bars by the days live's loss stop resets on: the vectorised
    trading_days and trading_day_start both against a plain reading of New York's clock (the date,
    the one before before 17:00), every 7 minutes across the March and November clock changes and a
    winter week."""
    from datetime import timedelta as days_

    from shared.core.calendar import NEW_YORK, trading_days

    stamps = pd.concat([pd.Series(pd.date_range(start, periods=3 * 1440, freq="7min")) for start in
                        ("2024-03-08 00:00", "2024-10-31 00:00", "2024-01-08 00:00")], ignore_index=True)
    def new_york_day(t):
        ny = t.to_pydatetime().replace(tzinfo=timezone.utc).astimezone(NEW_YORK)
        return ny.date() if ny.hour >= 17 else ny.date() - days_(days=1)

    expected = [new_york_day(t) for t in stamps]
    days = trading_days(stamps.to_numpy().astype("datetime64[ns]").astype(np.int64))
    starts = [trading_day_start(t.to_pydatetime().replace(tzinfo=timezone.utc)) for t in stamps]
    _, by_expected = np.unique(np.array(expected, dtype="datetime64[D]"), return_inverse=True)
    for got in (days, np.array(starts, dtype="datetime64[ns]")):
        _, grouping = np.unique(got, return_inverse=True)
        assert (grouping == by_expected).all()
    # the summer roll is at 21:00 UTC, not at UTC midnight
    summer = np.array(["2024-03-13T20:59", "2024-03-13T21:00"], dtype="datetime64[ns]").astype(np.int64)
    assert np.diff(trading_days(summer))[0] == 1


def test_a_restart_in_replay_mode_keeps_exactly_the_bars_before_the_next_decision(features, data_dir, tmp_path):
    """Regression: after a restart the feature buffer jumped over every bar decided before
    the crash (about 1,500 bars), so the first decisions saw the wrong features."""
    promote_checkpoint(tmp_path, trading_checkpoint(features, tmp_path, 64), 64)
    start = int(features.sessions["test"][0])
    first = _service(features, data_dir, tmp_path, ReplayFeed(features.bars, start))
    trader = first.start_trader(first.load_promoted())
    first.reconcile()
    for _ in range(40):
        first.on_bar(first.feed.next_bars())
    decided_up_to = first.feed.position - 1
    first.journal.close()

    restarted = _service(features, data_dir, tmp_path, ReplayFeed(features.bars, start))
    trader = restarted.start_trader(restarted.load_promoted())
    assert int(trader.bars.ts[-1]) == int(features.bars.ts[decided_up_to])
    restarted.reconcile()
    restarted.on_bar(restarted.feed.next_bars())
    window, _ = trader.observation()
    np.testing.assert_array_equal(window[0], features.features[decided_up_to + 1 - 31 : decided_up_to + 2])


def test_a_model_for_another_instrument_is_refused(features, data_dir, tmp_path):
    import torch

    path = trading_checkpoint(features, tmp_path, 64)
    payload = torch.load(path, weights_only=True)
    payload["instrument"] = "EURUSD"
    payload["instruments"] = ["EURUSD"]  # candidates name every instrument they were trained on (issue 22)
    torch.save(payload, path)
    promote_checkpoint(tmp_path, path, 64)
    service = _service(features, data_dir, tmp_path, ReplayFeed(features.bars, int(features.sessions["test"][0])))
    assert service.load_promoted() is None
    assert service.metrics.swaps.labels(result="refused")._value.get() == 1
    events = service.journal.con.execute("SELECT detail FROM events WHERE kind = 'model_refused'").fetchall()
    assert "instrument_mismatch" in events[0][0]
