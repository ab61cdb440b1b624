"""What the offline families' trainers share (TRAINING_MODEL=tft, dt): they learn from a fixed set
of windows by gradient steps, not by self-play, and write their candidates to the checkpoint
volume exactly as the MuZero trainer writes its own (candidate file, `.ready` signal, latest.pt),
so validation and live judge and trade them without knowing how they learned.

The counters the service reads have the MuZero trainer's names: an "episode" here is one
gradient step (candidates are named by it), there are no self-play episodes, no replay. A family
gives its model, its optimizer, `step`, `score_holdout` and what its payload and resume state add.
"""

from __future__ import annotations

import logging
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch

from shared.config import TrainingConfig
from shared.core.bar_sizes import bar_phase_minutes, check_granularity
from shared.core.instruments import get_instrument
from shared.env import TradingEnv
from shared.features.indicators import indicator_features
from shared.features.store import FeatureSet
from shared.model.tft_data import single_instrument
from shared.training.guardian import guardian_for
from shared.training.report import IterationReport, IterationTable
from shared.volume.candidates import candidate_payload, serialize, whole_candidate
from shared.volume.checkpoints import CheckpointDir, atomic_write_bytes

log = logging.getLogger("shared.training.offline")

HOLDOUT_WINDOWS = 2048  # at most this many held-out windows scored at each candidate


class _Steps:
    """What the service reads as `trainer.learner`: the step counter."""

    def __init__(self) -> None:
        self.steps = 0

    def close(self) -> None:
        pass


