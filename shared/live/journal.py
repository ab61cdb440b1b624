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
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pandas as pd

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
    """CREATE TABLE IF NOT EXISTS events (
        recorded_at TIMESTAMP NOT NULL, kind VARCHAR NOT NULL, detail VARCHAR)""",
]


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


class Journal:
    def __init__(self, path: Path) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        self.con = duckdb.connect(str(path))
        for ddl in SCHEMA:
            self.con.execute(ddl)

    def close(self) -> None:
        self.con.close()

    def has(self, client_id: str) -> bool:
        return bool(self.con.execute("SELECT count(*) FROM decisions WHERE client_id = ?", [client_id]).fetchall()[0][0])

    def record(self, row: DecisionRow) -> None:
        now = pd.Timestamp.now(tz="UTC").tz_localize(None)
        self.con.execute(
            "INSERT INTO decisions VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, NULL, NULL, NULL, ?, ?, NULL)",
            [row.client_id, row.bar_ts, row.model_version, row.feature_hash,
             json.dumps(row.visit_counts) if row.visit_counts is not None else None, row.root_value, row.action,
             row.position_before, row.order_units, row.status, row.reason, now, now],
        )

    def update(self, result: OrderResult, realized_pips: float | None = None, status: str | None = None,
               reason: str | None = None) -> None:
        self.con.execute(
            """UPDATE decisions SET status = ?, reason = ?, broker_order_id = ?, fill_price = ?, realized_pips = ?,
                   filled_units = ?, updated_at = now()::TIMESTAMP WHERE client_id = ?""",
            [status or result.status.value, reason or result.reason, result.broker_order_id, result.fill_price,
             realized_pips, result.units_filled if (status or result.status.value) == "FILLED" else None,
             result.client_id],
        )

    def record_adoption(self, row: DecisionRow, average_price: float | None) -> None:
        """The broker's position taken as ours: `row.order_units` is the difference it made."""
        self.record(row)
        self.con.execute("UPDATE decisions SET fill_price = ?, filled_units = ? WHERE client_id = ?",
                         [average_price, row.order_units, row.client_id])

    def mark(self, client_id: str, status: str, reason: str) -> None:
        self.con.execute("UPDATE decisions SET status = ?, reason = ?, updated_at = now()::TIMESTAMP WHERE client_id = ?",
                         [status, reason, client_id])

    def event(self, kind: str, detail: dict) -> None:
        self.con.execute("INSERT INTO events VALUES (now()::TIMESTAMP, ?, ?)", [kind, json.dumps(detail, default=str)])

    def unfinished(self) -> list[tuple[str, int, str]]:
        return [(r[0], int(r[1]), r[2]) for r in self.con.execute(
            "SELECT client_id, order_units, status FROM decisions WHERE status IN ('decided', 'UNKNOWN') "
            "ORDER BY bar_ts").fetchall()]

    def unknown_orders(self) -> int:
        """Orders sent whose fate the broker has not yet told us."""
        return int(self.con.execute("SELECT count(*) FROM decisions WHERE status = 'UNKNOWN'").fetchall()[0][0])

    def last_bar_ts(self) -> pd.Timestamp | None:
        value = self.con.execute("SELECT max(bar_ts) FROM decisions").fetchall()[0][0]
        return None if value is None else pd.Timestamp(value)

    def filled_units(self) -> int:
        """The net position the journal's fills and adoptions add up to."""
        value = self.con.execute("SELECT coalesce(sum(coalesce(filled_units, order_units)), 0) FROM decisions "
                                 "WHERE status IN ('FILLED', 'ADOPTED')").fetchall()[0][0]
        return int(value)

    def position_history(self) -> list[tuple[str, int, float | None]]:
        """(status, units, price) of every fill and adoption, in the order they happened."""
        return [(r[0], int(r[1]), r[2]) for r in self.con.execute(
            "SELECT status, coalesce(filled_units, order_units), fill_price FROM decisions "
            "WHERE status IN ('FILLED', 'ADOPTED') ORDER BY decided_at, rowid").fetchall()]

    def flatten_attempts(self) -> int:
        """Flatten orders ever recorded: each attempt's client id is new (mm-f-...)."""
        return int(self.con.execute("SELECT count(*) FROM decisions WHERE client_id LIKE 'mm-f-%'").fetchall()[0][0])

    def realized_since(self, since: pd.Timestamp) -> float:
        value = self.con.execute("SELECT coalesce(sum(realized_pips), 0) FROM decisions WHERE bar_ts >= ?",
                                 [since]).fetchall()[0][0]
        return float(value)

    def frame(self) -> pd.DataFrame:
        return self.con.execute("SELECT * FROM decisions ORDER BY bar_ts").df()
