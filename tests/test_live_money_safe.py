"""Money-safe, second pass: the loss caps hold when their own orders fail and
the feed stalls, closes never open, fills are booked as the broker booked
them. Each test drives the project's trader with the real oandapyV20 client
against the loopback v20 server (faults injected there), or the paper broker
where the broker's behaviour is not the point."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from shared.config import RiskConfig
from shared.core.oanda import load_credentials, make_api
from shared.data.bars import Bars
from shared.live.brokers import OrderStatus, TemporaryBrokerError
from shared.live.brokers.oanda import OandaBroker
from shared.live.brokers.paper import PaperBroker
from shared.live.feeds import ReplayFeed
from shared.live.journal import Journal
from shared.live.trader import LiveTrader
from tests.live_helpers import load, trading_checkpoint
from tests.v20_account import ACCOUNT, TOKEN, V20State
from tests.v20_server import V20Server

PIP = 0.01


@pytest.fixture(scope="module")
def trading_model(features, tmp_path_factory):
    return load(trading_checkpoint(features, tmp_path_factory.mktemp("ck"), 64))


class Clock:
    """The flatten backoff's clock, moved by hand."""

    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def _now(feed: ReplayFeed) -> datetime:
    return datetime.fromtimestamp(feed.now_ns() / 1e9, timezone.utc)


def _feed(features) -> ReplayFeed:
    return ReplayFeed(features.bars, int(features.sessions["test"][0]))


def _oanda(server) -> OandaBroker:
    api = make_api(load_credentials({"OANDA_TOKEN": TOKEN, "OANDA_API_URL": server.url}), timeout_seconds=0.5)
    return OandaBroker(api, ACCOUNT, lookup_wait_seconds=0.02, backoff_seconds=0.02)


def _trader(features, model, tmp_path, broker, feed, clock=None, **risk) -> LiveTrader:
    return LiveTrader("GBPJPY", broker, Journal(tmp_path / "journal.duckdb"), model, feed.history(), simulations=4,
                      control_dir=tmp_path / "control", risk=RiskConfig(**risk), clock=clock or Clock())


def _posts(state) -> list[dict]:
    return [r["body"]["order"] for r in state.requests if r.get("method") == "POST"]


def _shifted(bars: Bars, pips: float) -> Bars:
    """The same bars with the last close moved: the broker's market, not the feed's."""
    close = bars.close.copy()
    close[-1] += pips * PIP
    return Bars(bars.ts, bars.open, bars.high, bars.low, close, bars.volume)


def _kill_switch(tmp_path, on: bool = True) -> None:
    (tmp_path / "control").mkdir(exist_ok=True)
    if on:
        (tmp_path / "control" / "live.flatten").touch()
    else:
        (tmp_path / "control" / "live.flatten").unlink()


def _open_at_broker(broker, units: int = 1) -> None:
    """A position the trader learns of by reconciliation (a fill from before, say)."""
    assert broker.market_order("GBPJPY", units, f"mm-d-before-{units}").status is OrderStatus.FILLED


# --- 1, 2, 6: the caps hold until the broker is flat, valued at the broker's price ----------------

def test_a_cancelled_daily_stop_flatten_is_retried_until_the_broker_is_flat(features, trading_model, tmp_path):
    """Regression: the stop was set whatever the flatten returned (-175 pips open against 20,
    "flat and stopped"); and open P&L was the stale bar's, so a stalled feed never fired it."""
    feed = _feed(features)
    state = V20State(bars={"GBP_JPY": feed.history()})
    clock = Clock()
    with V20Server(state) as server:
        broker = _oanda(server)
        trader = _trader(features, trading_model, tmp_path, broker, feed, clock, max_daily_loss_pips=20.0)
        _open_at_broker(broker)
        trader.reconcile()
        assert trader.position == 1 and trader.reconciled
        now = _now(feed)
        ts = int(trader.bars.ts[-1])
        assert trader.risk_check(ts, now) is None, "the broker's price has not moved: no stop"
        # the feed stalls; the broker's market falls 175 pips
        state.bars["GBP_JPY"] = _shifted(feed.history(), -175)
        state.cancel_next = ["MARKET_HALTED", "MARKET_HALTED"]
        assert trader.risk_check(ts, now) == "daily_loss_limit"
        assert trader.stop_state() == "stopping" and state.units["GBP_JPY"] == 1
        assert trader.risk_check(ts, now) == "daily_loss_limit" and len(_posts(state)) == 2, "waits for its backoff"
        clock.t += 1.0
        trader.risk_check(ts, now)
        assert trader.stop_state() == "stopping" and state.units["GBP_JPY"] == 1
        clock.t += 2.0
        trader.risk_check(ts, now)
        assert state.units["GBP_JPY"] == 0 and trader.position == 0 and trader.stop_state() == "stopped"
        flattens = _posts(state)[1:]
        assert len(flattens) == 3 and len({o["clientExtensions"]["id"] for o in flattens}) == 3
        assert all(o["positionFill"] == "REDUCE_ONLY" and o["units"] == "-1" for o in flattens)
        assert trader.status()["loss_cap_state"] == "stopped"
        assert trader.status()["stopped_until_utc"]
        clock.t += 60.0
        trader.risk_check(ts, now)
        assert len(_posts(state)) == 4, "stopped and flat: nothing more is sent"


