"""Self-play on Ray actors (TRAINING_BACKEND=ray) against a local Ray cluster: candidates the
validator accepts, an actor killed mid-batch replaced without its episodes, ids ingested once,
versions that never go back, stale batches dropped."""

from __future__ import annotations

import os
import signal

import numpy as np
import pytest
import ray

from shared.config import NetworkConfig, SearchConfig, TrainingConfig, ValidationConfig
from shared.training.trainer import Trainer

NETWORK = NetworkConfig(tcn_channels=16, hidden=32, dropout=0.0)


def test_the_service_reports_its_actors_in_status_and_metrics(data_dir, tmp_path):
    """`TRAINING_BACKEND=ray python -m services.training`: Ray started inside with the service's
    CPUs, /status's self_play and the actor metrics; a graceful stop takes the actors with it.
    First in the file: before the other tests' Ray (local_ray) exists on this machine."""
    import subprocess

    import httpx

    from tests.service_helpers import free_port, start, wait_for

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {"MICRO_DATA_DIR": str(data_dir), "CHECKPOINT_DIR": str(tmp_path / "ck"), "TRAINING_PORT": str(port),
           "TRAINING_EPISODES_PER_ITERATION": "4", "TRAINING_CHECKPOINT_INTERVAL_EPISODES": "4",
           "TRAINING_SEARCH__SIMULATIONS": "3", "TRAINING_BACKEND": "ray", "TRAINING_ACTORS": "2",
           "RAY_ADDRESS": ""}
    service = start("services.training", env, tmp_path / "training.log")
    try:
        wait_for(f"{url}/status", lambda r: r.json()["checkpoints_written"] >= 2, process=service, timeout=240)
        self_play = httpx.get(f"{url}/status").json()["self_play"]
        assert self_play["backend"] == "ray" and self_play["address"] == "local"
        assert self_play["actors"] == 2 and self_play["actor_restarts"] == 0
        metrics = httpx.get(f"{url}/metrics").text
        for name in ("micro_training_actors_alive", "micro_training_actor_episodes_per_hour{actor=\"0\"}",
                     "micro_training_weight_lag_steps{stat=\"max\"}", "micro_training_stale_episodes_dropped_total",
                     "micro_training_actor_restarts_total"):
            assert name in metrics, name
    finally:
        service.terminate()
        service.wait(timeout=90)  # uvicorn stops gracefully, then re-raises SIGTERM: -15
    log = (tmp_path / "training.log").read_text()
    assert "Application shutdown complete" in log, log[-3000:]  # its own handler ran, not Ray's exit
    left = subprocess.run(["pgrep", "-f", "ray::SelfPlayActor|ray::DashboardAgent|ray::RuntimeEnvAgent|raylet"],
                          capture_output=True, text=True).stdout.strip()
    assert not left, "the actors and the Ray the service started stop with it"


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def _config(**overrides) -> TrainingConfig:
    # each of two actors plays 4 episodes a batch (E / actors)
    values = dict(backend="ray", actors=2, episodes_per_iteration=8, checkpoint_interval_episodes=8,
                  network=NETWORK, search=SearchConfig(simulations=3))
    values.update(overrides)
    return TrainingConfig(**values)


def _stored(trainer: Trainer) -> tuple[np.ndarray, np.ndarray]:
    size = len(trainer.replay)
    return trainer.replay.episode_id[:size], trainer.replay.version[:size]


