"""The trade journal (DuckDB): every decision, written before acting.

A decision row is inserted (status `decided`, with its client order id)
and committed before the order goes to the broker; the broker's answer then
updates it. After a kill -9, rows still `decided` are settled against the
broker by client id (the trader's `settle_unfinished`): the order is found and
recorded, or it never left and is marked `not_sent`. Rows `UNKNOWN` (sent, no
definite answer) are settled the same way; a lookup that fails leaves them as
they are, so the trader keeps standing aside. One row per bar and model, so a
restart can never decide (or order) a bar twice.

The position is the journal's own record: its fills (the units the broker
booked, which a partial fill makes fewer than asked) and, where the broker
held something else (a hand close, a margin closeout), an `ADOPTED` row with
the difference. Replayed in order through the one accounting they give the
broker's position and entry, so a restart agrees with the broker.

Every row names its instrument, and each trader reads through its own view
(`views`, `scope`), so its position, its unfinished orders and the last bar it
decided are its own, whichever instruments the service trades now or traded
before with the same journal. Rows from a one-instrument run before rows had
instruments name none: a one-instrument start claims them; several
instruments refuse to start on them (`JournalOwnershipError`).
"""

from __future__ import annotations

import json
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import duckdb
import numpy as np
import pandas as pd

from shared.core.errors import StopError
from shared.data.bars import Bars
from shared.live.brokers import OrderResult

SCHEMA = [
    """CREATE TABLE IF NOT EXISTS decisions (
        client_id VARCHAR PRIMARY KEY,      -- f(model version, bar time): also the broker's client order id
        bar_ts TIMESTAMP NOT NULL,
        model_version VARCHAR NOT NULL,
        feature_hash VARCHAR,
        visit_counts VARCHAR,               -- JSON list per action
        root_value DOUBLE,
        action VARCHAR NOT NULL,
        position_before INTEGER NOT NULL,
        order_units INTEGER NOT NULL,
        status VARCHAR NOT NULL,            -- decided, no_order, skipped, FILLED, CANCELLED, REJECTED, UNKNOWN,
                                            -- not_sent, not_filled, ADOPTED (the broker's position taken),
                                            -- known_to_broker (its id was at the broker before this send)
        reason VARCHAR,
        broker_order_id VARCHAR,
        fill_price DOUBLE,
        realized_pips DOUBLE,
        decided_at TIMESTAMP NOT NULL,
        updated_at TIMESTAMP NOT NULL)""",
    # what the broker filled (a partial fill is fewer than order_units); journals from before have none
    "ALTER TABLE decisions ADD COLUMN IF NOT EXISTS filled_units INTEGER",
    # several instruments in one journal; rows of one-instrument runs from before have none (NULL) until
    # a one-instrument start claims them (Journal.views)
    "ALTER TABLE decisions ADD COLUMN IF NOT EXISTS instrument VARCHAR",
    # realised P&L in the account currency, converted at the fill (NULL where no rate was known)
    "ALTER TABLE decisions ADD COLUMN IF NOT EXISTS realized_account DOUBLE",
    """CREATE TABLE IF NOT EXISTS events (
        recorded_at TIMESTAMP NOT NULL, kind VARCHAR NOT NULL, detail VARCHAR)""",
    "ALTER TABLE events ADD COLUMN IF NOT EXISTS instrument VARCHAR",
    # why each searched decision was taken (shared.live.provenance): written with its decision row,
    # before any order leaves; pruned after LIVE_DECISION_RETENTION_DAYS, unlike the decisions
    """CREATE TABLE IF NOT EXISTS decision_inputs (
        client_id VARCHAR NOT NULL,         -- the decision's (decisions.client_id, unique there; written with
                                            -- it, in its transaction: no index of its own, which costs a
                                            -- few ms an insert)
        instrument VARCHAR,
        bar_ts TIMESTAMP NOT NULL,
        checkpoint_sha256 VARCHAR NOT NULL,
        episode BIGINT NOT NULL,
        feature_spec VARCHAR NOT NULL,
        input_hash VARCHAR NOT NULL,        -- sha256 of the temporal window and static features, as searched
        buffer_first_ts TIMESTAMP NOT NULL, -- the feature buffer: these bars of `bars`, up to bar_ts
        buffer_bars INTEGER NOT NULL,
        window_bars INTEGER NOT NULL,
        static_features VARCHAR NOT NULL,   -- JSON list
        search VARCHAR NOT NULL,            -- JSON: the SearchConfig, seed and add_noise
        prior VARCHAR NOT NULL,             -- JSON list per action
        q_values VARCHAR NOT NULL,          -- JSON list per action, null where not visited
        network_value DOUBLE,
        chosen_action INTEGER NOT NULL,
        decided_at TIMESTAMP NOT NULL)""",
    # the bars live decided on (and its history at start): what rebuilds a decision's input; each bar
    # once (Journal.record_bars keeps only bars newer than the newest kept; no index, for the same reason)
    """CREATE TABLE IF NOT EXISTS bars (
        instrument VARCHAR NOT NULL, ts TIMESTAMP NOT NULL, open DOUBLE, high DOUBLE, low DOUBLE, close DOUBLE,
        volume DOUBLE)""",
]
INPUT_COLUMNS = ("client_id, instrument, bar_ts, checkpoint_sha256, episode, feature_spec, input_hash, buffer_first_ts, "
                 "buffer_bars, window_bars, static_features, search, prior, q_values, network_value, chosen_action, "
                 "decided_at")
