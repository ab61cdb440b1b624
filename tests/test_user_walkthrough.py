"""The README's path for a user's own file, command by command: an hourly EURUSD file written by
pandas, `micro data import`, the market named once, `micro data prepare`, training, `micro validate`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from shared.config import NetworkConfig, TrainingConfig

ROOT = Path(__file__).resolve().parents[1]


def hourly_eurusd_csv(path: Path, weeks: int = 40) -> pd.DataFrame:
    """What `DataFrame.to_csv` writes for hourly bars with a DatetimeIndex: `Datetime,Open,High,Low,Close,Volume`."""
    index = pd.date_range("2023-01-01 22:00", periods=weeks * 7 * 24, freq="h", tz="UTC", name="Datetime")
    index = index[(index.day_of_week < 5) | ((index.day_of_week == 6) & (index.hour >= 22))]
    index = index[~((index.day_of_week == 4) & (index.hour >= 22))]
    rng = np.random.default_rng(4)
    close = 1.08 + np.cumsum(rng.normal(0, 0.0012, len(index)))
    frame = pd.DataFrame({"Open": np.concatenate([[close[0]], close[:-1]]), "Close": close}, index=index)
    frame["High"] = frame[["Open", "Close"]].max(axis=1) + 0.0004
    frame["Low"] = frame[["Open", "Close"]].min(axis=1) - 0.0004
    frame["Volume"] = rng.integers(100, 1000, len(index))
    frame[["Open", "High", "Low", "Close", "Volume"]].to_csv(path)
    return frame


def micro(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "micro", *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=600)


def test_from_a_pandas_hourly_file_to_a_validation_report(tmp_path):
    csv = tmp_path / "eurusd_h1.csv"
    frame = hourly_eurusd_csv(csv)
    (tmp_path / "project.env").write_text(f"MICRO_INSTRUMENT=EURUSD\nMICRO_GRANULARITY=H1\nMICRO_DATA_DIR={tmp_path}\n"
                                          f"CHECKPOINT_DIR={tmp_path / 'volume'}\n")
    env = {**os.environ, "MICRO_ENV_FILE": str(tmp_path / "project.env")}

    done = micro("data", "import", str(csv), env=env)  # instrument from .env, bar size inferred
    assert done.returncode == 0, done.stderr
    assert "pandas" in done.stdout and f"imported {len(frame)} EURUSD H1 bars" in done.stdout

    done = micro("data", "--quiet", "prepare", env=env)  # the configured market, its H1 session defaults
    assert done.returncode == 0, done.stderr
    assert "sessions: 24 bars" in done.stdout and '"validation": 0' not in done.stdout

    from shared.features.store import load_feature_set
    from shared.training.trainer import Trainer

    features = load_feature_set(tmp_path / "market.duckdb", "EURUSD", "H1")
    trainer = Trainer(features, tmp_path / "volume", TrainingConfig(network=NetworkConfig(tcn_channels=8, hidden=16),
                                                                    episodes_per_iteration=2,
                                                                    checkpoint_interval_episodes=2))
    try:
        checkpoint = trainer.run_iteration().checkpoint
    finally:
        trainer.close()

    done = micro("validate", str(tmp_path / "volume" / "training" / checkpoint), "--set", "simulations=2",
                 "--set", "mc_runs=20", "--set", "max_sessions=3", env=env)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["sessions"] == 3 and report["split"] == "validation"
    assert isinstance(report["passes_gate"], bool) and report["passes_gate"] == (report["reasons"] == [])
