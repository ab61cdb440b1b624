"""Replay one live decision bit for bit: `python -m shared.live.explain DECISION_ID`
(or `micro explain DECISION_ID`).

Loads the checkpoint by its sha256 from the volume (promoted/ first, then training/),
rebuilds the network's input from the bars the journal kept, checks it against the
input hash the search saw, reruns the search with the stored settings and seed, and
says whether it matches: the same action and the same visit counts. Exit 0 matches,
1 differs, 2 cannot replay (the decision, its inputs, bars or checkpoint are gone:
said plainly).

The journal is read directly when no live service holds it; while one runs (DuckDB
allows one writing process and no reader beside it), through the service's API
(`--url`, default http://127.0.0.1:$LIVE_PORT)."""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import duckdb
import numpy as np
import requests

from shared.config import SearchConfig
from shared.core.errors import StopError
from shared.env.actions import ACTION_SPACES
from shared.live.provenance import (
    InputMismatch,
    bars_from_payload,
    decision_bars,
    decision_record,
    rebuild_input,
)
from shared.search import NetworkSearch
from shared.volume.candidates import Candidate, CandidateError, load_candidate
from shared.volume.checkpoints import default_checkpoint_dir, sha256_file


class CannotReplay(StopError, RuntimeError):
    """What a replay needs is no longer there."""


@dataclass
class Replay:
    decision_id: str
    matches: bool
    action: str
    replayed_action: str
    visit_counts: list[int]
    replayed_visit_counts: list[int]
    checkpoint: str

    def to_dict(self) -> dict:
        return {"decision": self.decision_id, "matches": self.matches, "action": self.action,
                "replayed_action": self.replayed_action, "visit_counts": self.visit_counts,
                "replayed_visit_counts": self.replayed_visit_counts, "checkpoint": self.checkpoint}


def find_checkpoint(root: Path, sha256: str, episode: int) -> Path:
    """The file on the volume with these bytes: the promoted copy, else the training candidate."""
    named = [root / "promoted" / f"model-ep{episode:08d}.pt", root / "training" / f"ckpt-ep{episode:08d}.pt"]
    others = sorted((root / "promoted").glob("model-ep*.pt")) + sorted((root / "training").glob("ckpt-ep*.pt"))
    for path in [*named, *(p for p in others if p not in named)]:
        if path.is_file() and sha256_file(path) == sha256:
            return path
    raise CannotReplay(f"the checkpoint this decision was taken with (episode {episode}, sha256 {sha256[:12]}) is "
                       f"no longer on the volume {root}: pruned by training and never promoted, so this decision "
                       f"cannot be replayed")


def replay(record: dict, bars, candidate: Candidate) -> Replay:
    """Rerun the search of `record` on the input rebuilt from `bars` with `candidate`."""
    if candidate.family != "muzero":
        what = {"tft": ("forecaster", "the forecast it acted on and the rule's cost"),
                "dt": ("Strategist", "the return it was asked for and its action probabilities")}[candidate.family]
        raise CannotReplay(f"decision {record['client_id']} was taken by a {candidate.family} {what[0]}, not a search: "
                           f"{what[1]} are its tree on the decision page")
    inputs = record["inputs"]
    temporal, static = rebuild_input(record, bars)
    settings = dict(inputs["search"])
    seed, add_noise = settings.pop("seed"), settings.pop("add_noise")
    space = ACTION_SPACES[candidate.env_config.action_space]
    search = NetworkSearch(candidate.model, 1, space, SearchConfig(**settings))
    position = np.array([record["position_before"]], np.int8)
    result = search.run(temporal, static, space.legal_mask(position), position, np.full(1, seed, np.uint64),
                        add_noise=add_noise)
    action = int(result.actions(0.0)[0])
    counts = result.visit_counts[0].tolist()
    stored = record["visit_counts"]
    return Replay(record["client_id"], action == inputs["chosen_action"] and counts == stored,
                  space.actions[inputs["chosen_action"]], space.actions[action], stored, counts,
                  f"ep{inputs['episode']:08d} {inputs['checkpoint_sha256'][:12]}")


def _from_journal(path: Path, decision_id: str):
    with duckdb.connect(str(path), read_only=True) as con:
        record = decision_record(con, decision_id)
        if record is None or record["inputs"] is None:
            return record, None
        return record, decision_bars(con, record)


def _from_api(url: str, decision_id: str):
    response = requests.get(f"{url.rstrip('/')}/decisions/{decision_id}", params={"bars": "true"}, timeout=30)
    if response.status_code == 404:
        return None, None
    response.raise_for_status()
    found = response.json()
    if not found.get("inputs_kept"):
        return {"client_id": found["id"], "inputs": None}, None
    return found["record"], bars_from_payload(found["bars"])


def load_decision(decision_id: str, journal: Path, url: str):
    """(record, bars) from the journal, or from the live service while it holds the journal."""
    if not journal.exists():
        raise CannotReplay(f"no journal at {journal}")
    try:
        record, bars = _from_journal(journal, decision_id)
    except duckdb.IOException:  # the live service holds it: ask the service
        try:
            record, bars = _from_api(url, decision_id)
        except requests.RequestException as error:
            raise CannotReplay(f"the journal {journal} is held by a running live service and its API at {url} "
                               f"did not answer ({error}): pass --url") from error
    if record is None:
        raise CannotReplay(f"no decision {decision_id!r} in the journal")
    if record["inputs"] is None:
        raise CannotReplay(f"decision {decision_id} has no search inputs: a skipped bar or a flatten (nothing was "
                           f"searched), or its inputs were dropped by the retention (LIVE_DECISION_RETENTION_DAYS)")
    return record, bars


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m shared.live.explain", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("decision", help="the decision's id (its client order id: GET /decisions)")
    parser.add_argument("--root", type=Path, default=default_checkpoint_dir(), help="the checkpoint volume")
    parser.add_argument("--journal", type=Path, default=None, help="default ROOT/live/journal.duckdb")
    parser.add_argument("--url", default=f"http://127.0.0.1:{os.environ.get('LIVE_PORT', '8003')}",
                        help="the live service, asked while it holds the journal")
    parser.add_argument("--json", action="store_true", help="one JSON line")
    args = parser.parse_args(argv)
    try:
        record, bars = load_decision(args.decision, args.journal or args.root / "live" / "journal.duckdb", args.url)
        inputs = record["inputs"]
        path = find_checkpoint(args.root, inputs["checkpoint_sha256"], inputs["episode"])
        result = replay(record, bars, load_candidate(path, inputs["checkpoint_sha256"]))
    except (CannotReplay, InputMismatch, CandidateError) as error:
        print(json.dumps({"decision": args.decision, "matches": None, "error": str(error)}) if args.json
              else f"cannot replay {args.decision}: {error}")
        return 2
    if args.json:
        print(json.dumps(result.to_dict()))
    elif result.matches:
        print(f"matches: {result.decision_id} ({result.checkpoint}) chose {result.action} again with the same "
              f"visit counts {result.visit_counts}")
    else:
        print(f"differs: {result.decision_id} ({result.checkpoint}) chose {result.action} with visits "
              f"{result.visit_counts}; the replay chose {result.replayed_action} with {result.replayed_visit_counts}")
    return 0 if result.matches else 1


if __name__ == "__main__":
    sys.exit(main())
