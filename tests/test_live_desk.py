"""Several instruments in one live service: one batched search per bar time for all of them
(counted on the real search), a batch equal to one search per root, the account's caps across
instruments, restarts per instrument, FX closed at the weekend while crypto trades, and P&L in
the account currency. Real models, the paper account, replayed synthetic markets."""

from __future__ import annotations

from datetime import datetime, timezone

import numpy as np
import pandas as pd
import pytest

from services.live.__main__ import make_feed
from services.live.config import LiveSettings
from services.live.service import LiveService
from shared.config import RiskConfig
from shared.core.instruments import get_instrument
from shared.core.settings import ConfigError, load_settings
from shared.data.bars import NS_PER_MINUTE, Bars
from shared.features.portfolio import load_market
from shared.live.account import AccountLimits, ConversionError, currency_legs, exposure_units
from shared.live.brokers import client_order_id
from shared.live.brokers.paper import PaperBroker
from shared.live.desk import LiveDesk, shared_search
from shared.live.feeds import DeskFeed, ReplayFeed
from shared.live.journal import DecisionRow, Journal
from shared.live.trader import PendingRoot
from tests.live_helpers import load, synthetic_store, trading_checkpoint
from tests.v20_account import ACCOUNT

PAIR = ("EURUSD", "BTCUSD")
YEN = ("EURJPY", "USDJPY")
# in each instrument's own pips: BTCUSD's default spread is 20 of its pips (the 8-pip default limit would
# skip its every bar), and the spread alone would stop a model that trades every bar for the day
NO_DAILY_STOP = RiskConfig(max_daily_loss_pips=1e6, max_spread_pips=50.0)


@pytest.fixture(scope="module")
def pair_data(tmp_path_factory):
    data = tmp_path_factory.mktemp("desk-data")
    synthetic_store(data / "market.duckdb", PAIR + YEN)
    return data


def _model(data, root, names):
    """A real checkpoint trained on `names` whose policy prefers BUY, then CLOSE: it trades every bar."""
    return load(trading_checkpoint(load_market(data / "market.duckdb", names), root, 64))


@pytest.fixture(scope="module")
def pair_model(pair_data, tmp_path_factory):
    return _model(pair_data, tmp_path_factory.mktemp("desk-ck"), PAIR)


def _service(data, root, names=PAIR, risk=NO_DAILY_STOP, **settings) -> LiveService:
    s = LiveSettings(checkpoint_dir=root, data_dir=data, instruments=names, simulations=4, risk=risk, **settings)
    broker = PaperBroker.account(root / "live" / "paper-account.json", {name: None for name in names},
                                 account_currency=s.account_currency if s.currency() is not None else None)
    return LiveService(s, broker, make_feed(s), Journal(root / "live" / "journal.duckdb"))


def _count_search_calls(desk: LiveDesk) -> list[int]:
    """The batch size of every call to the desk's real search (the call goes through unchanged)."""
    sizes: list[int] = []
    real = desk.search.run

    def run(temporal, *args, **kwargs):
        sizes.append(len(temporal))
        return real(temporal, *args, **kwargs)

    desk.search.run = run
    return sizes


def _searched(decisions) -> int:
    return sum(d.status not in ("skipped", "duplicate") for d in decisions.values())


# --- one search per bar time ------------------------------------------------------------------

