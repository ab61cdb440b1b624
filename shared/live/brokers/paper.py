"""The paper broker: fills at bid/ask (the feed's mid close +- half the
spread), books them with the one position accounting (shared.core.accounting:
average entry on adds, realised P&L on reduces, closes and flips), keeps its
account in a JSON file written atomically after every change, so a restart
resumes it. Orders are idempotent by client id: an id it has seen answers with
the order it booked then, marked `existed_before`. A reduce-only order fills at
most what reduces the position and is cancelled on a flat one, as v20 does; the
account is never hedged (one net position)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from shared.core.accounting import Book, fill
from shared.live.brokers.base import BrokerSnapshot, OrderResult, OrderStatus, Quote, TemporaryBrokerError
from shared.volume.checkpoints import atomic_write_json


class PaperBroker:
    name = "paper"

    def __init__(self, state_path: Path, *, spread_pips: float, pip_size: float) -> None:
        self.path = Path(state_path)
        self.spread_pips = spread_pips
        self.pip = pip_size
        self.mid: float | None = None
        self.mid_time_ns = 0
        if self.path.exists():
            self.state = json.loads(self.path.read_text())
        else:
            self.state = {"units": 0, "average_price": None, "realized_pips": 0.0, "orders": {}, "transaction": 0}
            atomic_write_json(self.path, self.state)  # the account exists from the start

    def mark(self, mid: float, time_ns: int = 0) -> None:
        """The feed's latest mid price (and when it was); the next fill and quote use it."""
        self.mid = float(mid)
        self.mid_time_ns = int(time_ns)

    def check_account(self) -> None:
        """A paper account holds one net position: nothing to refuse."""

    def quote(self, instrument: str) -> Quote:
        if self.mid is None:
            raise TemporaryBrokerError("the paper broker has no price yet")
        half = self.spread_pips / 2 * self.pip
        return Quote(self.mid - half, self.mid + half, self.mid_time_ns)

    def snapshot(self, instrument: str) -> BrokerSnapshot:
        s = self.state
        units = int(s["units"])
        return BrokerSnapshot(units=units, average_price=s["average_price"],
                              last_transaction_id=str(s["transaction"]), long_units=max(units, 0),
                              short_units=min(units, 0))

    def find_order(self, client_id: str) -> OrderResult | None:
        found = self.state["orders"].get(client_id)
        if found is None:
            return None
        return OrderResult(**{**found, "status": OrderStatus(found["status"])})

    def market_order(self, instrument: str, units: int, client_id: str, *, reduce_only: bool = False) -> OrderResult:
        existing = self.find_order(client_id)
        if existing is not None:
            return OrderResult(**{**existing.__dict__, "existed_before": True})
        if self.mid is None:
            raise RuntimeError("the paper broker has no price yet")
        if units == 0:
            raise ValueError("an order needs units")
        s = self.state
        requested = units
        if reduce_only:
            held = int(s["units"])
            if held == 0 or (held > 0) == (units > 0):
                s["transaction"] += 1
                result = OrderResult(client_id, OrderStatus.CANCELLED, units, f"paper-{s['transaction']}",
                                     reason="REDUCE_ONLY: nothing to reduce", transaction_id=str(s["transaction"]))
                s["orders"][client_id] = result.to_dict()
                atomic_write_json(self.path, s)
                return result
            units = max(-abs(held), min(abs(held), units))  # at most what closes the position
        half_spread = self.spread_pips / 2
        price = self.mid + (1 if units > 0 else -1) * half_spread * self.pip
        book = Book.flat(1)  # the account's position, through the one accounting
        book.units[0], book.realized_pips[0] = int(s["units"]), float(s["realized_pips"])
        book.entry_price[0] = s["average_price"] or 0.0
        fill(book, np.array([units]), np.array([price]), self.pip, np.array([self.mid]), half_spread)
        s["units"] = int(book.units[0])
        s["average_price"] = float(book.entry_price[0]) if s["units"] else None
        s["realized_pips"] = float(book.realized_pips[0])
        s["transaction"] += 1
        result = OrderResult(client_id=client_id, status=OrderStatus.FILLED, units=requested,
                             broker_order_id=f"paper-{s['transaction']}", fill_price=price,
                             transaction_id=str(s["transaction"]), filled_units=units)
        s["orders"][client_id] = result.to_dict()
        atomic_write_json(self.path, s)
        return result

    @property
    def realized_pips(self) -> float:
        return float(self.state["realized_pips"])
