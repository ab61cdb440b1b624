"""Training sessions (episodes) and the train / validation / test split.

A session is `length_bars` consecutive bars (360: six hours of M1) that
* starts at or after WARMUP_BARS, so every feature lookback is full,
* has no gap longer than `max_gap_minutes` between consecutive bars (a
  market that closes at night, an exchange, sessions run over its nights and
  weekends: those steps are closures, not gaps),
* has no bar while the instrument's market is closed (FX: Friday 17:00 to
  Sunday 17:00 New York, shared/core/calendar.py; crypto never closes; a bar is
  closed when all of it is, so a daily bar stamped Sunday evening is open),
* starts after a live market: the mean bar range of the `length_bars` bars up
  to and including its first bar is at least `min_mean_bar_range_pips` (dead
  markets teach nothing).

No session is chosen by its future prices: the range filter looks back from
the start, and the other two read only timestamps, which say whether the bars
are there (the FX calendar and data completeness), never where the price
went. A property test changes every price after a start and checks that the
session exists or not all the same. (A range filter over the session's own
bars kept the eventful sessions, so validation and test scored a market
chosen for its coming volatility.)

The series is split by time: the first `train_fraction` of its time span is
train, the next `validation_fraction` validation, the rest test. `purge_minutes`
of bars after each boundary belong to no split, so no session of a later split
overlaps the bars the previous split's last sessions looked at. A session
belongs to a split only when all its bars lie inside it. Train sessions start
every `train_stride_bars` (overlapping, for variety); validation and test
sessions every `eval_stride_bars` (360: no overlap, every bar scored once).

Walk-forward (`walk_forward_windows` K > 0, `walk_forward_window` k in 0..K-1):
the span before the test split is cut into K + 1 equal blocks; window k
trains on blocks 0..k (anchored: all the history up to it) and validates on
block k + 1, so K runs, one per window, each select on data after all they
trained on, and their validation P&L over consecutive windows shows whether
what was learnt holds up as the market moves on. The test split is the same
in every window, and never selected on.
"""

from __future__ import annotations

import numpy as np

from shared.config import SessionConfig
from shared.core.calendar import FX, MarketCalendar, bar_in_closed_market, closure_steps
from shared.data.bars import NS_PER_MINUTE

SPLITS = ("train", "validation", "test")


def session_start_checks(ts_ns: np.ndarray, high: np.ndarray, low: np.ndarray, pip: float,
                         cfg: SessionConfig, bar_minutes: int = 1,
                         calendar: MarketCalendar = FX) -> dict[str, np.ndarray]:
    """Bool [N] per rule: may a session of cfg.length_bars start at this bar, by that rule alone.
    A start is valid when every rule says yes (`valid_session_starts`); `why_no_sessions` reads
    the rules one by one to say which setting keeps the sessions out."""
    n, length = len(ts_ns), cfg.length_bars
    names = ("enough_bars", "warmup", "no_gap", "market_open", "live_market")
    if n < length:
        return {name: np.zeros(n, dtype=bool) for name in names}
    minutes = ts_ns // NS_PER_MINUTE
    # bad_step[i]: the step from bar i-1 to bar i is a gap that breaks a session
    bad_step = np.zeros(n, dtype=np.int64)
    bad_step[1:] = np.diff(minutes) > cfg.max_gap_minutes
    if not calendar.around_the_clock:  # an exchange's nights and weekends are closures, not gaps
        bad_step[1:] &= ~closure_steps(calendar, ts_ns, bar_minutes)
    # a bar is in the closed market when all of it is: a daily bar stamped Sunday evening is open
    closed = bar_in_closed_market(calendar, ts_ns, bar_minutes).astype(np.int64)
    bar_range = (high - low) / pip

    def window_sum(x: np.ndarray, skip_first: bool) -> np.ndarray:
        # sum over each window [s, s+length) (or [s+1, s+length) for steps), for s in [0, n-length]
        c = np.concatenate([[0], np.cumsum(x)])
        start = np.arange(n - length + 1) + (1 if skip_first else 0)
        return c[np.arange(n - length + 1) + length] - c[start]

    # mean range of the `length` bars ending at s (bars s-length+1 .. s): known when the session starts
    c = np.concatenate([[0.0], np.cumsum(bar_range)])
    s_index = np.arange(n - length + 1)
    trailing_range = (c[s_index + 1] - c[np.maximum(s_index + 1 - length, 0)]) / length

    def padded(rule: np.ndarray) -> np.ndarray:
        out = np.zeros(n, dtype=bool)  # the last length - 1 bars cannot start a whole session
        out[: n - length + 1] = rule
        return out

    warmup = np.arange(n) >= cfg.warmup_bars
    return {
        "enough_bars": padded(s_index >= length - 1),                              # a full trailing window
        "warmup": warmup,                                                            # every feature lookback full
        "no_gap": padded(window_sum(bad_step, skip_first=True) == 0),              # timestamps only: complete data
        "market_open": padded(window_sum(closed, skip_first=False) == 0),          # timestamps only: the calendar
        "live_market": padded(trailing_range >= cfg.min_mean_bar_range_pips),      # prices up to the start only
    }


def valid_session_starts(ts_ns: np.ndarray, high: np.ndarray, low: np.ndarray, pip: float, cfg: SessionConfig,
                         bar_minutes: int = 1, calendar: MarketCalendar = FX) -> np.ndarray:
    """Bool [N]: a session of cfg.length_bars may start at this bar."""
    checks = session_start_checks(ts_ns, high, low, pip, cfg, bar_minutes, calendar)
    return np.logical_and.reduce(list(checks.values()))


