"""The training loop, top to bottom: collect E episodes, learn, checkpoint.

`Trainer.run_iteration()` is one pass; the training service calls it in a
loop, tests call it directly. Checkpoints follow the volume contract in
shared/volume/checkpoints.py; resume restores the model, the optimiser, the counters
and every random generator, and the episode counter never goes back (it is at
least the newest candidate's on disk).
"""

from __future__ import annotations

import io
import json
import logging
import time
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path

import duckdb
import numpy as np
import torch

from shared.config import TrainingConfig
from shared.core.feature_spec import FEATURE_SPEC_VERSION, TEMPORAL_FEATURES
from shared.env import TradingEnv
from shared.features.store import FeatureSet
from shared.model import MuZeroNetworks, parameter_counts
from shared.search import NetworkSearch
from shared.training.learner import Learner
from shared.training.replay import ReplayBuffer
from shared.training.selfplay import EpisodeBatch, play_episodes
from shared.volume.candidates import config_object, read_config
from shared.volume.checkpoints import CheckpointDir, atomic_write_bytes

log = logging.getLogger(__name__)


@dataclass
class IterationReport:
    episode: int
    learner_steps: int
    collect_seconds: float
    learn_seconds: float
    episodes: int
    trades: int                 # closed trades; each was one entry (episodes close what is open)
    expectancy_pips: float
    win_rate: float
    trade_ratio: float
    pnl_pips_mean: float
    action_share: list[float]
    losses: dict[str, float]
    checkpoint: str | None
    replay_episodes: int
    decisions: int = 0

    @property
    def entries(self) -> int:
        return self.trades

    @property
    def episodes_per_hour(self) -> float:
        seconds = self.collect_seconds + self.learn_seconds
        return self.episodes / seconds * 3600 if seconds > 0 else 0.0


def trade_statistics(batch: EpisodeBatch) -> tuple[int, float, float, float, list[float]]:
    """(trades, expectancy in pips, win rate, trade ratio, action shares)."""
    trades = [p for episode in batch.trades_pips for p in episode]
    counts = batch.action_counts.sum(axis=0).astype(float)
    share = (counts / counts.sum()).tolist() if counts.sum() else [0.0] * len(counts)
    expectancy = float(np.mean(trades)) if trades else 0.0
    win_rate = float(np.mean([p > 0 for p in trades])) if trades else 0.0
    changes = batch.position_changes.sum() if batch.position_changes is not None else 0
    trade_ratio = float(changes / counts.sum()) if counts.sum() else 0.0  # share of decisions that were orders
    return len(trades), expectancy, win_rate, trade_ratio, share


def _candidate_payload(data: bytes) -> dict | None:
    """A candidate file's payload (tensors and plain data only), or None if it does not load."""
    try:
        payload = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception:  # noqa: BLE001 - any failure: not a whole candidate
        return None
    return payload if isinstance(payload, dict) and payload.get("kind") == "micro-muzero-candidate" else None


def serialize(payload: dict) -> bytes:
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    return buffer.getvalue()


