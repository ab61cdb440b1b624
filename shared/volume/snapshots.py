"""Read-only copies of a service's DuckDB tables, readable while the service writes.

DuckDB lets one process hold a database file for writing and no other process open
it meanwhile, not even read-only: `duckdb live/journal.duckdb` fails with a lock
error for as long as the live service runs. So each service also writes its tables
as Parquet beside the database (`export/<table>.parquet`, replaced atomically: a
reader sees the last whole copy, never half of one), and anyone can query those:

    duckdb -c "SELECT * FROM 'runtime/checkpoints/live/export/decisions.parquet' ORDER BY bar_ts DESC"

Live refreshes them every EVERY_SECONDS (its risk timer's), validation after every
candidate, training after every iteration.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import duckdb

EVERY_SECONDS = 60.0


class TableSnapshots:
    def __init__(self, directory: Path, tables: tuple[str, ...], every_seconds: float = 0.0) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.tables = tables
        self.every_seconds = every_seconds
        self.last = float("-inf")

    def write(self, con: duckdb.DuckDBPyConnection, now: float | None = None) -> bool:
        """Copy the tables now, or only when `every_seconds` passed since the last copy (`now`
        given: the monotonic clock's seconds). True when written. Uses the caller's connection,
        from the thread that owns it."""
        if now is not None and now - self.last < self.every_seconds:
            return False
        for table in self.tables:
            target = self.directory / f"{table}.parquet"
            tmp = target.with_name(f".{table}.parquet.tmp")
            quoted = str(tmp).replace("'", "''")
            con.execute(f"COPY (SELECT * FROM {table}) TO '{quoted}' (FORMAT parquet)")
            os.replace(tmp, target)
        self.last = time.monotonic() if now is None else now
        return True
