"""The simulated OANDA v20 account behind tests/v20_server.py: prices, trades, positions,
transactions and fills as v20 keeps them, and the faults a test forces on the next responses
(ForcedResponse). The HTTP side (paths, status codes, the token) is the server's."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from shared.core.instruments import get_instrument
from shared.data.bars import NS_PER_MINUTE, Bars

TOKEN = "test-token-0123456789abcdef"
ACCOUNT = "101-004-0000000-001"
HTML_404 = "<html><head><title>404 Not Found</title></head><body><h1>Not Found</h1><hr>nginx</body></html>"
# The spec's OrderCancelReason has none for a REDUCE_ONLY order with nothing to reduce; this stands in for it.
REDUCE_ONLY_CANCEL_REASON = "REDUCE_ONLY"


@dataclass
class ForcedResponse:
    """One canned answer: to the next request whose path contains `path_contains` (any, if None)
    and whose method is `method` (any, if None)."""
    status: int
    body: str = ""
    content_type: str = "application/json"
    path_contains: str | None = None
    method: str | None = None

    def matches(self, method: str, path: str) -> bool:
        return (self.method is None or self.method == method) and (self.path_contains is None or self.path_contains in path)


def html_404(path_contains: str | None = None, method: str | None = None) -> ForcedResponse:
    """What a proxy or load balancer answers for a path it does not know: no v20 body, no errorCode."""
    return ForcedResponse(404, HTML_404, "text/html", path_contains, method)


def v20_time(ts: pd.Timestamp | None = None) -> str:
    return (ts if ts is not None else pd.Timestamp.now(tz="UTC")).strftime("%Y-%m-%dT%H:%M:%S.%f000Z")


@dataclass
class V20State:
    token: str = TOKEN
    bars: dict[str, Bars] = field(default_factory=dict)      # by OANDA name, e.g. GBP_JPY (M1)
    now: pd.Timestamp | None = None                           # the clock; None = after the last bar
    forced_statuses: list[int] = field(default_factory=list)  # statuses for the next requests
    forced_responses: list[ForcedResponse] = field(default_factory=list)  # the next matching requests get these
    requests: list[dict] = field(default_factory=list)
    account: str = ACCOUNT
    hedging: bool = False                                     # hedgingEnabled: long and short trades side by side
    spread_pips: float = 2.0
    price_override: dict[str, float] = field(default_factory=dict)  # mid by instrument, instead of the bars
    trades: dict[str, list[dict]] = field(default_factory=dict)  # open trades: {"id", "units" (signed), "price"}
    units: dict[str, int] = field(default_factory=dict)      # net position by instrument (kept from `trades`)
    average_price: dict[str, float] = field(default_factory=dict)  # of the side the net is on
    orders: dict[str, dict] = field(default_factory=dict)    # by client id
    transactions: list[dict] = field(default_factory=list)
    omit_fill_price: bool = False                            # leave the deprecated `price` out of ORDER_FILLs
    partial_next: list[int] = field(default_factory=list)    # the next fills fill at most this many units
    slip_next_pips: list[float] = field(default_factory=list)  # the next fills this many pips worse than the quote
    forced_post_statuses: list[int] = field(default_factory=list)  # statuses for the next order creations only
    fail_after_create: list[int] = field(default_factory=list)  # create the order, then answer with this status
    delay_next_seconds: list[float] = field(default_factory=list)  # create the order, then answer this late
    cancel_next: list[str] = field(default_factory=list)     # cancel reasons for the next orders
    forced_lookup_statuses: list[int] = field(default_factory=list)  # statuses for the next GET orders/@id
    delay_lookup_seconds: list[float] = field(default_factory=list)  # the next GET orders/@id answered this late
    lock: threading.RLock = field(default_factory=threading.RLock)

    def mid(self, instrument: str) -> float:
        if instrument in self.price_override:
            return float(self.price_override[instrument])
        bars = self.bars[instrument]
        now_ns = self.now.value if self.now is not None else int(bars.ts[-1]) + 2 * NS_PER_MINUTE
        last = int(np.searchsorted(bars.ts, now_ns - NS_PER_MINUTE, side="right")) - 1
        return float(bars.close[max(last, 0)])

    def bid_ask(self, instrument: str) -> tuple[float, float]:
        half = self.spread_pips / 2 * get_instrument(instrument).pip_size
        mid = self.mid(instrument)
        return mid - half, mid + half

    def fmt(self, instrument: str, price: float) -> str:
        return f"{price:.{get_instrument(instrument).price_decimals}f}"

    def client_price(self, instrument: str) -> dict:
        """A ClientPrice, as pricing and a fill's fullPrice carry it."""
        bid, ask = (self.fmt(instrument, p) for p in self.bid_ask(instrument))
        return {"type": "PRICE", "instrument": instrument, "time": v20_time(self.now), "status": "tradeable",
                "tradeable": True, "bids": [{"price": bid, "liquidity": 10_000_000}],
                "asks": [{"price": ask, "liquidity": 10_000_000}], "closeoutBid": bid, "closeoutAsk": ask}

    def add_transaction(self, **fields) -> dict:
        tx = {"id": str(len(self.transactions) + 1), "accountID": self.account, "time": v20_time(), **fields}
        self.transactions.append(tx)
        return tx

    def sides(self, instrument: str) -> dict[str, tuple[int, float | None, list[str]]]:
        """long and short: units, average open price, trade ids."""
        out = {}
        for name, sign in (("long", 1), ("short", -1)):
            side = [t for t in self.trades.get(instrument, []) if t["units"] * sign > 0]
            units = sum(t["units"] for t in side)
            price = sum(t["units"] * t["price"] for t in side) / units if units else None
            out[name] = (units, price, [t["id"] for t in side])
        return out

    def _sync(self, instrument: str) -> None:
        sides = self.sides(instrument)
        net = sides["long"][0] + sides["short"][0]
        self.units[instrument] = net
        if net:
            self.average_price[instrument] = sides["long" if net > 0 else "short"][1]

    def set_position(self, instrument: str, units: int, price: float | None = None) -> None:
        """A position changed at the broker behind the client's back (a manual close, say)."""
        with self.lock:
            price = price if price is not None else self.average_price.get(instrument) or self.mid(instrument)
            tx = self.add_transaction(type="TRADE_CLIENT_EXTENSIONS_MODIFY", instrument=instrument, units=str(units))
            self.trades[instrument] = [{"id": tx["id"], "units": int(units), "price": float(price)}] if units else []
            self._sync(instrument)

    def margin_closeout(self, instrument: str) -> dict | None:
        """The broker closes the whole position (both sides) on a margin call: a MARKET_ORDER with
        reason MARGIN_CLOSEOUT and its ORDER_FILL (reason MARKET_ORDER_MARGIN_CLOSEOUT). Returns the fill."""
        with self.lock:
            open_trades = list(self.trades.get(instrument, []))
            if not open_trades:
                return None
            net = sum(t["units"] for t in open_trades)
            order = self.add_transaction(type="MARKET_ORDER", instrument=instrument, units=str(-net), timeInForce="FOK",
                                         positionFill="REDUCE_ONLY", reason="MARGIN_CLOSEOUT",
                                         marginCloseout={"reason": "MARGIN_CHECK_VIOLATION"})
            bid, ask = self.bid_ask(instrument)
            closed = [{"tradeID": t["id"], "units": str(-t["units"]),
                       "price": self.fmt(instrument, bid if t["units"] > 0 else ask),
                       "realizedPL": "0.0000"} for t in open_trades]
            weight = sum(abs(t["units"]) for t in open_trades)
            vwap = sum(abs(t["units"]) * (bid if t["units"] > 0 else ask) for t in open_trades) / weight
            fill = self.add_transaction(type="ORDER_FILL", orderID=order["id"], instrument=instrument, units=str(-net),
                                        reason="MARKET_ORDER_MARGIN_CLOSEOUT", fullVWAP=self.fmt(instrument, vwap),
                                        fullPrice=self.client_price(instrument), tradesClosed=closed,
                                        **({} if self.omit_fill_price else {"price": self.fmt(instrument, vwap)}))
            self.trades[instrument] = []
            self._sync(instrument)
            return fill

    def fill_order(self, order: dict, order_id: str, client_id: str | None) -> tuple[dict | None, str | None, list[dict]]:
        """Fill a MARKET order as v20 would: (fill, None, extra transactions) or (None, cancel reason, [])."""
        instrument, units = order["instrument"], int(order["units"])
        direction = 1 if units > 0 else -1
        bid, ask = self.bid_ask(instrument)
        slip = (self.slip_next_pips.pop(0) if self.slip_next_pips else 0.0) * get_instrument(instrument).pip_size
        price = ask + slip if direction > 0 else bid - slip
        if "priceBound" in order and (price - float(order["priceBound"])) * direction > 1e-9:
            return None, "BOUNDS_VIOLATION", []
        trades = self.trades.setdefault(instrument, [])
        reduce_only = order.get("positionFill") == "REDUCE_ONLY"
        opposite = [t for t in trades if t["units"] * direction < 0] if (reduce_only or not self.hedging) else []
        fillable = abs(units)
        if reduce_only:
            fillable = min(fillable, sum(abs(t["units"]) for t in opposite))
            if fillable == 0:
                return None, REDUCE_ONLY_CANCEL_REASON, []
        if self.partial_next:
            fillable = min(fillable, abs(self.partial_next.pop(0)))
        fill_id = str(len(self.transactions) + 1)
        text = self.fmt(instrument, price)
        parts: dict = {}
        remaining = fillable
        for trade in opposite:
            if remaining == 0:
                break
            take = min(remaining, abs(trade["units"]))
            part = {"tradeID": trade["id"], "units": str(direction * take), "price": text, "realizedPL": "0.0000"}
            if take == abs(trade["units"]):
                parts.setdefault("tradesClosed", []).append(part)
            else:
                parts["tradeReduced"] = part
            trade["units"] += direction * take
            remaining -= take
        trades[:] = [t for t in trades if t["units"] != 0]
        if remaining:
            trades.append({"id": fill_id, "units": direction * remaining, "price": price})
            parts["tradeOpened"] = {"tradeID": fill_id, "units": str(direction * remaining), "price": text}
        fill = self.add_transaction(type="ORDER_FILL", orderID=order_id, clientOrderID=client_id, instrument=instrument,
                                    units=str(direction * fillable), fullVWAP=text, fullPrice=self.client_price(instrument),
                                    reason="MARKET_ORDER", pl="0.0000", **parts,
                                    **({} if self.omit_fill_price else {"price": text}))
        assert fill["id"] == fill_id
        self._sync(instrument)
        extra = []
        if "tradeOpened" in parts and order.get("stopLossOnFill"):
            extra.append(self.add_transaction(type="STOP_LOSS_ORDER", tradeID=fill_id, reason="ON_FILL",
                                              orderFillTransactionID=fill_id, **order["stopLossOnFill"]))
        return fill, None, extra

    def account_summary(self) -> dict:
        return {"id": self.account, "currency": "JPY", "balance": "1000000.0000", "hedgingEnabled": self.hedging,
                "openTradeCount": sum(map(len, self.trades.values())),
                "openPositionCount": sum(1 for t in self.trades.values() if t), "pendingOrderCount": 0,
                "guaranteedStopLossOrderMode": "DISABLED", "lastTransactionID": str(len(self.transactions))}

    def position(self, instrument: str) -> dict:
        out = {"instrument": instrument}
        for name, (units, price, ids) in self.sides(instrument).items():
            out[name] = {"units": str(units), "pl": "0.0000", "unrealizedPL": "0.0000",
                         **({"averagePrice": self.fmt(instrument, price), "tradeIDs": ids} if units else {})}
        return out
