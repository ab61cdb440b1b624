"""The live trader with real brokers (paper, and OANDA against the loopback
server): parity with batch features, orders and the journal, a crash between
order and journal, reconciliation, model swap, guards."""

from __future__ import annotations

from datetime import datetime, timezone

import numpy as np
import pytest

from shared.config import RiskConfig
from shared.core.oanda import load_credentials, make_api
from shared.live.brokers import OperationalBrokerError, OrderStatus
from shared.live.brokers.oanda import OandaBroker
from shared.live.brokers.paper import PaperBroker
from shared.live.feeds import ReplayFeed
from shared.live.journal import Journal
from shared.live.trader import LiveTrader, market_open
from tests.live_helpers import load, trading_checkpoint
from tests.v20_account import ACCOUNT, TOKEN, V20State
from tests.v20_server import V20Server


@pytest.fixture(scope="module")
def trading_model(features, tmp_path_factory):
    return load(trading_checkpoint(features, tmp_path_factory.mktemp("ck"), 64))


def _now(feed: ReplayFeed) -> datetime:
    return datetime.fromtimestamp(feed.now_ns() / 1e9, timezone.utc)


def _setup(features, model, tmp_path, broker=None, **kwargs):
    start = int(features.sessions["test"][0])
    feed = ReplayFeed(features.bars, start)
    broker = broker or PaperBroker(tmp_path / "paper.json", spread_pips=4.0, pip_size=0.01)
    journal = Journal(tmp_path / "journal.duckdb")
    trader = LiveTrader("GBPJPY", broker, journal, model, feed.history(), simulations=kwargs.pop("simulations", 8),
                        control_dir=tmp_path / "control", **kwargs)
    return feed, broker, journal, trader


def test_live_features_equal_batch_features(features, trading_model, tmp_path):
    feed, _, _, trader = _setup(features, trading_model, tmp_path)
    trader.reconcile()
    for _ in range(30):
        trader.on_bar(feed.next_bars(), _now(feed))
        window, _ = trader.observation()
        last = feed.position - 1
        np.testing.assert_array_equal(window[0], features.features[last - 31 : last + 1])


def test_orders_are_placed_and_journaled_once(features, trading_model, tmp_path):
    # a model that trades every bar pays the spread every two: no daily loss stop in these 40 bars
    feed, broker, journal, trader = _setup(features, trading_model, tmp_path, risk=RiskConfig(max_daily_loss_pips=1e6))
    assert trader.on_bar(feed.next_bars(), _now(feed)).reason == "not_reconciled"
    trader.reconcile()
    for _ in range(40):
        trader.on_bar(feed.next_bars(), _now(feed))
    frame = journal.frame()
    filled = frame[frame.status == "FILLED"]
    assert len(filled) >= 20, frame.status.value_counts()
    assert set(filled.client_id) == set(broker.state["orders"]), "every broker order is journaled, nothing else"
    assert frame.client_id.is_unique and frame.bar_ts.is_unique
    assert journal.filled_units() == broker.snapshot("GBPJPY").units == trader.position
    assert filled.fill_price.notna().all() and frame.visit_counts.notna().any() and frame.feature_hash.notna().any()
    assert (frame[frame.action == "CLOSE"].realized_pips.notna()).all()


class _DiesAfterOrder:
    """The paper broker, but the process 'dies' right after the broker accepted
    the order and before the journal heard about it."""

    def __init__(self, broker):
        self.inner, self.name = broker, broker.name

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def market_order(self, instrument, units, client_id, **options):
        self.inner.market_order(instrument, units, client_id, **options)
        raise SystemExit("killed between order and journal")


def test_crash_between_order_and_journal_then_restart(features, trading_model, tmp_path):
    feed, paper, journal, trader = _setup(features, trading_model, tmp_path)
    trader.reconcile()
    trader.broker = _DiesAfterOrder(paper)
    with pytest.raises(SystemExit):
        for _ in range(10):
            trader.on_bar(feed.next_bars(), _now(feed))
    crashed_bar = feed.position - 1
    journal.close()

    # restart: a new journal connection, the same broker state, the feed at the same place
    journal = Journal(tmp_path / "journal.duckdb")
    paper = PaperBroker(tmp_path / "paper.json", spread_pips=4.0, pip_size=0.01)
    assert [cid for cid, *_ in journal.unfinished()], "the decision was written before acting"
    restarted = LiveTrader("GBPJPY", paper, journal, trading_model, features.bars[: crashed_bar], simulations=8,
                           control_dir=tmp_path / "control")
    assert len(restarted.settle_unfinished()) == 1
    restarted.reconcile()
    feed.position = crashed_bar  # the feed replays the crashed bar again
    decision = restarted.on_bar(feed.next_bars(), _now(feed))
    assert decision.status == "duplicate"
    for _ in range(10):
        restarted.on_bar(feed.next_bars(), _now(feed))
    frame = journal.frame()
    assert set(frame[frame.status == "FILLED"].client_id) == set(paper.state["orders"])
    assert journal.filled_units() == paper.snapshot("GBPJPY").units == restarted.position
    assert restarted.mismatches == 0


