"""Live decision latency: bar in -> features -> search -> order decision -> journal.

python -m bench.live [--decisions N] [--simulations S]

The full default networks (a freshly written checkpoint loaded through the
same verified loader), 50 simulations, one torch thread, the paper broker and
the replay feed over the embedded synthetic market; N decisions after a
warm-up of 20. Last line is JSON: {"bench": "live", "sims": S, "p50_ms", "p99_ms"}.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch

from shared.brokers.paper import PaperBroker
from shared.candidates import load_candidate
from shared.data.__main__ import DEMO_MARKET
from shared.data.store import BarStore
from shared.data.synthetic import SyntheticMarketConfig, generate_bars
from shared.features.store import build_feature_store, load_feature_set
from shared.live.feeds import ReplayFeed
from shared.live.journal import Journal
from shared.live.trader import LiveTrader
from shared.runtime import tune_process
from shared.trainer import Trainer, TrainingConfig


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--decisions", type=int, default=1000)
    parser.add_argument("--simulations", type=int, default=50)
    args = parser.parse_args()
    tune_process()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        db = root / "market.duckdb"
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
        latencies = []
        while len(latencies) < args.decisions + 20:
            if feed.exhausted:
                raise SystemExit("the replay ran out of bars")
            decision = trader.on_bar(feed.next_bars(), datetime.fromtimestamp(feed.now_ns() / 1e9, timezone.utc))
            if decision.status != "skipped":
                latencies.append(decision.latency_seconds)
        ms = np.asarray(latencies[20:]) * 1000
    print(json.dumps({"bench": "live", "sims": args.simulations, "decisions": len(ms),
                      "p50_ms": round(float(np.percentile(ms, 50)), 2), "p99_ms": round(float(np.percentile(ms, 99)), 2)}))


if __name__ == "__main__":
    main()