COLUMNS = ("client_id, bar_ts, model_version, feature_hash, visit_counts, root_value, action, position_before, "
           "order_units, status, reason, decided_at, updated_at, instrument")


@dataclass(frozen=True)
class DecisionRow:
    client_id: str
    bar_ts: pd.Timestamp
    model_version: str
    feature_hash: str | None
    visit_counts: list[int] | None
    root_value: float | None
    action: str
    position_before: int
    order_units: int
    status: str
    reason: str | None = None


class JournalOwnershipError(StopError, RuntimeError):
    """A journal whose rows cannot be told apart by instrument for the instruments asked."""


@dataclass(frozen=True)
class DecisionInputs:
    """What the search saw and said at one root (shared.live.provenance reads it back)."""
    instrument: str
    checkpoint_sha256: str
    episode: int
    feature_spec: str
    input_hash: str
    buffer_first_ts: pd.Timestamp
    buffer_bars: int
    window_bars: int
    static_features: list[float]
    search: dict
    prior: list[float]
    q_values: list[float | None]
    network_value: float
    chosen_action: int


# table -> its columns, in the order a transaction writes them
_TABLES = {"decisions": COLUMNS, "decision_inputs": INPUT_COLUMNS,
           "bars": "instrument, ts, open, high, low, close, volume"}


class _Pending:
    """Rows of one bar time not yet written, by table (None: write at once), and the newest bar
    kept per instrument: shared by a journal and its views."""
    rows: dict[str, list[list]] | None = None

    def __init__(self) -> None:
        self.newest_bar_ns: dict[str, int] = {}


