"""What an import found: the shape it saw, bad rows with their lines, notes and health warnings."""

from __future__ import annotations

from dataclasses import dataclass, field

from shared.core.errors import StopError


class CsvFormatError(StopError, ValueError):
    """The file is not a shape we read, a forced --format does not fit, or its time zone cannot be settled."""


class RefusedImportError(StopError, ValueError):
    """The file parsed but cannot be stored as asked (wrong granularity, instrument or price level)."""


class BadRowsError(StopError, ValueError):
    """Bad rows were found and the import was not told to skip them."""

    def __init__(self, report: "ImportReport") -> None:
        self.report = report
        super().__init__(report.describe(limit=20) + "\nnothing was imported; fix the rows or pass --skip-bad")


@dataclass(frozen=True)
class BadRow:
    line: int        # 1-based line of a text file, or 1-based data row of a Parquet/Feather/JSON file
    reason: str
    text: str


@dataclass
class ImportReport:
    path: str
    format: str                    # the shape seen: oanda, pandas, yfinance, dukascopy, mt5, freqtrade, ...
    container: str = "csv"         # csv, csv.gz, parquet, feather, json, ...
    instrument: str | None = None
    granularity: str | None = None
    side: str | None = None        # bid, ask or mid where the columns or the file name say
    rows: int = 0
    good: int = 0
    row_word: str = "line"         # "row" for files without lines (Parquet, Feather, JSON)
    bad_rows: list[BadRow] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)     # how the file was read (zone, order, columns used)
    warnings: list[str] = field(default_factory=list)  # health: gaps, jumps, zero-volume runs

    def describe(self, limit: int = 20) -> str:
        what = f"format {self.format}" + (f" ({self.container})" if self.container != "csv" else "")
        if self.granularity:
            what += f", {self.granularity}"
        if self.side:
            what += f", {self.side} prices"
        lines = [f"{self.path}: {what}, {self.rows} rows, {self.good} good, {len(self.bad_rows)} bad"]
        lines += [f"  note: {note}" for note in self.notes]
        lines += [f"  warning: {warning}" for warning in self.warnings]
        for bad in self.bad_rows[:limit]:
            lines.append(f"  {self.row_word} {bad.line}: {bad.reason}: {bad.text!r}")
        if len(self.bad_rows) > limit:
            lines.append(f"  ... and {len(self.bad_rows) - limit} more")
        return "\n".join(lines)
