"""CSV import of candle exports, format auto-detected.

Formats:
* `oanda`: a header row with a time column (`time`, `ts`, `timestamp` or
  `date`, RFC 3339 / ISO 8601, UTC unless it carries an offset) and price
  columns named `open/high/low/close` (or `o/h/l/c`, `mid_o`, `mid.o`, ...),
  optional `volume`, optional `complete` (rows with complete=false are bad:
  an unfinished candle).
* `histdata`: HistData.com ASCII M1, no header, `YYYYMMDD HHMMSS;O;H;L;C;V`.
  HistData stamps bars in EST without daylight saving (UTC-5); we add 5 hours.
* `mt4`: MetaTrader 4 history export, no header, `YYYY.MM.DD,HH:MM,O,H,L,C,V`.
  MT4 stamps bars in the broker's server time: pass `tz_offset_hours` (hours
  ahead of UTC) if that is not UTC.

Bad rows (unparseable, NaN, a non-positive price, high < low, open/close
outside [low, high], incomplete, a duplicate or out-of-order timestamp) are
reported with their line numbers. By default any bad row fails the whole
import and nothing is written; `skip_bad=True` imports the good rows and still
returns the report. Nothing is dropped or kept silently.
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from shared.core.errors import StopError
from shared.data.bars import Bars

FORMATS = ("oanda", "histdata", "mt4")
HISTDATA_UTC_OFFSET_HOURS = -5  # EST, no daylight saving

_HISTDATA = re.compile(r"^\d{8} \d{6};")
_MT4 = re.compile(r"^\d{4}\.\d{2}\.\d{2},\d{2}:\d{2}(:\d{2})?,")
_TIME_COLUMNS = ("time", "ts", "timestamp", "date", "datetime")
_PRICE_ALIASES = {
    "open": ("open", "o", "mid_o", "mid.o", "bid_o", "bid.o"),
    "high": ("high", "h", "mid_h", "mid.h", "bid_h", "bid.h"),
    "low": ("low", "l", "mid_l", "mid.l", "bid_l", "bid.l"),
    "close": ("close", "c", "mid_c", "mid.c", "bid_c", "bid.c"),
    "volume": ("volume", "vol", "v", "tick_volume"),
}


class CsvFormatError(StopError, ValueError):
    """The file is not one of the formats we read."""


class BadRowsError(StopError, ValueError):
    """Bad rows were found and the import was not told to skip them."""

    def __init__(self, report: "ImportReport") -> None:
        self.report = report
        super().__init__(report.describe(limit=20) + "\nnothing was imported; fix the rows or pass --skip-bad")


@dataclass(frozen=True)
class BadRow:
    line: int        # 1-based line number in the file
    reason: str
    text: str


@dataclass
class ImportReport:
    path: str
    format: str
    rows: int = 0
    good: int = 0
    bad_rows: list[BadRow] = field(default_factory=list)

    def describe(self, limit: int = 20) -> str:
        lines = [f"{self.path}: format {self.format}, {self.rows} rows, {self.good} good, {len(self.bad_rows)} bad"]
        for bad in self.bad_rows[:limit]:
            lines.append(f"  line {bad.line}: {bad.reason}: {bad.text!r}")
        if len(self.bad_rows) > limit:
            lines.append(f"  ... and {len(self.bad_rows) - limit} more")
        return "\n".join(lines)


def detect_format(first_line: str) -> str:
    line = first_line.strip().lstrip("\ufeff")
    if _HISTDATA.match(line):
        return "histdata"
    if _MT4.match(line):
        return "mt4"
    header = [h.strip().lower() for h in next(csv.reader([line]))]
    if any(h in _TIME_COLUMNS for h in header) and all(
        any(alias in header for alias in _PRICE_ALIASES[price]) for price in ("open", "high", "low", "close")
    ):
        return "oanda"
    raise CsvFormatError(
        f"unknown CSV format (first line {line[:80]!r}); expected an OANDA candle export with a header "
        "(time,open,high,low,close[,volume]), HistData ASCII M1 (YYYYMMDD HHMMSS;O;H;L;C;V) "
        "or MT4 (YYYY.MM.DD,HH:MM,O,H,L,C,V)"
    )


def read_csv_bars(
    path: str | Path,
    *,
    fmt: str = "auto",
    skip_bad: bool = False,
    tz_offset_hours: float = 0.0,
) -> tuple[Bars, ImportReport]:
    """Parse a candle CSV into bars plus a report of every bad row."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no such file: {path}")
    raw = path.read_bytes()
    if b"\x00" in raw[:65536]:
        raise CsvFormatError(f"{path} is a binary file, not a candle CSV")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise CsvFormatError(f"{path} is not UTF-8 text (byte {error.start}): not a candle CSV") from None
    lines = text.splitlines()
    first = next((i for i, line in enumerate(lines) if line.strip()), None)
    if first is None:
        raise CsvFormatError(f"{path} is empty")
    if fmt == "auto":
        fmt = detect_format(lines[first])
    elif fmt not in FORMATS:
        raise CsvFormatError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)} or auto")

    report = ImportReport(path=str(path), format=fmt)
    if fmt == "oanda":
        frame, line_numbers = _read_oanda(text, first)
    else:
        frame, line_numbers = _read_headerless(text, fmt, tz_offset_hours)
    report.rows = len(frame)

    reasons = _validate(frame)
    bad = np.flatnonzero(reasons != "")
    raw_lines = lines
    report.bad_rows = [
        BadRow(line=int(line_numbers[i]), reason=str(reasons[i]), text=raw_lines[line_numbers[i] - 1][:120]) for i in bad
    ]
    good = frame[reasons == ""]
    report.good = len(good)
    if report.bad_rows and not skip_bad:
        raise BadRowsError(report)
    return Bars.from_frame(good.reset_index(drop=True)), report


