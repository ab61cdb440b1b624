"""The training loop, top to bottom: collect E episodes, learn, checkpoint.

`Trainer.run_iteration()` is one pass; the training service calls it in a
loop, tests call it directly. Checkpoints follow the volume contract
(shared.volume: the layout in checkpoints, the file in candidates); resume
is shared.training.resume, the report and its table shared.training.report.
"""

from __future__ import annotations

import logging
import time
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch

from shared.config import TrainingConfig
from shared.core.bar_sizes import bar_phase_minutes, check_granularity
from shared.core.feature_spec import FEATURE_SPEC_VERSION
from shared.env import TradingEnv
from shared.features.store import FeatureSet
from shared.model import MuZeroNetworks, parameter_counts
from shared.search import NetworkSearch
from shared.training.actors import RayCollector
from shared.training.averaging import WeightAverage
from shared.training.distributed import make_learner
from shared.training.guardian import guardian_for, guardian_instrument
from shared.training.replay import ReplayBuffer
from shared.training.report import IterationReport, IterationTable, trade_statistics
from shared.training.resume import Counters, restore, resume_payload
from shared.training.selfplay import EpisodeBatch, play_episodes
from shared.volume.candidates import candidate_payload, serialize, whole_candidate
from shared.volume.checkpoints import CheckpointDir, atomic_write_bytes

log = logging.getLogger(__name__)


