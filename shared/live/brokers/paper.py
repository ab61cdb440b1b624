"""The paper broker: fills at bid/ask (the feed's mid close +- half the
spread), books them with the one position accounting (shared.core.accounting:
average entry on adds, realised P&L on reduces, closes and flips), keeps its
account in a JSON file written atomically after every change, so a restart
resumes it. Orders are idempotent by client id: an id it has seen answers with
the order it booked then, marked `existed_before`. A reduce-only order fills at
most what reduces the position and is cancelled on a flat one, as v20 does; the
account is never hedged (one net position per instrument).

One account, one file, whatever the number of instruments: as at OANDA, client
ids are unique across the account's instruments (a service that reused one
across instruments is caught here as at the broker) and one write holds the
whole account. With one instrument (`spread_pips`, `pip_size`) the position is
the file's top level, as it always was; with several (`PaperBroker.account`) each
has its own under `positions`, and realised P&L is also kept in the account
currency, converted at each fill's moment (shared.live.account.AccountCurrency,
from the marks of the instruments this account trades)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

import numpy as np

from shared.core.accounting import Book, fill
from shared.core.instruments import PriceScale, get_instrument
from shared.live.account import AccountCurrency
from shared.live.brokers.base import BrokerSnapshot, OrderResult, OrderStatus, Quote, TemporaryBrokerError
from shared.volume.checkpoints import atomic_write_json

ONE = ""  # the one instrument's key, whatever name its orders carry


@dataclass(frozen=True)
class PaperMarket:
    spread_pips: float  # in the scale's unit (pips, or basis points)
    scale: PriceScale


def _flat_position() -> dict:
    return {"units": 0, "average_price": None, "realized_pips": 0.0, "realized_account": 0.0}


class PaperBroker:
    name = "paper"

    def __init__(self, state_path: Path, *, spread_pips: float, pip_size: float, unit: str = "pips",
                 markets: Mapping[str, PaperMarket] | None = None, currency: AccountCurrency | None = None) -> None:
        self.path = Path(state_path)
        self.markets = dict(markets) if markets else {ONE: PaperMarket(spread_pips, PriceScale(unit, pip_size))}
        self.currency = currency
        self.marks: dict[str, tuple[float, int]] = {}  # instrument -> (mid, when, UTC ns)
        if self.path.exists():
            self.state = json.loads(self.path.read_text())
        else:
            self.state = {"orders": {}, "transaction": 0}
            if markets:
                self.state.update(positions={}, realized_account=0.0)
            else:
                self.state.update(units=0, average_price=None, realized_pips=0.0)
            atomic_write_json(self.path, self.state)  # the account exists from the start

    @classmethod
    def account(cls, state_path: Path, instruments: Mapping[str, float | None], *,
                account_currency: str | None = "USD", fixed_rates: Mapping[str, float] | None = None) -> "PaperBroker":
        """A paper account of several instruments (name -> spread in pips, None: the table's); raises
        ConversionError at once when one's P&L cannot be converted into `account_currency` (None: P&L
        in pips only)."""
        markets = {}
        for name, spread in instruments.items():
            inst = get_instrument(name)
            markets[inst.name] = PaperMarket(inst.spread_pips if spread is None else spread, inst.price_scale)
        currency = None if account_currency is None else \
            AccountCurrency(account_currency, tuple(markets), fixed_rates=fixed_rates)
        return cls(state_path, spread_pips=0.0, pip_size=1.0, markets=markets, currency=currency)

    def _key(self, instrument: str | None) -> str:
        if ONE in self.markets:
            return ONE
        name = get_instrument(instrument).name if instrument else ""
        if name not in self.markets:
            raise ValueError(f"the paper account trades {', '.join(self.markets)}, not {instrument!r}")
        return name

    def _position(self, key: str) -> dict:
        """Where the instrument's position lives in the state (the top level for the one instrument)."""
        if key == ONE:
            return self.state
        return self.state["positions"].setdefault(key, _flat_position())

    def mark(self, mid: float, time_ns: int = 0, instrument: str | None = None) -> None:
        """The feed's latest mid price (and when it was); the next fill and quote use it."""
        self.marks[self._key(instrument)] = (float(mid), int(time_ns))

    @property
    def mid(self) -> float | None:
        """The one instrument's mark (one-instrument accounts)."""
        return self.marks.get(ONE, (None, 0))[0]

    def mid_of(self, instrument: str) -> float | None:
        return self.marks.get(self._key(instrument), (None, 0))[0]

    def check_account(self) -> None:
        """A paper account holds one net position per instrument: nothing to refuse."""

    def quote(self, instrument: str) -> Quote:
        key = self._key(instrument)
        if key not in self.marks:
            raise TemporaryBrokerError("the paper broker has no price yet")
        mid, time_ns = self.marks[key]
        market = self.markets[key]
        half = market.scale.price_distance(market.spread_pips / 2, mid)
        return Quote(mid - half, mid + half, time_ns)

    def snapshot(self, instrument: str) -> BrokerSnapshot:
        position = self._position(self._key(instrument))
        units = int(position["units"])
        return BrokerSnapshot(units=units, average_price=position["average_price"],
                              last_transaction_id=str(self.state["transaction"]), long_units=max(units, 0),
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
        key = self._key(instrument)
        if key not in self.marks:
            raise RuntimeError("the paper broker has no price yet")
        if units == 0:
            raise ValueError("an order needs units")
        s, position, market = self.state, self._position(key), self.markets[key]
        mid = self.marks[key][0]
        requested = units
        if reduce_only:
            held = int(position["units"])
            if held == 0 or (held > 0) == (units > 0):
                s["transaction"] += 1
                result = OrderResult(client_id, OrderStatus.CANCELLED, units, f"paper-{s['transaction']}",
                                     reason="REDUCE_ONLY: nothing to reduce", transaction_id=str(s["transaction"]))
                s["orders"][client_id] = result.to_dict()
                atomic_write_json(self.path, s)
                return result
            units = max(-abs(held), min(abs(held), units))  # at most what closes the position
        # on the instrument's P&L scale (pips: the prices; bps: 10,000 x ln price), so the book counts its unit
        scale, half_spread = market.scale, market.spread_pips / 2
        scaled = float(scale.scale_prices(np.float64(mid))) + (1 if units > 0 else -1) * half_spread * scale.point
        price = float(scale.unscale_prices(scaled))
        book = Book.flat(1)  # the instrument's position, through the one accounting
        book.units[0], book.realized_pips[0] = int(position["units"]), float(position["realized_pips"])
        average = position["average_price"]
        book.entry_price[0] = float(scale.scale_prices(np.float64(average))) if average else 0.0
        filled = fill(book, np.array([units]), np.array([scaled]), scale.point,
                      scale.scale_prices(np.array([mid])), half_spread)
        value = 0.0
        if self.currency is not None and filled.realized_pips[0]:
            # converted now, at the marks of this moment: what the account books as the trade closes
            value = self.currency.value(key, float(filled.realized_pips[0]), self.mid_of)
            if value is None:  # before anything is booked: nothing half-done
                raise TemporaryBrokerError(f"no price yet for converting {key}'s P&L into {self.currency.currency}")
        position["units"] = int(book.units[0])
        position["average_price"] = float(scale.unscale_prices(book.entry_price[0])) if position["units"] else None
        position["realized_pips"] = float(book.realized_pips[0])
        if value:
            position["realized_account"] = float(position.get("realized_account", 0.0)) + value
            s["realized_account"] = float(s.get("realized_account", 0.0)) + value
        s["transaction"] += 1
        result = OrderResult(client_id=client_id, status=OrderStatus.FILLED, units=requested,
                             broker_order_id=f"paper-{s['transaction']}", fill_price=price,
                             transaction_id=str(s["transaction"]), filled_units=units)
        s["orders"][client_id] = result.to_dict()
        atomic_write_json(self.path, s)
        return result

    @property
    def realized_pips(self) -> float:
        """The one instrument's realised P&L (one-instrument accounts)."""
        return float(self.state["realized_pips"])

    def realized_pips_of(self, instrument: str) -> float:
        return float(self._position(self._key(instrument))["realized_pips"])

    @property
    def realized_account(self) -> float | None:
        """The account's realised P&L in its currency (accounts of several instruments), else None."""
        return float(self.state.get("realized_account", 0.0)) if self.currency is not None else None
