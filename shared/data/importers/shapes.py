"""Which shape a table has, and its columns mapped to stamps, open/high/low/close/volume.

Every shape ends as the same thing: a stamp column (or a date and a time column joined), four
prices and a volume. The shape decides only the names, the stamp form where it is fixed (HistData),
the zone where the shape defines it (HistData: EST; Dukascopy's `Gmt time`: UTC) and the notes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta, timezone, tzinfo

import numpy as np
import pandas as pd

from shared.data.importers.names import freqtrade_name, side_from_name
from shared.data.importers.report import CsvFormatError
from shared.data.importers.source import Table

HISTDATA_ZONE = timezone(timedelta(hours=-5), "EST (UTC-5, no daylight saving)")  # HistData's documented clock

SHAPES: dict[str, str] = {
    "oanda": "OANDA's time,open,high,low,close[,volume][,complete] (or o/h/l/c, mid_o, bid.o, ...), RFC 3339 times",
    "pandas": "DataFrame.to_csv: the time index first (named or not), Open/High/Low/Close[/Volume] in any case",
    "yfinance": "the Price/Ticker/Date three-row header, or Date,Open,High,Low,Close,Adj Close,Volume",
    "dukascopy": "Gmt time,Open,High,Low,Close,Volume with DD.MM.YYYY HH:MM:SS.000 stamps",
    "mt5": "MetaTrader 5, tab-separated: <DATE> <TIME> <OPEN> <HIGH> <LOW> <CLOSE> <TICKVOL> <VOL> <SPREAD>",
    "freqtrade": "PAIR-TIMEFRAME.feather/.json/.parquet with date,open,high,low,close,volume",
    "histdata": "HistData ASCII, no header: YYYYMMDD HHMMSS;O;H;L;C;V",
    "mt4": "MetaTrader 4 history, no header: YYYY.MM.DD,HH:MM,O,H,L,C,V",
    "table": "any table with a time column (or date and time columns) and open/high/low/close[/volume]",
}

TIME_NAMES = ("time", "ts", "timestamp", "datetime", "date", "gmt time", "local time", "date_time", "open time",
              "open_time", "index", "unnamed: 0")
PRICE_ALIASES = {  # the first present wins: mid before bid before ask
    "open": ("open", "o", "mid_o", "mid.o", "bid_o", "bid.o", "ask_o", "ask.o"),
    "high": ("high", "h", "mid_h", "mid.h", "bid_h", "bid.h", "ask_h", "ask.h"),
    "low": ("low", "l", "mid_l", "mid.l", "bid_l", "bid.l", "ask_l", "ask.l"),
    "close": ("close", "c", "mid_c", "mid.c", "bid_c", "bid.c", "ask_c", "ask.c"),
}
# MetaTrader's <VOL> is the exchange volume, 0 for FX at most brokers: its tick volume comes first.
VOLUME_ALIASES = ("volume", "tickvol", "tick_volume", "tick volume", "vol", "v")
ADJ_CLOSE = ("adj close", "adj_close", "adjclose")


@dataclass
class Columns:
    stamp: int | None           # the one stamp column, or
    date_time: tuple[int, int] | None  # separate date and time columns
    prices: dict[str, int]      # open/high/low/close -> column
    volume: int | None
    complete: int | None


@dataclass
class Mapped:
    """A table as the importer's one form, before its stamps are read."""

    stamps: pd.Series                  # str, number or datetime
    prices: pd.DataFrame               # open, high, low, close, volume as float64 (NaN: unreadable)
    complete: np.ndarray | None        # OANDA's complete flag
    side: str | None
    stamp_format: str | None           # a shape's fixed stamp form, else None (recognised from the values)
    shape_zone: tzinfo | None          # the zone the shape defines its stamps in; a user zone is an error
    default_zone: tzinfo | None        # the zone its naive stamps are in unless the user says otherwise
    notes: list[str] = field(default_factory=list)


def key(name: str) -> str:
    return name.strip().lstrip("\ufeff").strip("<>").strip().lower()


def find_columns(table: Table) -> Columns:
    keys = [key(h) for h in table.header]
    found = {name: next((keys.index(a) for a in aliases if a in keys), None) for name, aliases in PRICE_ALIASES.items()}
    date_time = (keys.index("date"), keys.index("time")) if "date" in keys and "time" in keys else None
    stamp = None
    if date_time is None:
        if keys and keys[0] == "":  # pandas writes an unnamed index with an empty header cell
            stamp = 0
        else:
            stamp = next((i for i, k in enumerate(keys) if k in TIME_NAMES), None)
    missing = [name for name, index in found.items() if index is None]
    if missing or (stamp is None and date_time is None):
        lacking = ", ".join(missing + ([] if stamp is not None or date_time is not None else ["a time column"]))
        raise CsvFormatError(
            f"unknown CSV format in {table.name}: no {lacking}; columns found: {table.header} "
            f"(first line {table.first[:80]!r}).\n"
            "Shapes we read:\n" + "\n".join(f"  {name}: {what}" for name, what in SHAPES.items())
        )
    volume = next((keys.index(a) for a in VOLUME_ALIASES if a in keys), None)
    complete = keys.index("complete") if "complete" in keys else None
    return Columns(stamp, date_time, {k: v for k, v in found.items() if v is not None}, volume, complete)


