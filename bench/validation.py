"""Validation cost: the Monte Carlo and a full validation of one checkpoint.

python -m bench.validation [--sessions N] [--simulations S]

* mc_seconds: shared.validation.statistics.monte_carlo with 1,000 runs over 2,000 trades
  (a seeded synthetic trade list: +1.5 pips mean, 12 pips std), including the
  safe-f bisection and CAR25; median of 5 after a warm-up (numba compiles).
* validation_seconds: shared.validation.validator.validate() of a freshly written
  default-architecture checkpoint on N validation sessions of the synthetic
  market (search at S simulations, plus the raw-network, random and flat
  baselines, statistics, Monte Carlo).
Last line is JSON.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from shared.config import SyntheticMarketConfig, TrainingConfig, ValidationConfig
from shared.data.store import BarStore
from shared.data.synthetic import generate_bars
from shared.features.store import build_feature_store, load_feature_set
from shared.service.runtime import tune_process
from shared.training.trainer import Trainer
from shared.validation.statistics import monte_carlo
from shared.validation.validator import validate
from shared.volume.candidates import load_candidate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sessions", type=int, default=100)
    parser.add_argument("--simulations", type=int, default=50)
    args = parser.parse_args()
    tune_process()

    trades = np.random.default_rng(0).normal(1.5, 12.0, 2000)
    monte_carlo(trades, runs=1000, seed=0)
    times = []
    for seed in range(5):
        t0 = time.perf_counter()
        monte_carlo(trades, runs=1000, seed=seed)
        times.append(time.perf_counter() - t0)

    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "market.duckdb"
        weeks = 8 + int(args.sessions * 360 / 0.15 / 7000) + 1  # room for the validation split to hold N sessions
        with BarStore(db) as store:
            store.upsert("GBPJPY", "M1", generate_bars(SyntheticMarketConfig(weeks=weeks, seed=5, edge_strength=0.3)))
        build_feature_store(db, "GBPJPY", progress=False)
        features = load_feature_set(db, "GBPJPY")
        available = len(features.require_sessions("validation"))
        trainer = Trainer(features, Path(tmp) / "checkpoints", TrainingConfig())
        trainer.episode = 64
        name = trainer.write_checkpoint()
        trainer.close()
        candidate = load_candidate(Path(tmp) / "checkpoints" / "training" / name)
        config = ValidationConfig(simulations=args.simulations, max_sessions=args.sessions)
        t0 = time.perf_counter()
        report = validate(candidate, features, config)
        validation_seconds = time.perf_counter() - t0

    print(json.dumps({"bench": "validation", "mc_runs": 1000, "trades": len(trades),
                      "mc_seconds": round(statistics.median(times), 4),
                      "validation_seconds": round(validation_seconds, 2),
                      "sessions": min(args.sessions, available), "simulations": args.simulations,
                      "candidate_trades": report.stats.trades}))


if __name__ == "__main__":
    main()