def test_two_instruments_make_one_search_call_per_bar_time(pair_data, pair_model, tmp_path):
    service = _service(pair_data, tmp_path)
    service.start_trader(pair_model)
    assert service.reconcile()
    sizes = _count_search_calls(service.desk)
    expected = []
    for _ in range(40):
        decisions = service.on_bar(service.feed.next_bars())
        if _searched(decisions):
            expected.append(_searched(decisions))
    assert sizes == expected, "one call per bar time, every searched instrument's root in it"
    assert sizes.count(2) >= 30, sizes

    broker, journal = service.broker, service.journal
    frame = journal.frame()
    assert frame.client_id.is_unique and set(frame.instrument) == set(PAIR)
    filled = frame[frame.status == "FILLED"]
    assert set(filled.client_id) == set(broker.state["orders"]), "every order at the broker is journaled"
    for name, trader in service.desk.traders.items():
        own = journal.scope(name).frame()
        assert own.bar_ts.is_unique and (own.instrument == name).all()
        assert (own.status == "FILLED").sum() >= 10, own.status.value_counts()
        assert broker.snapshot(name).units == trader.position == trader.journal.filled_units()
    page = service.status_page()
    assert set(page["instruments"]) == set(PAIR) and page["model_version"] == service.desk.version
    assert page["account"]["total_units"] == sum(abs(t.position) for t in service.traders)
    assert page["instruments"]["BTCUSD"]["account_currency"] == "USD"
    from prometheus_client import generate_latest

    text = generate_latest(service.metrics.registry).decode()
    assert 'micro_live_position_units{instrument="BTCUSD"}' in text
    assert 'micro_live_decisions_total{action="buy",instrument="EURUSD"}' in text


def _row_by_row(search):
    """The search's three network functions evaluated one row at a time: every root then gets
    bit-identical network outputs whatever batch it is searched in (torch's kernels round a row
    differently at another batch size), so what remains to differ is the tree work alone."""
    import torch

    def rows(function):
        def call(*inputs):
            outputs = [function(*(x[i:i + 1] for x in inputs)) for i in range(len(inputs[0]))]
            return tuple(torch.cat(parts) for parts in zip(*outputs))
        return call

    search._roots, search._after_fn, search._state_fn = (rows(f) for f in (search._roots, search._after_fn,
                                                                           search._state_fn))
    return search


def test_a_batched_search_gives_each_root_exactly_what_it_gets_alone(pair_data, pair_model, tmp_path):
    service = _service(pair_data, tmp_path)
    service.start_trader(pair_model)
    service.reconcile()
    roots: list[PendingRoot] = []
    for _ in range(3):  # roots of both instruments at three bar times
        for name, bar in service.feed.next_bars().items():
            pending = service.desk.traders[name].prepare(bar, service.now())
            assert isinstance(pending, PendingRoot)
            roots.append(pending)
    seeds = np.array([11, 2**40 + 5, 0, 7, 3, 99], np.uint64)[: len(roots)]

    def run(rows: list[int]):
        search = _row_by_row(shared_search(pair_model, len(rows), 16))
        inputs = (np.concatenate([getattr(roots[i], f) for i in rows]) for f in ("temporal", "static", "legal",
                                                                                 "position"))
        return search.run(*inputs, seeds[rows], add_noise=False)

    together = run(list(range(len(roots))))
    reversed_ = run(list(range(len(roots)))[::-1])
    for i in range(len(roots)):
        # bit for bit, alone and in the batch in another order: nothing of a neighbour leaks into a root
        for other, k in ((run([i]), 0), (reversed_, len(roots) - 1 - i)):
            assert other.visit_counts[k].tolist() == together.visit_counts[i].tolist()
            assert other.root_values[k] == together.root_values[i]
            assert other.actions(0.0)[k] == together.actions(0.0)[i]
            assert other.policy_target[k].tolist() == together.policy_target[i].tolist()
    # (with the networks' batched kernels a row's outputs differ from its batch-of-one outputs by float
    # rounding, about 1e-7, which a search can amplify into another visit: not a property of the tree)


def test_a_staged_model_trades_every_instrument_from_the_same_bar_time(pair_data, pair_model, tmp_path):
    holder = load(trading_checkpoint(load_market(pair_data / "market.duckdb", PAIR), tmp_path / "ck", 128,
                                     prefer=(20, -20, -20, -20)))  # always HOLD
    service = _service(pair_data, tmp_path)
    service.start_trader(pair_model)
    service.reconcile()
    service.on_bar(service.feed.next_bars())
    service.desk.stage(holder)
    assert {t.version for t in service.traders} == {service.desk.version}
    assert service.desk.version.startswith("ep00000064"), "not before the next bar time"
    bars = service.feed.next_bars()
    decisions = service.on_bar({"EURUSD": bars["EURUSD"]})  # only one instrument's bar at this time
    assert all(t.version.startswith("ep00000128") for t in service.traders), "every instrument swapped at once"
    assert all(t.search is service.desk.search for t in service.traders), "one search, the new model's"
    assert decisions["EURUSD"].action in ("HOLD", "CLOSE")
    swaps = service.journal.con.execute("SELECT instrument FROM events WHERE kind = 'model_swap'").fetchall()
    assert sorted(row[0] for row in swaps) == sorted(PAIR)


