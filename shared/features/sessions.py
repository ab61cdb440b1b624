"""Training sessions (episodes) and the train / validation / test split.

A session is `length_bars` consecutive bars (360: six hours of M1) that
* starts at or after WARMUP_BARS, so every feature lookback is full,
* has no gap longer than `max_gap_minutes` between consecutive bars,
* has no bar while the FX market is closed (Friday 22:00 to Sunday 22:00 UTC),
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
from shared.data.bars import NS_PER_MINUTE, TRADING_WEEK_MINUTES, minute_of_trading_week

SPLITS = ("train", "validation", "test")


def valid_session_starts(ts_ns: np.ndarray, high: np.ndarray, low: np.ndarray, pip: float, cfg: SessionConfig) -> np.ndarray:
    """Bool [N]: a session of cfg.length_bars may start at this bar."""
    n, length = len(ts_ns), cfg.length_bars
    valid = np.zeros(n, dtype=bool)
    if n < length:
        return valid
    minutes = ts_ns // NS_PER_MINUTE
    # bad_step[i]: the step from bar i-1 to bar i is a gap that breaks a session
    bad_step = np.zeros(n, dtype=np.int64)
    bad_step[1:] = np.diff(minutes) > cfg.max_gap_minutes
    closed = (minute_of_trading_week(ts_ns) >= TRADING_WEEK_MINUTES).astype(np.int64)
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
    starts_ok = (
        (window_sum(bad_step, skip_first=True) == 0)        # timestamps only: the data is complete
        & (window_sum(closed, skip_first=False) == 0)       # timestamps only: the calendar
        & (trailing_range >= cfg.min_mean_bar_range_pips)   # prices up to the start only
        & (s_index >= length - 1)                           # a full trailing window
    )
    starts_ok[: cfg.warmup_bars] = False
    valid[: n - length + 1] = starts_ok
    return valid


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
