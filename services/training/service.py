"""The training loop in a thread, its state, and the FastAPI app around it."""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import asdict

from fastapi import FastAPI

from services.training.config import TrainingSettings
from services.training.metrics import LOSSES, TrainingMetrics
from shared.service.app import Heartbeat, service_app
from shared.training.families import AnyTrainer
from shared.training.report import IterationReport

log = logging.getLogger("training")


class TrainingService:
    def __init__(self, settings: TrainingSettings, trainer: AnyTrainer) -> None:
        self.settings = settings
        self.trainer = trainer
        self.metrics = TrainingMetrics()
        self.status = "starting"
        self.heartbeat = Heartbeat(self.metrics.heartbeat, settings.stall_seconds, log)
        self.last_report: IterationReport | None = None
        self.error: str | None = None
        self.stop = threading.Event()
        self.metrics.episodes.inc(trainer.episode)
        self.metrics.learner_steps.inc(trainer.learner.steps)
        self._counted_learner_steps = trainer.learner.steps
        self.metrics.checkpoints.inc(trainer.checkpoints_written)
        self._counted = {"stale": 0, "restarts": 0}  # the collector's counters already in the metrics

    def loop(self) -> None:
        try:
            while not self.stop.is_set():
                self.heartbeat.beat()
                if self.trainer.volume.paused():
                    if self.status != "paused":
                        log.info("paused by control/training.pause")
                    self.status = "paused"
                    self.metrics.paused.set(1)
                    self.stop.wait(1.0)
                    continue
                self.metrics.paused.set(0)
                finished = self.finished()
                if finished:
                    if self.status != "finished":
                        log.info("training finished: %s", finished)
                    self.status = "finished"
                    self.stop.wait(1.0)
                    continue
                self.status = "running"
                self.record(self.trainer.run_iteration())
            self.trainer.close()  # a graceful stop: the actors and learner processes go with the loop
        except BaseException as error:  # noqa: BLE001 - any crash (a PyO3 panic too) takes the process down
            self.error = f"{type(error).__name__}: {error}"
            log.exception("training loop failed")
            os._exit(1)

    def finished(self) -> str | None:
        """Why training stops: TRAINING_MAX_EPISODES, or the trainer's own end (the forecaster's epochs
        or early stopping)."""
        if self.settings.max_episodes and self.trainer.episode >= self.settings.max_episodes:
            return f"reached max_episodes={self.settings.max_episodes}"
        return self.trainer.finished

    def record(self, report: IterationReport) -> None:
        m = self.metrics
        m.episodes.inc(report.episodes)
        m.learner_steps.inc(report.learner_steps - self._counted_learner_steps)
        self._counted_learner_steps = report.learner_steps
        for name in LOSSES:
            if name in report.losses:
                m.loss.labels(component=name).set(report.losses[name])
        m.episodes_per_hour.set(report.episodes_per_hour)
        m.replay_episodes.set(report.replay_episodes)
        m.expectancy.set(report.expectancy_pips)
        m.win_rate.set(report.win_rate)
        m.trade_ratio.set(report.trade_ratio)
        m.decisions.inc(report.decisions)
        m.entries.inc(report.entries)
        for action, share in zip((a.lower() for a in self.trainer.env.space.actions), report.action_share):
            m.action_share.labels(action=action).set(share)
        m.iteration_seconds.labels(phase="collect").set(report.collect_seconds)
        m.iteration_seconds.labels(phase="learn").set(report.learn_seconds)
        if report.checkpoint:
            m.checkpoints.inc()
            m.last_checkpoint.set(time.time())
        self.record_actors()
        self.last_report = report
        log.info("iteration", extra={"fields": {
            "episode": report.episode, "learner_steps": report.learner_steps,
            "episodes_per_hour": round(report.episodes_per_hour), "expectancy_pips": round(report.expectancy_pips, 2),
            "win_rate": round(report.win_rate, 3), "trade_ratio": round(report.trade_ratio, 3),
            # the family's training loss: MuZero's total, or the first a challenger reports
            "loss": round(report.losses.get("total", next(iter(report.losses.values()), float("nan"))), 4),
            "checkpoint": report.checkpoint}})

    def record_actors(self) -> None:
        if self.trainer.actors is None:
            return
        m, actors = self.metrics, self.trainer.actors.status()
        m.actors_alive.set(actors["actors_alive"])
        for index, rate in enumerate(actors["actor_episodes_per_hour"]):
            m.actor_episodes_per_hour.labels(actor=str(index)).set(rate)
        m.weight_lag.labels(stat="mean").set(actors["weight_lag_steps_mean"])
        m.weight_lag.labels(stat="max").set(actors["weight_lag_steps_max"])
        m.stale_dropped.inc(actors["stale_episodes_dropped"] - self._counted["stale"])
        m.actor_restarts.inc(actors["actor_restarts"] - self._counted["restarts"])
        self._counted = {"stale": actors["stale_episodes_dropped"], "restarts": actors["actor_restarts"]}

    def health(self) -> tuple[bool, dict]:
        age = self.heartbeat.age_seconds
        ok = age <= self.settings.stall_seconds and self.error is None
        return ok, {"status": "ok" if ok else "stalled", "loop": self.status,
                    "heartbeat_age_seconds": round(age, 3), "episode": self.trainer.episode}

    def ready(self) -> tuple[bool, dict]:
        # the feature store is loaded and the model built before the service exists
        return self.status in ("running", "paused", "finished"), {"status": self.status}

    def status_page(self) -> dict:
        t = self.trainer
        return {
            "service": "training",
            "status": self.status,
            # saved: what a restart resumes from, so it never goes back; in flight: collected since
            "episode": t.saved_episode,
            "episode_in_flight": t.episode,
            "learner_steps": t.learner.steps,
            "replay_episodes": len(t.replay),
            "checkpoints_written": t.checkpoints_written,
            "last_checkpoint_episode": t.last_checkpoint_episode,
            "candidates": [p.name for _, p in t.volume.candidates()],
            "paused": t.volume.paused(),
            "resumed": t.resumed,
            "instrument": t.features.instrument,
            "instruments": list(t.features.instrument_names),
            "train_sessions": int(len(t.starts)),
            "last_iteration": asdict(self.last_report) if self.last_report else None,
            "self_play": t.actors.status() if t.actors else {"backend": "local"},
            "learners": t.config.learners,
            "model": t.config.model,
            "finished": self.finished(),
            "config_hash": t.config.config_hash(),
            "error": self.error,
            "config": self.settings.effective(),
        }


def build_app(service: TrainingService) -> FastAPI:
    return service_app("training", threads=[service.loop, lambda: service.heartbeat.watchdog(service.stop)],
                       stop=service.stop, health=service.health, ready=service.ready,
                       registry=service.metrics.registry, status=service.status_page)