# --- the account's caps across instruments -----------------------------------------------------

def test_the_account_caps_clip_a_target_towards_the_position_held():
    total = AccountLimits(RiskConfig(max_total_units=1))
    assert total.limit("BTCUSD", 1, {"EURUSD": 1, "BTCUSD": 0}) == (0, "account_units_cap")
    assert total.limit("EURUSD", 0, {"EURUSD": 1, "BTCUSD": 0}) == (0, None)
    assert total.limit("BTCUSD", -1, {"EURUSD": 0, "BTCUSD": 0}) == (-1, None)
    sized = AccountLimits(RiskConfig(max_units=3, max_total_units=2))
    assert sized.limit("EURUSD", 3, {"EURUSD": 0}) == (2, "account_units_cap")
    currency = AccountLimits(RiskConfig(max_currency_exposure_units=1))
    # long EURUSD and long GBPUSD both sell USD: -2 USD
    assert currency.limit("GBPUSD", 1, {"EURUSD": 1, "GBPUSD": 0}) == (0, "currency_exposure_cap:USD")
    assert currency.limit("GBPUSD", -1, {"EURUSD": 1, "GBPUSD": 0}) == (-1, None)  # buys USD back
    assert currency.limit("USDJPY", 1, {"EURUSD": 1, "USDJPY": 0}) == (1, None)   # USD nets to 0
    # over a cap already (a position adopted from the broker): reducing is allowed, adding is not
    assert currency.limit("EURUSD", 1, {"EURUSD": 2, "GBPUSD": 0}) == (1, None)
    assert currency.limit("GBPUSD", 1, {"EURUSD": 2, "GBPUSD": 0}) == (0, "currency_exposure_cap:USD")
    assert exposure_units({"EURUSD": 1, "BTCUSD": 1, "USDJPY": -1}) == {"EUR": 1, "BTC": 1, "USD": -3, "JPY": 1}
    assert currency_legs("SPY") == ("SPY", "USD") and currency_legs("XAUUSD") == ("XAUUSD", "USD")
    assert currency_legs("BTCUSDT") == ("BTC", "USDT")


@pytest.mark.parametrize("risk, reason", [
    (RiskConfig(max_daily_loss_pips=1e6, max_spread_pips=50.0, max_total_units=1), "account_units_cap"),
    (RiskConfig(max_daily_loss_pips=1e6, max_spread_pips=50.0, max_currency_exposure_units=1),
     "currency_exposure_cap:USD"),
])
def test_a_live_run_never_goes_beyond_the_account_caps(pair_data, pair_model, tmp_path, risk, reason):
    """Both instruments want to go long on the first bar (+1 EUR -1 USD, +1 BTC -1 USD): the second
    is clipped, journaled with the reason, and opens on the next, when the first closes (closes go
    first); from then on they trade in turn, never both open."""
    service = _service(pair_data, tmp_path, risk=risk)
    service.start_trader(pair_model)
    service.reconcile()
    broker = service.broker
    for _ in range(30):
        service.on_bar(service.feed.next_bars())
        units = {name: broker.snapshot(name).units for name in PAIR}
        assert AccountLimits(risk).breach(units) is None, units
    frame = service.journal.frame()
    clipped = frame[frame.reason == reason]
    assert len(clipped) >= 1 and (clipped.status == "no_order").all() and (clipped.order_units == 0).all()
    assert clipped.bar_ts.iloc[0] == frame.bar_ts.min(), "clipped on the first bar, where both wanted to open"
    assert set(frame[frame.status == "FILLED"].instrument) == set(PAIR), "each instrument still trades in turn"
    events = service.journal.con.execute("SELECT detail, instrument FROM events WHERE kind = 'account_cap'").fetchall()
    assert events and all(reason in detail for detail, _ in events)


