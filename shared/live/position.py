"""The position as the broker booked it, kept by the live trader.

The broker is the truth: the journal's fills and adoptions are replayed
through the one accounting at start; reconciliation compares long and short
with the broker's and adopts what differs (journaled, so the journal's record
equals the broker's from then on); an order is booked at the units and price
the broker filled, orders settled later included, with their realised P&L.
"""

from __future__ import annotations

import logging
import uuid
from typing import Callable

import numpy as np
import pandas as pd

from shared.core.accounting import Book, fill
from shared.core.instruments import Instrument
from shared.data.bars import Bars
from shared.live.brokers import Broker, BrokerSnapshot, OrderResult, OrderStatus, client_order_id
from shared.live.journal import DecisionRow, Journal

log = logging.getLogger("live")


class BrokerPosition:
    """What LiveTrader knows of its position; `version` is the model's, for client ids."""

    instrument: Instrument
    broker: Broker
    journal: Journal
    bars: Bars
    version: str
    ids_name_instrument: bool  # several instruments in one account: their client ids name them

    def _init_position(self) -> None:
        # realised pips (x units) -> the account currency at this moment, or None (no rate known)
        self.to_account: Callable[[float], float | None] = lambda pips: None
        self.book = Book.flat(1)
        self.entry_known = True
        self._replay_journal()
        self.reconciled = False
        self.unknown_orders = 0
        self.mismatches = 0
        self.both_sides_open = False
        self.flat_confirmed = False
        self.last_transaction_id: str | None = None
        self.realized_day: pd.Timestamp | None = None
        self.realized_today = 0.0

    # --- the broker is the truth ----------------------------------------------------------

    def _replay_journal(self) -> None:
        """The position and entry the journal's fills and adoptions add up to, in order."""
        for status, units, price in self.journal.position_history():
            if status == "ADOPTED":
                new = self.position + units
                self._adopt_in_book(new, price, price if price is not None else 0.0)
                self.entry_known = new == 0 or price is not None
            elif units and price is not None:
                scaled = self.instrument.scale_prices(np.array([price]))
                fill(self.book, np.array([units]), scaled, self.instrument.point, scaled)
                self.entry_known = True
            elif units:
                self.book.units[0] += units
                self.entry_known = self.position == 0

    def settle_unfinished(self) -> list[str]:
        """Settle every decision whose order's fate is not known: after a crash (`decided`)
        or a send without a definite answer (`UNKNOWN`). A fill is booked as the broker
        booked it, with its realised P&L; only a definite "no such client id" settles an
        order as never filled; a failed lookup raises and leaves the rest as they are."""
        settled = []
        for client_id, units, status in self.journal.unfinished():
            found = self.broker.find_order(client_id) if units else None
            if found is not None and found.status is OrderStatus.UNKNOWN:
                continue  # it exists and has not settled yet: ask again next time
            if found is not None:
                self._book(found)
                log.warning("order %s settled as %s", client_id, found.status.value)
            elif status == "UNKNOWN":
                self.journal.mark(client_id, "not_filled", "the broker has no order with this client id")
            else:
                self.journal.mark(client_id, "not_sent", "the process stopped before the order left; the bar has passed")
            settled.append(client_id)
        self.unknown_orders = self.journal.unknown_orders()
        return settled

    def reconcile(self) -> bool:
        """Adopt the broker's position; returns whether ours agreed. What the broker did
        since the last known transaction id goes into the journal with the mismatch, so a
        person can see why. Long and short are compared separately: both open at once
        (a hedging account) is a mismatch no trade can follow, and nothing is traded."""
        snapshot = self.broker.snapshot(self.instrument.name)
        agreed = self._agree(snapshot, "reconciliation")
        self.last_transaction_id = snapshot.last_transaction_id
        # An order whose fate is unknown may still fill: no decision until the journal has none.
        self.unknown_orders = self.journal.unknown_orders()
        self.reconciled = self.unknown_orders == 0 and not self.both_sides_open
        return agreed

    def _agree(self, snapshot: BrokerSnapshot, when: str) -> bool:
        """Compare the broker's position with ours and adopt it where they differ."""
        long_ours, short_ours = max(self.position, 0), min(self.position, 0)
        self.both_sides_open = snapshot.both_sides_open
        agreed = snapshot.units == self.position and not self.both_sides_open and (
            snapshot.long_units is None or (snapshot.long_units, snapshot.short_units) == (long_ours, short_ours))
        self.flat_confirmed = snapshot.units == 0 and not self.both_sides_open
        if not agreed:
            self.mismatches += 1
            log.warning("%s: the broker holds %s units (long %s, short %s), we believed %d: adopting the broker's",
                        when, snapshot.units, snapshot.long_units, snapshot.short_units, self.position)
            since = []
            if self.last_transaction_id is not None and hasattr(self.broker, "transactions_since"):
                # the account's transactions; with several instruments in it, this one's (and those of none)
                mine = (None, self.instrument.oanda_name) if self.ids_name_instrument else None
                since = [{"id": t.get("id"), "type": t.get("type"), "units": t.get("units"), "reason": t.get("reason")}
                         for t in self.broker.transactions_since(self.last_transaction_id)
                         if mine is None or t.get("instrument") in mine]
            self.journal.event("reconciliation_mismatch", {
                "when": when, "broker_units": snapshot.units, "broker_long_units": snapshot.long_units,
                "broker_short_units": snapshot.short_units, "ours": self.position,
                "broker_average_price": snapshot.average_price, "last_transaction_id": snapshot.last_transaction_id,
                "transactions_since_last_known": since})
            self._adopt(snapshot.units, snapshot.average_price)
        elif self.position != 0 and not self.entry_known:
            self._adopt(snapshot.units, snapshot.average_price)
        return agreed

    def _adopt(self, units: int, average_price: float | None) -> None:
        """Take the broker's position as a new trade (its tracks start now), journaled as the
        difference it makes, so the journal's record equals the broker's from here on."""
        ts = int(self.bars.ts[-1]) if len(self.bars) else pd.Timestamp.now(tz="UTC").floor("min").tz_localize(None).value
        client_id = self._client_id(ts, f"adopt#{uuid.uuid4().hex}")
        self.journal.record_adoption(DecisionRow(client_id, pd.Timestamp(ts), self.version, None, None, None, "ADOPT",
                                                 self.position, units - self.position, "ADOPTED",
                                                 "the broker's position"), average_price)
        mark_price = float(self.bars.close[-1]) if len(self.bars) else (average_price or 0.0)
        self._adopt_in_book(units, average_price, mark_price)
        self.entry_known = units == 0 or average_price is not None

    def _adopt_in_book(self, units: int, average_price: float | None, mark_price: float) -> None:
        """The book holds prices on the instrument's scale (pips: the prices; bps: 10,000 x ln price)."""
        scale = self.instrument.scale_prices
        entry = None if average_price is None else float(scale(np.float64(average_price)))
        self.book.adopt(0, units, entry, float(scale(np.float64(mark_price))) if mark_price else 0.0,
                        self.instrument.point)

    def _client_id(self, ts: int, purpose: str = "decision") -> str:
        return client_order_id(self.version, ts, purpose,
                               instrument=self.instrument.name if self.ids_name_instrument else None)

    @property
    def position(self) -> int:
        return int(self.book.units[0])

    @property
    def entry_price(self) -> float | None:
        if self.position == 0 or not self.entry_known:
            return None
        return float(self.instrument.unscale_prices(self.book.entry_price[0]))  # the book's is on the P&L scale

    def _send(self, client_id: str, units: int, *, reduce_only: bool = False) -> OrderResult:
        try:
            order = self.broker.market_order(self.instrument.name, units, client_id, reduce_only=reduce_only)
        except BaseException:
            # the broker may have done anything: re-read the position before the next decision
            self.reconciled = False
            raise
        if order.status is OrderStatus.UNKNOWN:
            self.reconciled = False
            self.unknown_orders += 1
            log.error("order %s: fate unknown (%s); standing aside until reconciliation settles it",
                      client_id, order.reason)
        if getattr(order, "existed_before", False):
            # the broker had this id before this send (a journal lost, old bars replayed): its
            # fill is in the broker's position already; reconcile instead of booking it again
            self.on_order(order)
            self.journal.update(order, status="known_to_broker",
                                reason="the broker had this order before this send: reconciled, not booked")
            self.reconciled = False
            return order
        self._book(order)
        return order

    def _book(self, order: OrderResult) -> None:
        """Journal an order's result; a fill goes through the one accounting at the broker's units and price."""
        self.on_order(order)
        realized = None
        if order.status is OrderStatus.FILLED and order.units_filled:
            realized = self._apply_fill(order.units_filled, order.fill_price)
            self.flat_confirmed = False
        self.journal.update(order, realized, realized_account=self.to_account(realized) if realized else None)
        if realized is not None and self.realized_day is not None:
            self.realized_day = None  # the day's realised P&L is read again from the journal

    def _apply_fill(self, units: int, price: float | None) -> float | None:
        """Book a fill in the one accounting; returns the pips it realised, if it reduced the position."""
        reducing = self.position != 0 and (self.position > 0) != (units > 0)
        if price is None:  # a broker that gave no price: the units are certain, the entry is not
            self.book.units[0] += units
            self.entry_known = self.position == 0
            return None
        mark_price = float(self.bars.close[-1]) if len(self.bars) else price
        scale = self.instrument.scale_prices
        filled = fill(self.book, np.array([units]), scale(np.array([price])), self.instrument.point,
                      scale(np.array([mark_price])))
        self.entry_known = True
        return float(filled.realized_pips[0]) if reducing else None

