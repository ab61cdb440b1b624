"""The broker interface the live service trades through.

Errors come in two kinds (what the operator must do): a TemporaryBrokerError
is retried with bounds (network, 429, 5xx); an OperationalBrokerError needs a
person (bad credentials, unknown account or instrument)."""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass
from enum import Enum
from typing import Protocol

from shared.core.errors import RetryError, StopError


class TemporaryBrokerError(RetryError, RuntimeError):
    pass


class OperationalBrokerError(StopError, RuntimeError):
    pass


class UnsupportedAccountError(OperationalBrokerError):
    """An account this service refuses to trade (a hedging account): a person must choose another."""


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
    filled_units: int | None = None  # signed units the broker filled (a partial fill is fewer); None: all of `units`
    existed_before: bool = False     # the broker had this client id before this send (a journal that lost it)

    @property
    def units_filled(self) -> int:
        """What the broker booked: the fill transaction's units, 0 unless FILLED."""
        if self.status is not OrderStatus.FILLED:
            return 0
        return self.units if self.filled_units is None else self.filled_units

    def to_dict(self) -> dict:
        out = asdict(self)
        out["status"] = self.status.value
        return out


@dataclass(frozen=True)
class BrokerSnapshot:
    units: int                       # net position, signed (long_units + short_units)
    average_price: float | None
    last_transaction_id: str | None
    long_units: int | None = None    # the two sides as the broker holds them (short <= 0); None: only a net is known
    short_units: int | None = None

    @property
    def both_sides_open(self) -> bool:
        """Long and short at once (a hedging account): a net of them is not a position we can trade."""
        return bool(self.long_units) and bool(self.short_units)


@dataclass(frozen=True)
class Quote:
    """The broker's current price, for valuing an open position between bars."""
    bid: float
    ask: float
    time_ns: int                     # when the broker priced it (UTC ns)

    @property
    def mid(self) -> float:
        return (self.bid + self.ask) / 2

    def exit_price(self, units: int) -> float:
        """What closing `units` would get: a long sells at the bid, a short buys at the ask."""
        return self.bid if units > 0 else self.ask


def client_order_id(model_version: str, bar_time_ns: int, purpose: str = "decision",
                    instrument: str | None = None) -> str:
    """The id an order carries to the broker: a pure function of the model and
    the bar (and what the order is for), so a restart or a retry can never
    send the same decision twice. OANDA allows 128 characters; we use 40.
    Client ids are unique per account: a service trading several instruments in
    one account names the instrument too (one instrument: the id it always had,
    so the journals of earlier runs settle against the broker as before)."""
    key = f"{model_version}|{bar_time_ns}|{purpose}" if instrument is None else \
        f"{model_version}|{instrument}|{bar_time_ns}|{purpose}"
    digest = hashlib.sha256(key.encode()).hexdigest()[:32]
    return f"mm-{purpose[0]}-{digest}"


class Broker(Protocol):
    name: str

    def snapshot(self, instrument: str) -> BrokerSnapshot: ...

    def check_account(self) -> None:
        """Raise UnsupportedAccountError for an account this service must not trade (hedging)."""
        ...

    def quote(self, instrument: str) -> Quote:
        """The broker's price now (not the last bar's): the loss caps value open P&L with it."""
        ...

    def market_order(self, instrument: str, units: int, client_id: str, *, reduce_only: bool = False) -> OrderResult:
        """Send a market order at most once for `client_id`: if one with this id
        exists already, return its result instead of sending another. `reduce_only`
        (closes and flattens): the broker fills at most what reduces the position and
        never opens the other way."""
        ...

    def find_order(self, client_id: str) -> OrderResult | None:
        """The order sent with `client_id`; None only when the broker says definitely that no
        order has that id. Raises TemporaryBrokerError or OperationalBrokerError when it
        cannot tell (timeout, 5xx, 401): never read that as "it does not exist"."""
        ...
