"""The broker interface the live service trades through.

Errors come in two kinds (what the operator must do): a TemporaryBrokerError
is retried with bounds (network, 429, 5xx); an OperationalBrokerError needs a
person (bad credentials, unknown account or instrument)."""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass
from enum import Enum
from typing import Protocol


class TemporaryBrokerError(RuntimeError):
    pass


class OperationalBrokerError(RuntimeError):
    pass


class OrderStatus(str, Enum):
    FILLED = "FILLED"
    CANCELLED = "CANCELLED"   # accepted (201) but not filled: MARKET_HALTED, INSUFFICIENT_MARGIN, ...
    REJECTED = "REJECTED"     # refused outright (4xx): nothing was created
    UNKNOWN = "UNKNOWN"       # sent, but the broker gave no definite answer: it may have filled.
                              # The trader stops deciding until reconciliation settles it.


@dataclass(frozen=True)
class OrderResult:
    client_id: str
    status: OrderStatus
    units: int                       # signed units requested
    broker_order_id: str | None = None
    fill_price: float | None = None
    reason: str | None = None        # why it was cancelled or rejected
    transaction_id: str | None = None

    def to_dict(self) -> dict:
        out = asdict(self)
        out["status"] = self.status.value
        return out


@dataclass(frozen=True)
class BrokerSnapshot:
    units: int                       # net position, signed
    average_price: float | None
    last_transaction_id: str | None


def client_order_id(model_version: str, bar_time_ns: int, purpose: str = "decision") -> str:
    """The id an order carries to the broker: a pure function of the model and
    the bar (and what the order is for), so a restart or a retry can never
    send the same decision twice. OANDA allows 128 characters; we use 40."""
    digest = hashlib.sha256(f"{model_version}|{bar_time_ns}|{purpose}".encode()).hexdigest()[:32]
    return f"mm-{purpose[0]}-{digest}"


class Broker(Protocol):
    name: str

    def snapshot(self, instrument: str) -> BrokerSnapshot: ...

    def market_order(self, instrument: str, units: int, client_id: str) -> OrderResult:
        """Send a market order at most once for `client_id`: if one with this id
        exists already, return its result instead of sending another."""
        ...

    def find_order(self, client_id: str) -> OrderResult | None:
        """The order sent with `client_id`; None only when the broker says definitely that no
        order has that id. Raises TemporaryBrokerError or OperationalBrokerError when it
        cannot tell (timeout, 5xx, 401): never read that as "it does not exist"."""
        ...