def test_two_actors_and_two_learners_train_and_write_a_candidate_validation_accepts(local_ray, features,
                                                                                   tmp_path):
    from shared.training.distributed import DistributedLearner
    from shared.validation.validator import validate
    from shared.volume.candidates import load_candidate

    trainer = Trainer(features, tmp_path / "ck", _config(learners=2))
    assert isinstance(trainer.learner, DistributedLearner)
    try:
        reports = [trainer.run_iteration() for _ in range(4)]
        # batches are released oldest version first and the learner starts after E episodes: how many
        # iterations pass before one played with learned weights arrives depends on the machine's pace
        while trainer.replay.version[: len(trainer.replay)].max() == 0 and len(reports) < 16:
            reports.append(trainer.run_iteration())
        status = trainer.actors.status()
    finally:
        trainer.close()
    assert trainer.episode == sum(r.episodes for r in reports) >= 16
    assert trainer.learner.steps > 0
    assert status["actors_alive"] == 2 and status["actor_restarts"] == 0
    assert all(rate > 0 for rate in status["actor_episodes_per_hour"])
    ids, versions = _stored(trainer)
    assert len(set(ids.tolist())) == len(ids)                 # every episode once
    assert (np.diff(versions) >= 0).all()                      # versions never go back
    assert versions.max() > 0                                   # later batches played newer weights
    checkpoints = [r.checkpoint for r in reports if r.checkpoint]
    assert checkpoints
    candidate = load_candidate(tmp_path / "ck" / "training" / checkpoints[-1])
    result = validate(candidate, features, ValidationConfig(simulations=2, mc_runs=20, max_sessions=2))
    assert result.sessions == 2 and result.episode == int(checkpoints[-1][len("ckpt-ep"):-len(".pt")])


def test_an_actor_killed_mid_batch_is_replaced_and_its_episodes_never_used(local_ray, features, tmp_path):
    trainer = Trainer(features, tmp_path / "ck", _config(search=SearchConfig(simulations=8)))
    collector = trainer.actors
    try:
        pid = ray.get(collector.handles[0].process_id.remote(), timeout=120)  # idle until the first collect
        for _ in range(20):
            trainer.run_iteration()
            # both actors have a batch in flight now; actor 0's may have finished while the learner
            # learned (a slow machine): then its kill would lose nothing. Kill one still playing.
            ref, killed = next((ref, task) for ref, task in collector.inflight.items() if task.actor == 0)
            if not ray.wait([ref], timeout=0)[0]:
                break
        else:
            pytest.fail("actor 0's batch always finished before the learner did")
        lost_ids = set(range(killed.first_episode_id, killed.first_episode_id + 4))
        delivered_before = collector.stats[0].episodes
        os.kill(pid, signal.SIGKILL)
        while collector.stats[0].episodes == delivered_before:  # until the replacement delivers
            trainer.run_iteration()
        status = collector.status()
    finally:
        trainer.close()
    assert status["actor_restarts"] == 1
    assert status["actors_alive"] == 2   # the replacement plays
    ids, versions = _stored(trainer)
    assert not lost_ids & set(ids.tolist())                      # the killed batch never reached the replay
    assert (np.diff(versions) >= 0).all()


def test_a_batch_delivered_twice_is_ingested_once(local_ray, features, tmp_path):
    trainer = Trainer(features, tmp_path / "ck", _config(actors=1, actor_episodes=4))
    try:
        batches = trainer.collect()
        assert sum(trainer.replay.add(b) for b in batches) == 4
        assert sum(trainer.replay.add(b) for b in batches) == 0  # the same ids again: stored once
        assert len(trainer.replay) == 4
    finally:
        trainer.close()


def test_batches_older_than_the_policy_lag_are_counted_and_dropped(local_ray, features, tmp_path):
    # two actors and a lag of 0: a batch played before the learner's last step is too old
    trainer = Trainer(features, tmp_path / "ck", _config(max_policy_lag=0, min_replay_episodes=4))
    try:
        for _ in range(5):
            trainer.run_iteration()
        status = trainer.actors.status()
        learner_steps = trainer.learner.steps
    finally:
        trainer.close()
    assert status["stale_episodes_dropped"] > 0
    assert status["stale_episodes_dropped"] % 4 == 0           # whole batches
    assert trainer.episode + status["stale_episodes_dropped"] <= trainer.actors.counters.delivered_episodes
    ids, versions = _stored(trainer)
    assert versions.max() <= learner_steps
