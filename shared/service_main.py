"""The one way a service process starts. Settings first: a bad value exits
with code 2 and pydantic's message before anything heavy is imported. Then
logging and the process tuning, then the service itself (`build`): a missing
feature store or credential, or any value the code refuses, exits 2 with the
reason. Then uvicorn serves it until a graceful stop."""

from __future__ import annotations

import logging
import sys
from typing import Callable, Protocol, TypeVar

from fastapi import FastAPI
from pydantic import ValidationError

STARTUP_ERROR_EXIT_CODE = 2


class ServiceSettings(Protocol):
    log_level: str
    host: str
    port: int


S = TypeVar("S", bound=ServiceSettings)


def run_service(name: str, load_settings: Callable[[], S], build: Callable[[S, logging.Logger], FastAPI]) -> int:
    try:
        settings = load_settings()
    except ValidationError as error:
        print(f"{name}: bad configuration:\n{error}", file=sys.stderr)
        return STARTUP_ERROR_EXIT_CODE

    import uvicorn

    from shared.features.store import FeatureStoreError
    from shared.logs import configure_logging
    from shared.runtime import tune_process

    log = configure_logging(name, settings.log_level)
    tune_process()
    try:
        app = build(settings, log)
    except (FeatureStoreError, ValueError, FileNotFoundError) as error:  # OandaConfigError is a ValueError
        print(f"{name}: cannot start: {error}", file=sys.stderr)
        return STARTUP_ERROR_EXIT_CODE
    uvicorn.run(app, host=settings.host, port=settings.port, log_config=None, access_log=False)
    return 0