def test_reconciliation_adopts_the_broker_position(features, trading_model, tmp_path):
    feed, paper, journal, trader = _setup(features, trading_model, tmp_path)
    trader.reconcile()
    paper.state.update(units=-1, average_price=170.0)  # someone sold at the broker behind our back
    assert trader.reconcile() is False
    assert trader.position == -1 and trader.mismatches == 1
    assert trader.reconcile() is True
    events = journal.con.execute("SELECT kind FROM events").fetchall()
    assert ("reconciliation_mismatch",) in events


def test_a_broker_position_the_model_cannot_hold_is_not_traded(features, trading_model, tmp_path):
    """Three units adopted from the broker (a manual trade, say): outside the
    model's action space, so no decision is searched until a person acts."""
    feed, paper, journal, trader = _setup(features, trading_model, tmp_path)
    paper.state.update(units=3, average_price=170.0)
    trader.reconcile()
    assert trader.position == 3
    decision = trader.on_bar(feed.next_bars(), _now(feed))
    assert (decision.status, decision.reason) == ("skipped", "position_outside_action_space")
    assert paper.snapshot("GBPJPY").units == 3, "nothing was sent"
    paper.state.update(units=1)
    trader.reconcile()
    assert trader.on_bar(feed.next_bars(), _now(feed)).status != "skipped"


def test_model_swap_happens_between_bars(features, trading_model, tmp_path):
    holder = load(trading_checkpoint(features, tmp_path / "ck2", 128, prefer=(20, -20, -20, -20)))  # always HOLD
    feed, _, journal, trader = _setup(features, trading_model, tmp_path)
    trader.reconcile()
    trader.on_bar(feed.next_bars(), _now(feed))
    trader.stage(holder)
    assert trader.version.startswith("ep00000064")  # not yet: the swap waits for the next bar
    decision = trader.on_bar(feed.next_bars(), _now(feed))
    assert trader.version.startswith("ep00000128")
    assert journal.frame().model_version.iloc[-1].startswith("ep00000128")
    assert decision.action in ("HOLD", "CLOSE")


def test_guards_stale_data_market_hours_kill_switch_daily_loss(features, trading_model, tmp_path):
    feed, paper, journal, trader = _setup(features, trading_model, tmp_path,
                                          risk=RiskConfig(max_daily_loss_pips=5.0))
    trader.reconcile()
    bar = feed.next_bars()
    late = datetime.fromtimestamp(feed.now_ns() / 1e9 + 5 * 60, timezone.utc)
    assert trader.on_bar(bar, late).reason == "stale_data"
    saturday = datetime(2024, 3, 16, 12, 0, tzinfo=timezone.utc)
    assert trader.on_bar(feed.next_bars(), saturday).reason == "market_closed"

    while trader.position == 0:  # trade until a position is open
        trader.on_bar(feed.next_bars(), _now(feed))
    (tmp_path / "control").mkdir(exist_ok=True)
    (tmp_path / "control" / "live.flatten").touch()
    assert trader.on_bar(feed.next_bars(), _now(feed)).reason == "kill_switch"
    assert trader.position == 0 and paper.snapshot("GBPJPY").units == 0
    assert trader.on_bar(feed.next_bars(), _now(feed)).reason == "kill_switch"  # stands aside while it exists
    (tmp_path / "control" / "live.flatten").unlink()

    for _ in range(40):  # the spread alone costs 4 pips a trade: the 5-pip daily limit is hit soon
        decision = trader.on_bar(feed.next_bars(), _now(feed))
        if decision.reason == "daily_loss_limit":
            break
    assert decision.reason == "daily_loss_limit" and trader.position == 0
    assert trader.on_bar(feed.next_bars(), _now(feed)).reason == "daily_loss_limit"


@pytest.mark.parametrize(
    "when, open_",
    [
        ("2024-03-15 20:59", True),   # Friday 16:59 New York (EDT)
        ("2024-03-15 21:00", False),  # Friday 17:00 New York: closed
        ("2024-03-16 12:00", False),  # Saturday
        ("2024-03-17 20:59", False),  # Sunday 16:59 New York
        ("2024-03-17 21:00", True),   # Sunday 17:00 New York: open
        ("2024-01-12 21:59", True),   # Friday 16:59 New York (EST)
        ("2024-01-12 22:00", False),
    ],
)
def test_market_hours(when, open_):
    assert market_open(datetime.fromisoformat(when).replace(tzinfo=timezone.utc)) is open_