class OfflineTrainer:
    """The volume, the counters and the iteration loop of a family trained on fixed windows.
    Subclasses set `model`, `optimizer`, `family_config` (steps_per_iteration,
    checkpoint_interval_steps, max_epochs, patience_epochs) and `steps_per_epoch`, and define
    `step() -> float` and `score_holdout() -> dict` (with "holdout_loss")."""

    RESUME_KIND = ""         # latest.pt's kind: another family's file is refused
    LOSS_NAME = ""           # the training loss's name in micro_training_loss
    PAYLOAD_KEY = ""         # the candidate field holding the last hold-out score

    def __init__(self, features: FeatureSet, checkpoint_root: Path, config: TrainingConfig,
                 device: torch.device | None, config_sources: dict[str, str] | None) -> None:
        self.device = device or torch.device("cpu")
        self.features = features
        self.config = config
        self.config_sources = dict(config_sources or {})
        self.bar_minutes = check_granularity(features.granularity)
        self.bar_phase_minutes = bar_phase_minutes(features.bars.ts, self.bar_minutes)
        self.env = TradingEnv(features, config.env)  # its action names label the service's metrics
        # both offline families read indicators-v1 (causal over the whole series), one instrument each
        self.calendar = get_instrument(single_instrument(features)).calendar
        self.indicators = indicator_features(features.bars, self.calendar)
        self.rng = np.random.default_rng(config.seed)
        self.learner = _Steps()
        self.actors = None          # no self-play: the service's self-play status says so
        self.replay: list = []      # nor a replay buffer
        self.best_holdout = float("inf")
        self.steps_at_best = 0
        self.last_holdout: dict = {}
        self.checkpoints_written = 0
        self.last_checkpoint_episode = 0
        self.guardian: dict | None = None  # trained before the first iteration (TRAINING_GUARDIAN__TRAIN_STEPS)

    def open_volume(self, checkpoint_root: Path) -> None:
        """Once the model and optimizer exist: the volume prepared, latest.pt resumed."""
        self.volume = CheckpointDir(checkpoint_root)
        removed = self.volume.prepare()
        if removed:
            log.warning("removed %d orphaned temp files from an interrupted write", len(removed))
        self.iterations = IterationTable(self.volume.training / "metrics.duckdb")
        self.volume.repair_signals(whole_candidate)
        self.volume.prune(self.config.keep_checkpoints)
        self.resumed = self._restore()
        self.saved_episode = self.learner.steps

    # --- counters the service reads ----------------------------------------------

    @property
    def episode(self) -> int:
        return self.learner.steps

    @property
    def finished(self) -> str | None:
        """Why training stops (max epochs, early stopping), or None."""
        c, steps = self.family_config, self.learner.steps
        if steps >= c.max_epochs * self.steps_per_epoch:
            return f"max_epochs {c.max_epochs} reached"
        if steps - self.steps_at_best >= c.patience_epochs * self.steps_per_epoch and self.checkpoints_written:
            return f"no better hold-out loss for {c.patience_epochs} epochs (best {self.best_holdout:.4f})"
        return None

    # --- learning ------------------------------------------------------------------

    def run_iteration(self) -> IterationReport:
        self.guardian = guardian_for(self.guardian, self.features, self.config, self.indicators)
        t0 = time.perf_counter()
        losses = [self.step() for _ in range(self.family_config.steps_per_iteration)]
        t1 = time.perf_counter()
        checkpoint = None
        if self.learner.steps - self.last_checkpoint_episode >= self.family_config.checkpoint_interval_steps:
            self.last_holdout = self.score_holdout()
            if self.last_holdout["holdout_loss"] < self.best_holdout:
                self.best_holdout, self.steps_at_best = self.last_holdout["holdout_loss"], self.learner.steps
            checkpoint = self.write_checkpoint()
        self.write_latest()
        report = IterationReport(
            episode=self.learner.steps, learner_steps=self.learner.steps, collect_seconds=0.0, learn_seconds=t1 - t0,
            episodes=len(losses), trades=0, expectancy_pips=0.0, win_rate=0.0, trade_ratio=0.0, pnl_pips_mean=0.0,
            action_share=[], losses={self.LOSS_NAME: float(np.mean(losses)),
                                     **({"holdout": self.last_holdout["holdout_loss"]} if self.last_holdout else {})},
            checkpoint=checkpoint, replay_episodes=0)
        self.iterations.insert(report)
        return report

    # --- the volume ----------------------------------------------------------------

    def model_payload(self) -> dict:
        payload = candidate_payload(self.model, self.config, self.config_sources, episode=self.learner.steps,
                                    learner_steps=self.learner.steps, instruments=self.features.instrument_names,
                                    granularity=self.features.granularity, bar_phase_minutes=self.bar_phase_minutes,
                                    guardian=self.guardian)
        return {**payload, self.PAYLOAD_KEY: dict(self.last_holdout)}  # its score on held-out train windows

    def resume_state(self) -> dict:
        """What latest.pt adds for this family (read back by `restore_state`)."""
        return {}

    def restore_state(self, state: dict) -> None:
        pass

    def write_checkpoint(self) -> str:
        payload = self.model_payload()
        signal = self.volume.write_candidate(self.learner.steps, serialize(payload),
                                             created_at=datetime.now(timezone.utc).isoformat(),
                                             feature_spec_version=payload["feature_spec_version"],
                                             config_hash=self.config.config_hash())
        self.volume.prune(self.config.keep_checkpoints)
        self.last_checkpoint_episode = self.learner.steps
        self.checkpoints_written += 1
        return signal.checkpoint

    def write_latest(self) -> None:
        state = {**self.model_payload(), **self.resume_state(), "kind": self.RESUME_KIND,
                 "optimizer_state": self.optimizer.state_dict(),
                 "best_holdout": self.best_holdout, "steps_at_best": self.steps_at_best,
                 "last_checkpoint_episode": self.last_checkpoint_episode,
                 "checkpoints_written": self.checkpoints_written, "numpy_rng": self.rng.bit_generator.state,
                 "torch_rng": torch.get_rng_state()}
        atomic_write_bytes(self.volume.latest, serialize(state))
        self.saved_episode = self.learner.steps

    def _restore(self) -> bool:
        newest = max((ep for ep, _ in self.volume.candidates()), default=0)
        self.learner.steps = self.last_checkpoint_episode = newest  # names never reused
        if not self.volume.latest.exists():
            return False
        family = self.config.model
        state = torch.load(self.volume.latest, map_location=self.device, weights_only=True)
        if state.get("kind") != self.RESUME_KIND:
            raise ValueError(f"{self.volume.latest} is another model family's run (TRAINING_MODEL); move it away "
                             f"or use another CHECKPOINT_DIR to train the {family} model")
        try:
            self.model.load_state_dict(state["model_state"])
        except RuntimeError as error:
            raise ValueError(f"{self.volume.latest} holds another {family} architecture ({error}); move it away or "
                             "restore the settings it was trained with") from None
        self.optimizer.load_state_dict(state["optimizer_state"])
        self.learner.steps = max(int(state["learner_steps"]), newest)
        self.best_holdout, self.steps_at_best = float(state["best_holdout"]), int(state["steps_at_best"])
        self.last_checkpoint_episode = int(state["last_checkpoint_episode"])
        self.checkpoints_written = int(state["checkpoints_written"])
        self.last_holdout = dict(state.get(self.PAYLOAD_KEY) or {})
        self.guardian = state.get("guardian")
        self.rng.bit_generator.state = state["numpy_rng"]
        torch.set_rng_state(state["torch_rng"])
        self.restore_state(state)
        log.info("resumed the %s model from %s at step %d", family, self.volume.latest, self.learner.steps)
        return True

    def close(self) -> None:
        self.iterations.close()
