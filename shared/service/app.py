"""What every service process has in common: a heartbeat, a watchdog that
exits when the loop stalls, and the FastAPI app with /health, /ready,
/metrics and /status around a loop running in threads."""

from __future__ import annotations

import logging
import os
import threading
import time
from contextlib import asynccontextmanager
from typing import Callable

from fastapi import FastAPI, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Gauge, generate_latest

STALL_EXIT_CODE = 70


class Heartbeat:
    """When the service's own loop last ran. Liveness means exactly this."""

    def __init__(self, gauge: Gauge, stall_seconds: float, log: logging.Logger) -> None:
        self.gauge = gauge
        self.stall_seconds = stall_seconds
        self.log = log
        self.last = time.time()

    def beat(self) -> None:
        self.last = time.time()
        self.gauge.set(self.last)

    @property
    def age_seconds(self) -> float:
        return time.time() - self.last

    def watchdog(self, stop: threading.Event, exit_process: Callable[[int], None] = os._exit) -> None:
        """Docker never restarts an unhealthy container: a stalled loop makes
        the process exit non-zero instead, and `restart: unless-stopped` acts."""
        while not stop.wait(min(5.0, self.stall_seconds / 4)):
            if self.age_seconds > self.stall_seconds:
                self.log.error("loop stalled for %.0fs (limit %.0fs): exiting", self.age_seconds, self.stall_seconds)
                exit_process(STALL_EXIT_CODE)


def service_app(title: str, *, threads: list[Callable[[], None]], stop: threading.Event,
                health: Callable[[], tuple[bool, dict]], ready: Callable[[], tuple[bool, dict]],
                registry: CollectorRegistry, status: Callable[[], dict],
                shutdown_seconds: float = 60.0) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI):
        started = [threading.Thread(target=target, name=f"{title}-{target.__name__}", daemon=True)
                   for target in threads]
        for thread in started:
            thread.start()
        yield
        # A graceful stop (SIGTERM, Ctrl-C) lets each loop finish what it is doing,
        # a bar or an iteration, so no order is left between broker and journal.
        stop.set()
        deadline = time.time() + shutdown_seconds
        for thread in started:
            thread.join(timeout=max(0.0, deadline - time.time()))

    app = FastAPI(title=f"micro-muzero {title}", lifespan=lifespan)

    @app.get("/health")
    def health_endpoint() -> JSONResponse:
        ok, body = health()
        return JSONResponse(body, status_code=200 if ok else 503)

    @app.get("/ready")
    def ready_endpoint() -> JSONResponse:
        ok, body = ready()
        return JSONResponse({"ready": ok, **body}, status_code=200 if ok else 503)

    @app.get("/metrics")
    def metrics_endpoint() -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/status")
    def status_endpoint() -> dict:
        return status()

    return app
