"""Why a live decision was taken, kept so that it can be shown and replayed.

Per searched decision the journal keeps (table `decision_inputs`, written with the
decision row, before any order leaves): the checkpoint's sha256 and episode, the
feature spec, the sha256 of the exact input (temporal window and static features),
which bars the feature buffer held, the search settings and seed, the root's prior,
visit counts, Q values and network value, the chosen action. The bars themselves are
in table `bars`, so the input can be rebuilt from them (`rebuild_input`). The whole
search tree goes to the volume as gzipped JSON (`TreeStore`): the last `keep`
decisions and every decision that sent an order.

Retention: inputs, bars and trees of order-sending decisions are dropped after
LIVE_DECISION_RETENTION_DAYS (30; the decisions table is never pruned: it is the
money's record); trees of decisions without an order after the newest LIVE_TREES_KEPT
(1,000). About 1 KB of inputs and bars per decision, 5-20 KB per tree: at one bar a
minute, about 45 MB of inputs a month per instrument and 10 MB of recent trees.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import re
from collections import deque
from datetime import datetime
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd

from shared.core.errors import StopError
from shared.core.feature_spec import (
    FEATURE_SPECS,
    INDICATORS_SPEC_VERSION,
    KNOWN_FEATURES,
    POSITION_FEATURES,
    TEMPORAL_FEATURES,
)
from shared.core.instruments import get_instrument
from shared.data.bars import Bars
from shared.features.indicators import indicator_features
from shared.features.micro import on_instrument_scale, temporal_features
from shared.model.dt_policy import PACKED_FIELDS

TREE_DEPTH = 64  # deeper than any tree of up to 1,000 simulations gets in practice: the whole tree
_SAFE_ID = re.compile(r"[A-Za-z0-9._:+-]{1,200}")  # a client id; never a path


def input_hash(temporal: np.ndarray, static: np.ndarray) -> str:
    """sha256 of the exact float32 input the networks got."""
    temporal, static = np.ascontiguousarray(temporal, np.float32), np.ascontiguousarray(static, np.float32)
    return hashlib.sha256(temporal.tobytes() + static.tobytes()).hexdigest()


def root_q_values(tree: dict, num_actions: int) -> list[float | None]:
    """Q of each root action: the mean backed-up value of its afterstate (None: never visited)."""
    q: list[float | None] = [None] * num_actions
    for edge in tree.get("children", []):
        child = edge["child"]
        if child["visits"] > 0:
            q[edge["action"]] = float(child["value"])
    return q


class TreeStore:
    """Search trees as gzipped JSON: `orders/` (every decision that sent an order, until the
    retention prunes it) and `recent/` (the newest `keep` of the others)."""

    def __init__(self, directory: Path, keep: int) -> None:
        self.orders = Path(directory) / "orders"
        self.recent = Path(directory) / "recent"
        self.orders.mkdir(parents=True, exist_ok=True)
        self.recent.mkdir(parents=True, exist_ok=True)
        self.keep = keep
        self._recent = deque(p for _, p in sorted((p.stat().st_mtime, p) for p in self.recent.glob("*.json.gz")))
        self._trim()

    def put(self, decision_id: str, tree_json: str, sent_order: bool) -> None:
        path = (self.orders if sent_order else self.recent) / f"{_checked(decision_id)}.json.gz"
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(gzip.compress(tree_json.encode(), compresslevel=1))
        os.replace(tmp, path)  # never a half-written tree; not fsynced: an explanation, not money
        if not sent_order:
            self._recent.append(path)
            self._trim()

    def get(self, decision_id: str) -> dict | None:
        if not _SAFE_ID.fullmatch(decision_id):
            return None
        for folder in (self.orders, self.recent):
            path = folder / f"{decision_id}.json.gz"
            try:
                return json.loads(gzip.decompress(path.read_bytes()))
            except FileNotFoundError:
                continue
        return None

    def has(self, decision_id: str) -> bool:
        return bool(_SAFE_ID.fullmatch(decision_id)) and any(
            (folder / f"{decision_id}.json.gz").exists() for folder in (self.orders, self.recent))

    def prune_before(self, cutoff_seconds: float) -> int:
        """Drops order trees written before `cutoff_seconds` (epoch); how many."""
        gone = 0
        for path in self.orders.glob("*.json.gz"):
            if path.stat().st_mtime < cutoff_seconds:
                path.unlink(missing_ok=True)
                gone += 1
        return gone

    def _trim(self) -> None:
        while len(self._recent) > self.keep:
            self._recent.popleft().unlink(missing_ok=True)


def _checked(decision_id: str) -> str:
    if not _SAFE_ID.fullmatch(decision_id):
        raise ValueError(f"not a decision id: {decision_id!r}")
    return decision_id


# --- reading back ---------------------------------------------------------------------------

def _json_or_none(text: str | None):
    return json.loads(text) if text is not None else None


def decision_record(con: duckdb.DuckDBPyConnection, decision_id: str) -> dict | None:
    """The decision row with its inputs (None where the decision was never made); inputs are None
    for a skipped bar or one pruned by the retention."""
    cur = con.execute("SELECT * FROM decisions WHERE client_id = ?", [decision_id])
    row = cur.fetchone()
    if row is None:
        return None
    record = dict(zip([d[0] for d in cur.description], row))
    cur = con.execute("SELECT * FROM decision_inputs WHERE client_id = ?", [decision_id])
    inputs = cur.fetchone()
    record["inputs"] = None
    if inputs is not None:
        found = dict(zip([d[0] for d in cur.description], inputs))
        for key in ("static_features", "search", "prior", "q_values"):
            found[key] = json.loads(found[key])
        record["inputs"] = found
    record["visit_counts"] = _json_or_none(record["visit_counts"])
    return record


def stored_bars(con: duckdb.DuckDBPyConnection, instrument: str, first: pd.Timestamp, last: pd.Timestamp) -> Bars:
    rows = con.execute("SELECT epoch_ns(ts), open, high, low, close, volume FROM bars WHERE instrument = ? "
                       "AND ts BETWEEN ? AND ? ORDER BY ts", [instrument, first, last]).fetchall()
    columns = list(zip(*rows)) if rows else [[]] * 6
    return Bars(np.asarray(columns[0], np.int64), *(np.asarray(c, np.float64) for c in columns[1:]))


def bars_payload(bars: Bars) -> dict:
    return {"ts": bars.ts.tolist(), "open": bars.open.tolist(), "high": bars.high.tolist(),
            "low": bars.low.tolist(), "close": bars.close.tolist(), "volume": bars.volume.tolist()}


def bars_from_payload(payload: dict) -> Bars:
    return Bars(np.asarray(payload["ts"], np.int64),
                *(np.asarray(payload[k], np.float64) for k in ("open", "high", "low", "close", "volume")))


class InputMismatch(StopError, ValueError):
    """The stored bars do not rebuild the input the search saw."""


def rebuild_input(record: dict, bars: Bars) -> tuple[np.ndarray, np.ndarray]:
    """(temporal [1, W, 9], static [1, 6]) float32 as the trader built them, from the feature
    buffer's bars; raises InputMismatch where the bars are not the buffer or the hash differs."""
    inputs = record["inputs"]
    if len(bars) != inputs["buffer_bars"]:
        raise InputMismatch(f"the journal holds {len(bars)} of the {inputs['buffer_bars']} bars the feature "
                            f"buffer held (pruned, or the bars table was changed)")
    instrument = get_instrument(inputs["instrument"])
    if inputs["feature_spec"] == INDICATORS_SPEC_VERSION:  # a forecaster's window (shared.live.deciders)
        window = indicator_features(bars, instrument.calendar)[-inputs["window_bars"]:][None]
    else:
        window = temporal_features(*on_instrument_scale(bars, instrument))[-inputs["window_bars"]:][None]
    temporal = np.ascontiguousarray(window, np.float32)
    static = np.asarray([inputs["static_features"]], np.float32)
    rebuilt = input_hash(temporal, static)
    if rebuilt != inputs["input_hash"]:
        raise InputMismatch(f"the rebuilt input hashes to {rebuilt[:16]}, the searched one to "
                            f"{inputs['input_hash'][:16]}")
    return temporal, static