def test_two_instruments_in_one_oanda_account_send_ids_unique_across_it(pair_data, pair_model, tmp_path):
    """OANDA client ids are unique per account: both instruments trade the same bars, so their ids
    must differ by instrument (the real oandapyV20 client against the loopback v20 server)."""
    from shared.core.oanda import load_credentials, make_api
    from shared.live.brokers.oanda import OandaBroker
    from tests.v20_account import TOKEN, V20State
    from tests.v20_server import V20Server

    s = LiveSettings(checkpoint_dir=tmp_path, data_dir=pair_data, instruments=PAIR)
    feed = make_feed(s)
    oanda = {name: get_instrument(name).oanda_name for name in PAIR}
    state = V20State(bars={oanda[name]: feed.feeds[name].history() for name in PAIR})
    with V20Server(state) as server:
        api = make_api(load_credentials({"OANDA_TOKEN": TOKEN, "OANDA_API_URL": server.url}), timeout_seconds=5)
        broker = OandaBroker(api, ACCOUNT, lookup_wait_seconds=0.05, backoff_seconds=0.05)
        journal = Journal(tmp_path / "journal.duckdb")
        desk = LiveDesk.build(pair_model, broker, journal, {name: feed.history(name) for name in PAIR},
                              simulations=4, risk=NO_DAILY_STOP)
        for trader in desk.traders.values():
            trader.reconcile()
        for _ in range(12):
            bars = feed.next_bars()
            for name in bars:  # the broker's market is the feed's
                state.bars[oanda[name]] = feed.feeds[name].bars[: feed.feeds[name].position]
            state.now = None
            desk.on_bars(bars, datetime.fromtimestamp(feed.now_ns() / 1e9, timezone.utc))
    posted = [r["body"]["order"] for r in state.requests if r.get("method") == "POST"]
    ids = [order["clientExtensions"]["id"] for order in posted]
    assert len(ids) == len(set(ids)) == len(state.orders) >= 10
    assert {order["instrument"] for order in posted} == set(oanda.values())
    for name, trader in desk.traders.items():
        assert state.units.get(oanda[name], 0) == trader.position == trader.journal.filled_units()


# --- restarts: never a bar twice, per instrument ----------------------------------------------

def test_a_restart_decides_no_instruments_bar_twice_and_none_is_lost(pair_data, pair_model, tmp_path):
    first = _service(pair_data, tmp_path)
    first.start_trader(pair_model)
    first.reconcile()
    for _ in range(15):
        first.on_bar(first.feed.next_bars())
    bars = first.feed.next_bars()
    assert set(bars) == set(PAIR)
    first.on_bar({"EURUSD": bars["EURUSD"]})  # killed after EURUSD's decision, before BTCUSD's of the same bar
    crashed_ns = int(bars["EURUSD"].ts[0])
    first.journal.close()

    second = _service(pair_data, tmp_path)  # the same journal and paper account, the feeds from the start again
    second.start_trader(pair_model)
    assert second.reconcile()
    traders = second.desk.traders
    assert int(traders["EURUSD"].bars.ts[-1]) == crashed_ns, "EURUSD resumes after its own last decision"
    assert int(traders["BTCUSD"].bars.ts[-1]) < crashed_ns, "BTCUSD's bar of that time is still to decide"
    resumed = second.feed.next_bars()
    assert set(resumed) == {"BTCUSD"} and int(resumed["BTCUSD"].ts[0]) == crashed_ns
    assert second.on_bar(resumed)["BTCUSD"].status not in ("skipped", "duplicate")
    for _ in range(10):
        second.on_bar(second.feed.next_bars())
    journal = second.journal
    for name in PAIR:
        own = journal.scope(name).frame()
        assert own.bar_ts.is_unique and pd.Timestamp(crashed_ns) in set(own.bar_ts)
        assert second.broker.snapshot(name).units == traders[name].position == traders[name].journal.filled_units()
    assert all(t.mismatches == 0 for t in traders.values())
    assert journal.frame().client_id.is_unique


