"""Chaos: random kill -9 across the three services, then the volume, the journal
and the paper account checked by this benchmark itself.

python -m bench.chaos [--kills N] [--max-seconds S] [--seed K] [--broker {paper,v20}]

The services start as `make up` starts them (deploy.local's Stack, from
docker-compose.yml's commands and environment) on a fresh runtime with a
small market and small per-iteration settings, so candidates, validations and
promotions come every few seconds. The volume starts with a champion whose
policy trades on almost every bar (not skill: orders to exercise), promoted
with quality 0, so later candidates that trade can still replace it. Then N
times (default 200, stopping at --max-seconds): a random service is killed
with SIGKILL at a random moment, the stack restarts it as compose would, and
the time until its /health answers 200 again is its recovery (a service the
runner gave up on is a failed recovery; the others go on being killed). At
the end the stack stops gracefully and these are counted:

* torn_loads: a file on the volume that does not load or does not match its
  signal (.ready -> .pt sha256, CURRENT -> promoted model sha256, latest.pt,
  result JSONs, paper.json), plus candidates validation rejected as corrupt,
  truncated or mismatching;
* unvalidated_trades: fills by a model that is not in promoted/ under its sha;
* duplicate_orders: a bar with more than one filled decision order, or a
  client id the account filled twice;
* lost_journal_rows: paper fills the journal does not know, journal fills the
  account does not know, decisions never settled, and replayed bars between
  the first and the last decision that have no journal row;
* position_mismatch: the account's units are not the journal's fills plus its
  ADOPTED differences, or those differences do not add up to zero (nothing
  changes a paper account behind live's back);
* closes_that_opened: a filled close or flatten (action CLOSE, client id
  mm-f-...) after which the account, in its order sequence, was on the other
  side or open from flat;
* stops_with_position_open: (v20 only) see bench/chaos_v20.py;
* max_recovery_seconds: the slowest recovery.
With --broker v20 live trades the loopback v20 server instead of paper, with
lost answers, 5xx/429s, cancels, hand closes and the kill switch injected,
and the counts compare the journal with the server (bench/chaos_v20.py).
Target: all zeros and recovery <= 30 s. Last line is JSON.
"""

from __future__ import annotations

import argparse
import json
import random
import signal
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd

from deploy.compose_file import SERVICES, load_specs
from deploy.local import ROOT, Stack, healthy

FAST = {
    "TRAINING_EPISODES_PER_ITERATION": "8", "TRAINING_CHECKPOINT_INTERVAL_EPISODES": "8", "TRAINING_SEARCH__SIMULATIONS": "3",
    "VALIDATION_SIMULATIONS": "2", "VALIDATION_MAX_SESSIONS": "3", "VALIDATION_MC_RUNS": "100",
    "VALIDATION_RESCAN_SECONDS": "2", "LIVE_SIMULATIONS": "4", "LIVE_REPLAY_BARS_PER_SECOND": "20",
    "LIVE_MODEL_WAIT_SECONDS": "1", "LIVE_MAX_DAILY_LOSS_PIPS": "100000", "LIVE_RECONCILE_SECONDS": "10",
}
RECOVERY_LIMIT_SECONDS = 90.0


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def seed_champion(runtime: Path, data: Path) -> None:
    """Promote a model that trades, as an operator would by hand (quality 0)."""
    import torch

    from shared.config import TrainingConfig
    from shared.features.store import load_feature_set
    from shared.training.trainer import Trainer
    from shared.volume.checkpoints import sha256_bytes
    from shared.volume.promotion import promote

    features = load_feature_set(data / "market.duckdb", "GBPJPY")
    trainer = Trainer(features, runtime / "seed", TrainingConfig(episodes_per_iteration=2))
    with torch.no_grad():  # BUY and CLOSE strongly preferred: a position changes on most bars
        head = trainer.model.policy_net[-1]
        head.weight.zero_()
        head.bias.copy_(torch.tensor([-20.0, 20.0, -20.0, 20.0]))
    trainer.episode = 8
    data_bytes = (runtime / "seed" / "training" / trainer.write_checkpoint()).read_bytes()
    trainer.close()
    promote(runtime / "checkpoints", data_bytes, sha256_bytes(data_bytes), 8, {"quality": 0.0, "manual": True})


def wait_healthy(stack: Stack, name: str, limit: float) -> float | None:
    """Seconds until `name` answers /health; None if it did not within `limit` or the runner gave up on it."""
    started = time.monotonic()
    while time.monotonic() - started < limit:
        for gone in stack.supervise():  # compose's restart: unless-stopped
            print(f"the runner gave up on {gone}", file=sys.stderr, flush=True)
        if name in stack.given_up:
            return None
        if healthy(stack.specs[name].port):
            return time.monotonic() - started
        time.sleep(0.2)
    return None


