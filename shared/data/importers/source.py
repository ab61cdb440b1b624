"""A file's bytes to a table of cells, whatever holds them: text (`,`, `;` or tab separated, with or
without a header), gzip-compressed text (recognised by its magic bytes, not its name), Parquet,
Feather (Arrow IPC) and freqtrade's JSON (a list of [ms, open, high, low, close, volume] rows)."""

from __future__ import annotations

import csv
import gzip
import io
import json
import re
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from shared.data.importers.report import CsvFormatError

GZIP_MAGIC = b"\x1f\x8b"
PARQUET_MAGIC = b"PAR1"
FEATHER_MAGIC = b"ARROW1"  # Feather v2 is the Arrow IPC file format

# Headerless shapes, recognised from the first line: the pattern, the separator, the column names.
HEADERLESS = {
    "histdata": (re.compile(r"^\d{8} \d{6};"), ";", ["timestamp", "open", "high", "low", "close", "volume"]),
    "mt4": (re.compile(r"^\d{4}\.\d{2}\.\d{2},\d{2}:\d{2}(:\d{2})?,"), ",",
            ["date", "time", "open", "high", "low", "close", "volume"]),
}
FREQTRADE_JSON_COLUMNS = ["date", "open", "high", "low", "close", "volume"]


@dataclass
class Table:
    name: str                   # the file's name: side, freqtrade pair and timeframe
    header: list[str]           # column names as written; "" for pandas' unnamed index
    cells: pd.DataFrame         # columns 0..len(header)-1: strings from text, typed from Parquet/Feather/JSON
    line_numbers: np.ndarray    # [N] int64: the line (text) or data row (others) of each row, 1-based
    malformed: np.ndarray       # [N] bool: a text row with a different number of fields than the header
    container: str              # csv, csv.gz, parquet, feather, json, ...
    row_word: str = "line"
    headerless: str | None = None      # histdata or mt4 when the first line says so
    header_rows: list[list[str]] = field(default_factory=list)  # yfinance writes three
    delimiter: str = ","
    lines: list[str] | None = None     # a text file's lines, to quote bad rows
    first: str = ""                    # the first line (or the column names), to quote in errors

    def row_text(self, i: int) -> str:
        if self.lines is not None:
            return self.lines[int(self.line_numbers[i]) - 1][:120]
        return ",".join(str(v) for v in self.cells.iloc[i].tolist())[:120]


def read_table(path: Path) -> Table:
    raw = path.read_bytes()
    suffix = ""
    if raw[:2] == GZIP_MAGIC:
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as error:
            raise CsvFormatError(f"{path} starts like gzip but does not decompress ({error})") from None
        suffix = ".gz"
    if raw[:4] == PARQUET_MAGIC:
        return _from_frame(path, pd.read_parquet(io.BytesIO(raw)), "parquet" + suffix)
    if raw[:6] == FEATHER_MAGIC:
        return _from_frame(path, pd.read_feather(io.BytesIO(raw)), "feather" + suffix)
    text = _decode(path, raw)
    if text.lstrip().startswith("["):
        return _from_json(path, text, "json" + suffix)
    return _from_text(path, text, "csv" + suffix)


def _decode(path: Path, raw: bytes) -> str:
    if b"\x00" in raw[:65536]:
        raise CsvFormatError(f"{path} is a binary file, not a candle CSV (nor Parquet, Feather or gzip)")
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise CsvFormatError(f"{path} is not UTF-8 text (byte {error.start}): not a candle CSV") from None


def _from_frame(path: Path, frame: pd.DataFrame, container: str) -> Table:
    if not isinstance(frame.index, pd.RangeIndex):  # pandas' to_parquet keeps a DatetimeIndex as the index
        frame = frame.reset_index()
    header = [str(c) for c in frame.columns]
    return Table(name=path.name, header=header, cells=frame.set_axis(range(len(header)), axis=1).reset_index(drop=True),
                 line_numbers=np.arange(1, len(frame) + 1, dtype=np.int64), malformed=np.zeros(len(frame), bool),
                 container=container, row_word="row", first=",".join(header))