def test_oanda_broker_trading_and_reconciliation(features, trading_model, tmp_path):
    state = V20State(bars={"GBP_JPY": features.bars})
    with V20Server(state) as server:
        api = make_api(load_credentials({"OANDA_TOKEN": TOKEN, "OANDA_API_URL": server.url}), timeout_seconds=5)
        broker = OandaBroker(api, ACCOUNT, lookup_wait_seconds=0.05, backoff_seconds=0.05)
        feed, _, journal, trader = _setup(features, trading_model, tmp_path, broker=broker)
        trader.reconcile()
        for _ in range(12):
            bar = feed.next_bars()
            state.now = None
            state.bars["GBP_JPY"] = features.bars[: feed.position]  # the broker's market is the feed's
            trader.on_bar(bar, _now(feed))
        frame = journal.frame()
        filled = frame[frame.status == "FILLED"]
        assert len(filled) >= 5
        assert set(filled.client_id) == set(state.orders)
        assert state.units["GBP_JPY"] == trader.position == journal.filled_units()
        state.cancel_next = ["INSUFFICIENT_MARGIN"]
        for _ in range(4):
            feed_bar = feed.next_bars()
            state.bars["GBP_JPY"] = features.bars[: feed.position]
            decision = trader.on_bar(feed_bar, _now(feed))
            if decision.order is not None:
                break
        assert decision.order.status is OrderStatus.CANCELLED and decision.order.reason == "INSUFFICIENT_MARGIN"
        assert journal.frame().status.iloc[-1] == "CANCELLED"
        state.set_position("GBP_JPY", 1, 170.0)
        assert trader.reconcile() in (True, False) and trader.position == 1
        text = " ".join(map(str, journal.frame().to_numpy().ravel())) + str(trader.status())
        assert TOKEN not in text


def test_spread_above_the_limit_is_not_traded(features, trading_model, tmp_path):
    feed, _, journal, trader = _setup(features, trading_model, tmp_path, risk=RiskConfig(max_spread_pips=6.0))
    trader.reconcile()
    assert trader.on_bar(feed.next_bars(), _now(feed), spread_pips=9.0).reason == "spread_too_wide"
    assert trader.on_bar(feed.next_bars(), _now(feed), spread_pips=3.0).status != "skipped"


def test_oanda_feed_backfills_polls_and_waits_for_late_complete_flags(features):
    import pandas as pd

    from shared.data.bars import NS_PER_MINUTE
    from shared.live.feeds import OandaCandleFeed

    bars = features.bars[:4000]
    state = V20State(bars={"GBP_JPY": bars}, spread_pips=2.0)
    with V20Server(state) as server:
        api = make_api(load_credentials({"OANDA_TOKEN": TOKEN, "OANDA_API_URL": server.url}), timeout_seconds=5)
        feed = OandaCandleFeed(api, "GBPJPY", history_bars=2000)
        # now: 20 s into bar 3000, so bar 3000 is still forming
        state.now = pd.Timestamp(int(bars.ts[3000])) + pd.Timedelta(seconds=20)
        history = feed.history()
        assert len(history) == 1999 and int(history.ts[-1]) == int(bars.ts[2999])  # the forming one is dropped
        assert feed.last_spread_pips == pytest.approx(2.0)
        assert len(feed.next_bars()) == 0, "the forming candle is not used"
        # the bar closed but OANDA still says complete=false for a moment: wait
        state.now = pd.Timestamp(int(bars.ts[3000])) + pd.Timedelta(seconds=59)
        assert len(feed.next_bars()) == 0
        state.now = pd.Timestamp(int(bars.ts[3002])) + pd.Timedelta(seconds=5)
        new = feed.next_bars()
        np.testing.assert_array_equal(new.ts, bars.ts[3000:3002])
        np.testing.assert_allclose(new.close, bars.close[3000:3002], atol=5e-4)
        assert len(feed.next_bars()) == 0
        assert all(r["query"]["price"] == "MBA" for r in state.requests)
        assert int(new.ts[-1]) + NS_PER_MINUTE <= state.now.value


