"""Timestamps: their written form, their zone, and UTC.

A stamp column is read in one form for the whole file: the first of STAMP_FORMATS that reads the
most of the first 50 stamps (explicit forms first, so 02.01.2024 is always day.month), or epoch seconds or
milliseconds (all digits, nine or more: eight digits are YYYYMMDD). A stamp that does not read in
that form is a bad row.

Zones: stamps that carry an offset (`+00:00`, `Z`, `GMT+0200`) or epochs are UTC instants already;
a user zone for them is an error. Naive stamps are wall-clock times in the user's zone (`--tz`, or
`--tz-offset-hours` as a fixed offset), else the shape's (HistData: EST), else UTC. A zone with
daylight saving converts each stamp with the rules of its date. At the switch:
* an autumn hour that happens twice (EET: 03:00-03:59 on the last Sunday of October) is read as
  the first, summer-time occurrence; a second row with the same stamp further down the file is the
  second, winter-time occurrence;
* a spring hour that does not exist (EET: 03:00-03:59 on the last Sunday of March) is a bad row.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import numpy as np
import pandas as pd

from shared.data.importers.report import CsvFormatError

STAMP_FORMATS = (
    "%Y.%m.%d %H:%M:%S", "%Y.%m.%d %H:%M", "%Y.%m.%d",                          # MetaTrader
    "%d.%m.%Y %H:%M:%S.%f", "%d.%m.%Y %H:%M:%S", "%d.%m.%Y %H:%M",              # Dukascopy (Gmt time)
    "%d.%m.%Y %H:%M:%S.%f GMT%z",                                              # Dukascopy (Local time)
    "%Y%m%d %H%M%S", "%Y%m%d %H:%M:%S", "%Y%m%d %H:%M", "%Y%m%d",              # HistData and compact forms
    "%Y/%m/%d %H:%M:%S", "%Y/%m/%d %H:%M", "%Y/%m/%d",
    "ISO8601",                                                                 # OANDA, pandas, yfinance, ...
)
SAMPLE_STAMPS = 50
_ZONE_SUFFIX = re.compile(r"(?:Z|[+-]\d{2}:?\d{2})$")
_EPOCH = re.compile(r"\d{9,}(\.\d+)?")
_FIXED_OFFSET = re.compile(r"(?:UTC|GMT)?\s*([+-])\s*(\d{1,2})(?::?(\d{2}))?", re.IGNORECASE)


@dataclass
class Stamps:
    ts: pd.Series      # datetime64: UTC when the file carries its zone, else naive wall-clock times
    aware: bool
    date_only: bool    # dated by day, no time of day
    form: str          # how they were read, for the report


def parse_stamps(values: pd.Series, fixed_format: str | None = None) -> Stamps:
    if isinstance(values.dtype, pd.DatetimeTZDtype):
        return Stamps(values.dt.tz_convert("UTC"), True, False, "a zoned datetime column")
    if pd.api.types.is_datetime64_dtype(values):
        return Stamps(values, False, bool((values.dropna() == values.dropna().dt.normalize()).all()), "a datetime column")
    if pd.api.types.is_numeric_dtype(values):
        return _epoch(values.astype(np.float64))
    text = values.fillna("").astype(str).str.strip()
    sample = text[text != ""].head(SAMPLE_STAMPS)
    if sample.empty:  # every row is bad: the health check lists them
        return Stamps(pd.Series(pd.NaT, index=values.index, dtype="datetime64[ns]"), False, False, "no stamps")
    if sample.str.fullmatch(_EPOCH).mean() > 0.5:  # the rest are bad rows
        return _epoch(pd.to_numeric(text, errors="coerce"))
    candidates = (fixed_format,) if fixed_format else STAMP_FORMATS
    read = [int(pd.to_datetime(sample, format=f, errors="coerce", utc=True).notna().sum()) for f in candidates]
    form = candidates[int(np.argmax(read))] if max(read) > 0 else None  # the first that reads the most
    if form is None:
        raise CsvFormatError(
            f"timestamps like {sample.iloc[0]!r} are not a form we read: ISO 8601 (2024-01-02 10:00:00[+00:00]), "
            "YYYY.MM.DD HH:MM[:SS], DD.MM.YYYY HH:MM:SS[.fff], YYYYMMDD HHMMSS, YYYY/MM/DD HH:MM, epoch s or ms"
        )
    sample = sample[pd.to_datetime(sample, format=form, errors="coerce", utc=True).notna()]
    zoned = sample.str.contains(_ZONE_SUFFIX)
    if form == "ISO8601" and zoned.any() and not zoned.all():
        raise CsvFormatError(f"some timestamps carry a zone and some do not ({sample[zoned].iloc[0]!r}, "
                             f"{sample[~zoned].iloc[0]!r}): one file, one convention")
    aware = "%z" in form or (form == "ISO8601" and bool(zoned.all()))
    date_only = "%H" not in form and (form != "ISO8601" or bool((sample.str.len() <= 10).all()))
    ts = pd.to_datetime(text, format=form, errors="coerce", utc=aware)
    return Stamps(ts, aware, date_only, "ISO 8601" if form == "ISO8601" else form)


def _epoch(numbers: pd.Series) -> Stamps:
    finite = numbers[np.isfinite(numbers)]
    if finite.empty:
        return Stamps(pd.Series(pd.NaT, index=numbers.index, dtype="datetime64[ns, UTC]"), True, False, "no stamps")
    # by magnitude: seconds since 1973 stay below 1e11 until the year 5138
    unit = "s" if finite.median() < 1e11 else "ms" if finite.median() < 1e14 else "us" if finite.median() < 1e17 else "ns"
    names = {"s": "seconds", "ms": "milliseconds", "us": "microseconds", "ns": "nanoseconds"}
    ts = pd.to_datetime(numbers, unit=unit, utc=True, errors="coerce")
    return Stamps(ts, True, False, f"epoch {names[unit]} (UTC)")


def zone_from_flags(tz: str | None, tz_offset_hours: float | None) -> tzinfo | None:
    """The user's zone for naive stamps: --tz (an IANA name, or a fixed UTC+2) or --tz-offset-hours."""
    if tz is not None and tz_offset_hours is not None:
        raise CsvFormatError("give --tz or --tz-offset-hours, not both")
    if tz_offset_hours is not None:
        return timezone(timedelta(hours=tz_offset_hours), f"UTC{tz_offset_hours:+g}")
    return None if tz is None else parse_zone(tz)


