"""The one position accounting against a plain reference written another way
(cash flows and lists of fills, no running averages), on random fill and
action sequences for both action spaces; and the environment, the paper broker
and the live trader each booking through it."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.config import EnvConfig
from shared.core.accounting import Book, fill, mark
from shared.env import TradingEnv
from shared.env.actions import ACTION_SPACES
from shared.live.brokers.paper import PaperBroker
from tests.helpers import bars_from_closes, feature_set_from_bars

PIP = 0.01


class Reference:
    """One account: every fill that crosses zero is split in two (close, then open); a
    trade's P&L is the cash it took and gave back; the entry is the open units' cost
    basis (what was paid, scaled down in proportion by each reduce) over the units."""

    def __init__(self) -> None:
        self.units, self.cash_pips = 0, 0.0
        self.trades: list[float] = []
        self.trade_cash = 0.0
        self.basis = 0.0  # price x units paid for the open units

    def fill(self, delta: int, price: float) -> None:
        if delta == 0:
            return
        if self.units and np.sign(delta) != np.sign(self.units) and abs(delta) > abs(self.units):
            rest = delta + self.units
            self.fill(-self.units, price)
            self.fill(rest, price)
            return
        opening = self.units == 0
        if opening or np.sign(delta) == np.sign(self.units):
            self.basis += abs(delta) * price
        else:
            self.basis *= (abs(self.units) - abs(delta)) / abs(self.units)
        self.units += delta
        self.cash_pips -= delta * price / PIP
        self.trade_cash = (0.0 if opening else self.trade_cash) - delta * price / PIP
        if self.units == 0:
            self.trades.append(self.trade_cash)
            self.basis = 0.0

    def entry(self) -> float:
        return self.basis / abs(self.units) if self.units else 0.0

    def equity(self, mark_price: float) -> float:
        return self.cash_pips + self.units * mark_price / PIP


fills = st.lists(st.tuples(st.integers(-4, 4), st.floats(169.0, 171.0)), min_size=1, max_size=40)


@settings(max_examples=200, deadline=None)
@given(fills)
def test_the_book_agrees_with_the_reference(sequence):
    book, ref = Book.flat(1), Reference()
    for delta, price in sequence:
        before = book.realized_pips[0]
        result = fill(book, np.array([delta]), np.array([price]), PIP, np.array([price]), half_spread_pips=2.0)
        ref.fill(delta, price)
        assert book.units[0] == ref.units
        assert book.entry_price[0] == pytest.approx(ref.entry(), abs=1e-9)
        assert book.equity_pips()[0] == pytest.approx(ref.equity(price), abs=1e-6)
        assert result.realized_pips[0] == pytest.approx(book.realized_pips[0] - before, abs=1e-9)
        mark(book, np.array([price + 0.05]), PIP)
        assert book.equity_pips()[0] == pytest.approx(ref.equity(price + 0.05), abs=1e-6)
    assert book.trades[0] == len(ref.trades)
    flat = book.units[0] == 0
    assert book.realized_pips[0] == pytest.approx(ref.equity(0.0) if flat else book.realized_pips[0], abs=1e-6)
    assert book.costs_pips[0] == pytest.approx(2.0 * sum(abs(d) for d, _ in sequence))


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), space=st.sampled_from(sorted(ACTION_SPACES)))
def test_the_environment_books_through_it(seed, space):
    """Random legal actions in both spaces: trades, P&L and pnl rewards against the reference."""
    rng = np.random.default_rng(seed)
    closes = list(170 + np.cumsum(rng.normal(0, 0.05, 30)))
    fs = feature_set_from_bars(bars_from_closes([170.0] * 40 + closes))
    env = TradingEnv(fs, EnvConfig(action_space=space, episode_bars=len(closes), spread_pips=3.0))
    obs = env.reset(np.array([40]))
    ref, rewards = Reference(), 0.0
    for k in range(env.steps_per_episode):
        action = int(np.where(obs.legal[0], rng.random(env.num_actions), -1).argmax())
        before = int(obs.position[0])
        step = env.step(np.array([action]))
        after = int(env.space.next_position(np.array([before], np.int8), np.array([action]))[0])
        mid = fs.bars.close[40 + k]
        if after != before:
            ref.fill(after - before, mid + np.sign(after - before) * 1.5 * PIP)
        rewards += float(step.reward[0])
        if step.done:
            last = fs.bars.close[40 + k + 1]
            if ref.units:
                ref.fill(-ref.units, last - np.sign(ref.units) * 1.5 * PIP)
            break
        obs = env.observe()
    assert env.stats[0].trades_pips == pytest.approx(ref.trades, abs=1e-6)
    assert env.stats[0].pnl_pips == pytest.approx(ref.cash_pips, abs=1e-6)
    assert rewards == pytest.approx(ref.cash_pips, abs=1e-3)  # pnl rewards add up to what it earned


@settings(max_examples=40, deadline=None)
@given(fills)
def test_the_paper_broker_books_through_it(tmp_path_factory, sequence):
    broker = PaperBroker(tmp_path_factory.mktemp("paper") / "paper.json", spread_pips=4.0, pip_size=PIP)
    ref = Reference()
    for i, (delta, mid) in enumerate(sequence):
        if delta == 0:
            continue
        broker.mark(mid)
        result = broker.market_order("GBPJPY", delta, f"mm-d-{i}")
        ref.fill(delta, result.fill_price)
        assert result.fill_price == pytest.approx(mid + np.sign(delta) * 2 * PIP)
        snap = broker.snapshot("GBPJPY")
        assert snap.units == ref.units
        assert (snap.average_price or 0.0) == pytest.approx(ref.entry(), abs=1e-9)
    closed = sum(ref.trades)
    if ref.units == 0:
        assert broker.realized_pips == pytest.approx(closed, abs=1e-6)


def test_a_resize_is_not_a_close_and_an_entry():
    """Regression: a resize was booked as a close plus an entry, and the entry price was not averaged."""
    book = Book.flat(1)
    fill(book, np.array([1]), np.array([170.00]), PIP, np.array([170.00]))
    result = fill(book, np.array([1]), np.array([170.10]), PIP, np.array([170.10]))
    assert np.isnan(result.closed_trade_pips[0]) and not result.opened[0] and book.trades[0] == 0
    assert book.entry_price[0] == pytest.approx(170.05)
    result = fill(book, np.array([-1]), np.array([170.25]), PIP, np.array([170.25]))
    assert result.realized_pips[0] == pytest.approx(20.0) and np.isnan(result.closed_trade_pips[0])
    result = fill(book, np.array([-3]), np.array([170.15]), PIP, np.array([170.15]))  # close 1, flip to -2
    assert result.closed_trade_pips[0] == pytest.approx(20.0 + 10.0) and result.opened[0]
    assert book.units[0] == -2 and book.entry_price[0] == pytest.approx(170.15) and book.trades[0] == 1


def test_the_live_trader_books_through_it(features, tmp_path):
    from shared.live.journal import Journal
    from shared.live.trader import LiveTrader
    from tests.live_helpers import load, trading_checkpoint

    trader = LiveTrader("GBPJPY", PaperBroker(tmp_path / "paper.json", spread_pips=4.0, pip_size=PIP),
                        Journal(tmp_path / "journal.duckdb"), load(trading_checkpoint(features, tmp_path, 64)),
                        features.bars[:3000], simulations=2)
    ref = Reference()
    realized = 0.0
    for delta, price in ((2, 170.0), (1, 170.3), (-1, 170.5), (-4, 170.1), (2, 169.9)):
        got = trader._apply_fill(delta, price)
        ref.fill(delta, price)
        realized += got or 0.0
        assert trader.position == ref.units
        assert (trader.entry_price or 0.0) == pytest.approx(ref.entry(), abs=1e-9)
    assert realized == pytest.approx(sum(ref.trades), abs=1e-6)  # flat again: all of it realised


def test_the_sized_space_trains_validates_and_trades(features, tmp_path):
    """TRAINING_ENV__ACTION_SPACE=sized_positions flows through training, validation and live."""
    from datetime import datetime, timezone

    from shared.config import NetworkConfig, RiskConfig, TrainingConfig, ValidationConfig
    from shared.env.actions import SIZED_POSITIONS
    from shared.live.feeds import ReplayFeed
    from shared.live.journal import Journal
    from shared.live.trader import LiveTrader
    from shared.training.trainer import Trainer
    from shared.validation.validator import validate
    from shared.volume.candidates import load_candidate

    network = NetworkConfig(tcn_channels=16, hidden=32, dropout=0.0, num_actions=SIZED_POSITIONS.num_actions)
    trainer = Trainer(features, tmp_path / "ck", TrainingConfig(network=network, episodes_per_iteration=2,
                                                               checkpoint_interval_episodes=2,
                                                               env=EnvConfig(action_space="sized_positions")))
    report = trainer.run_iteration()
    trainer.close()
    assert len(report.action_share) == 7 and report.checkpoint
    candidate = load_candidate(tmp_path / "ck" / "training" / report.checkpoint)
    validated = validate(candidate, features, ValidationConfig(simulations=2, mc_runs=20, max_sessions=1))
    assert len(validated.stats.action_share) == 7
    start = int(features.sessions["test"][0])
    feed = ReplayFeed(features.bars, start)
    trader = LiveTrader("GBPJPY", PaperBroker(tmp_path / "paper.json", spread_pips=4.0, pip_size=PIP),
                        Journal(tmp_path / "journal.duckdb"), candidate, feed.history(), simulations=2,
                        risk=RiskConfig(max_units=3))
    trader.reconcile()
    assert trader.space is SIZED_POSITIONS
    for _ in range(5):
        decision = trader.on_bar(feed.next_bars(), datetime.fromtimestamp(feed.now_ns() / 1e9, timezone.utc))
        assert decision.action in SIZED_POSITIONS.actions
    assert abs(trader.position) <= 3
