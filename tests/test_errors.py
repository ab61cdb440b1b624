"""The one error root: every error class the library defines says whether it is retried or needs a person."""

import importlib
import inspect
import pkgutil

import pytest

import shared
from shared.core.errors import MicroError, RetryError, StopError


def _library_errors() -> list[type]:
    found = {}
    for module in pkgutil.walk_packages(shared.__path__, "shared."):
        if module.name.endswith("__main__"):
            continue
        loaded = importlib.import_module(module.name)
        for _, value in inspect.getmembers(loaded, inspect.isclass):
            if issubclass(value, BaseException) and value.__module__ == module.name:
                found[value.__qualname__, module.name] = value
    return list(found.values())


ERRORS = _library_errors()


def test_the_library_defines_errors_at_all():
    names = {error.__name__ for error in ERRORS}
    assert {"ConfigError", "TemporaryBrokerError", "OperationalBrokerError", "CandidateError",
            "FeatureStoreError"} <= names, names


@pytest.mark.parametrize("error", [e for e in ERRORS if e not in (MicroError, RetryError, StopError)],
                         ids=lambda e: e.__name__)
def test_every_library_error_is_of_exactly_one_kind(error):
    assert issubclass(error, RetryError) != issubclass(error, StopError), \
        f"{error.__module__}.{error.__name__}: retried (RetryError) or a person must act (StopError)?"


def test_the_kinds_match_what_the_callers_do():
    from shared.core.settings import ConfigError
    from shared.live.brokers import OperationalBrokerError, TemporaryBrokerError

    assert issubclass(TemporaryBrokerError, RetryError)          # retried with bounds by the broker
    assert issubclass(OperationalBrokerError, StopError)         # live stands aside and says why
    assert issubclass(ConfigError, StopError) and issubclass(ConfigError, ValueError)  # exit 2, old catches hold