def test_rows_that_name_no_instrument_are_claimed_by_one_instrument_and_refused_by_several(tmp_path):
    from shared.live.journal import JournalOwnershipError

    journal = Journal(tmp_path / "journal.duckdb")
    ts = pd.Timestamp("2024-01-08 10:00")
    journal.record(DecisionRow(client_order_id("v1", ts.value), ts, "v1", None, None, None, "BUY", 0, 1, "decided"))
    # an older one-instrument run's rows: whose they are is unknown to a service of several
    with pytest.raises(JournalOwnershipError, match="start once with that instrument alone"):
        journal.views(PAIR)
    eurusd = journal.views(("EURUSD",))["EURUSD"]  # one instrument claims them
    assert eurusd.last_bar_ts() == ts and len(eurusd.unfinished()) == 1
    views = journal.views(PAIR)  # now every row names its instrument
    assert views["EURUSD"].last_bar_ts() == ts and views["BTCUSD"].last_bar_ts() is None
    assert views["BTCUSD"].unfinished() == []
    # and a later one-instrument service of another instrument never books EURUSD's rows
    assert journal.views(("BTCUSD",))["BTCUSD"].unfinished() == []
    # the one-instrument client id is what it always was; several instruments name theirs
    assert len({client_order_id("v1", ts.value, instrument=name) for name in PAIR} | {client_order_id("v1", ts.value)}) == 3


def test_a_bar_times_rows_are_written_together_and_an_orders_row_before_it_leaves(tmp_path):
    journal = Journal(tmp_path / "journal.duckdb")

    def written() -> int:  # what the file holds, read past the journal's own (flushing) reads
        return journal.con.execute("SELECT count(*) FROM decisions").fetchall()[0][0]

    ts = pd.Timestamp("2024-01-08 10:00")
    eur, btc = journal.scope("EURUSD"), journal.scope("BTCUSD")
    with journal.one_write():
        eur.record(DecisionRow("mm-d-1", ts, "v1", None, None, None, "HOLD", 0, 0, "no_order"))
        btc.record(DecisionRow("mm-d-2", ts, "v1", None, None, None, "HOLD", 0, 0, "skipped", "warming_up"))
        assert written() == 0, "held back: neither sends anything"
        btc.record(DecisionRow("mm-d-3", ts + pd.Timedelta(minutes=1), "v1", None, None, None, "BUY", 0, 1, "decided"))
        assert written() == 3, "an order's row goes out before the order, with every row before it"
        eur.record(DecisionRow("mm-d-4", ts + pd.Timedelta(minutes=1), "v1", None, None, None, "HOLD", 0, 0,
                               "no_order"))
        assert eur.last_bar_ts() == ts + pd.Timedelta(minutes=1), "a read sees every row recorded"
    assert written() == 4


# --- markets closed --------------------------------------------------------------------------

def _at(bars: Bars, when: str) -> int:
    return int(np.searchsorted(bars.ts, pd.Timestamp(when).value))