def test_reconciliation_journals_the_broker_transactions_since_the_last_known(features, trading_model, tmp_path):
    state = V20State(bars={"GBP_JPY": features.bars})
    with V20Server(state) as server:
        api = make_api(load_credentials({"OANDA_TOKEN": TOKEN, "OANDA_API_URL": server.url}), timeout_seconds=5)
        broker = OandaBroker(api, ACCOUNT, lookup_wait_seconds=0.05, backoff_seconds=0.05)
        _, _, journal, trader = _setup(features, trading_model, tmp_path, broker=broker)
        assert trader.reconcile() is True
        state.set_position("GBP_JPY", -1, 171.0)  # closed and reversed by hand at the broker
        assert trader.reconcile() is False and trader.position == -1
        detail = journal.con.execute("SELECT detail FROM events WHERE kind = 'reconciliation_mismatch'").fetchall()
        import json as _json

        since = _json.loads(detail[-1][0])["transactions_since_last_known"]
        assert since and since[-1]["units"] == "-1"


def _oanda_trader(features, model, tmp_path, server):
    api = make_api(load_credentials({"OANDA_TOKEN": TOKEN, "OANDA_API_URL": server.url}), timeout_seconds=0.5)
    broker = OandaBroker(api, ACCOUNT, lookup_wait_seconds=0.05, backoff_seconds=0.05)
    return _setup(features, model, tmp_path, broker=broker)


def _next(feed, state, features):
    bar = feed.next_bars()
    state.bars["GBP_JPY"] = features.bars[: feed.position]  # the broker's market is the feed's
    return bar


def test_an_order_of_unknown_fate_stops_decisions_until_reconciliation_settles_it(features, trading_model, tmp_path):
    """Regression: a filled order booked as rejected let the next bar open a second position."""
    state = V20State(bars={"GBP_JPY": features.bars})
    with V20Server(state) as server:
        feed, _, journal, trader = _oanda_trader(features, trading_model, tmp_path, server)
        trader.reconcile()
        state.fail_after_create = [503] * 50        # every create fills, its answer is lost
        state.forced_lookup_statuses = [500] * 400  # and no lookup answers
        for _ in range(30):
            decision = trader.on_bar(_next(feed, state, features), _now(feed))
            if decision.order is not None:
                break
        assert decision.order.status is OrderStatus.UNKNOWN
        filled_at_broker = state.units["GBP_JPY"]
        assert filled_at_broker != 0
        for _ in range(5):  # the trader stands aside: no decision, no order
            assert trader.on_bar(_next(feed, state, features), _now(feed)).reason == "order_unknown"
        assert trader.reconcile() in (True, False) and not trader.reconciled  # lookups still fail
        state.forced_lookup_statuses = []
        trader.settle_unfinished()
        trader.reconcile()
        assert trader.reconciled and trader.position == filled_at_broker == journal.filled_units()
        assert journal.frame().status.isin(["UNKNOWN"]).sum() == 0
        assert len([r for r in state.requests if r.get("method") == "POST"]) == 1
        state.fail_after_create = []
        for _ in range(20):
            trader.on_bar(_next(feed, state, features), _now(feed))
        assert abs(state.units["GBP_JPY"]) <= 1 and state.units["GBP_JPY"] == trader.position


def test_after_a_broker_error_the_position_is_read_again_before_the_next_decision(features, trading_model, tmp_path):
    state = V20State(bars={"GBP_JPY": features.bars})
    with V20Server(state) as server:
        feed, _, journal, trader = _oanda_trader(features, trading_model, tmp_path, server)
        trader.reconcile()
        state.forced_post_statuses = [401]
        with pytest.raises(OperationalBrokerError):
            for _ in range(30):
                trader.on_bar(_next(feed, state, features), _now(feed))
        assert trader.on_bar(_next(feed, state, features), _now(feed)).reason == "not_reconciled"
        state.set_position("GBP_JPY", -1, 171.0)  # meanwhile, at the broker
        trader.reconcile()
        assert trader.reconciled and trader.position == -1


def test_a_kill_between_sending_and_journaling_is_settled_from_v20(features, trading_model, tmp_path):
    state = V20State(bars={"GBP_JPY": features.bars})
    with V20Server(state) as server:
        feed, oanda, journal, trader = _oanda_trader(features, trading_model, tmp_path, server)
        trader.reconcile()
        trader.broker = _DiesAfterOrder(oanda)
        with pytest.raises(SystemExit):
            for _ in range(30):
                trader.on_bar(_next(feed, state, features), _now(feed))
        journal.close()
        journal = Journal(tmp_path / "journal.duckdb")  # the restart
        restarted = LiveTrader("GBPJPY", oanda, journal, trading_model, features.bars[: feed.position],
                               simulations=8, control_dir=tmp_path / "control")
        assert len(restarted.settle_unfinished()) == 1
        restarted.reconcile()
        assert restarted.position == state.units["GBP_JPY"] == journal.filled_units() != 0
        assert restarted.mismatches == 0
        assert len([r for r in state.requests if r.get("method") == "POST"]) == 1
