"""python -m services.training: the training service on port 8001."""

from __future__ import annotations

import logging
import sys

from fastapi import FastAPI

from services.training.config import TrainingSettings


def build(settings: TrainingSettings, log: logging.Logger) -> FastAPI:
    from services.training.service import TrainingService, build_app
    from shared.features.portfolio import load_market
    from shared.model import select_device
    from shared.training.families import TRAINERS

    features = load_market(settings.db_path, settings.traded_instruments, settings.granularity)
    device = select_device(settings.device)
    trainer = TRAINERS[settings.run.model](features, settings.checkpoint_dir, settings.run, device,  # TRAINING_MODEL
                                           config_sources=settings.sources())
    settings = settings.model_copy(update={"run": trainer.config})  # with what the store derived (episode length)
    log.info("starting", extra={"fields": {"device": str(device), "episode": trainer.episode,
                                           "resumed": trainer.resumed, "parameters": trainer.describe()}})
    return build_app(TrainingService(settings, trainer))


def main() -> int:
    from shared.service.main import run_service

    return run_service("training", TrainingSettings, build)


if __name__ == "__main__":
    sys.exit(main())