def test_a_cancelled_kill_switch_flatten_is_retried_without_a_new_bar(features, trading_model, tmp_path):
    """Regression: its client id was per bar, so with the feed stalled the switch held a position
    indefinitely while its gauge said on."""
    feed = _feed(features)
    state = V20State(bars={"GBP_JPY": feed.history()})
    clock = Clock()
    with V20Server(state) as server:
        broker = _oanda(server)
        trader = _trader(features, trading_model, tmp_path, broker, feed, clock)
        _open_at_broker(broker, -1)
        trader.reconcile()
        _kill_switch(tmp_path)
        state.cancel_next = ["MARKET_HALTED"]
        ts, now = int(trader.bars.ts[-1]), _now(feed)
        assert trader.risk_check(ts, now) == "kill_switch" and trader.stop_state() == "stopping"
        for _ in range(3):
            clock.t += 30.0
            trader.risk_check(ts, now)  # the same bar: the feed has stalled
        assert state.units["GBP_JPY"] == 0 and trader.stop_state() == "stopped"
        assert [o["units"] for o in _posts(state)[1:]] == ["1", "1"], "retried once, then flat: no more orders"


def test_a_stalled_feed_with_a_position_open_is_flattened(features, trading_model, tmp_path):
    feed = _feed(features)
    paper = PaperBroker(tmp_path / "paper.json", spread_pips=4.0, pip_size=PIP)
    paper.mark(float(feed.history().close[-1]))
    trader = _trader(features, trading_model, tmp_path, paper, feed, flatten_stale_seconds=300.0)
    _open_at_broker(paper)
    trader.reconcile()
    ts, now = int(trader.bars.ts[-1]), _now(feed)
    assert trader.risk_check(ts, now + timedelta(seconds=200)) is None, "a short gap is not a stall"
    assert trader.risk_check(ts, now + timedelta(seconds=400)) == "stale_feed"
    assert paper.snapshot("GBPJPY").units == 0 and trader.stop_state() == "stopped"


# --- 3: closes never open ---------------------------------------------------------------------

def test_a_hand_close_between_reconciliations_never_makes_the_close_or_the_kill_switch_open(
        features, trading_model, tmp_path):
    """Regression: orders were sized from the trader's belief; after a hand close the model's
    CLOSE and the kill switch each opened a -1 position."""
    feed = _feed(features)
    state = V20State(bars={"GBP_JPY": feed.history()})
    with V20Server(state) as server:
        trader = _trader(features, trading_model, tmp_path, _oanda(server), feed)
        trader.reconcile()
        for _ in range(60):  # the model buys on a flat position and closes it on the next bar
            trader.on_bar(feed.next_bars(), _now(feed))
            state.bars["GBP_JPY"] = features.bars[: feed.position]
            if trader.position == 1:
                break
        assert trader.position == 1 == state.units["GBP_JPY"]
        state.set_position("GBP_JPY", 0)  # closed by hand at the broker
        decision = trader.on_bar(feed.next_bars(), _now(feed))
        assert (decision.status, decision.reason) == ("skipped", "position_changed_at_broker")
        assert state.units["GBP_JPY"] == 0 and trader.position == 0
        # and the kill switch on a position closed by hand: read first, nothing to send
        for _ in range(20):
            trader.on_bar(feed.next_bars(), _now(feed))
            state.bars["GBP_JPY"] = features.bars[: feed.position]
            if trader.position == 1:
                break
        state.set_position("GBP_JPY", 0)
        posts = len(_posts(state))
        _kill_switch(tmp_path)
        assert trader.risk_check(int(trader.bars.ts[-1]), _now(feed)) == "kill_switch"
        assert len(_posts(state)) == posts and state.units["GBP_JPY"] == 0 and trader.stop_state() == "stopped"
        closes = [o for o in _posts(state) if o["units"] == "-1"]
        assert all(o["positionFill"] == "REDUCE_ONLY" for o in closes)


