"""Kept for existing imports: the candle importers live in shared.data.importers."""

from shared.data.importers import (
    FORMATS,
    BadRow,
    BadRowsError,
    CsvFormatError,
    ImportReport,
    RefusedImportError,
    read_bars,
    read_path,
)

__all__ = ["FORMATS", "BadRow", "BadRowsError", "CsvFormatError", "ImportReport", "RefusedImportError", "read_bars",
           "read_path"]