def feature_names(inputs: dict) -> list[str]:
    return list(FEATURE_SPECS.get(inputs["feature_spec"], TEMPORAL_FEATURES))


def static_names(inputs: dict) -> list[str]:
    """The static input's names: the position features, a forecaster's known-future times (each of
    the D bars ahead), its cost and its units per log return, or a Strategist's episode so far (each
    of its K steps, the newest last: shared.live.deciders)."""
    if inputs["feature_spec"] != INDICATORS_SPEC_VERSION:
        return list(POSITION_FEATURES)
    if inputs["search"].get("family") == "dt":
        k = inputs["search"]["context_steps"]
        return [f"{name}_t-{k - 1 - step}" for name in PACKED_FIELDS for step in range(k)]
    steps = (len(inputs["static_features"]) - 2) // len(KNOWN_FEATURES)
    return ([f"{name}_t+{k}" for k in range(1, steps + 1) for name in KNOWN_FEATURES]
            + ["cost_log_return", "units_per_log_return"])


def decision_bars(con: duckdb.DuckDBPyConnection, record: dict) -> Bars:
    inputs = record["inputs"]
    return stored_bars(con, inputs["instrument"], pd.Timestamp(inputs["buffer_first_ts"]), pd.Timestamp(record["bar_ts"]))


