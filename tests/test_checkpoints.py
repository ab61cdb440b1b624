"""The checkpoint volume: atomic files under kill -9, signals, retention."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from shared.volume.checkpoints import TMP_PREFIX, CheckpointDir, ReadySignal, atomic_write_json, sha256_file

ROOT = Path(__file__).resolve().parents[1]


def test_kill9_at_random_moments_never_leaves_a_bad_signal_or_latest(tmp_path):
    rng = np.random.default_rng(0)
    volume = CheckpointDir(tmp_path)
    seen_orphans = 0
    for _ in range(8):
        writer = subprocess.Popen([sys.executable, "-m", "tests.checkpoint_writer", str(tmp_path)], cwd=ROOT)
        time.sleep(0.3 + rng.random() * 0.7)
        writer.send_signal(signal.SIGKILL)
        writer.wait()
        seen_orphans += sum(p.name.startswith(TMP_PREFIX) for p in volume.training.iterdir())
        for ready in volume.training.glob("*.ready"):
            sig = ReadySignal.read(ready)  # never partial JSON
            target = volume.training / sig.checkpoint
            assert target.exists(), f"{ready.name} points to a missing file"
            assert sha256_file(target) == sig.sha256, f"{ready.name} does not match its checkpoint"
        assert volume.latest.exists()
        content = volume.latest.read_bytes()
        assert len(content) > 256 * 1024  # whole, never truncated
        episodes = [ep for ep, _ in volume.candidates()]
        assert episodes == sorted(set(episodes)) and len(episodes) <= 6
    assert max(ep for ep, _ in volume.candidates()) > 8, "the writer made progress across restarts"
    volume.prepare()
    assert not any(p.name.startswith(TMP_PREFIX) for p in volume.training.iterdir()), "orphans cleaned at start"


def test_candidates_are_written_before_their_signal_and_pruned_signal_first(tmp_path):
    volume = CheckpointDir(tmp_path)
    volume.prepare()
    for episode in (50, 100, 150):
        sig = volume.write_candidate(episode, b"model %d" % episode, created_at="2026-01-01T00:00:00+00:00",
                                     feature_spec_version="micro-v1", config_hash="abc")
        assert sig.checkpoint == f"ckpt-ep{episode:08d}.pt"
    payload = json.loads((volume.training / "ckpt-ep00000100.ready").read_text())
    assert set(payload) == {"checkpoint", "sha256", "episode", "created_at", "feature_spec_version", "config_hash"}
    assert payload["sha256"] == sha256_file(volume.training / "ckpt-ep00000100.pt")
    volume.prune(2)
    assert [ep for ep, _ in volume.candidates()] == [100, 150]
    assert not (volume.training / "ckpt-ep00000050.ready").exists()
    assert oct(os.stat(volume.training / "ckpt-ep00000150.pt").st_mode & 0o777) == "0o644"


def test_a_signal_missing_a_field_is_rejected(tmp_path):
    atomic_write_json(tmp_path / "x.ready", {"checkpoint": "x.pt"})
    with pytest.raises(ValueError, match="lacks"):
        ReadySignal.read(tmp_path / "x.ready")


def test_a_candidate_without_its_signal_is_signalled_or_removed_at_start(features, tmp_path):
    """Regression (issue 15): a kill between ckpt-epN.pt and its .ready left the candidate
    never validated; a stray .ready without its candidate counted for nothing."""
    from shared.config import NetworkConfig, TrainingConfig
    from shared.training.trainer import Trainer

    config = TrainingConfig(network=NetworkConfig(tcn_channels=16, hidden=32, dropout=0.0), episodes_per_iteration=2)
    trainer = Trainer(features, tmp_path, config)
    for episode in (10, 20, 30):
        trainer.episode = episode
        trainer.write_checkpoint()
    trainer.close()
    training = tmp_path / "training"
    (training / "ckpt-ep00000020.ready").unlink()                      # killed before the signal
    whole = (training / "ckpt-ep00000030.pt").read_bytes()
    (training / "ckpt-ep00000030.ready").unlink()
    (training / "ckpt-ep00000030.pt").write_bytes(whole[: len(whole) // 3])  # and one cut short
    atomic_write_json(training / "ckpt-ep00000040.ready", {"checkpoint": "ckpt-ep00000040.pt"})  # a stray signal

    Trainer(features, tmp_path, config).close()  # the restart
    signal = ReadySignal.read(training / "ckpt-ep00000020.ready")
    assert signal.sha256 == sha256_file(training / "ckpt-ep00000020.pt") and signal.episode == 20
    assert not (training / "ckpt-ep00000030.pt").exists() and not (training / "ckpt-ep00000030.ready").exists()
    assert not (training / "ckpt-ep00000040.ready").exists()
    assert sorted(p.name for p in training.glob("ckpt-*")) == [
        "ckpt-ep00000010.pt", "ckpt-ep00000010.ready", "ckpt-ep00000020.pt", "ckpt-ep00000020.ready"]