class Trainer:
    def __init__(self, features: FeatureSet, checkpoint_root: Path, config: TrainingConfig = TrainingConfig(),
                 device: torch.device | None = None, config_sources: dict[str, str] | None = None) -> None:
        self.features = features
        # derived, not a knob: an episode is one of the store's sessions
        config = replace(config, env=replace(config.env, episode_bars=features.session_config.length_bars))
        self.config = config
        self.config_sources = dict(config_sources or {})  # where each non-default value came from
        self.device = device or torch.device("cpu")
        self.starts = features.require_sessions("train")
        self.env = TradingEnv(features, config.env)
        if self.env.num_actions != config.network.num_actions:
            raise ValueError(f"the {config.env.action_space} space has {self.env.num_actions} actions, "
                             f"the network {config.network.num_actions}")
        torch.manual_seed(config.seed)
        self.model = MuZeroNetworks(config.network).to(self.device)
        self.search = NetworkSearch(self.model, config.episodes_per_iteration, self.env.space, config.search, self.device)
        self.learner = Learner(self.model, config.learner, self.device)
        self.replay = ReplayBuffer(features.features, self.env.steps_per_episode, self.env.num_actions, config.replay)
        self.rng = np.random.default_rng(config.seed)
        self.episode = 0            # collected, possibly not saved yet
        self.saved_episode = 0      # in latest.pt (or the newest candidate): where a restart resumes
        self.last_checkpoint_episode = 0
        self.checkpoints_written = 0
        self.last_checkpoint_time: float | None = None
        self.volume = CheckpointDir(checkpoint_root)
        removed = self.volume.prepare()
        if removed:
            log.warning("removed %d orphaned temp files from an interrupted write: %s", len(removed),
                        ", ".join(p.name for p in removed))
        self.metrics_db = duckdb.connect(str(self.volume.training / "metrics.duckdb"))
        self.metrics_db.execute(
            """CREATE TABLE IF NOT EXISTS iterations (
                   recorded_at TIMESTAMP, episode BIGINT, learner_steps BIGINT, episodes_per_hour DOUBLE,
                   expectancy_pips DOUBLE, win_rate DOUBLE, trade_ratio DOUBLE, pnl_pips_mean DOUBLE,
                   trades BIGINT, action_share VARCHAR, losses VARCHAR, checkpoint VARCHAR, replay_episodes BIGINT)"""
        )
        signalled, dropped = self.volume.repair_signals(_candidate_payload)
        for path in signalled:
            log.warning("signalled %s: written before a stop that came before its .ready", path.name)
        for path in dropped:
            log.warning("removed %s: it does not load (a write cut short)", path.name)
        self.volume.prune(config.keep_checkpoints)
        self.resumed = self._resume()

    # --- checkpoints ---------------------------------------------------------------

    def model_payload(self) -> dict:
        """What a candidate holds: everything validation and live need, nothing secret."""
        return {
            "kind": "micro-muzero-candidate",
            "episode": self.episode,
            "learner_steps": self.learner.steps,
            "model_state": self.model.state_dict(),
            "config": config_object(self.config, self.config_sources),
            "feature_spec_version": FEATURE_SPEC_VERSION,
            "feature_names": list(TEMPORAL_FEATURES),
            "instrument": self.features.instrument,
            "granularity": self.features.granularity,
            "config_hash": self.config.config_hash(),
        }

    def resume_payload(self) -> dict:
        payload = self.model_payload()
        payload.update(
            kind="micro-muzero-resume",
            optimizer_state=self.learner.optimizer.state_dict(),
            last_checkpoint_episode=self.last_checkpoint_episode,
            checkpoints_written=self.checkpoints_written,
            numpy_rng=self.rng.bit_generator.state,
            torch_rng=torch.get_rng_state(),
        )
        return payload

    def _resume(self) -> bool:
        newest_candidate = max((ep for ep, _ in self.volume.candidates()), default=0)
        if not self.volume.latest.exists():
            self.episode = self.last_checkpoint_episode = self.saved_episode = newest_candidate
            return False
        state = torch.load(self.volume.latest, map_location=self.device, weights_only=True)  # tensors and plain data only
        if state.get("feature_spec_version") != FEATURE_SPEC_VERSION:
            raise ValueError(f"{self.volume.latest} was written with feature spec {state.get('feature_spec_version')}, "
                             f"this code uses {FEATURE_SPEC_VERSION}: move it away to start afresh")
        if read_config(state, self.volume.latest.name).network != self.config.network:
            raise ValueError(f"{self.volume.latest} holds another network architecture; "
                             "move it away or restore the settings it was trained with")
        self.model.load_state_dict(state["model_state"])
        self.learner.optimizer.load_state_dict(state["optimizer_state"])
        self.learner.steps = int(state["learner_steps"])
        self.rng.bit_generator.state = state["numpy_rng"]
        torch.set_rng_state(state["torch_rng"])
        self.checkpoints_written = int(state.get("checkpoints_written", 0))
        # never go back: a candidate written after the last resume state still counts
        self.episode = self.saved_episode = max(int(state["episode"]), newest_candidate)
        self.last_checkpoint_episode = max(int(state["last_checkpoint_episode"]), newest_candidate)
        log.info("resumed at episode %d (learner step %d)", self.episode, self.learner.steps)
        return True

    def write_checkpoint(self) -> str:
        data = serialize(self.model_payload())
        created = datetime.now(timezone.utc).isoformat()
        signal = self.volume.write_candidate(self.episode, data, created_at=created,
                                             feature_spec_version=FEATURE_SPEC_VERSION,
                                             config_hash=self.config.config_hash())
        self.volume.prune(self.config.keep_checkpoints)
        self.last_checkpoint_episode = self.episode
        self.checkpoints_written += 1
        self.last_checkpoint_time = time.time()
        return signal.checkpoint

    def write_latest(self) -> None:
        atomic_write_bytes(self.volume.latest, serialize(self.resume_payload()))
        self.saved_episode = self.episode

    # --- the loop ------------------------------------------------------------------

    def run_iteration(self) -> IterationReport:
        c = self.config
        t0 = time.perf_counter()
        starts = self.rng.choice(self.starts, size=c.episodes_per_iteration)
        self.search.refresh()  # the search's frozen networks follow the learner's latest weights
        batch = play_episodes(self.env, self.search, starts, self.rng, exploration=c.exploration, episode=self.episode)
        self.replay.add(batch)
        self.episode += batch.episodes
        t1 = time.perf_counter()

        losses: dict[str, float] = {}
        if len(self.replay) >= c.replay_warmup_episodes:
            steps = max(1, round(c.learner_steps_per_episode * batch.episodes)) if c.learner_steps_per_episode else 0
            sums: dict[str, float] = {}
            for _ in range(steps):
                for name, value in self.learner.step(self.replay.sample(c.learner.batch_size, self.rng)).items():
                    sums[name] = sums.get(name, 0.0) + value
            losses = {name: total / steps for name, total in sums.items()} if steps else {}
        t2 = time.perf_counter()

        checkpoint = None
        if self.episode - self.last_checkpoint_episode >= c.checkpoint_interval_episodes:
            checkpoint = self.write_checkpoint()
        self.write_latest()

        trades, expectancy, win_rate, trade_ratio, share = trade_statistics(batch)
        report = IterationReport(
            episode=self.episode, learner_steps=self.learner.steps, collect_seconds=t1 - t0, learn_seconds=t2 - t1,
            episodes=batch.episodes, trades=trades, expectancy_pips=expectancy, win_rate=win_rate,
            trade_ratio=trade_ratio, pnl_pips_mean=float(batch.pnl_pips.mean()), action_share=share, losses=losses,
            checkpoint=checkpoint, replay_episodes=len(self.replay), decisions=int(batch.action_counts.sum()),
        )
        self.metrics_db.execute(
            "INSERT INTO iterations VALUES (now()::TIMESTAMP, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [report.episode, report.learner_steps, report.episodes_per_hour, expectancy, win_rate, trade_ratio,
             report.pnl_pips_mean, trades, json.dumps(share), json.dumps(losses), checkpoint, report.replay_episodes],
        )
        return report

    def describe(self) -> str:
        counts = parameter_counts(self.model)
        return "parameters: " + ", ".join(f"{name} {count:,}" for name, count in counts.items())

    def close(self) -> None:
        self.metrics_db.close()