# --- 5: fills settled later keep their realised P&L -----------------------------------------------

def test_a_close_settled_later_books_its_realised_pips_and_the_daily_stop_sees_them(features, trading_model, tmp_path):
    """Regression: an UNKNOWN order settled as FILLED was adopted without realized_pips, so the
    daily loss forgot it (the day at -51 against a 30-pip limit, no stop), also after a restart."""
    feed = _feed(features)
    state = V20State(bars={"GBP_JPY": feed.history()}, spread_pips=2.0)
    with V20Server(state) as server:
        broker = _oanda(server)
        trader = _trader(features, trading_model, tmp_path, broker, feed, max_daily_loss_pips=1.5)
        trader.reconcile()
        while trader.position == 0:
            trader.on_bar(feed.next_bars(), _now(feed))
            state.bars["GBP_JPY"] = features.bars[: feed.position]
        state.price_override["GBP_JPY"] = trader.entry_price - 30 * PIP  # the close loses 30 pips
        state.fail_after_create = [503]             # the close fills, its answer is lost
        state.forced_lookup_statuses = [500] * 200  # and no lookup answers for now
        decision = trader.on_bar(feed.next_bars(), _now(feed))
        assert decision.action == "CLOSE" and decision.order.status is OrderStatus.UNKNOWN
        assert state.units["GBP_JPY"] == 0
        state.forced_lookup_statuses = []
        settled = []
        trader.on_order = settled.append
        assert len(trader.settle_unfinished()) == 1 and trader.reconcile() is True, "no spurious mismatch"
        assert [o.status for o in settled] == [OrderStatus.FILLED], "a settled fill is counted"
        row = trader.journal.frame().iloc[-1]
        assert row.status == "FILLED" and row.realized_pips < -25
        now = _now(feed)
        assert trader.risk_check(int(trader.bars.ts[-1]), now) == "daily_loss_limit"
        trader.journal.close()
        restarted = _trader(features, trading_model, tmp_path, broker, feed, max_daily_loss_pips=1.5)
        restarted.reconcile()
        assert restarted.mismatches == 0 and restarted.position == 0
        assert restarted.daily_pnl_pips(now) < -25
        assert restarted.risk_check(int(restarted.bars.ts[-1]), now) == "daily_loss_limit"


# --- 11: a journal lost in replay mode re-books nothing ------------------------------------------

def test_replay_on_an_empty_journal_reconciles_the_old_fills_and_books_none(features, trading_model, tmp_path):
    feed = _feed(features)
    paper = PaperBroker(tmp_path / "paper.json", spread_pips=4.0, pip_size=PIP)
    trader = _trader(features, trading_model, tmp_path, paper, feed)
    trader.reconcile()
    for _ in range(15):
        trader.on_bar(feed.next_bars(), _now(feed))
    sent_before = dict(paper.state["orders"])
    assert len(sent_before) >= 5
    trader.journal.close()
    (tmp_path / "journal.duckdb").unlink()  # the journal is lost; the account is not

    feed = _feed(features)  # replay starts over at the split
    again = _trader(features, trading_model, tmp_path, paper, feed)
    again.reconcile()
    for _ in range(15):
        decision = again.on_bar(feed.next_bars(), _now(feed))
        if not again.reconciled:
            again.reconcile()
    frame = again.journal.frame()
    assert (frame.status == "known_to_broker").sum() >= 1
    assert not frame[frame.status == "FILLED"].client_id.isin(list(sent_before)).any(), "no old fill booked as new"
    assert paper.snapshot("GBPJPY").units == again.position == again.journal.filled_units()
    assert decision is not None


# --- the broker's truth in status and metrics ----------------------------------------------------

class _FlakyPaper(PaperBroker):
    fail_snapshots = 0

    def snapshot(self, instrument):
        if self.fail_snapshots:
            self.fail_snapshots -= 1
            raise TemporaryBrokerError("OANDA HTTP 503")
        return super().snapshot(instrument)