def _read_oanda(text: str, header_index: int) -> tuple[pd.DataFrame, np.ndarray]:
    raw = pd.read_csv(io.StringIO(text), dtype=str, skiprows=header_index, skip_blank_lines=False, keep_default_na=False)
    raw.columns = [c.strip().lower() for c in raw.columns]
    # line numbers: the header is line header_index + 1, row i is two further on
    line_numbers = np.arange(len(raw)) + header_index + 2
    blank = raw.apply(lambda col: col.str.strip() == "").all(axis=1).to_numpy()
    raw, line_numbers = raw[~blank].reset_index(drop=True), line_numbers[~blank]
    time_col = next(c for c in _TIME_COLUMNS if c in raw.columns)
    frame = pd.DataFrame({"ts": pd.to_datetime(raw[time_col].str.strip(), utc=True, errors="coerce", format="ISO8601")})
    for name, aliases in _PRICE_ALIASES.items():
        column = next((a for a in aliases if a in raw.columns), None)
        if column is None:
            frame[name] = 0.0 if name == "volume" else np.nan
        else:
            frame[name] = pd.to_numeric(raw[column].str.strip(), errors="coerce")
    if "complete" in raw.columns:
        frame["complete"] = raw["complete"].str.strip().str.lower().isin(["true", "1", "yes"])
    return frame, line_numbers


def _read_headerless(text: str, fmt: str, tz_offset_hours: float) -> tuple[pd.DataFrame, np.ndarray]:
    rows, line_numbers = [], []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        rows.append(line.strip())
        line_numbers.append(number)
    if fmt == "histdata":
        parts = [row.split(";") for row in rows]
        stamps = [p[0] if len(p) == 6 else "" for p in parts]
        ts = pd.to_datetime(pd.Series(stamps), format="%Y%m%d %H%M%S", errors="coerce")
        offset_hours = -HISTDATA_UTC_OFFSET_HOURS
    else:
        parts = [row.split(",") for row in rows]
        stamps = [f"{p[0]} {p[1]}" if len(p) == 7 else "" for p in parts]
        stamps = pd.Series(stamps)
        ts = pd.to_datetime(stamps, format="%Y.%m.%d %H:%M", errors="coerce")
        ts = ts.fillna(pd.to_datetime(stamps, format="%Y.%m.%d %H:%M:%S", errors="coerce"))
        offset_hours = -tz_offset_hours
        parts = [[p[0] + " " + p[1]] + p[2:] if len(p) == 7 else p for p in parts]
    values = [p[1:6] if len(p) == 6 else [""] * 5 for p in parts]
    numbers = pd.DataFrame(values, columns=["open", "high", "low", "close", "volume"]).apply(
        lambda col: pd.to_numeric(col.str.strip(), errors="coerce")
    )
    frame = pd.concat([pd.DataFrame({"ts": ts + pd.Timedelta(hours=offset_hours)}), numbers], axis=1)
    frame["ts"] = frame["ts"].dt.tz_localize("UTC")
    return frame, np.asarray(line_numbers, dtype=np.int64)


def _validate(frame: pd.DataFrame) -> np.ndarray:
    """The first reason each row is bad, or "" for a good row."""
    n = len(frame)
    reasons = np.full(n, "", dtype=object)

    def mark(mask: np.ndarray, reason: str) -> None:
        hit = mask & (reasons == "")
        reasons[hit] = reason

    prices = frame[["open", "high", "low", "close"]].to_numpy(np.float64)
    mark(frame["ts"].isna().to_numpy(), "unparseable timestamp or wrong number of fields")
    mark(np.isnan(prices).any(axis=1) | frame["volume"].isna().to_numpy(), "missing or non-numeric value (NaN)")
    mark((prices <= 0).any(axis=1), "non-positive price")
    high, low = prices[:, 1], prices[:, 2]
    mark(high < low, "high < low")
    mark((prices[:, [0, 3]] > high[:, None]).any(axis=1) | (prices[:, [0, 3]] < low[:, None]).any(axis=1),
         "open or close outside [low, high]")
    mark((frame["volume"].to_numpy() < 0), "negative volume")
    if "complete" in frame:
        mark(~frame["complete"].to_numpy(bool), "incomplete candle (complete=false)")

    # Time order among the rows whose timestamp parsed: each must be later
    # than the latest before it.
    ts = frame["ts"]
    valid = ts.notna().to_numpy()
    ts_ns = _ns(ts)
    running_max = np.maximum.accumulate(ts_ns)
    previous_max = np.concatenate([[np.iinfo(np.int64).min], running_max[:-1]])
    mark(valid & (ts_ns == previous_max), "duplicate timestamp")
    mark(valid & (ts_ns < previous_max), "timestamp out of order")
    return reasons


def _ns(ts: pd.Series) -> np.ndarray:
    out = np.full(len(ts), np.iinfo(np.int64).min, dtype=np.int64)
    valid = ts.notna().to_numpy()
    out[valid] = ts[valid].dt.tz_convert("UTC").dt.tz_localize(None).astype("datetime64[ns]").to_numpy().astype(np.int64)
    return out
