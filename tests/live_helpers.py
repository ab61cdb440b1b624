"""Models and fixtures for the live tests."""

from __future__ import annotations

from pathlib import Path

import torch

from shared.config import NetworkConfig, TrainingConfig
from shared.training.trainer import Trainer
from shared.volume.candidates import load_candidate
from shared.volume.checkpoints import sha256_file
from shared.volume.promotion import promote

SMALL = NetworkConfig(tcn_channels=16, hidden=32, dropout=0.0)


def trading_checkpoint(features, root: Path, episode: int, *, prefer: tuple[float, float, float, float] = (-20, 20, -20, 20)):
    """A real checkpoint whose policy head strongly prefers BUY and CLOSE, so
    it trades on (almost) every bar: orders to exercise, not skill."""
    trainer = Trainer(features, root, TrainingConfig(network=SMALL, episodes_per_iteration=2))
    with torch.no_grad():
        head = trainer.model.policy_net[-1]
        head.weight.zero_()
        head.bias.copy_(torch.tensor(prefer))
    trainer.episode = episode
    name = trainer.write_checkpoint()
    trainer.close()
    return root / "training" / name


def promote_checkpoint(root: Path, path: Path, episode: int):
    return promote(root, path.read_bytes(), sha256_file(path), episode, {"quality": float(episode)})


def load(path: Path):
    return load_candidate(path)


def synthetic_store(db: Path, instruments: tuple[str, ...], *, weeks: int = 4, seed: int = 3) -> Path:
    """A store holding a synthetic market and its feature set per instrument (the data job's layout)."""
    from shared.data.store import BarStore
    from shared.data.synthetic import generate_bars, synthetic_market_for
    from shared.features.store import build_feature_store

    db.parent.mkdir(parents=True, exist_ok=True)
    for i, name in enumerate(instruments):
        with BarStore(db) as store:
            store.upsert(name, "M1", generate_bars(synthetic_market_for(name, weeks=weeks, seed=seed + i)))
        build_feature_store(db, name, progress=False)
    return db
