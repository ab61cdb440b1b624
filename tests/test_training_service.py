"""The training service as a real process: endpoints, pause, kill -9 and
resume, a stalled loop, startup errors."""

from __future__ import annotations

import re
import signal
import subprocess
import sys

import httpx
import pytest

from shared.config import SyntheticMarketConfig
from shared.data.store import BarStore
from shared.data.synthetic import generate_bars
from shared.features.store import build_feature_store
from shared.volume.checkpoints import CheckpointDir
from tests.service_helpers import ROOT, free_port, start, wait_for


def _env(data_dir, checkpoints, port, **extra) -> dict[str, str]:
    env = {"MICRO_DATA_DIR": str(data_dir), "CHECKPOINT_DIR": str(checkpoints), "TRAINING_PORT": str(port),
           "TRAINING_EPISODES_PER_ITERATION": "4", "TRAINING_CHECKPOINT_INTERVAL_EPISODES": "4",
           "TRAINING_SEARCH__SIMULATIONS": "3"}
    env.update({k: str(v) for k, v in extra.items()})
    return env


def test_endpoints_pause_kill9_and_resume(data_dir, tmp_path):
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    checkpoints = tmp_path / "checkpoints"
    volume = CheckpointDir(checkpoints)
    service = start("services.training", _env(data_dir, checkpoints, port), tmp_path / "training.log")
    try:
        wait_for(f"{url}/ready", process=service)
        wait_for(f"{url}/status", lambda r: r.json()["checkpoints_written"] >= 2, process=service)
        health = httpx.get(f"{url}/health").json()
        assert health["status"] == "ok" and health["heartbeat_age_seconds"] < 60
        metrics = httpx.get(f"{url}/metrics").text
        for name in ("micro_training_episodes_total", "micro_training_learner_steps_total", "micro_training_loss",
                     "micro_training_episodes_per_hour", "micro_training_replay_episodes",
                     "micro_training_expectancy_pips", "micro_training_win_rate_ratio", "micro_training_trade_ratio",
                     "micro_training_action_share_ratio", "micro_training_checkpoints_written_total",
                     "micro_training_last_checkpoint_timestamp_seconds"):
            assert name in metrics, name
        # the metrics follow the iteration's report, a moment after the trainer's own counters
        episodes = lambda r: float(re.search(r"^micro_training_episodes_total (\S+)", r.text, re.M).group(1))  # noqa: E731
        wait_for(f"{url}/metrics", lambda r: episodes(r) >= 8, process=service, timeout=60)

        (volume.control / "training.pause").touch()
        wait_for(f"{url}/status", lambda r: r.json()["status"] == "paused", process=service)
        paused_at = httpx.get(f"{url}/status").json()["episode"]
        assert "micro_training_paused 1.0" in httpx.get(f"{url}/metrics").text
        assert httpx.get(f"{url}/health").status_code == 200  # a paused loop is alive
        (volume.control / "training.pause").unlink()
        wait_for(f"{url}/status", lambda r: r.json()["episode"] > paused_at, process=service)

        before = [ep for ep, _ in volume.candidates()]
        service.send_signal(signal.SIGKILL)
        service.wait()
    finally:
        service.kill()

    # what a writer killed mid-write leaves; the restarted service clears it (a name check alone
    # would race with the new process's own checkpoint being written)
    orphan = volume.training / ".tmp-ckpt-ep99999999.pt.killed"
    orphan.write_bytes(b"half a checkpoint")
    service = start("services.training", _env(data_dir, checkpoints, port), tmp_path / "training.log")
    try:
        status = wait_for(f"{url}/ready", process=service)
        status = httpx.get(f"{url}/status").json()
        assert status["resumed"] and status["episode"] >= max(before)
        wait_for(f"{url}/status", lambda r: r.json()["last_checkpoint_episode"] > max(before), process=service)
        after = [ep for ep, _ in volume.candidates()]
        assert after == sorted(set(after)), "no repeated checkpoint numbers"
        assert max(after) > max(before)
        assert not orphan.exists(), "the killed writer's temp file is cleared at start"
    finally:
        service.kill()
        service.wait()


def test_a_stalled_loop_exits_non_zero(data_dir, tmp_path):
    # an iteration of 64 episodes takes seconds: longer than a 1-second stall limit
    env = _env(data_dir, tmp_path / "ck", free_port(), TRAINING_EPISODES_PER_ITERATION=64, TRAINING_STALL_SECONDS=1)
    service = start("services.training", env, tmp_path / "training.log")
    assert service.wait(timeout=120) == 70
    assert "stalled" in (tmp_path / "training.log").read_text()


@pytest.mark.parametrize(
    "env, message",
    [
        ({"TRAINING_SEARCH__SIMULATIONS": "0"}, "bad configuration"),
        ({"TRAINING_ENV__REWARD": "sharpe"}, "bad configuration"),
        ({"MICRO_DATA_DIR": "/nonexistent"}, "does not exist"),
        ({"TRAINING_DEVICE": "tpu"}, "bad configuration"),   # was a RuntimeError traceback, exit 1
        ({"TRAINING_DEVICE": "cuda:7"}, "CUDA device"),      # asked for, not there
    ],
)
def test_startup_errors_are_clear(data_dir, tmp_path, env, message):
    full = {**_env(data_dir, tmp_path / "ck", free_port()), **env}
    result = subprocess.run([sys.executable, "-m", "services.training"], cwd=ROOT, env={**__import__("os").environ, **full},
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert message in result.stderr


def test_empty_train_split_is_a_clear_startup_error(tmp_path):
    # 2,000 bars: the train region (70%) is shorter than the 1,500-bar warm-up plus a session
    data = tmp_path / "data"
    with BarStore(data / "market.duckdb") as store:
        store.upsert("GBPJPY", "M1", generate_bars(SyntheticMarketConfig(weeks=1), max_bars=2_000))
    build_feature_store(data / "market.duckdb", "GBPJPY", progress=False)
    result = subprocess.run([sys.executable, "-m", "services.training"], cwd=ROOT, capture_output=True, text=True,
                            env={**__import__("os").environ, **_env(data, tmp_path / "ck", free_port())}, timeout=120)
    assert result.returncode == 2 and "has no sessions" in result.stderr


def test_status_episode_never_goes_back_after_a_crash(features, tmp_path):
    """Regression (issue 15): /status showed the episodes collected in the iteration under
    way; a crash before latest.pt was written made it go back after the restart."""
    from services.training.config import TrainingSettings
    from services.training.service import TrainingService
    from shared.config import NetworkConfig, TrainingConfig
    from shared.training.trainer import Trainer

    config = TrainingConfig(network=NetworkConfig(tcn_channels=16, hidden=32, dropout=0.0), episodes_per_iteration=2)
    settings = TrainingSettings(checkpoint_dir=tmp_path)
    trainer = Trainer(features, tmp_path, config)
    trainer.run_iteration()
    # the iterations table as Parquet, readable while training holds metrics.duckdb
    import duckdb

    copy = tmp_path / "training" / "export" / "iterations.parquet"
    assert duckdb.sql(f"SELECT episode FROM '{copy}'").fetchall() == [(trainer.episode,)]
    service = TrainingService(settings, trainer)
    saved = service.status_page()["episode"]
    trainer.episode += 64  # collected, then the process is killed before latest.pt
    page = service.status_page()
    assert page["episode"] == saved and page["episode_in_flight"] == saved + 64
    trainer.close()
    restarted = TrainingService(settings, Trainer(features, tmp_path, config))
    assert restarted.status_page()["episode"] == saved
    restarted.trainer.close()
