"""Bar sizes: the granularities we store (as OANDA spells them), their length in minutes, and the
spellings users write (5m, 1h, daily). Below every stage: settings normalise a configured bar size
with it, the bar store and every stage read its lengths."""

from __future__ import annotations

import re

# OANDA granularities we store, with their length in minutes.
GRANULARITY_MINUTES: dict[str, int] = {
    "M1": 1, "M2": 2, "M4": 4, "M5": 5, "M10": 10, "M15": 15, "M30": 30,
    "H1": 60, "H2": 120, "H3": 180, "H4": 240, "H6": 360, "H8": 480, "H12": 720, "D": 1440,
}


def check_granularity(granularity: str) -> int:
    """Minutes per bar of a stored (OANDA-spelled) granularity; anything else is a clear error."""
    try:
        return GRANULARITY_MINUTES[granularity]
    except KeyError:
        pass
    try:
        hint = f" (write it as {parse_granularity(granularity)})"
    except ValueError:
        hint = ""
    raise ValueError(f"unknown granularity {granularity!r}{hint}; known: {', '.join(GRANULARITY_MINUTES)}") from None


# Bar-size units as pandas, freqtrade, MetaTrader and people write them, in minutes.
# A capital M after a number is a month in pandas and freqtrade: not a bar size we store.
_UNIT_MINUTES = {"m": 1, "min": 1, "mins": 1, "minute": 1, "minutes": 1, "t": 1,
                 "h": 60, "hr": 60, "hour": 60, "hours": 60, "d": 1440, "day": 1440, "days": 1440}
_DAILY_NAMES = ("d", "d1", "daily", "day")


def granularity_for_minutes(minutes: int) -> str:
    """The stored name of a bar size in minutes (60 -> H1); sizes we do not store are a clear error."""
    for name, size in GRANULARITY_MINUTES.items():
        if size == minutes:
            return name
    raise ValueError(f"bars {minutes} minutes long are not a granularity we store; known: {', '.join(GRANULARITY_MINUTES)}")


def parse_granularity(text: str) -> str:
    """The stored (OANDA) name of a bar size as users write it: M5, 5m, 5min, 5T, H1, 1h, 60min, D, D1, 1d, daily."""
    raw = text.strip()
    if raw in GRANULARITY_MINUTES:
        return raw
    if raw.lower() in _DAILY_NAMES:
        return "D"
    oanda_style = re.fullmatch(r"([mhdMHD])(\d+)", raw)  # m5, h4, D1
    if oanda_style:
        letter, count = oanda_style.group(1).lower(), int(oanda_style.group(2))
        return granularity_for_minutes(count * _UNIT_MINUTES[letter])
    counted = re.fullmatch(r"(\d+)\s*([A-Za-z]+)", raw)  # 5m, 60min, 1T, 4h, 1d
    if counted and counted.group(2) != "M" and counted.group(2).lower() in _UNIT_MINUTES:
        return granularity_for_minutes(int(counted.group(1)) * _UNIT_MINUTES[counted.group(2).lower()])
    raise ValueError(
        f"unknown granularity {text!r}; write one of {', '.join(GRANULARITY_MINUTES)} or as 5m, 5min, 1h, 1d, daily"
        + (" (1M is a month, not a bar size we store)" if counted and counted.group(2) == "M" else "")
    )


def bar_phase_minutes(ts_ns, bar_minutes: int) -> int:
    """Where in its period a series' bars open, in minutes (the most common value): 0 for M1 and for
    hourly bars on the hour; 0 for daily bars stamped 00:00 UTC, 1260 for OANDA's summer dailies
    (17:00 New York, 21:00 UTC). Live refuses to decide on bars another phase than its model's."""
    import numpy as np

    minutes = np.asarray(ts_ns, dtype=np.int64) // 60_000_000_000
    if bar_minutes <= 1 or minutes.size == 0:
        return 0
    values, counts = np.unique(minutes % bar_minutes, return_counts=True)
    return int(values[np.argmax(counts)])


def phase_distance_minutes(a: int, b: int, bar_minutes: int) -> int:
    """How far apart two phases are, around the bar's period."""
    d = abs(a - b) % bar_minutes if bar_minutes > 1 else 0
    return min(d, bar_minutes - d)
