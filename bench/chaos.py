"""Chaos: random kill -9 across the three services, then the volume, the journal
and the paper account checked by this benchmark itself.

python -m bench.chaos [--kills N] [--max-seconds S] [--seed K]

The services start as `make up` starts them (deploy.local's Stack, from
docker-compose.yml's commands and environment) on a fresh runtime with a
small market and small per-iteration settings, so candidates, validations and
promotions come every few seconds. The volume starts with a champion whose
policy trades on almost every bar (not skill: orders to exercise), promoted
with quality 0, so later candidates that trade can still replace it. Then N
times (default 200, stopping at --max-seconds): a random service is killed
with SIGKILL at a random moment, the stack restarts it as compose would, and
the time until its /health answers 200 again is its recovery. At the end the
stack stops gracefully and these are counted:

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
* max_recovery_seconds: the slowest recovery.
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
from pathlib import Path

import duckdb
import numpy as np

from deploy.local import ROOT, SERVICES, Stack, healthy, load_specs

FAST = {
    "TRAINING_EPISODES_PER_ITERATION": "8", "TRAINING_CHECKPOINT_INTERVAL_EPISODES": "8", "TRAINING_SIMULATIONS": "3",
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

    from shared.checkpoints import sha256_bytes
    from shared.features.store import load_feature_set
    from shared.promotion import promote
    from shared.trainer import Trainer, TrainingConfig

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
    started = time.monotonic()
    while time.monotonic() - started < limit:
        stack.supervise()  # compose's restart: unless-stopped
        if healthy(stack.specs[name].port):
            return time.monotonic() - started
        time.sleep(0.2)
    return None


def check_volume(root: Path) -> list[str]:
    """Files a reader would find torn or mismatching."""
    import torch

    from shared.candidates import CandidateError, load_candidate
    from shared.checkpoints import ReadySignal, sha256_file
    from shared.promotion import read_current

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
    for path in list((root / "validation" / "results").glob("*.json")) + [root / "live" / "paper.json"]:
        try:
            json.loads(path.read_text())
        except (ValueError, FileNotFoundError) as error:
            problems.append(f"{path.name}: {error}")
        if path.parent.name == "results" and not path.name.endswith(".test.json"):
            result = json.loads(path.read_text())
            if result["result"] == "rejected" and result["reason"].split(":")[0] in ("corrupt", "sha_mismatch", "missing"):
                problems.append(f"validation read a torn candidate: {result['reason'][:80]}")
    return problems


def check_trading(root: Path, bar_ts: np.ndarray) -> dict[str, int]:
    from shared.checkpoints import sha256_file

    paper = json.loads((root / "live" / "paper.json").read_text())
    with duckdb.connect(str(root / "live" / "journal.duckdb"), read_only=True) as con:
        rows = con.execute("SELECT client_id, bar_ts, model_version, status, order_units FROM decisions").df()
    filled = rows[rows.status == "FILLED"]
    promoted = {f"ep{int(p.name[8:16]):08d}-{sha256_file(p)[:12]}" for p in (root / "promoted").glob("model-ep*.pt")}
    unvalidated = int((~filled.model_version.isin(promoted)).sum())
    decisions = filled[filled.client_id.str.startswith("mm-d-")]
    duplicates = int(decisions.bar_ts.duplicated().sum()) + int(rows.client_id.duplicated().sum())
    journal_ids, paper_ids = set(filled.client_id), set(paper["orders"])
    unsettled = int(rows.status.isin(["decided", "UNKNOWN"]).sum())
    decided_bars = rows.bar_ts.astype("int64").to_numpy()
    lost_bars = 0
    if len(decided_bars):
        span = bar_ts[(bar_ts >= decided_bars.min()) & (bar_ts <= decided_bars.max())]
        lost_bars = int(len(np.setdiff1d(span, decided_bars)))
    return {"fills": len(filled), "unvalidated_trades": unvalidated, "duplicate_orders": duplicates,
            "lost_journal_rows": len(paper_ids - journal_ids) + len(journal_ids - paper_ids) + unsettled + lost_bars,
            "position_mismatch": int(paper["units"] != int(filled.order_units.sum()))}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kills", type=int, default=200)
    parser.add_argument("--max-seconds", type=float, default=1800.0, help="stop killing after this long")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    rng = random.Random(args.seed)
    with tempfile.TemporaryDirectory(prefix="chaos-") as tmp:
        runtime, data = Path(tmp) / "runtime", Path(tmp) / "data"
        specs = load_specs(ROOT / "docker-compose.yml", runtime, data, {})
        for name in SERVICES:
            specs[name].port = free_port()
            specs[name].environment[f"{name.upper()}_PORT"] = str(specs[name].port)
        stack = Stack(specs, runtime / "logs", extra_env=FAST)
        stack.prepare_data()
        seed_champion(runtime, data)
        stack.start_all()
        recoveries: list[float] = []
        failed_recoveries = kills = 0
        started = time.monotonic()
        try:
            for name in SERVICES:
                if wait_healthy(stack, name, RECOVERY_LIMIT_SECONDS) is None:
                    raise SystemExit(f"{name} never became healthy; see {stack.logs}")
            while kills < args.kills and time.monotonic() - started < args.max_seconds:
                time.sleep(rng.uniform(0.0, 3.0))  # a random moment: mid write, mid validation, mid decision
                name = rng.choice(SERVICES)
                stack.supervise()
                stack.processes[name].send_signal(signal.SIGKILL)
                stack.processes[name].wait()
                kills += 1
                recovery = wait_healthy(stack, name, RECOVERY_LIMIT_SECONDS)
                if recovery is None:
                    failed_recoveries += 1
                else:
                    recoveries.append(recovery)
                if kills % 10 == 0:
                    print(f"{kills} kills, {time.monotonic() - started:.0f}s, slowest recovery "
                          f"{max(recoveries, default=0):.1f}s", file=sys.stderr, flush=True)
            time.sleep(5.0)  # let the last restarts settle a decision or two
        finally:
            stack.stop(timeout=60.0)
        from shared.features.store import load_feature_set

        bars = load_feature_set(data / "market.duckdb", "GBPJPY").bars.ts
        root = runtime / "checkpoints"
        torn = check_volume(root)
        trading = check_trading(root, bars)
        for problem in torn:
            print(f"torn: {problem}", file=sys.stderr)
    print(json.dumps({"bench": "chaos", "kills": kills, "seconds": round(time.monotonic() - started, 1),
                      "torn_loads": len(torn), "unvalidated_trades": trading["unvalidated_trades"],
                      "duplicate_orders": trading["duplicate_orders"], "lost_journal_rows": trading["lost_journal_rows"],
                      "position_mismatch": trading["position_mismatch"], "fills": trading["fills"],
                      "failed_recoveries": failed_recoveries,
                      "max_recovery_seconds": round(max(recoveries, default=0.0), 1)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
