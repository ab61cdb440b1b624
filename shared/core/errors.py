"""The one error root: every error this system raises on purpose says what happens next.

* RetryError: transient (a network blip, a 429, a 5xx, a lock held for a moment). The code that
  raises it or its caller retries with a bound; a service stays up and reports it.
* StopError: a person must act (a bad setting, a missing file, a refused account, a malformed
  input). Nothing retries it: a service exits at start with code 2 and the reason, a command
  prints the reason, the live service stands aside.

Each concrete error also keeps the builtin base its callers already catch (ValueError, RuntimeError).
"""

from __future__ import annotations


class MicroError(Exception):
    """Raised on purpose by this system; catch RetryError or StopError, not this."""


class RetryError(MicroError):
    """Transient: retried with bounds, then reported."""


class StopError(MicroError):
    """Needs a person: not retried; the message says what is wrong and what to do."""