def check_volume(root: Path, paper: bool = True) -> list[str]:
    """Files a reader would find torn or mismatching."""
    import torch

    from shared.volume.candidates import CandidateError, load_candidate
    from shared.volume.checkpoints import ReadySignal, sha256_file
    from shared.volume.promotion import read_current

    problems = []
    for signal_path in (root / "training").glob("ckpt-ep*.ready"):
        try:
            ready = ReadySignal.read(signal_path)
        except (ValueError, KeyError) as error:
            problems.append(f"{signal_path.name}: {error}")
            continue
        candidate = root / "training" / ready.checkpoint
        if candidate.exists() and sha256_file(candidate) != ready.sha256:
            problems.append(f"{candidate.name} does not match its signal")
    try:
        current = read_current(root)
        if current is not None:
            load_candidate(root / "promoted" / current.model, current.sha256)
    except (ValueError, KeyError, CandidateError) as error:
        problems.append(f"CURRENT: {error}")
    for model in (root / "promoted").glob("model-ep*.pt"):
        try:
            load_candidate(model)
        except CandidateError as error:
            problems.append(f"{model.name}: {error}")
    if (root / "training" / "latest.pt").exists():
        try:
            torch.load(root / "training" / "latest.pt", weights_only=True)
        except Exception as error:  # noqa: BLE001 - any failure is a torn file
            problems.append(f"latest.pt: {type(error).__name__}")
    for path in list((root / "validation" / "results").glob("*.json")) + ([root / "live" / "paper.json"] if paper else []):
        try:
            json.loads(path.read_text())
        except (ValueError, FileNotFoundError) as error:
            problems.append(f"{path.name}: {error}")
        if path.parent.name == "results" and not path.name.endswith(".test.json"):
            result = json.loads(path.read_text())
            if result["result"] == "rejected" and result["reason"].split(":")[0] in ("corrupt", "sha_mismatch", "missing"):
                problems.append(f"validation read a torn candidate: {result['reason'][:80]}")
    return problems


def read_journal(root: Path) -> pd.DataFrame:
    """The decisions in the order they were made; `units`: what the broker filled (or else ordered)."""
    with duckdb.connect(str(root / "live" / "journal.duckdb"), read_only=True) as con:
        return con.execute("SELECT client_id, bar_ts, model_version, action, status, order_units, "
                           "coalesce(filled_units, order_units) AS units FROM decisions "
                           "ORDER BY decided_at, rowid").df()


def check_journal(root: Path, rows: pd.DataFrame, bar_ts: np.ndarray) -> dict[str, int]:
    """What the journal shows by itself, whichever the broker."""
    from shared.volume.checkpoints import sha256_file

    filled = rows[rows.status == "FILLED"]
    promoted = {f"ep{int(p.name[8:16]):08d}-{sha256_file(p)[:12]}" for p in (root / "promoted").glob("model-ep*.pt")}
    decisions = filled[filled.client_id.str.startswith("mm-d-")]
    decided_bars = rows.bar_ts.astype("int64").to_numpy()
    lost_bars = 0
    if len(decided_bars):
        span = bar_ts[(bar_ts >= decided_bars.min()) & (bar_ts <= decided_bars.max())]
        lost_bars = int(len(np.setdiff1d(span, decided_bars)))
    return {"fills": len(filled), "unvalidated_trades": int((~filled.model_version.isin(promoted)).sum()),
            "duplicate_orders": int(decisions.bar_ts.duplicated().sum()) + int(rows.client_id.duplicated().sum()),
            "lost_journal_rows": int(rows.status.isin(["decided", "UNKNOWN"]).sum()) + lost_bars}


def check_paper(root: Path, rows: pd.DataFrame) -> dict[str, int]:
    """The journal against the paper account."""
    paper = json.loads((root / "live" / "paper.json").read_text())
    filled = rows[rows.status == "FILLED"]
    journal_ids, paper_ids = set(filled.client_id), {cid for cid, o in paper["orders"].items() if o["status"] == "FILLED"}
    adopted = int(rows.units[rows.status == "ADOPTED"].sum())
    booked = int(rows.units[rows.status.isin(["FILLED", "ADOPTED"])].sum())
    closes = set(rows.client_id[(rows.action == "CLOSE") | rows.client_id.str.startswith("mm-f-")])
    net = opened = 0
    ordered = sorted(paper["orders"].items(), key=lambda item: int(item[1].get("transaction_id") or 0))
    for cid, order in ordered:  # in the order the account booked them (paper.json's keys are sorted)
        if order["status"] != "FILLED":
            continue
        change = int(order["units"] if order.get("filled_units") is None else order["filled_units"])
        if cid in closes and ((net == 0 and change != 0) or net * (net + change) < 0):
            opened += 1
            print(f"close {cid} took the paper account from {net} to {net + change}", file=sys.stderr)
        net += change
    return {"lost_journal_rows": len(paper_ids - journal_ids) + len(journal_ids - paper_ids),
            "position_mismatch": int(int(paper["units"]) != booked) + int(adopted != 0),
            "closes_that_opened": opened, "stops_with_position_open": 0}


