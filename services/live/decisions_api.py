"""The live service's decisions, read while it trades: `GET /decisions` (recent, paged,
filtered by order / no order), `GET /decisions/latest` (to the newest one's page),
`GET /decisions/{id}` (one, with its provenance, the
features the network saw and its search tree; `?bars=true` adds the raw bars that
rebuild its input, which `python -m shared.live.explain` uses) and the pages that
draw them (services.live.pages).

The journal's DuckDB file is held open for writing by the service, so no other
process can open it while it runs: these routes read it through a cursor of the
service's own connection (DuckDB's way to read from another thread)."""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Literal

import pandas as pd
from fastapi import FastAPI, HTTPException, Query
from fastapi.responses import RedirectResponse

from shared.config import NetworkConfig
from shared.env.actions import ACTION_SPACES, HOLD_BUY_SELL_CLOSE
from shared.live.provenance import TreeStore, decision_detail, decision_list
from shared.model.networks import outcome_names

if TYPE_CHECKING:
    from services.live.service import LiveService

log = logging.getLogger("live")
PRUNE_EVERY_SECONDS = 3600.0


def tree_store(service: "LiveService") -> TreeStore:
    s = service.settings
    return TreeStore(s.live_dir / "trees", s.trees_kept)


def action_names(service: "LiveService") -> list[str]:
    if service.desk is None:
        return list(HOLD_BUY_SELL_CLOSE.actions)
    return list(ACTION_SPACES[service.desk.candidate.env_config.action_space].actions)


def chance_outcome_names(service: "LiveService") -> list[str]:
    if service.desk is None or service.desk.candidate.family != "muzero":
        return outcome_names(NetworkConfig())
    return outcome_names(service.desk.candidate.config.network)


def add_decision_api(app: FastAPI, service: "LiveService") -> None:
    @app.get("/decisions")
    def decisions(limit: int = Query(50, ge=1, le=500), offset: int = Query(0, ge=0),
                  orders: Literal["all", "only", "none"] = "all") -> dict:
        cursor = service.journal.con.cursor()
        try:
            return decision_list(cursor, service.trees, limit=limit, offset=offset, orders=orders)
        finally:
            cursor.close()

    @app.get("/decisions/latest")
    def latest(orders: Literal["all", "only", "none"] = "only") -> RedirectResponse:
        """The newest decision's page (by default the newest that sent an order): Grafana links here."""
        cursor = service.journal.con.cursor()
        try:
            newest = decision_list(cursor, None, limit=1, offset=0, orders=orders)["decisions"]
        finally:
            cursor.close()
        if not newest:
            raise HTTPException(404, "no such decision yet")
        return RedirectResponse(f"/decisions/{newest[0]['id']}/view", status_code=307)

    @app.get("/decisions/{decision_id}")
    def decision(decision_id: str, bars: bool = False) -> dict:
        cursor = service.journal.con.cursor()
        try:
            found = decision_detail(cursor, service.trees, decision_id, action_names(service), chance_outcome_names(service),
                                    with_bars=bars)
        finally:
            cursor.close()
        if found is None:
            raise HTTPException(404, f"no decision {decision_id!r} in the journal")
        return found


def prune_explanations(service: "LiveService", now: float | None = None) -> None:
    """Inputs, bars and order trees past the retention (the decisions themselves stay); at most
    once an hour, from the risk timer."""
    now = time.time() if now is None else now
    if now - service.last_prune < PRUNE_EVERY_SECONDS:
        return
    service.last_prune = now
    days = service.settings.decision_retention_days
    # bars are on the feed's clock (a replay's is its market's), trees on the wall clock
    market_cutoff = pd.Timestamp(service.now()).tz_convert("UTC").tz_localize(None) - pd.Timedelta(days=days)
    with service.lock:  # the bars in the traders' buffers stay: the next decisions are rebuilt from them
        buffers = [pd.Timestamp(int(t.bars.ts[0])) for t in service.traders if len(t.bars)]
        inputs, bars = service.journal.prune_inputs(market_cutoff, min(buffers) if buffers else None)
    trees = service.trees.prune_before(now - days * 86400)
    if inputs or bars or trees:
        log.info("explanations older than %g days dropped: %d inputs, %d bars, %d trees",
                         days, inputs, bars, trees)