def test_fx_stands_aside_at_the_weekend_while_crypto_decides(pair_data, pair_model, tmp_path):
    from shared.features.store import load_feature_set

    sets = {name: load_feature_set(pair_data / "market.duckdb", name) for name in PAIR}
    friday = "2024-01-19 21:45"  # FX closes at 17:00 New York, 22:00 UTC in January
    feed = DeskFeed({name: ReplayFeed(s.bars, _at(s.bars, friday)) for name, s in sets.items()})
    journal = Journal(tmp_path / "journal.duckdb")
    broker = PaperBroker.account(tmp_path / "paper.json", {name: None for name in PAIR})
    desk = LiveDesk.build(pair_model, broker, journal, {name: feed.history(name) for name in PAIR}, simulations=4,
                          risk=NO_DAILY_STOP)
    for trader in desk.traders.values():
        trader.reconcile()
    sizes = _count_search_calls(desk)
    seen = []
    for _ in range(40):
        bars = feed.next_bars()
        now = datetime.fromtimestamp(feed.now_ns() / 1e9, timezone.utc)
        decisions = desk.on_bars(bars, now)
        seen.append((now, set(bars), {name: d.status for name, d in decisions.items()}))
    open_fx = [s for s in seen if s[0] <= datetime(2024, 1, 19, 22, 0, tzinfo=timezone.utc)]
    closed_fx = [s for s in seen if s[0] > datetime(2024, 1, 19, 22, 0, tzinfo=timezone.utc)]
    assert len(open_fx) >= 10 and len(closed_fx) >= 20
    assert all(names == set(PAIR) for _, names, _ in open_fx[1:])
    assert all(names == {"BTCUSD"} for _, names, _ in closed_fx), "no FX bars after the close"
    assert all(status["BTCUSD"] not in ("skipped", "duplicate") for *_, status in closed_fx)
    assert sizes[-20:] == [1] * 20

    # an FX bar on a Saturday (a feed gone wrong): the FX trader stands aside, BTC decides, one call
    saturday = pd.Timestamp("2024-01-20 12:00").value
    btc = sets["BTCUSD"].bars
    i = int(np.searchsorted(btc.ts, saturday))
    last = desk.traders["EURUSD"].bars[-1:]
    late = Bars(np.array([saturday]), last.open, last.high, last.low, last.close, last.volume)
    decisions = desk.on_bars({"EURUSD": late, "BTCUSD": btc[i : i + 1]},
                             datetime.fromtimestamp((saturday + NS_PER_MINUTE) / 1e9, timezone.utc))
    assert decisions["EURUSD"].reason == "market_closed"
    assert decisions["BTCUSD"].status not in ("skipped", "duplicate") and sizes[-1] == 1


# --- the account currency ------------------------------------------------------------------------

def test_paper_pnl_of_a_yen_pair_in_dollars_with_usdjpy_traded(tmp_path):
    broker = PaperBroker.account(tmp_path / "paper.json", {"EURJPY": 2.0, "USDJPY": None}, account_currency="USD")
    broker.mark(160.00, instrument="EURJPY")
    broker.mark(150.00, instrument="USDJPY")
    broker.market_order("EURJPY", 1, "mm-d-a")            # buys at 160.01
    broker.mark(160.51, instrument="EURJPY")
    broker.mark(125.00, instrument="USDJPY")               # the yen's rate when the trade closes counts
    broker.market_order("EURJPY", -1, "mm-d-b")           # sells at 160.50
    assert broker.realized_pips_of("EURJPY") == pytest.approx(49.0)
    assert broker.realized_account == pytest.approx(49.0 * 0.01 / 125.0)  # 0.49 JPY at 125 JPY per USD
    restarted = PaperBroker.account(tmp_path / "paper.json", {"EURJPY": 2.0, "USDJPY": None}, account_currency="USD")
    assert restarted.realized_account == pytest.approx(broker.realized_account)
    assert restarted.snapshot("EURJPY").units == 0 and restarted.snapshot("USDJPY").units == 0
    with pytest.raises(ValueError, match="not 'GBPJPY'"):
        broker.market_order("GBPJPY", 1, "mm-d-c")

    # GBP -> USD through GBPUSD's mid, as it is (not inverted)
    cross = PaperBroker.account(tmp_path / "cross.json", {"EURGBP": 0.0, "GBPUSD": 0.0})
    cross.mark(0.85, instrument="EURGBP")
    cross.mark(1.25, instrument="GBPUSD")
    cross.market_order("EURGBP", -1, "mm-d-x")
    cross.mark(0.84, instrument="EURGBP")
    cross.market_order("EURGBP", 1, "mm-d-y")
    assert cross.realized_account == pytest.approx(0.01 * 1.25)


