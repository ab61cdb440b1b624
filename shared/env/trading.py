"""E trading episodes in lockstep over feature-store sessions.

Timeline of one episode over a session of L bars starting at bar s: at step k
the agent sees bars <= t = s + k (the 32-bar feature window ending at t and
its position features) and acts at bar t's close; the market then moves to
bar t + 1, which is also the step's chance outcome. There are L - 1 decisions;
at the last bar any open position is closed. Fills are at bid/ask: mid close
+- half the spread, so a round trip costs the spread.

Rewards (EnvConfig.reward):
* `pnl` (default): pips after costs, per step:
  position_after_action * (mid_{t+1} - mid_t) / pip - |position change| * spread / 2.
  An episode's rewards sum to its P&L, so maximising them is maximising what
  the account earns: no shaping for the agent to game.
* `amddp1` (the product notes): +1 for an entry, -0.05 for holding flat, 0 for
  holding a position, and on a close the trade's pips - 0.01 x its maximum
  drawdown in pips. It encourages trading at all (useful against a hold-only
  collapse) but pays +1 per entry, so it can reward churning; hence not the
  default.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from shared.config import EnvConfig
from shared.core.accounting import Book, FillResult, fill, mark
from shared.core.instruments import get_instrument
from shared.env.actions import ACTION_SPACES, ActionSpace
from shared.features.position import position_features
from shared.features.store import FeatureSet

AMDDP1_ENTRY_REWARD = 1.0
AMDDP1_IDLE_PENALTY = -0.05
AMDDP1_DRAWDOWN_PENALTY = 0.01


@dataclass
class Observation:
    temporal: np.ndarray   # [E, 32, 9] float32, the window ending at the decision bar
    static: np.ndarray     # [E, 6] float32 position features
    legal: np.ndarray      # [E, A] bool
    position: np.ndarray   # [E] int8 net units before the decision
    bar_index: np.ndarray  # [E] int64, the decision bar


@dataclass
class StepResult:
    reward: np.ndarray     # [E] float32
    pnl_pips: np.ndarray   # [E] float64, P&L of the step after costs (whatever the reward)
    outcome: np.ndarray    # [E] int8 MarketOutcome of the bar the market moved to
    done: bool


@dataclass
class EpisodeStats:
    trades_pips: list[float] = field(default_factory=list)
    actions: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    pnl_pips: float = 0.0
    position_changes: int = 0  # decisions that changed the position (orders), whatever the space


class TradingEnv:
    """Episodes of one instrument or of several (a feature set of shared.features.portfolio): each
    episode is one session of one instrument, filled and marked at that instrument's pip and spread;
    its rewards are weighed into the set's common unit (`pip_weights`: 1.0 for one instrument), its
    P&L (`pnl_pips`, the statistics) stays in the instrument's own pips."""

    def __init__(self, features: FeatureSet, config: EnvConfig = EnvConfig()) -> None:
        self.fs = features
        self.config = config
        self.space: ActionSpace = ACTION_SPACES[config.action_space]
        instruments = [get_instrument(name) for name in features.instrument_names]
        self._pips = np.array([i.point for i in instruments])  # one unit on each's price scale (pip, bp)
        # EnvConfig.spread_pips overrides one instrument's spread; several keep each their own
        spreads = [i.spread_pips for i in instruments]
        if config.spread_pips is not None and len(instruments) == 1:
            spreads = [config.spread_pips]
        self._spreads_pips = np.array(spreads, np.float64)
        self._weights = np.array(features.pip_weights or [1.0] * len(instruments), np.float64)
        self.mid = features.scaled_close()  # prices, or 10,000 x ln price where the unit is bps
        self.steps_per_episode = config.episode_bars - 1
        self.window_bars = config.window_bars
        self._window = np.arange(-config.window_bars + 1, 1)

    @property
    def num_actions(self) -> int:
        return self.space.num_actions

    @property
    def pip_by_bar(self) -> np.ndarray:
        """[N] the pip size of each bar's instrument (rules computed over the whole series)."""
        return self._pips[self.fs.instrument_of(np.arange(len(self.mid)))]

    def reset(self, starts: np.ndarray) -> Observation:
        starts = np.asarray(starts, dtype=np.int64)
        if starts.min() < self.window_bars - 1 or starts.max() + self.config.episode_bars > len(self.mid):
            raise ValueError(f"a session start leaves no room for the {self.window_bars}-bar feature window "
                             f"(network.window_bars) or the {self.config.episode_bars}-bar episode: "
                             "DATA_SESSIONS__WARMUP_BARS must be at least the window")
        owner = self.fs.instrument_of(starts)  # [E] each episode's instrument: its pip, spread and weight
        if not np.array_equal(self.fs.instrument_of(starts - self.window_bars + 1), owner):
            raise ValueError("a session's feature window reaches into another instrument's bars: "
                             "DATA_SESSIONS__WARMUP_BARS must be at least the window")
        self.starts = starts
        self.pip, self.spread_pips, self.weight = self._pips[owner], self._spreads_pips[owner], self._weights[owner]
        self.k = 0
        self.book = Book.flat(len(starts))
        # what each episode did, in arrays (a Python loop over episodes per step was most of a cheap policy's time)
        self._action_counts = np.zeros((len(starts), self.num_actions), dtype=np.int64)
        self._position_changes = np.zeros(len(starts), dtype=np.int64)
        self._pnl_pips = np.zeros(len(starts), dtype=np.float64)
        self._trades_pips: list[list[float]] = [[] for _ in range(len(starts))]
        return self.observe()

    @property
    def stats(self) -> list[EpisodeStats]:
        """What each episode of the batch did so far."""
        return [EpisodeStats(list(self._trades_pips[e]), self._action_counts[e].copy(), float(self._pnl_pips[e]),
                             int(self._position_changes[e])) for e in range(len(self._pnl_pips))]

    @property
    def episode_pnl_pips(self) -> np.ndarray:
        """[E] float64 each episode's pips after costs so far (a copy)."""
        return self._pnl_pips.copy()

    @property
    def position(self) -> np.ndarray:
        """[E] int8 net units."""
        return self.book.units.astype(np.int8)

    @property
    def bar(self) -> np.ndarray:
        return self.starts + self.k

    def observe(self) -> Observation:
        bar = self.bar
        return Observation(
            temporal=self.fs.features[bar[:, None] + self._window],
            static=position_features(self.book, self.space.max_units),
            legal=self.space.legal_mask(self.position),
            position=self.position,
            bar_index=bar,
        )

    def _fill_at_mid(self, delta: np.ndarray, mid: np.ndarray, mark_price: np.ndarray) -> FillResult:
        """Fill `delta` at bid/ask around `mid`: a buy pays half the spread above, a sell below."""
        half = self.spread_pips / 2
        price = mid + np.sign(delta) * half * self.pip
        self._closing_max_dd = self.book.max_drawdown_pips.copy()  # a closing trade's, before the fill resets it
        return fill(self.book, delta, price, self.pip, mark_price, half_spread_pips=half)

    def step(self, actions: np.ndarray) -> StepResult:
        actions = np.asarray(actions, dtype=np.int64)
        bar = self.bar
        before = self.position
        after = self.space.next_position(before, actions)
        delta = after.astype(np.int64) - before
        np.add.at(self._action_counts, (np.arange(len(actions)), actions), 1)
        self._position_changes += delta != 0
        last = self.k == self.steps_per_episode - 1
        equity_before = self.book.equity_pips()  # at mid[bar]

        filled = self._fill_at_mid(delta, self.mid[bar], self.mid[bar])
        mark(self.book, self.mid[bar + 1], self.pip)
        reward = self._amddp1(filled, before, after)
        closed = [filled]
        if last:  # the session ends: close what is open at the last bar
            final = self._fill_at_mid(-self.book.units, self.mid[bar + 1], self.mid[bar + 1])
            reward += np.where(np.isnan(final.closed_trade_pips), 0.0, self._close_reward(final))
            closed.append(final)
        pnl = self.book.equity_pips() - equity_before  # pips after costs: the account's change
        if self.config.reward == "pnl":
            reward = pnl.copy()
        reward = reward * self.weight  # the set's common unit (x 1.0 for one instrument)
        for result in closed:
            for e in np.flatnonzero(~np.isnan(result.closed_trade_pips)):
                self._trades_pips[e].append(float(result.closed_trade_pips[e]))
        self._pnl_pips += pnl
        outcome = self.fs.outcomes[bar + 1]
        self.k += 1
        return StepResult(reward=reward.astype(np.float32), pnl_pips=pnl, outcome=outcome, done=last)

    def _close_reward(self, filled: FillResult) -> np.ndarray:
        # the trade's pips less a share of its worst fall (its tracks are read before the fill reset them)
        return np.nan_to_num(filled.closed_trade_pips) - AMDDP1_DRAWDOWN_PENALTY * self._closing_max_dd

    def _amddp1(self, filled: FillResult, before: np.ndarray, after: np.ndarray) -> np.ndarray:
        """+1 per trade opened, -0.05 per idle flat bar, a closed trade's pips less 1% of its max drawdown."""
        reward = np.where(filled.opened, AMDDP1_ENTRY_REWARD, 0.0)
        reward += np.where((after == before) & (after == 0), AMDDP1_IDLE_PENALTY, 0.0)
        reward += np.where(np.isnan(filled.closed_trade_pips), 0.0, self._close_reward(filled))
        return reward
