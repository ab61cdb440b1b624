"""The training loop in a thread, its state, and the FastAPI app around it."""

from __future__ import annotations

import logging
import os
import threading
import time
from contextlib import asynccontextmanager
from dataclasses import asdict

from fastapi import FastAPI, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from services.training.config import TrainingSettings
from services.training.metrics import ACTIONS, LOSSES, TrainingMetrics
from shared.trainer import IterationReport, Trainer

log = logging.getLogger("training")
STALL_EXIT_CODE = 70


class TrainingService:
    def __init__(self, settings: TrainingSettings, trainer: Trainer) -> None:
        self.settings = settings
        self.trainer = trainer
        self.metrics = TrainingMetrics()
        self.status = "starting"
        self.heartbeat = time.time()
        self.last_report: IterationReport | None = None
        self.error: str | None = None
        self.stop = threading.Event()
        self.metrics.episodes.inc(trainer.episode)
        self.metrics.learner_steps.inc(trainer.learner.steps)
        self._counted_learner_steps = trainer.learner.steps
        self.metrics.checkpoints.inc(trainer.checkpoints_written)

    def beat(self) -> None:
        self.heartbeat = time.time()
        self.metrics.heartbeat.set(self.heartbeat)

    def loop(self) -> None:
        try:
            while not self.stop.is_set():
                self.beat()
                if self.trainer.volume.paused():
                    if self.status != "paused":
                        log.info("paused by control/training.pause")
                    self.status = "paused"
                    self.metrics.paused.set(1)
                    self.stop.wait(1.0)
                    continue
                self.metrics.paused.set(0)
                if self.settings.max_episodes and self.trainer.episode >= self.settings.max_episodes:
                    if self.status != "finished":
                        log.info("reached max_episodes=%d", self.settings.max_episodes)
                    self.status = "finished"
                    self.stop.wait(1.0)
                    continue
                self.status = "running"
                self.record(self.trainer.run_iteration())
        except BaseException as error:  # noqa: BLE001 - any crash (a PyO3 panic too) takes the process down
            self.error = f"{type(error).__name__}: {error}"
            log.exception("training loop failed")
            os._exit(1)

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
        for action, share in zip(ACTIONS, report.action_share):
            m.action_share.labels(action=action).set(share)
        m.iteration_seconds.labels(phase="collect").set(report.collect_seconds)
        m.iteration_seconds.labels(phase="learn").set(report.learn_seconds)
        if report.checkpoint:
            m.checkpoints.inc()
            m.last_checkpoint.set(time.time())
        self.last_report = report
        log.info("iteration", extra={"fields": {
            "episode": report.episode, "learner_steps": report.learner_steps,
            "episodes_per_hour": round(report.episodes_per_hour), "expectancy_pips": round(report.expectancy_pips, 2),
            "win_rate": round(report.win_rate, 3), "trade_ratio": round(report.trade_ratio, 3),
            "loss": round(report.losses.get("total", float("nan")), 4), "checkpoint": report.checkpoint}})

    def watchdog(self) -> None:
        """Docker never restarts an unhealthy container: a stalled loop exits instead."""
        while not self.stop.wait(min(5.0, self.settings.stall_seconds / 4)):
            age = time.time() - self.heartbeat
            if age > self.settings.stall_seconds:
                log.error("loop stalled for %.0fs (limit %.0fs): exiting", age, self.settings.stall_seconds)
                os._exit(STALL_EXIT_CODE)

    def health(self) -> tuple[bool, dict]:
        age = time.time() - self.heartbeat
        ok = age <= self.settings.stall_seconds and self.error is None
        return ok, {"status": "ok" if ok else "stalled", "loop": self.status,
                    "heartbeat_age_seconds": round(age, 3), "episode": self.trainer.episode}

    def status_page(self) -> dict:
        t = self.trainer
        return {
            "service": "training",
            "status": self.status,
            "episode": t.episode,
            "learner_steps": t.learner.steps,
            "replay_episodes": len(t.replay),
            "checkpoints_written": t.checkpoints_written,
            "last_checkpoint_episode": t.last_checkpoint_episode,
            "candidates": [p.name for _, p in t.volume.candidates()],
            "paused": t.volume.paused(),
            "resumed": t.resumed,
            "instrument": t.features.instrument,
            "train_sessions": int(len(t.starts)),
            "last_iteration": asdict(self.last_report) if self.last_report else None,
            "config_hash": t.config.config_hash(),
            "error": self.error,
        }


def build_app(service: TrainingService) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI):
        threads = [threading.Thread(target=service.loop, name="training-loop", daemon=True),
                   threading.Thread(target=service.watchdog, name="training-watchdog", daemon=True)]
        for thread in threads:
            thread.start()
        yield
        service.stop.set()

    app = FastAPI(title="micro-muzero training", lifespan=lifespan)

    @app.get("/health")
    def health() -> JSONResponse:
        ok, body = service.health()
        return JSONResponse(body, status_code=200 if ok else 503)

    @app.get("/ready")
    def ready() -> JSONResponse:
        # the feature store is loaded and the model built before the app exists
        ok = service.status in ("running", "paused", "finished")
        return JSONResponse({"ready": ok, "status": service.status}, status_code=200 if ok else 503)

    @app.get("/metrics")
    def metrics() -> Response:
        return Response(generate_latest(service.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/status")
    def status() -> dict:
        return service.status_page()

    return app