def _from_json(path: Path, text: str, container: str) -> Table:
    try:
        rows = json.loads(text)
    except json.JSONDecodeError as error:
        raise CsvFormatError(f"{path} starts like JSON but does not parse ({error})") from None
    if not isinstance(rows, list) or not all(isinstance(r, list) and len(r) >= 6 for r in rows):
        raise CsvFormatError(f"{path} is JSON but not freqtrade's list of [ms, open, high, low, close, volume] rows")
    frame = pd.DataFrame([r[:6] for r in rows], columns=FREQTRADE_JSON_COLUMNS)
    for column in FREQTRADE_JSON_COLUMNS:
        frame[column] = pd.to_numeric(frame[column], errors="coerce")
    return _from_frame(path, frame, container)


def _from_text(path: Path, text: str, container: str) -> Table:
    lines = text.splitlines()
    numbered = [(number, line) for number, line in enumerate(lines, start=1) if line.strip()]
    if not numbered:
        raise CsvFormatError(f"{path} is empty")
    first = numbered[0][1].strip()
    headerless = next((shape for shape, (pattern, _, _) in HEADERLESS.items() if pattern.match(first)), None)
    if headerless:
        _, delimiter, header = HEADERLESS[headerless]
        header_rows: list[list[str]] = []
    else:
        delimiter = _delimiter(first)
        header_rows = list(csv.reader([line for _, line in numbered[:3]], delimiter=delimiter))[:1]
        # yfinance >= 0.2.51: "Price,Close,High,...", "Ticker,EURUSD=X,...", "Date,,,," then the rows
        if len(numbered) > 2 and numbered[0][1].lower().startswith("price") and numbered[1][1].lower().startswith("ticker"):
            header_rows = list(csv.reader([line for _, line in numbered[:3]], delimiter=delimiter))
        header = [cell.strip().lstrip("\ufeff") for cell in header_rows[0]]
        if len(header_rows) == 3:
            header[0] = header_rows[2][0].strip() or "Date"
    body = numbered[len(header_rows):]
    cells, malformed = _split([line.strip() for _, line in body], delimiter, len(header))
    return Table(name=path.name, header=header, cells=cells, line_numbers=np.array([n for n, _ in body], dtype=np.int64),
                 malformed=malformed, container=container, headerless=headerless, header_rows=header_rows,
                 delimiter=delimiter, lines=lines, first=first)


def _delimiter(first_line: str) -> str:
    if "\t" in first_line:
        return "\t"
    return ";" if first_line.count(";") > first_line.count(",") else ","


def _split(lines: list[str], delimiter: str, width: int) -> tuple[pd.DataFrame, np.ndarray]:
    """Each line's fields as strings (pandas' C parser: fast on millions of lines), and which lines
    have a different number of fields than the header (their cells are left empty)."""
    rows = pd.Series(lines, dtype="str")
    if any('"' in line for line in lines):  # quoted fields may hold the separator: count them exactly
        counts = np.array([len(fields) for fields in csv.reader(lines, delimiter=delimiter)], dtype=np.int64)
    else:
        counts = rows.str.count(re.escape(delimiter)).to_numpy(np.int64) + 1
    # a trailing separator (some exporters end every row with one) is not a field
    trailing = (counts == width + 1) & rows.str.endswith(delimiter).to_numpy(bool)
    malformed = (counts != width) & ~trailing
    if not lines:
        return pd.DataFrame({i: pd.Series(dtype="str") for i in range(width)}), malformed
    fixed = list(lines)
    for i in np.flatnonzero(trailing):
        fixed[i] = fixed[i][:-1]
    for i in np.flatnonzero(malformed):
        fixed[i] = delimiter * (width - 1)
    cells = pd.read_csv(io.StringIO("\n".join(fixed)), sep=delimiter, header=None, names=range(width), dtype=str,
                        keep_default_na=False, na_filter=False, skip_blank_lines=False, engine="c")
    return cells, malformed