def session_weights(features: FeatureSet, starts: np.ndarray) -> np.ndarray | None:
    """Draw probabilities giving every instrument an equal share of the episodes (None: one
    instrument, every session alike)."""
    if len(features.instrument_names) == 1:
        return None
    owner = features.instrument_of(starts)
    per_instrument = np.bincount(owner, minlength=len(features.instrument_names))
    weights = 1.0 / per_instrument[owner]
    return weights / weights.sum()


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
        self.start_weights = session_weights(features, self.starts)
        self.bar_phase_minutes = bar_phase_minutes(features.bars.ts, check_granularity(features.granularity))
        self.env = TradingEnv(features, config.env)
        if self.env.num_actions != config.network.num_actions:
            raise ValueError(f"the {config.env.action_space} space has {self.env.num_actions} actions, "
                             f"the network {config.network.num_actions}")
        torch.manual_seed(config.seed)
        self.model = MuZeroNetworks(config.network).to(self.device)
        self.search = NetworkSearch(self.model, config.episodes_per_iteration, self.env.space, config.search, self.device)
        self.learner = make_learner(self.model, config.learner, self.device, config.learners)
        decay = config.learner.weight_average_decay
        self.weight_average = WeightAverage(self.model, decay) if decay else None  # what candidates carry, if set
        self.replay = ReplayBuffer(features.features, self.env.steps_per_episode, self.env.num_actions, config.replay,
                                   config.network.window_bars)
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
        self.iterations = IterationTable(self.volume.training / "metrics.duckdb")
        signalled, dropped = self.volume.repair_signals(whole_candidate)
        for path in signalled:
            log.warning("signalled %s: written before a stop that came before its .ready", path.name)
        for path in dropped:
            log.warning("removed %s: it does not load (a write cut short)", path.name)
        self.volume.prune(config.keep_checkpoints)
        counters, self.resumed = restore(self.volume, self.learner, self.rng, config.network, self.device,
                                         self.weight_average)
        self.episode = self.saved_episode = counters.episode
        self.last_checkpoint_episode = counters.last_checkpoint_episode
        self.checkpoints_written = counters.checkpoints_written
        self.guardian = counters.guardian  # trained before the first iteration (TRAINING_GUARDIAN__TRAIN_STEPS)
        if config.guardian.train_steps:
            guardian_instrument(features)  # refused now, not at the first iteration
        self.actors: RayCollector | None = None
        if config.backend == "ray":
            self.actors = RayCollector(features, config, self.draw_starts, self.rng, next_episode_id=self.episode)
            self.actors.publish(self.model, self.learner.steps)

    # --- checkpoints ---------------------------------------------------------------

    @property
    def candidate_model(self) -> MuZeroNetworks:
        """The networks a candidate carries: the weight average if the run keeps one, else the learner's."""
        return self.weight_average.model if self.weight_average is not None else self.model

    def model_payload(self, model: MuZeroNetworks) -> dict:
        return candidate_payload(model, self.config, self.config_sources, episode=self.episode,
                                 learner_steps=self.learner.steps, instruments=self.features.instrument_names,
                                 granularity=self.features.granularity, bar_phase_minutes=self.bar_phase_minutes,
                                 guardian=self.guardian)

    def resume_payload(self) -> dict:
        counters = Counters(self.episode, self.last_checkpoint_episode, self.checkpoints_written)
        return resume_payload(self.model_payload(self.model), self.learner, self.rng, counters, self.weight_average)

    def write_checkpoint(self) -> str:
        data = serialize(self.model_payload(self.candidate_model))
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

    def draw_starts(self, count: int | None = None) -> np.ndarray:
        return self.rng.choice(self.starts, size=count or self.config.episodes_per_iteration, p=self.start_weights)

    def collect(self) -> list[EpisodeBatch]:
        """The next batches for the replay: one played here in lockstep (local), or what the Ray
        actors brought back (shared.training.actors)."""
        if self.actors is not None:
            return self.actors.collect(self.learner.steps, self.episode)
        starts = self.draw_starts()
        self.search.refresh()  # the search's frozen networks follow the learner's latest weights
        batch = play_episodes(self.env, self.search, starts, self.rng, exploration=self.config.exploration,
                              episode=self.episode)
        batch.weights_version = self.learner.steps
        return [batch]

    def run_iteration(self) -> IterationReport:
        c = self.config
        self.guardian = guardian_for(self.guardian, self.features, c)
        t0 = time.perf_counter()
        batches = self.collect()
        added = sum(self.replay.add(b) for b in batches)
        self.episode += added
        batch = EpisodeBatch.concat(batches)
        t1 = time.perf_counter()

        losses: dict[str, float] = {}
        if len(self.replay) >= c.replay_warmup_episodes:
            steps = max(1, round(c.learner_steps_per_episode * added)) if c.learner_steps_per_episode and added else 0
            sums: dict[str, float] = {}
            for _ in range(steps):
                for name, value in self.learner.step(self.replay.sample(c.learner.batch_size, self.rng)).items():
                    sums[name] = sums.get(name, 0.0) + value
                if self.weight_average is not None:
                    self.weight_average.update(self.model)
            losses = {name: total / steps for name, total in sums.items()} if steps else {}
        if self.actors is not None:
            self.actors.publish(self.model, self.learner.steps)
        t2 = time.perf_counter()

        checkpoint = None
        if self.episode - self.last_checkpoint_episode >= c.checkpoint_interval_episodes:
            checkpoint = self.write_checkpoint()
        self.write_latest()

        trades, expectancy, win_rate, trade_ratio, share = trade_statistics(batch)
        report = IterationReport(
            episode=self.episode, learner_steps=self.learner.steps, collect_seconds=t1 - t0, learn_seconds=t2 - t1,
            episodes=added, trades=trades, expectancy_pips=expectancy, win_rate=win_rate,
            trade_ratio=trade_ratio, pnl_pips_mean=float(batch.pnl_pips.mean()), action_share=share, losses=losses,
            checkpoint=checkpoint, replay_episodes=len(self.replay), decisions=int(batch.action_counts.sum()),
        )
        self.iterations.insert(report)
        return report

    @property
    def finished(self) -> str | None:
        """Self-play has no end of its own (TRAINING_MAX_EPISODES stops it in the service)."""
        return None

    def describe(self) -> str:
        counts = parameter_counts(self.model)
        return "parameters: " + ", ".join(f"{name} {count:,}" for name, count in counts.items())

    def close(self) -> None:
        if self.actors is not None:
            self.actors.close()
        self.learner.close()
        self.iterations.close()