def settle_v20(stack: Stack, v20) -> None:
    """No more faults; live gets two reconciliations' time (LIVE_RECONCILE_SECONDS) to adopt the last
    hand close, and to be up and reconciled for a while."""
    import urllib.request

    v20.quiesce()
    until, reconciled_at = time.monotonic() + 120.0, None
    settle = 2 * float(FAST["LIVE_RECONCILE_SECONDS"]) + 2.0
    while time.monotonic() < until and (reconciled_at is None or time.monotonic() - reconciled_at < settle):
        stack.supervise()
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{stack.specs['live'].port}/status", timeout=2.0) as answer:
                ok = json.loads(answer.read()).get("reconciled") is True
        except (OSError, ValueError):
            ok = False
        reconciled_at = (reconciled_at or time.monotonic()) if ok else None
        time.sleep(0.5)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kills", type=int, default=200)
    parser.add_argument("--max-seconds", type=float, default=1800.0, help="stop killing after this long")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--broker", choices=["paper", "v20"], default="paper",
                        help="live trades paper, or the loopback v20 server with faults (bench/chaos_v20.py)")
    args = parser.parse_args(argv)
    rng = random.Random(args.seed)
    with tempfile.TemporaryDirectory(prefix="chaos-") as tmp, ExitStack() as resources:
        runtime, data = Path(tmp) / "runtime", Path(tmp) / "data"
        specs = load_specs(ROOT / "docker-compose.yml", runtime, data, {})
        for name in SERVICES:
            specs[name].port = free_port()
            specs[name].environment[f"{name.upper()}_PORT"] = str(specs[name].port)
        stack = Stack(specs, runtime / "logs", extra_env=FAST)
        stack.prepare_data()
        from shared.features.store import load_feature_set

        bars = load_feature_set(data / "market.duckdb", "GBPJPY").bars
        root = runtime / "checkpoints"
        v20 = None
        if args.broker == "v20":
            from bench.chaos_v20 import V20Chaos

            v20 = resources.enter_context(V20Chaos(bars, root / "control", specs["live"].port, args.seed))
            specs["live"].environment.update(v20.live_env())
        seed_champion(runtime, data)
        stack.start_all()
        recoveries: list[float] = []
        failed_recoveries = kills = 0
        counted: set[str] = set()  # given up and already a failed recovery
        started = time.monotonic()
        try:
            for name in SERVICES:
                if wait_healthy(stack, name, RECOVERY_LIMIT_SECONDS) is None:
                    raise SystemExit(f"{name} never became healthy; see {stack.logs}")
            if v20 is not None:
                v20.start_faults()
            while kills < args.kills and time.monotonic() - started < args.max_seconds:
                time.sleep(rng.uniform(0.0, 3.0))  # a random moment: mid write, mid validation, mid decision
                stack.supervise()
                running = [name for name in SERVICES if name not in stack.given_up]
                if not running:
                    break
                name = rng.choice(running)
                stack.processes[name].send_signal(signal.SIGKILL)
                stack.processes[name].wait()
                kills += 1
                recovery = wait_healthy(stack, name, RECOVERY_LIMIT_SECONDS)
                if recovery is None:
                    failed_recoveries += 1
                    counted.update(stack.given_up)
                else:
                    recoveries.append(recovery)
                if kills % 10 == 0:
                    print(f"{kills} kills, {time.monotonic() - started:.0f}s, slowest recovery "
                          f"{max(recoveries, default=0):.1f}s", file=sys.stderr, flush=True)
            if v20 is not None:
                settle_v20(stack, v20)
            time.sleep(5.0)  # let the last restarts settle a decision or two
        finally:
            stack.stop(timeout=60.0)
        failed_recoveries += len(set(stack.given_up) - counted)  # given up while another was recovering
        torn = check_volume(root, paper=v20 is None)
        rows = read_journal(root)
        trading = check_journal(root, rows, bars.ts)
        broker = check_paper(root, rows) if v20 is None else v20.counts(rows)
        for problem in torn:
            print(f"torn: {problem}", file=sys.stderr)
    print(json.dumps({"bench": "chaos", "broker": args.broker, "kills": kills,
                      "seconds": round(time.monotonic() - started, 1), "torn_loads": len(torn),
                      "unvalidated_trades": trading["unvalidated_trades"], "duplicate_orders": trading["duplicate_orders"],
                      "lost_journal_rows": trading["lost_journal_rows"] + broker["lost_journal_rows"],
                      "position_mismatch": broker["position_mismatch"],
                      "stops_with_position_open": broker["stops_with_position_open"],
                      "closes_that_opened": broker["closes_that_opened"], "fills": trading["fills"],
                      **({"server_orders": broker["server_orders"], "faults": broker["faults"]} if v20 else {}),
                      "failed_recoveries": failed_recoveries, "given_up": sorted(stack.given_up),
                      "max_recovery_seconds": round(max(recoveries, default=0.0), 1)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
