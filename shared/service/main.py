"""The one way a service process starts. Settings first (shared/core/settings.py): an
unknown or bad value exits with code 2 naming the variable before anything heavy
is imported. Then logging, the settings in effect with their sources, and the
process tuning, then the service itself (`build`): a StopError (a missing
feature store or credential, a refused account) or any value the code refuses
exits 2 with the reason. Then uvicorn serves it until a graceful stop."""

from __future__ import annotations

import logging
import sys
from typing import Callable, Mapping, TypeVar

from fastapi import FastAPI

from shared.core.errors import StopError
from shared.core.settings import ConfigError, Settings, load_settings

STARTUP_ERROR_EXIT_CODE = 2


S = TypeVar("S", bound=Settings)


def run_service(name: str, settings_class: type[S], build: Callable[[S, logging.Logger], FastAPI],
                cli: Mapping[str, str] | None = None) -> int:
    try:
        settings = load_settings(settings_class, cli=cli)
    except ConfigError as error:
        print(f"{name}: bad configuration: {error}", file=sys.stderr)
        return STARTUP_ERROR_EXIT_CODE

    import uvicorn

    from shared.service.logs import configure_logging
    from shared.service.runtime import tune_process

    log = configure_logging(name, settings.log_level)
    log.info("configuration", extra={"fields": {"settings": settings.effective()}})
    tune_process()
    try:
        app = build(settings, log)
    except (StopError, ValueError, FileNotFoundError) as error:  # a person must act: say what, exit 2
        print(f"{name}: cannot start: {error}", file=sys.stderr)
        return STARTUP_ERROR_EXIT_CODE
    uvicorn.run(app, host=settings.host, port=settings.port, log_config=None, access_log=False)
    return 0
