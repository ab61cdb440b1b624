"""Scale-out: self-play on Ray actors against the local loop, and data-parallel learners.

python -m bench.scale [--batches N] [--episodes E]

On the embedded demo market with the default networks and search:
* collect rates (the learner off, so only self-play is timed), one core per collector: the
  local loop (torch on 1 thread), the Ray path with 1 actor (1 CPU) and with 2 actors (1 CPU
  each) -> *_episodes_per_hour, and the Ray path's cost per episode over the local loop;
* end to end with the default learner ratio (one step per episode): the local loop on every
  core against 2 actors whose collection overlaps the learner's steps;
* the learner's steps per second with 1 learner (every core) and 2 DDP ranks (gloo, a core each);
* what crosses the wire: bytes of one weight snapshot and of one finished episode.
Each Ray measurement starts its actors first and skips their first batch (start-up). Last
line is JSON.
"""

from __future__ import annotations

import argparse
import json
import pickle
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from shared.cli.data import DEMO_MARKET
from shared.config import TrainingConfig
from shared.core.cpus import usable_cpus
from shared.data.store import BarStore
from shared.data.synthetic import generate_bars
from shared.features.store import build_feature_store, load_feature_set
from shared.service.runtime import tune_process
from shared.training.actors import weights_snapshot
from shared.training.distributed import make_learner
from shared.training.trainer import Trainer


def _log(message: str) -> None:
    print(message, flush=True)


def episodes_per_hour(trainer: Trainer, batches: int, warmup: int = 1) -> float:
    """Ingested episodes per hour over `batches` iterations after `warmup` ones."""
    for _ in range(warmup):
        trainer.run_iteration()
    t0, episodes = time.perf_counter(), 0
    for _ in range(batches):
        episodes += trainer.run_iteration().episodes
    return episodes / (time.perf_counter() - t0) * 3600


def run_trainer(features, root: Path, config: TrainingConfig, batches: int, threads: int) -> tuple[float, dict]:
    torch.set_num_threads(threads)
    trainer = Trainer(features, root, config)
    try:
        rate = episodes_per_hour(trainer, batches, warmup=max(1, config.actors) if config.backend == "ray" else 1)
        status = trainer.actors.status() if trainer.actors else {}
        return rate, status
    finally:
        trainer.close()


def learner_steps_per_s(features, root: Path, config: TrainingConfig, learners: int, steps: int) -> float:
    trainer = Trainer(features, root, replace(config, learner_steps_per_episode=0.0))
    trainer.run_iteration()  # replay for the batches
    learner = make_learner(trainer.model, config.learner, trainer.device, learners)
    rng = np.random.default_rng(0)
    batches = [trainer.replay.sample(config.learner.batch_size, rng) for _ in range(steps + 2)]
    try:
        for batch in batches[:2]:  # start-up (the ranks' processes) and first-call costs
            learner.step(batch)
        t0 = time.perf_counter()
        for batch in batches[2:]:
            learner.step(batch)
        return steps / (time.perf_counter() - t0)
    finally:
        learner.close()
        trainer.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batches", type=int, default=4, help="timed batches per collector")
    parser.add_argument("--episodes", type=int, default=64, help="episodes per batch (lockstep)")
    parser.add_argument("--learner-steps", type=int, default=64, help="timed learner steps per setting")
    args = parser.parse_args()
    tune_process()
    cpus = usable_cpus()
    import ray

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        db = tmp / "market.duckdb"
        with BarStore(db) as store:
            store.upsert(DEMO_MARKET.instrument, "M1", generate_bars(DEMO_MARKET))
        build_feature_store(db, DEMO_MARKET.instrument, progress=False)
        features = load_feature_set(db, DEMO_MARKET.instrument)
        # every actor plays E episodes a batch, as the local loop: the same lockstep width compared
        base = TrainingConfig(episodes_per_iteration=args.episodes, actor_episodes=args.episodes,
                              checkpoint_interval_episodes=10**9)
        collect = replace(base, learner_steps_per_episode=0.0)
        ray.init(num_cpus=cpus, include_dashboard=False, log_to_driver=False)

        _log("collect: local loop, 1 thread")
        local, _ = run_trainer(features, tmp / "local", collect, args.batches, threads=1)
        _log(f"  {local:,.0f} episodes/h\ncollect: Ray, 1 actor")
        ray_1, _ = run_trainer(features, tmp / "ray1", replace(collect, backend="ray", actors=1), args.batches, 1)
        _log(f"  {ray_1:,.0f} episodes/h\ncollect: Ray, 2 actors")
        ray_2, _ = run_trainer(features, tmp / "ray2", replace(collect, backend="ray", actors=2), 2 * args.batches, 1)
        _log(f"  {ray_2:,.0f} episodes/h\nend to end: local loop, {cpus} threads")
        local_e2e, _ = run_trainer(features, tmp / "local-e2e", base, args.batches, threads=cpus)
        _log(f"  {local_e2e:,.0f} episodes/h\nend to end: Ray, 2 actors and the learner")
        ray_e2e, status = run_trainer(features, tmp / "ray-e2e", replace(base, backend="ray", actors=2),
                                      2 * args.batches, threads=1)
        _log(f"  {ray_e2e:,.0f} episodes/h (weight lag mean {status['weight_lag_steps_mean']:.0f} steps)")
        ray.shutdown()

        ddp = {}
        for learners in (1, 2):
            torch.set_num_threads(cpus)
            _log(f"learner: {learners} rank(s)")
            ddp[str(learners)] = round(learner_steps_per_s(features, tmp / f"ddp{learners}", base, learners,
                                                           args.learner_steps), 2)
            _log(f"  {ddp[str(learners)]} steps/s")

        torch.set_num_threads(1)
        trainer = Trainer(features, tmp / "sizes", replace(collect, episodes_per_iteration=8))
        batch = trainer.collect()[0]
        episode_bytes = len(pickle.dumps(batch, protocol=5)) / batch.episodes
        weight_bytes = sum(array.nbytes for array in weights_snapshot(trainer.model).values())
        trainer.close()

    print(json.dumps({
        "bench": "scale",
        "local_episodes_per_hour": round(local),
        "ray_1_actor_episodes_per_hour": round(ray_1),
        "ray_2_actors_episodes_per_hour": round(ray_2),
        "ray_2_vs_1_actor": round(ray_2 / ray_1, 2),
        "ray_1_actor_vs_local": round(ray_1 / local, 3),
        "ray_overhead_ms_per_episode": round((3600 / ray_1 - 3600 / local) * 1000, 1),
        "end_to_end_episodes_per_hour": {"local": round(local_e2e), "ray_2_actors": round(ray_e2e)},
        "ddp_steps_per_s": ddp,
        "bytes_per_episode": round(episode_bytes),
        "bytes_per_weight_update": weight_bytes,
        "episodes_per_batch": args.episodes,
        "cpus": cpus,
    }))


if __name__ == "__main__":
    main()
