"""Candle files to bars: the shape auto-detected and named, data health checked, nothing kept silently.

Shapes (shapes.SHAPES): OANDA candle CSVs, pandas `DataFrame.to_csv`, yfinance (both headers),
Dukascopy, MetaTrader 4 and 5 exports, HistData ASCII, freqtrade's data folder (Feather, JSON,
Parquet), and any table with a time column (or date and time columns) and open/high/low/close.
Each may be `,` `;` or tab separated (a `;` or tab file may use decimal commas), gzip-compressed
(recognised by its magic bytes), or Parquet with the same columns.

Conventions:
* every stamp is a bar's OPEN time (as OANDA, freqtrade and pandas stamp bars), stored in UTC;
* stamps with an offset, epochs and Dukascopy's `Gmt time` are UTC instants: a --tz for them is an
  error; naive stamps are in --tz (an IANA zone with its daylight-saving rules, or a fixed UTC+2),
  else --tz-offset-hours (fixed), else the shape's clock (HistData: EST), else UTC;
* files dated by day (2024-01-02) are stamped 00:00 UTC, or 00:00 in the zone given;
* how the hours of a DST switch are read: stamps.py.
* the granularity is the most common step between bars unless --granularity (any spelling:
  5m, 5min, M5) says it; a disagreement is an error stating both.

Health (health.py): bad rows (unreadable, NaN, a price <= 0 or implausible for the instrument,
high < low, open/close outside [low, high], an incomplete candle, a duplicate or out-of-order stamp,
a bar inside another's span: mixed granularities) fail the file with their lines unless skip_bad;
a price level implausible for the instrument refuses the file; a newest-first file is read
oldest-first with a note; gaps outside weekends, huge one-bar jumps and zero-volume runs are
warnings. Each file is all or nothing: the caller writes it in one transaction.
"""

from shared.data.importers.folder import Imported, read_path
from shared.data.importers.read import ImportedFile, read_bars
from shared.data.importers.report import BadRow, BadRowsError, CsvFormatError, ImportReport, RefusedImportError
from shared.data.importers.shapes import SHAPES

FORMATS = tuple(SHAPES)

__all__ = [
    "FORMATS",
    "SHAPES",
    "BadRow",
    "BadRowsError",
    "CsvFormatError",
    "ImportReport",
    "Imported",
    "ImportedFile",
    "RefusedImportError",
    "read_bars",
    "read_path",
]
