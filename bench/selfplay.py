"""Self-play and learner throughput with the default configuration.

python -m bench.selfplay [--iterations N]

Default networks (2.1M parameters), 5 simulations, 64 episodes in lockstep,
360-bar sessions of the embedded synthetic market, CPU. Measures
* collect: wall time of playing 64 episodes (representation, search,
  environment) -> collect_episodes_per_hour;
* learner: steps per second at batch 64, unroll 5 -> learner_steps_per_s;
* end to end: Trainer.run_iteration() with the default learner ratio (one
  learner step per episode) and checkpointing -> end_to_end_episodes_per_hour.
The first iteration (warm-up) is not counted. Last line is JSON.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from shared.cli.data import DEMO_MARKET
from shared.config import TrainingConfig
from shared.data.store import BarStore
from shared.data.synthetic import generate_bars
from shared.features.store import build_feature_store, load_feature_set
from shared.service.runtime import tune_process
from shared.training.selfplay import play_episodes
from shared.training.trainer import Trainer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--iterations", type=int, default=3, help="timed iterations of 64 episodes")
    args = parser.parse_args()
    tune_process()
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "market.duckdb"
        with BarStore(db) as store:
            store.upsert(DEMO_MARKET.instrument, "M1", generate_bars(DEMO_MARKET))
        build_feature_store(db, DEMO_MARKET.instrument, progress=False)
        features = load_feature_set(db, DEMO_MARKET.instrument)
        config = TrainingConfig()
        trainer = Trainer(features, Path(tmp) / "checkpoints", config)
        trainer.run_iteration()  # warm-up: fills the replay buffer, first learner steps

        rng = np.random.default_rng(0)
        collect = []
        for _ in range(args.iterations):
            starts = rng.choice(trainer.starts, size=config.episodes_per_iteration)
            t0 = time.perf_counter()
            play_episodes(trainer.env, trainer.search, starts, rng, exploration=config.exploration)
            collect.append(time.perf_counter() - t0)

        steps = 64 * args.iterations
        t0 = time.perf_counter()
        for _ in range(steps):
            trainer.learner.step(trainer.replay.sample(config.learner.batch_size, rng))
        learner_seconds = time.perf_counter() - t0

        t0 = time.perf_counter()
        episodes = 0
        for _ in range(args.iterations):
            episodes += trainer.run_iteration().episodes
        end_to_end = time.perf_counter() - t0
        trainer.close()

    print(json.dumps({
        "bench": "selfplay",
        "collect_episodes_per_hour": round(config.episodes_per_iteration * len(collect) / sum(collect) * 3600),
        "learner_steps_per_s": round(steps / learner_seconds, 2),
        "end_to_end_episodes_per_hour": round(episodes / end_to_end * 3600),
        "torch_threads": torch.get_num_threads(),
    }))


if __name__ == "__main__":
    main()