def _iso(value) -> str | None:
    return None if value is None else pd.Timestamp(value).isoformat()


def decision_detail(con: duckdb.DuckDBPyConnection, trees: TreeStore | None, decision_id: str,
                    actions: list[str], outcomes: list[str], *, with_bars: bool = False) -> dict | None:
    """One decision as the API and its page show it (None: no such decision)."""
    record = decision_record(con, decision_id)
    if record is None:
        return None
    inputs = record["inputs"]
    tree = trees.get(decision_id) if trees is not None else None
    order = None
    if record["order_units"]:
        order = {"client_id": record["client_id"], "units": record["order_units"], "status": record["status"],
                 "broker_order_id": record["broker_order_id"], "fill_price": record["fill_price"],
                 "filled_units": record["filled_units"], "realized_pips": record["realized_pips"]}
    out = {"id": record["client_id"], "instrument": record["instrument"] or (inputs or {}).get("instrument"),
           "bar_ts": _iso(record["bar_ts"]),
           "decided_at": _iso(record["decided_at"]), "model_version": record["model_version"],
           "action": record["action"], "position_before": record["position_before"],
           "order_units": record["order_units"], "status": record["status"], "reason": record["reason"],
           "visit_counts": record["visit_counts"], "root_value": record["root_value"], "order": order,
           "actions": actions, "outcomes": outcomes, "tree": tree, "tree_kept": tree is not None,
           "inputs_kept": inputs is not None}
    if inputs is None:
        return out
    out.update({"checkpoint_sha256": inputs["checkpoint_sha256"], "episode": inputs["episode"],
                "feature_spec": inputs["feature_spec"], "input_hash": inputs["input_hash"],
                "search": inputs["search"], "prior": inputs["prior"], "q_values": inputs["q_values"],
                "network_value": inputs["network_value"], "chosen_action": inputs["chosen_action"],
                "static": {"names": static_names(inputs), "values": inputs["static_features"]}})
    bars = decision_bars(con, record)
    try:
        temporal, _ = rebuild_input(record, bars)
    except InputMismatch as error:
        out["features"] = {"names": feature_names(inputs), "window": None, "error": str(error)}
    else:
        shown = bars[-inputs["window_bars"]:]
        out["features"] = {"names": feature_names(inputs), "window": temporal[0].tolist(),
                           "bar_ts": [_iso(int(t)) for t in shown.ts], "close": shown.close.tolist()}
    if with_bars:  # what a replay needs (shared.live.explain): the raw record and the buffer's bars
        out["bars"] = bars_payload(bars)
        out["record"] = {"client_id": record["client_id"], "position_before": record["position_before"],
                         "visit_counts": record["visit_counts"],
                         "inputs": {k: (_iso(v) if isinstance(v, (pd.Timestamp, datetime)) else v)
                                    for k, v in inputs.items()}}
    return out


def decision_list(con: duckdb.DuckDBPyConnection, trees: TreeStore | None, *, limit: int, offset: int,
                  orders: str) -> dict:
    """Recent decisions, newest first; `orders`: all, only (sent an order) or none."""
    # an order of a searched decision (its id mm-d-...; not a flatten or an adoption of the broker's position)
    where = {"all": "TRUE", "only": "order_units != 0 AND client_id LIKE 'mm-d-%'", "none": "order_units = 0"}[orders]
    total = con.execute(f"SELECT count(*) FROM decisions WHERE {where}").fetchall()[0][0]
    cur = con.execute(
        f"SELECT d.client_id, d.instrument, d.bar_ts, d.action, d.status, d.order_units, d.model_version, "
        f"i.client_id IS NOT NULL FROM decisions d LEFT JOIN decision_inputs i USING (client_id) WHERE {where} "
        f"ORDER BY d.bar_ts DESC, d.decided_at DESC LIMIT ? OFFSET ?", [limit, offset])
    rows = [{"id": r[0], "instrument": r[1], "bar_ts": _iso(r[2]), "action": r[3], "status": r[4],
             "order_units": r[5], "model_version": r[6], "inputs_kept": bool(r[7]),
             "tree_kept": trees is not None and trees.has(r[0])} for r in cur.fetchall()]
    return {"decisions": rows, "limit": limit, "offset": offset, "total": int(total)}
