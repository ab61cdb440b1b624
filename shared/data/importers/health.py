"""Data health on import: what cannot be stored (bad rows, a wrong granularity or price level: errors
with their lines) and what can but deserves a look (gaps, huge jumps, zero-volume runs: warnings)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd

from shared.core.bar_sizes import granularity_for_minutes
from shared.core.calendar import FX, MarketCalendar, closure_steps
from shared.core.instruments import Instrument
from shared.data.bars import NS_PER_MINUTE
from shared.data.importers.report import RefusedImportError

JUMP_MIN_RELATIVE = 0.05        # a close-to-close move above 5% ...
JUMP_MEDIAN_MULTIPLE = 20.0     # ... and above 20x the file's median absolute move is a jump worth a look
ZERO_VOLUME_RUN_BARS = 5        # this many zero-volume bars in a row is a run worth a look
NO_TIME = np.iinfo(np.int64).min


def newest_first(ts_ns: np.ndarray) -> bool:
    """A file written newest-first: more steps back in time than forward among the readable stamps."""
    steps = np.diff(ts_ns[ts_ns != NO_TIME])
    return int((steps < 0).sum()) > int((steps > 0).sum())


def bad_row_reasons(ts_ns: np.ndarray, prices: pd.DataFrame, *, malformed: np.ndarray, nonexistent: np.ndarray,
                    complete: np.ndarray | None, instrument: Instrument | None) -> np.ndarray:
    """The first reason each row cannot be stored, or "" for a good row."""
    reasons = np.full(len(ts_ns), "", dtype=object)

    def mark(mask: np.ndarray, reason: str | np.ndarray) -> None:
        hit = mask & (reasons == "")
        reasons[hit] = reason[hit] if isinstance(reason, np.ndarray) else reason

    ohlc = prices[["open", "high", "low", "close"]].to_numpy(np.float64)
    volume = prices["volume"].to_numpy(np.float64)
    mark(malformed, "wrong number of fields")
    mark(nonexistent, "local time that does not exist in the zone (skipped by the DST switch)")
    mark(ts_ns == NO_TIME, "unparseable timestamp")
    mark(np.isnan(ohlc).any(axis=1) | np.isnan(volume), "missing or non-numeric value (NaN)")
    mark((ohlc <= 0).any(axis=1), "non-positive price")
    high, low = ohlc[:, 1], ohlc[:, 2]
    mark(high < low, "high < low")
    mark((ohlc[:, [0, 3]] > high[:, None]).any(axis=1) | (ohlc[:, [0, 3]] < low[:, None]).any(axis=1),
         "open or close outside [low, high]")
    mark(volume < 0, "negative volume")
    if complete is not None:
        mark(~complete, "incomplete candle (complete=false)")
    if instrument is not None:  # a row far from the file's own level: a mis-scaled row
        usable = ohlc[:, 3][np.isfinite(ohlc[:, 3]) & (ohlc[:, 3] > 0)]
        if usable.size:
            level, factor = float(np.median(usable)), instrument.price_level_factor
            low_ok, high_ok = level / factor, level * factor
            mark((ohlc < low_ok).any(axis=1) | (ohlc > high_ok).any(axis=1),
                 f"price implausible for {instrument.name} (the file's level {level:g}: plausible {low_ok:g}..{high_ok:g})")
    # time order among the readable stamps: each must be later than the latest before it
    running_max = np.maximum.accumulate(ts_ns)
    previous_max = np.concatenate([[NO_TIME], running_max[:-1]])
    readable = ts_ns != NO_TIME
    mark(readable & (ts_ns == previous_max), "duplicate timestamp")
    mark(readable & (ts_ns < previous_max), "timestamp out of order")
    return reasons


def check_price_level(close: np.ndarray, instrument: Instrument, source: str) -> None:
    """Refuse a file whose typical price is not the instrument's: the wrong pair, or a scaled file."""
    plausible = instrument.plausible_prices()
    usable = close[np.isfinite(close) & (close > 0)]
    if plausible is None or usable.size == 0:
        return
    level = float(np.median(usable))
    if not plausible[0] <= level <= plausible[1]:
        raise RefusedImportError(
            f"{source}: prices around {level:g} are implausible for {instrument.name} (typical {instrument.typical_price:g}, "
            f"plausible {plausible[0]:g}..{plausible[1]:g}): is this the right instrument, and the file unscaled?"
        )