def test_a_pair_that_cannot_be_converted_is_refused_at_start(tmp_path):
    with pytest.raises(ConversionError, match="EURJPY.*USDJPY"):
        PaperBroker.account(tmp_path / "paper.json", {"EURJPY": None, "BTCUSD": None}, account_currency="USD")
    with pytest.raises(ConfigError, match="EURJPY.*USDJPY"):
        load_settings(LiveSettings, environ={"LIVE_INSTRUMENTS": "EURJPY,BTCUSD"})
    assert load_settings(LiveSettings, environ={"LIVE_INSTRUMENTS": "EURJPY,BTCUSD,USDJPY"}).currency() is not None
    # a fixed rate is for code (a benchmark's): JPY at 1/150 USD
    fixed = PaperBroker.account(tmp_path / "fixed.json", {"EURJPY": 0.0}, fixed_rates={"JPY": 1 / 150})
    fixed.mark(160.0, instrument="EURJPY")
    fixed.market_order("EURJPY", 1, "mm-d-f1")
    fixed.mark(161.5, instrument="EURJPY")
    fixed.market_order("EURJPY", -1, "mm-d-f2")
    assert fixed.realized_account == pytest.approx(150 * 0.01 / 150)
    # the synthetic demo is no money: it starts, its yen P&L in pips only
    demo = load_settings(LiveSettings, environ={"MICRO_DEMO_INSTRUMENTS": "GBPJPY,BTCUSD"})
    assert demo.traded_instruments == ("GBPJPY", "BTCUSD") and demo.currency() is None
    # one instrument sums nothing: it starts as always, its P&L in pips
    assert load_settings(LiveSettings, environ={"LIVE_INSTRUMENT": "EURJPY"}).traded_instruments == ("EURJPY",)


def test_a_yen_pair_and_usdjpy_book_the_same_dollars_in_the_journal_and_the_paper_account(pair_data, tmp_path):
    model = _model(pair_data, tmp_path / "ck", YEN)
    service = _service(pair_data, tmp_path, names=YEN)
    service.start_trader(model)
    service.reconcile()
    for _ in range(30):
        service.on_bar(service.feed.next_bars())
    frame = service.journal.frame()
    closed = frame[frame.realized_pips.notna()]
    assert len(closed) >= 10 and closed.realized_account.notna().all()
    # each fill's pips x 0.01 JPY at about 1/130 USD per JPY (the synthetic USDJPY's level)
    ratio = closed.realized_account / (closed.realized_pips * 0.01)
    assert ((ratio > 1 / 200) & (ratio < 1 / 90)).all(), ratio
    assert service.broker.realized_account == pytest.approx(closed.realized_account.sum())
    page = service.status_page()
    assert page["account"]["paper_realized_account"] == pytest.approx(service.broker.realized_account, abs=0.01)


# --- the service as a process -------------------------------------------------------------------

def test_the_service_trades_several_instruments_from_one_setting(pair_data, pair_model, tmp_path):
    import httpx

    from tests.live_helpers import promote_checkpoint
    from tests.service_helpers import free_port, start, wait_for

    promote_checkpoint(tmp_path, pair_model.path, 64)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {"MICRO_DATA_DIR": str(pair_data), "CHECKPOINT_DIR": str(tmp_path), "LIVE_PORT": str(port),
           "LIVE_INSTRUMENTS": ",".join(PAIR), "LIVE_SIMULATIONS": "4", "LIVE_REPLAY_BARS_PER_SECOND": "40",
           "LIVE_MODEL_WAIT_SECONDS": "0.5", "LIVE_MAX_DAILY_LOSS_PIPS": "1000000", "LIVE_MAX_SPREAD_PIPS": "50",
           "LIVE_MAX_TOTAL_UNITS": "1"}
    service = start("services.live", env, tmp_path / "live.log")
    try:
        wait_for(f"{url}/ready", process=service, timeout=90)
        page = wait_for(f"{url}/status", lambda r: all(
            i["last_bar"] is not None and i["last_bar"] > "2024-01-31 19:20" for i in r.json()["instruments"].values()),
            process=service, timeout=60).json()
        metrics = httpx.get(f"{url}/metrics").text
    finally:
        service.terminate()
        service.wait(timeout=30)
    assert set(page["instruments"]) == set(PAIR) and page["account"]["max_total_units"] == 1
    assert page["account"]["total_units"] <= 1 and page["account"]["account_currency"] == "USD"
    assert 'micro_live_realized_today_account_currency{currency="USD",instrument="EURUSD"}' in metrics
    journal = Journal(tmp_path / "live" / "journal.duckdb")
    frame = journal.frame()
    assert set(frame[frame.status == "FILLED"].instrument) == set(PAIR) and frame.client_id.is_unique
    assert (tmp_path / "live" / "paper-account.json").exists() and not (tmp_path / "live" / "paper.json").exists()