def test_status_clears_the_broker_error_on_recovery(features, trading_model, data_dir, tmp_path):
    from services.live.config import LiveSettings
    from services.live.service import LiveService

    feed = _feed(features)
    broker = _FlakyPaper(tmp_path / "paper.json", spread_pips=4.0, pip_size=PIP)
    settings = LiveSettings(checkpoint_dir=tmp_path, data_dir=data_dir, simulations=4)
    service = LiveService(settings, broker, feed, Journal(tmp_path / "journal.duckdb"))
    service.start_trader(trading_model)
    broker.fail_snapshots = 1
    assert service.reconcile() is False and service.status_page()["broker_error"] == "temporary: OANDA HTTP 503"
    assert service.reconcile() is True and service.status_page()["broker_error"] is None


def test_a_malformed_current_is_counted_and_the_watcher_survives(features, trading_model, data_dir, tmp_path):
    """Regression: read_current outside the refusing try ended the model watcher silently."""
    import threading

    from services.live.config import LiveSettings
    from services.live.service import LiveService
    from tests.live_helpers import promote_checkpoint

    settings = LiveSettings(checkpoint_dir=tmp_path, data_dir=data_dir, simulations=4,
                            model_wait_seconds=0.1)
    service = LiveService(settings, PaperBroker(tmp_path / "paper.json", spread_pips=4.0, pip_size=PIP),
                          _feed(features), Journal(tmp_path / "journal.duckdb"))
    service.start_trader(trading_model)
    (tmp_path / "promoted").mkdir()
    (tmp_path / "promoted" / "CURRENT").write_text('{"model": "model-ep00000064.pt"')  # torn
    watcher = threading.Thread(target=service.watch_models, daemon=True)
    watcher.start()
    try:
        deadline = datetime.now() + timedelta(seconds=20)
        while service.metrics.pointer_errors._value.get() < 1 and datetime.now() < deadline:
            threading.Event().wait(0.05)
        assert service.metrics.pointer_errors._value.get() >= 1 and watcher.is_alive()
        pointer = promote_checkpoint(tmp_path, trading_checkpoint(features, tmp_path, 96), 96)
        while service.trader.staged is None and datetime.now() < deadline + timedelta(seconds=20):
            threading.Event().wait(0.05)
        assert service.trader.staged is not None and service.trader.staged.sha256 == pointer.sha256
    finally:
        service.stop.set()
        watcher.join(timeout=10)


# --- 12: OANDA is never fed replayed bars by accident --------------------------------------------

@pytest.mark.parametrize("env, allowed", [
    ({"OANDA_ENV": "practice"}, False),
    ({"OANDA_ENV": "practice", "LIVE_ALLOW_OANDA_WITH_REPLAY_FEED": "true"}, True),
    ({"OANDA_ENV": "live", "LIVE_ALLOW_OANDA_WITH_REPLAY_FEED": "true"}, False),
])
def test_oanda_with_a_replay_feed_is_refused_unless_a_test_allows_it(monkeypatch, env, allowed):
    from services.live.config import LiveSettings
    from shared.core.settings import ConfigError, load_settings

    for name in ("OANDA_API_URL", "OANDA_TOKEN_FILE", "OANDA_ACCOUNT_FILE"):
        monkeypatch.delenv(name, raising=False)
    for name, value in {"LIVE_BROKER": "oanda", "LIVE_FEED": "replay", "OANDA_TOKEN": TOKEN,
                        "OANDA_ACCOUNT": ACCOUNT, **env}.items():
        monkeypatch.setenv(name, value)
    if allowed:
        assert load_settings(LiveSettings).allow_oanda_with_replay_feed
    else:
        with pytest.raises(ConfigError, match="LIVE_FEED"):
            load_settings(LiveSettings)


# --- 3, 4, 7, 9: the broker's truth in every field ------------------------------------------------

def test_a_margin_closeout_between_reconciliations_never_makes_the_kill_switch_open(features, trading_model, tmp_path):
    feed = _feed(features)
    state = V20State(bars={"GBP_JPY": feed.history()})
    with V20Server(state) as server:
        broker = _oanda(server)
        trader = _trader(features, trading_model, tmp_path, broker, feed)
        _open_at_broker(broker)
        trader.reconcile()
        state.margin_closeout("GBP_JPY")
        _kill_switch(tmp_path)
        assert trader.risk_check(int(trader.bars.ts[-1]), _now(feed)) == "kill_switch"
        assert state.units["GBP_JPY"] == 0 and trader.position == 0 and trader.stop_state() == "stopped"
        assert len(_posts(state)) == 1, "read first: nothing to close, nothing sent"
        assert trader.mismatches == 2, "the position from before, then the closeout"