def settle_granularity(good_ts_ns: np.ndarray, given: str | None, source: str, *, given_by: str = "--granularity") -> str:
    """The bar size: the most common positive step between bars (gaps and weekends are rarer than bars).
    A given granularity (`given_by` says who gave it) that disagrees is an error stating both."""
    steps = np.diff(good_ts_ns)
    steps = steps[steps > 0]
    if steps.size == 0:
        if given:
            return given
        raise RefusedImportError(f"{source}: cannot infer the granularity from {good_ts_ns.size} bar(s): pass --granularity")
    values, counts = np.unique(steps, return_counts=True)
    step_ns, count = int(values[np.argmax(counts)]), int(counts.max())
    evidence = f"the most common step between bars is {step_ns / NS_PER_MINUTE:g} minutes ({count} of {steps.size} steps)"
    try:
        if step_ns % NS_PER_MINUTE:
            raise ValueError("not a whole number of minutes")
        inferred = granularity_for_minutes(step_ns // NS_PER_MINUTE)
    except ValueError as error:
        raise RefusedImportError(f"{source}: {evidence}: {error}" + (f"; {given_by} says {given}" if given else "")) from None
    if given and given != inferred:
        raise RefusedImportError(f"{source}: {given_by} says {given} but the bars are {inferred}: {evidence}")
    return inferred


def mixed_granularity_reasons(ts_ns: np.ndarray, good: np.ndarray, granularity: str, step_minutes: int,
                              dst_allowance_minutes: int) -> np.ndarray:
    """Rows that start less than one bar after the last kept bar (e.g. M1 rows inside an H1 file), each
    with its reason, else "". Bars longer than an hour in a daylight-saving zone may be an hour short."""
    reasons = np.full(len(ts_ns), "", dtype=object)
    index = np.flatnonzero(good)
    shortest_ns = (step_minutes - dst_allowance_minutes) * NS_PER_MINUTE
    if index.size < 2 or np.diff(ts_ns[index]).min() >= shortest_ns:
        return reasons
    last = ts_ns[index[0]]
    for i in index[1:]:
        if ts_ns[i] - last < shortest_ns:
            reasons[i] = (f"a bar starting {(ts_ns[i] - last) / NS_PER_MINUTE:g} min after the one before, inside the "
                          f"file's {granularity} bars (mixed granularities)")
        else:
            last = ts_ns[i]
    return reasons


def health_warnings(ts_ns: np.ndarray, close: np.ndarray, volume: np.ndarray, where: Callable[[int], str], step_minutes: int,
                    slack_minutes: int, calendar: MarketCalendar = FX) -> list[str]:
    """Warnings on good bars (time ordered); `where(i)` names bar i's line for the message."""
    warnings = []
    if ts_ns.size >= 2:
        warnings += _gaps(ts_ns, where, step_minutes, slack_minutes, calendar)
        warnings += _jumps(close, where)
    warnings += _zero_volume_runs(volume, where)
    return warnings


def _gaps(ts_ns: np.ndarray, where: Callable[[int], str], step_minutes: int, slack_minutes: int,
          calendar: MarketCalendar) -> list[str]:
    minutes = ts_ns // NS_PER_MINUTE
    missing = np.diff(minutes) // step_minutes - 1
    # the market's closure, as the store's gap report sees it, with slack for a thin Friday or Sunday
    weekend = closure_steps(calendar, ts_ns, step_minutes, 60 + slack_minutes)
    gap = (missing >= 1) & ~weekend
    if not gap.any():
        return []
    longest = int(np.argmax(np.where(gap, missing, -1)))
    return [f"{int(gap.sum())} gaps longer than one bar outside weekends, {int(missing[gap].sum())} bars missing in all "
            f"(longest: {int(missing[longest])} bars after {where(longest)}, {pd.Timestamp(int(ts_ns[longest]))} UTC)"]


def _jumps(close: np.ndarray, where: Callable[[int], str]) -> list[str]:
    moves = np.abs(np.diff(close))
    relative = moves / close[:-1]
    jump = (relative > JUMP_MIN_RELATIVE) & (moves > JUMP_MEDIAN_MULTIPLE * np.median(moves))
    if not jump.any():
        return []
    first = int(np.argmax(jump))
    return [f"{int(jump.sum())} one-bar jumps above {JUMP_MIN_RELATIVE:.0%} and {JUMP_MEDIAN_MULTIPLE:g}x the median move "
            f"(first: {where(first + 1)}, close {close[first]:g} -> {close[first + 1]:g})"]


def _zero_volume_runs(volume: np.ndarray, where: Callable[[int], str]) -> list[str]:
    zero = volume == 0
    if zero.all() or not zero.any():  # no volume at all is a note of the shape, not a health problem
        return []
    edges = np.diff(np.concatenate([[0], zero.astype(np.int8), [0]]))
    starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    lengths = ends - starts
    runs = lengths >= ZERO_VOLUME_RUN_BARS
    if not runs.any():
        return []
    longest = int(np.argmax(lengths))
    return [f"{int(runs.sum())} runs of {ZERO_VOLUME_RUN_BARS} or more zero-volume bars, {int(lengths[runs].sum())} bars "
            f"in all (longest: {int(lengths[longest])} bars from {where(int(starts[longest]))})"]