def detect_shape(table: Table, columns: Columns) -> str:
    if table.headerless:
        return table.headerless
    keys = [key(h) for h in table.header]
    if len(table.header_rows) == 3 or any(k in ADJ_CLOSE for k in keys):
        return "yfinance"
    if keys[0] in ("gmt time", "local time"):
        return "dukascopy"
    if table.header[0].strip().startswith("<"):
        return "mt5"
    if freqtrade_name(table.name) and keys[:6] == ["date", "open", "high", "low", "close", "volume"]:
        return "freqtrade"
    short_or_prefixed = any(keys[i] not in ("open", "high", "low", "close") for i in columns.prices.values())
    if columns.stamp is not None and keys[columns.stamp] == "time" and (
        columns.complete is not None or short_or_prefixed or _first_stamp(table, columns.stamp)[10:11] == "T"
    ):
        return "oanda"
    if columns.stamp == 0:
        return "pandas"
    return "table"


def check_shape(table: Table, columns: Columns, forced: str) -> str:
    """The shape seen; a forced one must be it."""
    seen = detect_shape(table, columns)
    if forced not in ("auto", seen):
        raise CsvFormatError(
            f"--format {forced} does not fit {table.name}: it reads as {seen} ({SHAPES[seen]}); columns found: "
            f"{table.header}. Leave --format out to let the import detect it"
        )
    return seen


def map_columns(table: Table, columns: Columns, shape: str) -> Mapped:
    cells, keys, notes = table.cells, [key(h) for h in table.header], []
    prices = pd.DataFrame({name: _numbers(cells[index], table.delimiter) for name, index in columns.prices.items()})
    if table.delimiter != "," and any(_has_decimal_comma(cells[i]) for i in columns.prices.values()):
        notes.append(f"decimal commas read as points ({'tab' if table.delimiter == chr(9) else table.delimiter!r}-separated)")
    if columns.volume is None:
        prices["volume"] = 0.0
        notes.append("no volume column: volume stored as 0")
    else:
        prices["volume"] = _numbers(cells[columns.volume], table.delimiter)
    if any(k in ADJ_CLOSE for k in keys):
        notes.append("close is the Close column, not Adj Close (the traded price: an FX rate or a crypto pair has "
                     "no dividends; for a share, Adj Close rewrites past prices after each dividend and split)")
    if "spread" in keys:
        notes.append(f"the {table.header[keys.index('spread')]} column is not stored: the environment charges the "
                     "instrument's typical spread")
    if columns.date_time is not None:
        date, clock = (cells[i].astype(str).str.strip() for i in columns.date_time)
        stamps = (date + " " + clock).where((date != "") & (clock != ""), "")
    else:
        stamps = cells[columns.stamp]
    complete = None
    if columns.complete is not None:
        complete = cells[columns.complete].astype(str).str.strip().str.lower().isin(["true", "1", "yes"]).to_numpy()
    open_key = keys[columns.prices["open"]]
    side = next((s for s in ("mid", "bid", "ask") if open_key.startswith(s)), None) or side_from_name(table.name)
    return Mapped(
        stamps=stamps,
        prices=prices,
        complete=complete,
        side=side,
        stamp_format="%Y%m%d %H%M%S" if shape == "histdata" else None,
        shape_zone=timezone.utc if shape == "dukascopy" and keys[0] == "gmt time" else None,
        default_zone=HISTDATA_ZONE if shape == "histdata" else None,
        notes=notes,
    )


def _first_stamp(table: Table, column: int) -> str:
    values = table.cells[column]
    return str(values.iloc[0]).strip() if len(values) else ""


def _numbers(values: pd.Series, delimiter: str) -> pd.Series:
    if pd.api.types.is_numeric_dtype(values):
        return values.astype(np.float64)
    text = values.astype("str").str.strip()
    if delimiter != ",":  # a `;` or tab file from a comma-decimal locale: 1,1050 is 1.1050
        text = text.str.replace(",", ".", regex=False)
    try:
        return text.astype(np.float64)  # one vectorised cast when every value is a number
    except (ValueError, TypeError):
        return pd.to_numeric(text, errors="coerce").astype(np.float64)  # else each unreadable value is NaN: a bad row


def _has_decimal_comma(values: pd.Series) -> bool:
    return not pd.api.types.is_numeric_dtype(values) and bool(values.astype(str).str.contains(",", regex=False).any())