def test_a_hedging_account_is_refused_and_both_sides_are_never_netted(features, trading_model, tmp_path):
    """Regression: long and short were summed, so on a hedging account reconciliation agreed at
    net 0 with 5 long and 5 short open."""
    from shared.live.brokers import UnsupportedAccountError

    feed = _feed(features)
    state = V20State(bars={"GBP_JPY": feed.history()}, hedging=True)
    with V20Server(state) as server:
        broker = _oanda(server)
        with pytest.raises(UnsupportedAccountError, match="hedging"):
            broker.check_account()
        trader = _trader(features, trading_model, tmp_path, broker, feed)
        _open_at_broker(broker, 1)
        _open_at_broker(broker, -1)
        assert state.units["GBP_JPY"] == 0, "net zero, both sides open"
        assert trader.reconcile() is False and not trader.reconciled and trader.both_sides_open
        decision = trader.on_bar(feed.next_bars(), _now(feed))
        assert (decision.status, decision.reason) == ("skipped", "both_sides_open")
        assert len(_posts(state)) == 2, "nothing traded"


def test_a_partial_fill_is_booked_as_filled_and_the_flatten_finishes_the_rest(features, trading_model, tmp_path):
    """Regression: orderFillTransaction.units was ignored: a partial fill was booked as the whole."""
    feed = _feed(features)
    state = V20State(bars={"GBP_JPY": feed.history()})
    clock = Clock()
    with V20Server(state) as server:
        broker = _oanda(server)
        trader = _trader(features, trading_model, tmp_path, broker, feed, clock)
        _open_at_broker(broker, 3)
        trader.reconcile()
        state.partial_next = [2]
        _kill_switch(tmp_path)
        ts, now = int(trader.bars.ts[-1]), _now(feed)
        trader.risk_check(ts, now)
        assert trader.position == 1 == state.units["GBP_JPY"] and trader.stop_state() == "stopping"
        assert trader.journal.filled_units() == 1
        clock.t += 1.0
        trader.risk_check(ts, now)
        assert trader.position == 0 == state.units["GBP_JPY"] and trader.stop_state() == "stopped"
        assert [o["units"] for o in _posts(state)[1:]] == ["-3", "-1"]


def test_fills_without_the_deprecated_price_are_booked_and_survive_a_restart(features, trading_model, tmp_path):
    """Regression: a fill without `price` raised KeyError at the fill and at every restart."""
    feed = _feed(features)
    state = V20State(bars={"GBP_JPY": feed.history()}, omit_fill_price=True)
    with V20Server(state) as server:
        broker = _oanda(server)
        trader = _trader(features, trading_model, tmp_path, broker, feed)
        trader.reconcile()
        for _ in range(12):
            trader.on_bar(feed.next_bars(), _now(feed))
            state.bars["GBP_JPY"] = features.bars[: feed.position]
        frame = trader.journal.frame()
        filled = frame[frame.status == "FILLED"]
        assert len(filled) >= 4 and filled.fill_price.notna().all()
        assert frame[frame.action == "CLOSE"].realized_pips.notna().all()
        trader.journal.close()
        restarted = _trader(features, trading_model, tmp_path, broker, feed)
        assert restarted.reconcile() is True and restarted.position == state.units["GBP_JPY"]


def test_the_service_refuses_a_hedging_account_with_exit_2(features, data_dir, tmp_path):
    import subprocess
    import sys

    from tests.live_helpers import promote_checkpoint
    from tests.service_helpers import ROOT, free_port

    promote_checkpoint(tmp_path, trading_checkpoint(features, tmp_path, 64), 64)
    state = V20State(bars={"GBP_JPY": features.bars}, hedging=True)
    with V20Server(state) as server:
        env = {"MICRO_DATA_DIR": str(data_dir), "CHECKPOINT_DIR": str(tmp_path), "LIVE_PORT": str(free_port()),
               "LIVE_SIMULATIONS": "4", "LIVE_MODEL_WAIT_SECONDS": "0.5", "LIVE_BROKER": "oanda",
               "OANDA_TOKEN": TOKEN, "OANDA_ACCOUNT": ACCOUNT, "OANDA_API_URL": server.url,
               "LIVE_ALLOW_OANDA_WITH_REPLAY_FEED": "true", "PATH": "/usr/bin:/bin"}
        result = subprocess.run([sys.executable, "-m", "services.live"], cwd=ROOT, env=env, capture_output=True,
                                text=True, timeout=180)
    assert result.returncode == 2, result.stdout[-2000:] + result.stderr[-2000:]
    assert "hedging" in result.stdout + result.stderr
    assert not [r for r in state.requests if r.get("method") == "POST"], "nothing was traded"