# Each rule, what it needs, and the settings (DATA_SESSIONS__...) that loosen it.
_RULE_ADVICE = {
    "enough_bars": "a session needs length_bars bars before and from its start: load more bars or lower "
                   "DATA_SESSIONS__LENGTH_BARS",
    "warmup": "the first warmup_bars bars (DATA_SESSIONS__WARMUP_BARS, 1500: what the features look back) "
              "fill the features' lookbacks: load more history",
    "no_gap": "no step between consecutive bars may exceed max_gap_minutes: raise DATA_SESSIONS__MAX_GAP_MINUTES "
              "(or repair the gaps: micro data gaps)",
    "market_open": "a session may hold no bar while the market is closed (the instrument's calendar: the FX "
                   "weekend, an exchange's nights); FX sessions longer than a trading week never fit: lower "
                   "DATA_SESSIONS__LENGTH_BARS",
    "live_market": "the mean bar range before the start must be at least min_mean_bar_range_pips: lower "
                   "DATA_SESSIONS__MIN_MEAN_BAR_RANGE_PIPS",
}


def why_no_sessions(ts_ns: np.ndarray, high: np.ndarray, low: np.ndarray, pip: float, cfg: SessionConfig,
                    sessions: dict[str, np.ndarray], bar_minutes: int = 1,
                    calendar: MarketCalendar = FX) -> list[str]:
    """For each split without sessions, why, and the setting that would change it; [] when every split has some."""
    empty = [name for name in SPLITS if not len(sessions.get(name, ()))]
    if not empty:
        return []
    n = len(ts_ns)
    checks = session_start_checks(ts_ns, high, low, pip, cfg, bar_minutes, calendar)
    steps = np.diff(ts_ns // NS_PER_MINUTE)
    typical_step = int(np.median(steps)) if len(steps) else 0
    lines = [f"{n} bars, typical step {typical_step} min; sessions of {cfg.length_bars} bars "
             f"(about {cfg.length_bars * typical_step / 60:.0f} hours), gaps up to {cfg.max_gap_minutes} min, "
             f"warm-up {cfg.warmup_bars} bars"]
    if n < cfg.warmup_bars + cfg.length_bars:
        lines.append(f"too few bars: {n} < warmup_bars {cfg.warmup_bars} + length_bars {cfg.length_bars}: "
                     f"load more history or lower DATA_SESSIONS__LENGTH_BARS")
        return lines
    if typical_step > cfg.max_gap_minutes:
        lines.append(f"the bars are {typical_step} min apart but max_gap_minutes is {cfg.max_gap_minutes}: every step "
                     f"is a gap; set the bar size (--granularity / MICRO_GRANULARITY) so its session defaults apply, "
                     f"or raise DATA_SESSIONS__MAX_GAP_MINUTES")
    passing = np.ones(n, dtype=bool)
    for rule, ok in checks.items():  # in order: how many starts each rule removes from those left
        removed = int((passing & ~ok).sum())
        passing &= ok
        if removed:
            lines.append(f"{rule}: rules out {removed} of {n} bars as a start ({_RULE_ADVICE[rule]})")
    valid = int(passing.sum())
    lines.append(f"{valid} bars can start a session")
    if valid:
        t0, t1 = int(ts_ns[0]), int(ts_ns[-1])
        days = (t1 - t0) / (NS_PER_MINUTE * 1440)
        for name in empty:
            fraction = {"train": cfg.train_fraction, "validation": cfg.validation_fraction,
                        "test": 1 - cfg.train_fraction - cfg.validation_fraction}[name]
            lines.append(f"the {name} split is {fraction:.0%} of {days:.1f} days ({fraction * days:.1f} days, less "
                         f"purge_minutes {cfg.purge_minutes}) and no valid start lies inside it with its whole session: "
                         f"load more bars, or change DATA_SESSIONS__TRAIN_FRACTION / VALIDATION_FRACTION / PURGE_MINUTES")
    return lines


def split_sessions(ts_ns: np.ndarray, valid: np.ndarray, cfg: SessionConfig) -> dict[str, np.ndarray]:
    """Start indices of each split's sessions (int64 arrays, ascending)."""
    n = len(ts_ns)
    out = {name: np.empty(0, dtype=np.int64) for name in SPLITS}
    if n == 0:
        return out
    t0, t1 = int(ts_ns[0]), int(ts_ns[-1]) + 1
    span = t1 - t0
    purge = cfg.purge_minutes * NS_PER_MINUTE
    test_start = t0 + int(span * (cfg.train_fraction + cfg.validation_fraction))
    train_end, validation_end = t0 + int(span * cfg.train_fraction), test_start
    if cfg.walk_forward_windows:
        block = (test_start - t0) / (cfg.walk_forward_windows + 1)
        k = cfg.walk_forward_window
        train_end = t0 + int(block * (k + 1))
        validation_end = test_start if k == cfg.walk_forward_windows - 1 else t0 + int(block * (k + 2))
    regions = {"train": (t0, train_end), "validation": (train_end + purge, validation_end),
               "test": (test_start + purge, t1)}
    strides = {"train": cfg.train_stride_bars, "validation": cfg.eval_stride_bars, "test": cfg.eval_stride_bars}
    candidates = np.flatnonzero(valid)
    for name, (lo, hi) in regions.items():
        inside = candidates[(ts_ns[candidates] >= lo) & (ts_ns[candidates + cfg.length_bars - 1] < hi)]
        # greedy stride: the next session starts at least `stride` bars after the last one taken
        chosen, next_allowed = [], -1
        for start in inside:
            if start >= next_allowed:
                chosen.append(start)
                next_allowed = start + strides[name]
        out[name] = np.asarray(chosen, dtype=np.int64)
    return out
