"""The bar store: one DuckDB file under data/ holding bars of every instrument.

Table `bars(instrument, granularity, ts, open, high, low, close, volume)`,
unique on (instrument, granularity, ts); `ts` is the bar's open time as a
naive TIMESTAMP in UTC. Upserts are idempotent: writing the same bars twice
changes nothing, writing a corrected bar replaces it.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd

from shared.core.bar_sizes import check_granularity
from shared.core.calendar import calendar_named, closure_steps
from shared.core.errors import StopError
from shared.core.instruments import get_instrument
from shared.data.bars import NS_PER_MINUTE, Bars

DEFAULT_DB_NAME = "market.duckdb"


def default_db_path() -> Path:
    """`$MICRO_DATA_DIR/market.duckdb`, `./data/market.duckdb` by default."""
    return Path(os.environ.get("MICRO_DATA_DIR", "data")) / DEFAULT_DB_NAME


BARS_SCHEMA = """
CREATE TABLE IF NOT EXISTS bars (
    instrument  VARCHAR   NOT NULL,
    granularity VARCHAR   NOT NULL,
    ts          TIMESTAMP NOT NULL,  -- bar open time, UTC
    open        DOUBLE    NOT NULL,
    high        DOUBLE    NOT NULL,
    low         DOUBLE    NOT NULL,
    close       DOUBLE    NOT NULL,
    volume      DOUBLE    NOT NULL,
    PRIMARY KEY (instrument, granularity, ts)
)
"""


class StoreBusyError(StopError, RuntimeError):
    """The store file is locked by another process (DuckDB allows one writer, or several readers)."""


@dataclass(frozen=True)
class UpsertResult:
    inserted: int
    updated: int


@dataclass(frozen=True)
class Gap:
    """A stretch with no bars between two consecutive stored bars."""

    after: pd.Timestamp         # last bar before the gap
    before: pd.Timestamp        # first bar after it
    missing_bars: int           # bars the granularity would have put in between
    weekend: bool               # the market was closed for the whole gap


class BarStore:
    """Bars in DuckDB. Open read-only where a service only reads (DuckDB lets
    several read-only processes share a file, but not with a writer)."""

    def __init__(self, path: str | Path, *, read_only: bool = False) -> None:
        self.path = Path(path)
        if read_only and not self.path.exists():
            raise FileNotFoundError(f"bar store {self.path} does not exist; create it with `micro data`")
        if not read_only:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self.con = duckdb.connect(str(self.path), read_only=read_only)
        except duckdb.IOException as error:
            if "lock" not in str(error).lower():
                raise
            pid = re.search(r"PID (\d+)", str(error))
            held_by = f" (pid {pid.group(1)})" if pid else ""
            raise StoreBusyError(f"the store {self.path} is open in another process{held_by} — stop it or use another --db"
                                 ) from None
        if not read_only:
            self.con.execute(BARS_SCHEMA)

    def close(self) -> None:
        self.con.close()

    def __enter__(self) -> "BarStore":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def upsert(self, instrument: str, granularity: str, bars: Bars) -> UpsertResult:
        """Insert new bars and replace stored ones with the same key, in one transaction."""
        return self.upsert_many([(instrument, granularity, bars)])[0]

    def upsert_many(self, batches: Sequence[tuple[str, str, Bars]]) -> list[UpsertResult]:
        """Upsert (instrument, granularity, bars) batches in ONE transaction: all are written or none."""
        frames = []
        for instrument, granularity, bars in batches:
            check_granularity(granularity)
            frame = bars.to_frame()
            if frame["ts"].duplicated().any():
                raise ValueError("bars to upsert contain duplicate timestamps")
            frame.insert(0, "granularity", granularity)
            frame.insert(0, "instrument", instrument)
            frames.append(frame)
        results = []
        self.con.execute("BEGIN TRANSACTION")
        try:
            for frame in frames:
                results.append(self._upsert_frame(frame))
            self.con.execute("COMMIT")
        except Exception:
            self.con.execute("ROLLBACK")
            raise
        return results

    def _upsert_frame(self, frame: pd.DataFrame) -> UpsertResult:
        if len(frame) == 0:
            return UpsertResult(0, 0)
        self.con.register("incoming_bars", frame)
        try:
            existing = self.con.execute(
                """SELECT count(*) FROM bars b JOIN incoming_bars i
                   ON b.instrument = i.instrument AND b.granularity = i.granularity AND b.ts = i.ts"""
            ).fetchall()[0][0]
            self.con.execute(
                """INSERT INTO bars SELECT instrument, granularity, ts, open, high, low, close, volume
                   FROM incoming_bars
                   ON CONFLICT (instrument, granularity, ts) DO UPDATE SET
                       open = excluded.open, high = excluded.high, low = excluded.low,
                       close = excluded.close, volume = excluded.volume"""
            )
        finally:
            self.con.unregister("incoming_bars")
        return UpsertResult(inserted=len(frame) - existing, updated=existing)

    def load(
        self,
        instrument: str,
        granularity: str,
        start: pd.Timestamp | str | None = None,
        end: pd.Timestamp | str | None = None,
    ) -> Bars:
        """Bars with start <= ts < end (either bound optional), ordered by time."""
        query = "SELECT ts, open, high, low, close, volume FROM bars WHERE instrument = ? AND granularity = ?"
        params: list[object] = [instrument, granularity]
        if start is not None:
            query += " AND ts >= ?"
            params.append(_naive_utc(start))
        if end is not None:
            query += " AND ts < ?"
            params.append(_naive_utc(end))
        frame = self.con.execute(query + " ORDER BY ts", params).df()
        return Bars.from_frame(frame)

    def last_ts(self, instrument: str, granularity: str) -> pd.Timestamp | None:
        value = self.con.execute(
            "SELECT max(ts) FROM bars WHERE instrument = ? AND granularity = ?", [instrument, granularity]
        ).fetchall()[0][0]
        return None if value is None else pd.Timestamp(value)

    def summary(self) -> pd.DataFrame:
        return self.con.execute(
            """SELECT instrument, granularity, count(*) AS bars, min(ts) AS first, max(ts) AS last
               FROM bars GROUP BY instrument, granularity ORDER BY instrument, granularity"""
        ).df()

    def gaps(self, instrument: str, granularity: str, *, min_missing_bars: int = 1) -> list[Gap]:
        """Every gap of at least `min_missing_bars` missing bars, weekend closures flagged."""
        step = check_granularity(granularity)
        bars = self.load(instrument, granularity)
        if len(bars) < 2:
            return []
        minutes = bars.ts // NS_PER_MINUTE
        missing = np.diff(minutes) // step - 1
        found = np.flatnonzero(missing >= min_missing_bars)
        # the market's own closure (the FX weekend on New York's clock), with an hour's slack for a
        # thin Friday close or Sunday open
        closure = closure_steps(calendar_named(get_instrument(instrument).calendar), bars.ts, step)
        gaps = []
        for i in found:
            weekend = closure[i]
            gaps.append(
                Gap(
                    after=pd.Timestamp(bars.ts[i]),
                    before=pd.Timestamp(bars.ts[i + 1]),
                    missing_bars=int(missing[i]),
                    weekend=bool(weekend),
                )
            )
        return gaps


def _naive_utc(value: pd.Timestamp | str) -> pd.Timestamp:
    ts = pd.Timestamp(value)
    return ts.tz_convert("UTC").tz_localize(None) if ts.tzinfo is not None else ts


def write_expected_drift(store: "BarStore", instrument: str, granularity: str, ts_ns: np.ndarray,
                         drift_pips: np.ndarray) -> None:
    """A synthetic market's expected drift per bar (what its oracle baseline knows), replacing
    the instrument's. Real data has none, so nothing else writes this table."""
    store.con.execute("""CREATE TABLE IF NOT EXISTS synthetic_drift (
        instrument VARCHAR, granularity VARCHAR, ts TIMESTAMP, expected_drift_pips DOUBLE)""")
    frame = pd.DataFrame({"instrument": instrument, "granularity": granularity,
                          "ts": pd.to_datetime(np.asarray(ts_ns, np.int64)), "expected_drift_pips": drift_pips})
    store.con.execute("DELETE FROM synthetic_drift WHERE instrument = ? AND granularity = ?", [instrument, granularity])
    store.con.register("drift_rows", frame)
    store.con.execute("INSERT INTO synthetic_drift SELECT * FROM drift_rows")
    store.con.unregister("drift_rows")
