"""Live decision latency: bar in -> features -> search -> order decision -> journal.

python -m bench.live [--decisions N] [--simulations S] [--under-load]

The full default networks (a freshly written checkpoint loaded through the
same verified loader), 50 simulations, one torch thread, the paper broker and
the replay feed over the embedded synthetic market; N decisions after a
warm-up of 20, at normal priority as the live service runs. A JSON line:
{"bench": "live", "under_load": false, "sims": S, "p50_ms", "p99_ms"}.

--under-load then starts training and validation as `make up` runs them
(deploy.local's Stack: compose's commands and environment, nice 10, torch
threads capped to the CPUs) on the same market, waits until training has
written a candidate and validation is validating it, and measures again: a
second line with "under_load": true. Target: its p99 <= 2x the quiet p99.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import httpx
import numpy as np
import torch

from shared.cli.data import DEMO_MARKET
from shared.config import SyntheticMarketConfig, TrainingConfig
from shared.data.store import BarStore
from shared.data.synthetic import generate_bars
from shared.features.store import build_feature_store, load_feature_set
from shared.live.brokers.paper import PaperBroker
from shared.live.feeds import ReplayFeed
from shared.live.journal import Journal
from shared.live.trader import LiveTrader
from shared.service.runtime import tune_process
from shared.training.trainer import Trainer
from shared.volume.candidates import load_candidate


def measure(trader: LiveTrader, feed: ReplayFeed, decisions: int) -> np.ndarray:
    """Latency in ms of `decisions` decisions after a warm-up of 20."""
    latencies = []
    while len(latencies) < decisions + 20:
        if feed.exhausted:
            raise SystemExit("the replay ran out of bars")
        decision = trader.on_bar(feed.next_bars(), datetime.fromtimestamp(feed.now_ns() / 1e9, timezone.utc))
        if decision.status != "skipped":
            latencies.append(decision.latency_seconds)
    return np.asarray(latencies[20:]) * 1000


def report(ms: np.ndarray, sims: int, under_load: bool) -> None:
    print(json.dumps({"bench": "live", "under_load": under_load, "sims": sims, "decisions": len(ms),
                      "p50_ms": round(float(np.percentile(ms, 50)), 2),
                      "p99_ms": round(float(np.percentile(ms, 99)), 2)}), flush=True)


def start_training_and_validation(root: Path, data: Path):
    """Training and validation as `make up` runs them, on this market; returns the stack
    once training has written a candidate and validation has started on it."""
    from bench.chaos import free_port
    from deploy.local import ROOT, Stack, load_specs

    specs = load_specs(ROOT / "docker-compose.yml", root / "runtime", data, {})
    for name in ("training", "validation"):
        specs[name].port = free_port()
        specs[name].environment[f"{name.upper()}_PORT"] = str(specs[name].port)
    stack = Stack(specs, root / "runtime" / "logs")
    stack.start_all(("training", "validation"))
    status = f"http://127.0.0.1:{specs['validation'].port}/status"
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        stack.supervise()
        try:
            if httpx.get(status, timeout=2.0).json().get("status") == "validating":
                return stack
        except (httpx.HTTPError, ValueError):
            pass
        time.sleep(1.0)
    stack.stop()
    raise SystemExit(f"validation never started on a candidate; see {stack.logs}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--decisions", type=int, default=1000)
    parser.add_argument("--simulations", type=int, default=50)
    parser.add_argument("--under-load", action="store_true", help="then again while training and validation run")
    args = parser.parse_args()
    tune_process()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        data = root / "data"
        data.mkdir()
        db = data / "market.duckdb"
        market = SyntheticMarketConfig(**{**DEMO_MARKET.to_dict(), "weeks": 16})
        with BarStore(db) as store:
            store.upsert(market.instrument, "M1", generate_bars(market))
        build_feature_store(db, market.instrument, progress=False)
        features = load_feature_set(db, market.instrument)
        trainer = Trainer(features, root / "checkpoints", TrainingConfig())
        trainer.episode = 64
        candidate = load_candidate(root / "checkpoints" / "training" / trainer.write_checkpoint())
        trainer.close()
        start = int(features.sessions["validation"][0])
        feed = ReplayFeed(features.bars, start)
        trader = LiveTrader(market.instrument, PaperBroker(root / "paper.json", spread_pips=4.0, pip_size=0.01),
                            Journal(root / "journal.duckdb"), candidate, feed.history(), simulations=args.simulations)
        trader.reconcile()
        report(measure(trader, feed, args.decisions), args.simulations, under_load=False)
        if args.under_load:
            stack = start_training_and_validation(root, data)
            try:
                report(measure(trader, feed, args.decisions), args.simulations, under_load=True)
            finally:
                stack.stop()

if __name__ == "__main__":
    main()
