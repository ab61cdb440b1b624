"""TRAINING_MODEL=tft: the Oracle forecaster trained on the train split, its candidates written
to the checkpoint volume exactly as the MuZero trainer writes its own (candidate file, `.ready`
signal, latest.pt), so validation and live judge and trade it without knowing how it learned.

What it learns from: windows at every origin bar t of the train sessions whose D forecast bars
also lie in train sessions (shared/model/tft_data.py: inputs from rows <= t, targets after), the
indicators-v1 features over the whole bar series (causal). The newest `holdout_share` of those
origins is held out: its quantile loss decides early stopping (`patience_epochs` epochs without a
better one) and its quantile coverage is the calibration each candidate carries. Scaling is
fitted on the learning windows' bars only.

The counters the service reads have the MuZero trainer's names: an "episode" here is one
gradient step (candidates are named by it), there are no self-play episodes, no replay.
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
from shared.core.feature_spec import INDICATOR_WARMUP_BARS, INDICATORS_SPEC_VERSION
from shared.core.instruments import get_instrument
from shared.env import TradingEnv
from shared.features.indicators import indicator_features
from shared.features.store import FeatureSet
from shared.model.tft import TemporalFusionTransformer, coverage, quantile_loss
from shared.model.tft_data import build_windows, fit_scaling, single_instrument
from shared.training.report import IterationReport, IterationTable
from shared.volume.candidates import candidate_payload, serialize, whole_candidate
from shared.volume.checkpoints import CheckpointDir, atomic_write_bytes

log = logging.getLogger("shared.training.forecaster")

RESUME_KIND = "micro-muzero-forecaster-resume"
HOLDOUT_WINDOWS = 2048  # at most this many held-out windows scored at each candidate


def train_origins(features: FeatureSet, encoder_bars: int, decoder_bars: int) -> np.ndarray:
    """[B] origins t whose encoder window starts after the indicators' warm-up and whose D target
    bars t + 1 .. t + D are all bars of train sessions (never a validation or test bar)."""
    n = len(features.bars)
    in_train = np.zeros(n + 1, bool)
    length = features.session_config.length_bars
    for start in features.require_sessions("train"):
        in_train[start : start + length] = True
    covered = np.concatenate([[0], np.cumsum(in_train[:n])])  # covered[i]: train bars before bar i
    t = np.arange(INDICATOR_WARMUP_BARS + encoder_bars - 1, n - decoder_bars)
    targets_in_train = covered[t + decoder_bars + 1] - covered[t + 1] == decoder_bars
    return t[targets_in_train & in_train[t]]


class _Steps:
    """What the service reads as `trainer.learner`: the step counter."""

    def __init__(self) -> None:
        self.steps = 0

    def close(self) -> None:
        pass


class ForecasterTrainer:
    def __init__(self, features: FeatureSet, checkpoint_root: Path, config: TrainingConfig,
                 device: torch.device | None = None, config_sources: dict[str, str] | None = None) -> None:
        self.device = device or torch.device("cpu")
        self.features = features
        self.config = config
        self.config_sources = dict(config_sources or {})
        c = config.tft
        instrument = get_instrument(single_instrument(features))
        self.bar_minutes = check_granularity(features.granularity)
        self.bar_phase_minutes = bar_phase_minutes(features.bars.ts, self.bar_minutes)
        self.calendar = instrument.calendar
        self.env = TradingEnv(features, config.env)  # its action names label the service's metrics
        self.starts = features.require_sessions("train")
        self.indicators = indicator_features(features.bars, instrument.calendar)
        origins = train_origins(features, c.encoder_bars, c.decoder_bars)
        held = max(1, int(len(origins) * c.holdout_share))
        if len(origins) - held < c.batch_size:
            raise ValueError(f"the train split gives {len(origins)} forecast windows of {c.encoder_bars} + "
                             f"{c.decoder_bars} bars: too few for batches of {c.batch_size} (more bars, or smaller "
                             "TRAINING_TFT__BATCH_SIZE / TRAINING_TFT__ENCODER_BARS)")
        self.learn_origins, self.holdout_origins = origins[:-held], origins[-held:]
        # the held-out windows: the newest, scored at every candidate (an evenly spread subset of them)
        scored = self.holdout_origins[np.linspace(0, held - 1, min(held, HOLDOUT_WINDOWS)).astype(np.int64)]
        self.holdout = self._windows(scored)
        bars = np.unique((self.learn_origins[:, None] + np.arange(1 - c.encoder_bars, c.decoder_bars + 1)).ravel())
        scaling = fit_scaling(self.indicators[bars], features.bars.close[bars], len(bars), first=0)
        torch.manual_seed(config.seed)
        self.model = TemporalFusionTransformer(c).to(self.device)
        self.model.set_scaling(scaling.observed_mean, scaling.observed_std, scaling.return_std)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=c.learning_rate)
        self.rng = np.random.default_rng(config.seed)
        self.learner = _Steps()
        self.actors = None          # no self-play: the service's self-play status says so
        self.replay: list = []      # nor a replay buffer
        self.best_holdout = float("inf")
        self.steps_at_best = 0
        self.last_holdout: dict = {}
        self.checkpoints_written = 0
        self.last_checkpoint_episode = 0
        self.volume = CheckpointDir(checkpoint_root)
        removed = self.volume.prepare()
        if removed:
            log.warning("removed %d orphaned temp files from an interrupted write", len(removed))
        self.iterations = IterationTable(self.volume.training / "metrics.duckdb")
        self.volume.repair_signals(whole_candidate)
        self.volume.prune(config.keep_checkpoints)
        self.resumed = self._restore()
        self.saved_episode = self.learner.steps

    # --- counters the service reads ----------------------------------------------

    @property
    def episode(self) -> int:
        return self.learner.steps

    @property
    def steps_per_epoch(self) -> int:
        return max(1, len(self.learn_origins) // self.config.tft.batch_size)

    @property
    def finished(self) -> str | None:
        """Why training stops (max epochs, early stopping), or None."""
        c, steps = self.config.tft, self.learner.steps
        if steps >= c.max_epochs * self.steps_per_epoch:
            return f"max_epochs {c.max_epochs} reached"
        if steps - self.steps_at_best >= c.patience_epochs * self.steps_per_epoch and self.checkpoints_written:
            return f"no better hold-out loss for {c.patience_epochs} epochs (best {self.best_holdout:.4f})"
        return None

    def describe(self) -> str:
        params = sum(p.numel() for p in self.model.parameters())
        return (f"tft forecaster: {params:,} parameters, {len(self.learn_origins):,} learning windows, "
                f"{len(self.holdout_origins):,} held out, {self.steps_per_epoch:,} steps an epoch")

    # --- data ----------------------------------------------------------------------

    def _windows(self, origins: np.ndarray):
        c = self.config.tft
        return build_windows(self.indicators, self.features.bars.close, self.features.bars.ts, origins,
                             encoder_bars=c.encoder_bars, decoder_bars=c.decoder_bars, bar_minutes=self.bar_minutes,
                             calendar=self.calendar)

    def _tensors(self, windows) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return tuple(torch.from_numpy(a).to(self.device) for a in (windows.observed, windows.known, windows.target))

    # --- learning ------------------------------------------------------------------

    def step(self) -> float:
        c = self.config.tft
        observed, known, target = self._tensors(self._windows(self.rng.choice(self.learn_origins, c.batch_size)))
        self.model.train()
        loss = quantile_loss(self.model(observed, known).quantiles, target, c.quantiles, scale=self.model.target_scale)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), c.gradient_clip)
        self.optimizer.step()
        self.learner.steps += 1
        return float(loss.detach())

    def score_holdout(self) -> dict:
        """The held-out windows' quantile loss (scaled, as trained) and each quantile's coverage."""
        c = self.config.tft
        observed, known, target = self._tensors(self.holdout)
        self.model.eval()
        with torch.no_grad():
            forecast = torch.cat([self.model(observed[i : i + 512], known[i : i + 512]).quantiles
                                  for i in range(0, len(target), 512)])
        loss = float(quantile_loss(forecast, target, c.quantiles, scale=self.model.target_scale))
        return {"holdout_loss": loss, "coverage": {str(q): round(f, 4) for q, f in
                                                   coverage(forecast, target, c.quantiles).items()}}

    def run_iteration(self) -> IterationReport:
        t0 = time.perf_counter()
        losses = [self.step() for _ in range(self.config.tft.steps_per_iteration)]
        t1 = time.perf_counter()
        checkpoint = None
        if self.learner.steps - self.last_checkpoint_episode >= self.config.tft.checkpoint_interval_steps:
            self.last_holdout = self.score_holdout()
            if self.last_holdout["holdout_loss"] < self.best_holdout:
                self.best_holdout, self.steps_at_best = self.last_holdout["holdout_loss"], self.learner.steps
            checkpoint = self.write_checkpoint()
        self.write_latest()
        report = IterationReport(
            episode=self.learner.steps, learner_steps=self.learner.steps, collect_seconds=0.0, learn_seconds=t1 - t0,
            episodes=len(losses), trades=0, expectancy_pips=0.0, win_rate=0.0, trade_ratio=0.0, pnl_pips_mean=0.0,
            action_share=[], losses={"quantile": float(np.mean(losses)),
                                     **({"holdout": self.last_holdout["holdout_loss"]} if self.last_holdout else {})},
            checkpoint=checkpoint, replay_episodes=0)
        self.iterations.insert(report)
        return report

    # --- the volume ----------------------------------------------------------------

    def model_payload(self) -> dict:
        payload = candidate_payload(self.model, self.config, self.config_sources, episode=self.learner.steps,
                                    learner_steps=self.learner.steps, instruments=self.features.instrument_names,
                                    granularity=self.features.granularity, bar_phase_minutes=self.bar_phase_minutes)
        return {**payload, "forecast": dict(self.last_holdout)}  # its calibration on held-out train windows

    def write_checkpoint(self) -> str:
        signal = self.volume.write_candidate(self.learner.steps, serialize(self.model_payload()),
                                             created_at=datetime.now(timezone.utc).isoformat(),
                                             feature_spec_version=INDICATORS_SPEC_VERSION,
                                             config_hash=self.config.config_hash())
        self.volume.prune(self.config.keep_checkpoints)
        self.last_checkpoint_episode = self.learner.steps
        self.checkpoints_written += 1
        return signal.checkpoint

    def write_latest(self) -> None:
        state = {**self.model_payload(), "kind": RESUME_KIND, "optimizer_state": self.optimizer.state_dict(),
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
        state = torch.load(self.volume.latest, map_location=self.device, weights_only=True)
        if state.get("kind") != RESUME_KIND:
            raise ValueError(f"{self.volume.latest} is another model family's run (TRAINING_MODEL); move it away "
                             "or use another CHECKPOINT_DIR to train the tft forecaster")
        try:
            self.model.load_state_dict(state["model_state"])
        except RuntimeError as error:
            raise ValueError(f"{self.volume.latest} holds another tft architecture ({error}); move it away or "
                             "restore the settings it was trained with") from None
        self.optimizer.load_state_dict(state["optimizer_state"])
        self.learner.steps = max(int(state["learner_steps"]), newest)
        self.best_holdout, self.steps_at_best = float(state["best_holdout"]), int(state["steps_at_best"])
        self.last_checkpoint_episode = int(state["last_checkpoint_episode"])
        self.checkpoints_written = int(state["checkpoints_written"])
        self.last_holdout = dict(state.get("forecast") or {})
        self.rng.bit_generator.state = state["numpy_rng"]
        torch.set_rng_state(state["torch_rng"])
        log.info("resumed the forecaster from %s at step %d", self.volume.latest, self.learner.steps)
        return True

    def close(self) -> None:
        self.iterations.close()