def parse_zone(text: str) -> tzinfo:
    name = text.strip()
    if name.upper() in ("UTC", "GMT", "Z"):
        return timezone.utc
    fixed = _FIXED_OFFSET.fullmatch(name)
    if fixed:
        sign = -1 if fixed.group(1) == "-" else 1
        offset = timedelta(hours=int(fixed.group(2)), minutes=int(fixed.group(3) or 0))
        if offset > timedelta(hours=14):
            raise CsvFormatError(f"time zone {text!r}: an offset beyond 14 hours")
        return timezone(sign * offset, f"UTC{fixed.group(1)}{fixed.group(2)}" + (f":{fixed.group(3)}" if fixed.group(3) else ""))
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise CsvFormatError(f"unknown time zone {text!r}: give an IANA name (Europe/Helsinki, EET, America/New_York) "
                             "or a fixed offset (UTC+2, UTC-05:00)") from None


def observes_dst(zone: tzinfo) -> bool:
    winter, summer = datetime(2024, 1, 15, 12), datetime(2024, 7, 15, 12)
    return zone.utcoffset(winter) != zone.utcoffset(summer)


def localize(ts: pd.Series, zone: tzinfo) -> tuple[pd.Series, np.ndarray]:
    """Naive wall-clock stamps in `zone` to UTC, each with its date's rules (the module docstring says how
    the hours of a DST switch are read). Returns the UTC stamps and which rows fell in a hour that does not exist."""
    second_occurrence = ts.duplicated(keep="first").to_numpy()
    local = ts.dt.tz_localize(zone, ambiguous=~second_occurrence, nonexistent="NaT")
    nonexistent = local.isna().to_numpy() & ts.notna().to_numpy()
    return local.dt.tz_convert("UTC"), nonexistent


def to_ns(ts: pd.Series) -> np.ndarray:
    """UTC-aware stamps as int64 ns since the epoch; NaT as int64 min."""
    out = np.full(len(ts), np.iinfo(np.int64).min, dtype=np.int64)
    valid = ts.notna().to_numpy()
    naive = ts[valid].dt.tz_convert("UTC").dt.tz_localize(None) if isinstance(ts.dtype, pd.DatetimeTZDtype) else ts[valid]
    out[valid] = naive.astype("datetime64[ns]").to_numpy().astype(np.int64)
    return out