class Journal:
    def __init__(self, path: Path) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.con = duckdb.connect(str(path))
        for ddl in SCHEMA:
            self.con.execute(ddl)
        self.instrument: str | None = None  # what this view writes and reads; None: everything (one instrument)
        self._where, self._params = "TRUE", []
        self._pending = _Pending()

    @contextmanager
    def one_write(self) -> Iterator[None]:
        """Rows without an order (skipped, no_order), their inputs and bars recorded inside are
        written together, in one transaction, just before the next row whose order is about to
        leave, or at the end. DuckDB costs about 1.5 ms a commit, so a desk's bar time commits
        once, not once per instrument and table. A row with an order is never held back (the
        journal hears before the broker); a process killed inside loses at most rows of bars
        that sent nothing, which are decided again after the restart (and their bars, which the
        restart's history brings back). Inside another one_write: that one's."""
        if self._pending.rows is not None:
            yield
            return
        self._pending.rows = {}
        try:
            yield
        finally:
            try:
                self._flush()
            finally:
                self._pending.rows = None  # never left open: the next one_write must write its own

    def _flush(self) -> None:
        tables = self._pending.rows
        if tables:
            self._pending.rows = {}
            self._write(tables)

    def _write(self, tables: dict[str, list[list]]) -> None:
        """Rows of several tables in one transaction: a decision with its inputs and bars, all or
        none, and one commit (most of what a DuckDB statement costs here is its commit)."""
        present = [table for table in _TABLES if tables.get(table)]
        try:
            if len(present) == 1:
                self._insert(present[0], tables[present[0]])
                return
            self.con.execute("BEGIN TRANSACTION")
            try:
                for table in present:
                    self._insert(table, tables[table])
                self.con.execute("COMMIT")
            except BaseException:
                try:
                    self.con.execute("ROLLBACK")
                except duckdb.TransactionException:  # a failed COMMIT has rolled back already
                    pass
                raise
        except BaseException:
            self._pending.newest_bar_ns.clear()  # bars not written: read the newest kept again
            raise

    def _insert(self, table: str, rows: list[list]) -> None:
        marks = ", ".join(["(" + ", ".join(["?"] * len(rows[0])) + ")"] * len(rows))
        self.con.execute(f"INSERT INTO {table} ({_TABLES[table]}) VALUES {marks}", [v for row in rows for v in row])

    def _add(self, table: str, rows: list[list]) -> None:
        if self._pending.rows is None:
            self._insert(table, rows)
        else:
            self._pending.rows.setdefault(table, []).extend(rows)

    def views(self, instruments: list[str] | tuple[str, ...]) -> dict[str, "Journal"]:
        """Each instrument's view, every row written from here on naming its instrument. Rows that
        name none were written by a one-instrument run before rows had instruments: one
        instrument claims them (they were its own); several refuse to start on them, since which
        instrument wrote them is unknown (booking another's fills would mis-state a position and
        its loss cap)."""
        unnamed = self.con.execute("SELECT count(*) FROM decisions WHERE instrument IS NULL").fetchall()[0][0]
        if unnamed and len(instruments) > 1:
            raise JournalOwnershipError(
                f"the journal holds {unnamed} decisions of a one-instrument run that do not name their instrument: "
                f"start once with that instrument alone (LIVE_INSTRUMENT=...) so that it claims them, or move "
                f"{self.path.name} away, before trading {', '.join(instruments)} together")
        if unnamed:
            for table in ("decisions", "events"):
                self.con.execute(f"UPDATE {table} SET instrument = ? WHERE instrument IS NULL", [instruments[0]])
        return {name: self.scope(name) for name in instruments}

    def scope(self, instrument: str) -> "Journal":
        """A view of one instrument's rows on the same connection (what `views` hands out)."""
        view = object.__new__(Journal)
        view.con, view.path, view.instrument, view._pending = self.con, self.path, instrument, self._pending
        view._where, view._params = "instrument = ?", [instrument]
        return view

    def _scalar(self, select: str, where: str = "TRUE", params: list | None = None):
        self._flush()  # a read sees every row recorded so far
        sql = f"SELECT {select} FROM decisions WHERE ({where}) AND {self._where}"
        return self.con.execute(sql, [*(params or []), *self._params]).fetchall()[0][0]

    def close(self) -> None:
        self.con.close()

    def has(self, client_id: str) -> bool:
        """Across the whole journal: client ids are unique in the account, whatever the instrument."""
        return bool(self.con.execute("SELECT count(*) FROM decisions WHERE client_id = ?", [client_id]).fetchall()[0][0])

    def record(self, row: DecisionRow, inputs: DecisionInputs | None = None) -> None:
        """The decision row, and with it what the search saw (`inputs`): both before any order leaves."""
        now = pd.Timestamp.now(tz="UTC").tz_localize(None)
        values = [row.client_id, row.bar_ts, row.model_version, row.feature_hash,
                  json.dumps(row.visit_counts) if row.visit_counts is not None else None, row.root_value, row.action,
                  row.position_before, row.order_units, row.status, row.reason, now, now, self.instrument]
        rows: dict[str, list[list]] = {"decisions": [values]}
        if inputs is not None:
            rows["decision_inputs"] = [[
                row.client_id, inputs.instrument, row.bar_ts, inputs.checkpoint_sha256, inputs.episode,
                inputs.feature_spec, inputs.input_hash, inputs.buffer_first_ts, inputs.buffer_bars, inputs.window_bars,
                json.dumps(inputs.static_features), json.dumps(inputs.search), json.dumps(inputs.prior),
                json.dumps(inputs.q_values), inputs.network_value, inputs.chosen_action, now]]
        if self._pending.rows is None:
            self._write(rows)
            return
        for table, table_rows in rows.items():
            self._add(table, table_rows)
        if row.status not in ("skipped", "no_order"):
            self._flush()  # an order may leave next (or an update follows): now

    def record_bars(self, instrument: str, bars: Bars) -> None:
        """Bars `instrument` decided on (or will: the history at start), those newer than the
        newest kept: a restart's history brings back what a kill lost, and nothing twice."""
        newest = self._pending.newest_bar_ns.get(instrument)
        if newest is None:
            kept = self.con.execute("SELECT epoch_ns(max(ts)) FROM bars WHERE instrument = ?", [instrument]).fetchall()
            newest = kept[0][0] if kept[0][0] is not None else -1
        new = np.flatnonzero(bars.ts > newest)
        if not len(new):
            return
        self._pending.newest_bar_ns[instrument] = int(bars.ts[new[-1]])
        self._add("bars", [[instrument, pd.Timestamp(int(bars.ts[i])), float(bars.open[i]), float(bars.high[i]),
                            float(bars.low[i]), float(bars.close[i]), float(bars.volume[i])] for i in new])

    def prune_inputs(self, before: pd.Timestamp, buffers_from: pd.Timestamp | None = None) -> tuple[int, int]:
        """Drops what explains decisions of bars before `before` (the decisions themselves stay: they
        are the money's record), and bars neither a kept input nor a trader's feature buffer (from
        `buffers_from`) needs. (inputs, bars) removed."""
        self._flush()
        inputs = self.con.execute("DELETE FROM decision_inputs WHERE bar_ts < ?", [before]).fetchall()[0][0]
        oldest = self.con.execute("SELECT min(buffer_first_ts) FROM decision_inputs").fetchall()[0][0]
        keep_from = min([before] + [pd.Timestamp(t) for t in (oldest, buffers_from) if t is not None])
        bars = self.con.execute("DELETE FROM bars WHERE ts < ?", [keep_from]).fetchall()[0][0]
        return int(inputs), int(bars)

    def update(self, result: OrderResult, realized_pips: float | None = None, status: str | None = None,
               reason: str | None = None, realized_account: float | None = None) -> None:
        self._flush()
        self.con.execute(
            """UPDATE decisions SET status = ?, reason = ?, broker_order_id = ?, fill_price = ?, realized_pips = ?,
                   filled_units = ?, realized_account = ?, updated_at = now()::TIMESTAMP WHERE client_id = ?""",
            [status or result.status.value, reason or result.reason, result.broker_order_id, result.fill_price,
             realized_pips, result.units_filled if (status or result.status.value) == "FILLED" else None,
             realized_account, result.client_id],
        )

    def record_adoption(self, row: DecisionRow, average_price: float | None) -> None:
        """The broker's position taken as ours: `row.order_units` is the difference it made."""
        self.record(row)
        self.con.execute("UPDATE decisions SET fill_price = ?, filled_units = ? WHERE client_id = ?",
                         [average_price, row.order_units, row.client_id])

    def mark(self, client_id: str, status: str, reason: str) -> None:
        self._flush()
        self.con.execute("UPDATE decisions SET status = ?, reason = ?, updated_at = now()::TIMESTAMP WHERE client_id = ?",
                         [status, reason, client_id])

    def event(self, kind: str, detail: dict) -> None:
        self.con.execute("INSERT INTO events (recorded_at, kind, detail, instrument) VALUES (now()::TIMESTAMP, ?, ?, ?)",
                         [kind, json.dumps(detail, default=str), self.instrument])

    def unfinished(self) -> list[tuple[str, int, str]]:
        self._flush()
        return [(r[0], int(r[1]), r[2]) for r in self.con.execute(
            f"SELECT client_id, order_units, status FROM decisions WHERE status IN ('decided', 'UNKNOWN') "
            f"AND {self._where} ORDER BY bar_ts", self._params).fetchall()]

    def unknown_orders(self) -> int:
        """Orders sent whose fate the broker has not yet told us."""
        return int(self._scalar("count(*)", "status = 'UNKNOWN'"))

    def last_bar_ts(self) -> pd.Timestamp | None:
        value = self._scalar("max(bar_ts)")
        return None if value is None else pd.Timestamp(value)

    def filled_units(self) -> int:
        """The net position the journal's fills and adoptions add up to."""
        return int(self._scalar("coalesce(sum(coalesce(filled_units, order_units)), 0)",
                                "status IN ('FILLED', 'ADOPTED')"))

    def position_history(self) -> list[tuple[str, int, float | None]]:
        """(status, units, price) of every fill and adoption, in the order they happened."""
        self._flush()
        return [(r[0], int(r[1]), r[2]) for r in self.con.execute(
            "SELECT status, coalesce(filled_units, order_units), fill_price FROM decisions "
            f"WHERE status IN ('FILLED', 'ADOPTED') AND {self._where} ORDER BY decided_at, rowid",
            self._params).fetchall()]

    def flatten_attempts(self) -> int:
        """Flatten orders ever recorded: each attempt's client id is new (mm-f-...)."""
        return int(self._scalar("count(*)", "client_id LIKE 'mm-f-%'"))

    def realized_since(self, since: pd.Timestamp) -> float:
        return float(self._scalar("coalesce(sum(realized_pips), 0)", "bar_ts >= ?", [since]))

    def realized_account_since(self, since: pd.Timestamp) -> float:
        """Realised P&L in the account currency since `since` (fills converted when they were booked)."""
        return float(self._scalar("coalesce(sum(realized_account), 0)", "bar_ts >= ?", [since]))

    def frame(self) -> pd.DataFrame:
        self._flush()
        return self.con.execute(f"SELECT * FROM decisions WHERE {self._where} ORDER BY bar_ts", self._params).df()
