"""python -m services.validation: the validation service on port 8002."""

from __future__ import annotations

import logging
import sys

from fastapi import FastAPI

from services.validation.config import ValidationSettings


def build(settings: ValidationSettings, log: logging.Logger) -> FastAPI:
    from services.validation.service import ValidationService, build_app
    from shared.features.portfolio import load_market

    features = load_market(settings.db_path, settings.traded_instruments, settings.granularity)
    features.require_sessions("validation")
    service = ValidationService(settings, features, settings.run)
    log.info("starting", extra={"fields": {"validation_sessions": int(len(features.sessions["validation"])),
                                           "simulations": settings.run.simulations}})
    return build_app(service)


def main() -> int:
    from shared.service.main import run_service

    return run_service("validation", ValidationSettings, build)


if __name__ == "__main__":
    sys.exit(main())
