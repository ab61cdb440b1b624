"""Connecting to OANDA v20 through oandapyV20: credentials, timeouts, retries.

Credentials come from the environment or from files (Docker secrets):
`OANDA_TOKEN` or `OANDA_TOKEN_FILE`, `OANDA_ACCOUNT` or `OANDA_ACCOUNT_FILE`,
`OANDA_ENV` = practice (default) or live. `OANDA_API_URL` points the client at
another v20 server (a loopback test server, say). The token is never part of a
repr, a log line or an error message.
"""

from __future__ import annotations

import logging
import os
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping

import oandapyV20
import requests
from oandapyV20.endpoints.apirequest import APIRequest
from oandapyV20.exceptions import V20Error

from shared.core.errors import StopError

log = logging.getLogger(__name__)

ENVIRONMENTS = ("practice", "live")
CUSTOM_ENVIRONMENT = "custom"


class OandaConfigError(StopError, ValueError):
    """Missing or malformed OANDA settings: a person must fix the environment."""


@dataclass(frozen=True)
class OandaCredentials:
    token: str = field(repr=False)
    account_id: str | None
    environment: str            # practice, live, or custom (OANDA_API_URL)
    api_url: str | None = None  # only for the custom environment

    def __repr__(self) -> str:
        return f"OandaCredentials(account_id={self.account_id!r}, environment={self.environment!r}, token=***)"


def _from_env_or_file(env: Mapping[str, str], name: str) -> str | None:
    if env.get(name):
        return env[name].strip()
    file_name = env.get(f"{name}_FILE")
    if file_name:
        path = Path(file_name)
        if not path.is_file():
            raise OandaConfigError(f"{name}_FILE points to {path}, which is not a readable file")
        return path.read_text().strip()
    return None


def load_credentials(env: Mapping[str, str] | None = None, *, require_account: bool = False) -> OandaCredentials:
    env = os.environ if env is None else env
    token = _from_env_or_file(env, "OANDA_TOKEN")
    if not token:
        raise OandaConfigError("no OANDA token: set OANDA_TOKEN or OANDA_TOKEN_FILE")
    account = _from_env_or_file(env, "OANDA_ACCOUNT")
    if require_account and not account:
        raise OandaConfigError("no OANDA account: set OANDA_ACCOUNT or OANDA_ACCOUNT_FILE")
    api_url = env.get("OANDA_API_URL") or None
    environment = env.get("OANDA_ENV", "practice")
    if api_url:
        environment = CUSTOM_ENVIRONMENT
    elif environment not in ENVIRONMENTS:
        raise OandaConfigError(f"OANDA_ENV must be one of {', '.join(ENVIRONMENTS)}, got {environment!r}")
    return OandaCredentials(token=token, account_id=account, environment=environment, api_url=api_url)


def make_api(credentials: OandaCredentials, *, timeout_seconds: float = 10.0) -> oandapyV20.API:
    """An oandapyV20 client with a timeout on every request (it sets none by itself)."""
    if credentials.environment == CUSTOM_ENVIRONMENT:
        oandapyV20.oandapyV20.TRADING_ENVIRONMENTS[CUSTOM_ENVIRONMENT] = {
            "api": credentials.api_url,
            "stream": credentials.api_url,
        }
    return oandapyV20.API(
        access_token=credentials.token,
        environment=credentials.environment,
        request_params={"timeout": timeout_seconds},
    )


def is_retryable(error: Exception) -> bool:
    """429 (rate limit), 5xx and network trouble are temporary; other errors need a person."""
    if isinstance(error, V20Error):
        return int(error.code) == 429 or int(error.code) >= 500
    return isinstance(error, (requests.Timeout, requests.ConnectionError))


def request_with_retry(
    api: oandapyV20.API,
    endpoint: APIRequest,
    *,
    max_attempts: int = 5,
    base_delay_seconds: float = 0.5,
    max_delay_seconds: float = 8.0,
    sleep: Callable[[float], None] = time.sleep,
) -> dict:
    """Send an idempotent request (a GET), backing off within bounds on temporary errors.

    Never use this for order creation: an order that timed out may exist, so it
    has to be looked up before any retry.
    """
    for attempt in range(1, max_attempts + 1):
        try:
            return api.request(endpoint)
        except Exception as error:  # noqa: BLE001 - classified just below
            if not is_retryable(error) or attempt == max_attempts:
                raise
            delay = min(max_delay_seconds, base_delay_seconds * 2 ** (attempt - 1)) * (0.5 + random.random() / 2)
            log.warning("OANDA request failed (%s), retry %d/%d in %.2fs", _describe(error), attempt, max_attempts - 1, delay)
            sleep(delay)
    raise AssertionError("unreachable")


def _describe(error: Exception) -> str:
    if isinstance(error, V20Error):
        return f"HTTP {error.code}"
    return type(error).__name__
