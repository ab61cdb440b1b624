"""A loopback HTTP server that answers like OANDA v20 (shared/reference's
OpenAPI spec), for testing with the real oandapyV20 client.

* `GET /v3/instruments/{instrument}/candles` from bars it is given: `count` at
  most 5000 (400 otherwise), `from` + `count` paging with `includeFirst`, the
  candle that contains `now` incomplete and nothing after it.
* One account: `GET .../summary` (with `hedgingEnabled`),
  `.../pricing?instruments=` (the current mid +- half the spread; a test can
  set the mid with `price_override`), `.../positions/{instrument}`,
  `.../transactions/{id}`, `.../transactions/sinceid`, `GET
  .../orders/@{clientID}`, and `POST .../orders` (MARKET, FOK; a priceBound or
  stop distance with more decimals than the instrument is refused with 400,
  as v20 does). The account holds trades, as v20 does: without
  hedging an order first closes opposite trades oldest first (tradesClosed,
  tradeReduced) and opens a trade with the rest (tradeOpened); with hedging
  it opens a trade against the other side instead, so a position can be long
  and short at once. `positionFill: REDUCE_ONLY` fills only what reduces (a
  partial fill) and is cancelled when nothing would (the spec lists no cancel
  reason for that: REDUCE_ONLY_CANCEL_REASON stands in). `priceBound` is honoured
  (BOUNDS_VIOLATION), `stopLossOnFill` creates a STOP_LOSS_ORDER (never
  triggered here). A fill carries units, fullVWAP, fullPrice and the trades it
  touched; the deprecated `price` can be left out.
* Bearer token required (401 otherwise). Faults on demand: the next responses
  forced to a status (429, 500, ...) or to any status, content type and body
  (an HTML 404 from a proxy, a 200 that is not JSON), orders created but
  answered with a 5xx or too late, cancels with a reason, partial fills,
  slippage, order lookups forced to a status or delayed. A resent client id is
  refused with 400 CLIENT_ORDER_ID_ALREADY_EXISTS, as v20 does. Behind the
  client's back: `set_position` (a hand trade) and `margin_closeout`.
Every request is recorded, bodies included.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

import numpy as np
import pandas as pd

from shared.core.bar_sizes import GRANULARITY_MINUTES
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


def _time(ts: pd.Timestamp | None = None) -> str:
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
        return {"type": "PRICE", "instrument": instrument, "time": _time(self.now), "status": "tradeable",
                "tradeable": True, "bids": [{"price": bid, "liquidity": 10_000_000}],
                "asks": [{"price": ask, "liquidity": 10_000_000}], "closeoutBid": bid, "closeoutAsk": ask}

    def add_transaction(self, **fields) -> dict:
        tx = {"id": str(len(self.transactions) + 1), "accountID": self.account, "time": _time(), **fields}
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


def _decimals(text: str) -> int:
    return len(text.partition(".")[2])


class _Handler(BaseHTTPRequestHandler):
    server: V20Server

    def log_message(self, *args: object) -> None:  # keep test output quiet
        pass

    def _send_raw(self, status: int, data: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("RequestID", str(len(self.server.state.requests)))
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _send(self, status: int, body: dict) -> None:
        self._send_raw(status, json.dumps(body).encode(), "application/json")

    def _forced(self, method: str, path: str) -> bool:
        state = self.server.state
        with state.lock:
            forced = next((f for f in state.forced_responses if f.matches(method, path)), None)
            if forced is not None:
                state.forced_responses.remove(forced)
        if forced is not None:
            self._send_raw(forced.status, forced.body.encode(), forced.content_type)
        return forced is not None

    def do_GET(self) -> None:
        state = self.server.state
        url = urlparse(self.path)
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        state.requests.append({"path": url.path, "method": "GET", "query": query,
                               "authorization": self.headers.get("Authorization")})
        if self._forced("GET", url.path):
            return None
        if self.headers.get("Authorization") != f"Bearer {state.token}":
            return self._send(401, {"errorMessage": "Insufficient authorization to perform request."})
        if state.forced_statuses:
            status = state.forced_statuses.pop(0)
            return self._send(status, {"errorMessage": f"forced {status}"})
        parts = url.path.strip("/").split("/")
        if len(parts) == 5 and parts[3] == "orders" and parts[4].startswith("@"):
            delay = state.delay_lookup_seconds.pop(0) if state.delay_lookup_seconds else 0.0
            if delay:
                time.sleep(delay)
            if state.forced_lookup_statuses:
                status = state.forced_lookup_statuses.pop(0)
                return self._send(status, {"errorMessage": f"forced {status}"})
        if len(parts) == 4 and parts[:2] == ["v3", "instruments"] and parts[3] == "candles":
            return self._candles(parts[2], query)
        if len(parts) >= 4 and parts[:2] == ["v3", "accounts"]:
            if parts[2] != state.account:
                return self._send(404, {"errorCode": "ACCOUNT_NOT_FOUND", "errorMessage": "The Account specified does not exist"})
            return self._account_get(parts[3:], query)
        return self._send(404, {"errorMessage": f"no route {url.path}"})

    def _account_get(self, rest: list[str], query: dict) -> None:
        state = self.server.state
        with state.lock:
            last = str(len(state.transactions))
            if rest == ["summary"]:
                return self._send(200, {"account": state.account_summary(), "lastTransactionID": last})
            if rest == ["pricing"]:
                names = [n for n in query.get("instruments", "").split(",") if n]
                if not names or any(n not in state.bars and n not in state.price_override for n in names):
                    message = f"Invalid value specified for 'instruments': {query.get('instruments')}"
                    return self._send(400, {"errorMessage": message})
                return self._send(200, {"prices": [state.client_price(n) for n in names], "time": _time(state.now)})
            if len(rest) == 2 and rest[0] == "orders" and rest[1].startswith("@"):
                order = state.orders.get(rest[1][1:])
                if order is None:
                    return self._send(404, {"errorCode": "ORDER_DOESNT_EXIST",
                                            "errorMessage": "The Order specified does not exist"})
                return self._send(200, {"order": order, "lastTransactionID": last})
            if rest == ["transactions", "sinceid"]:
                since = int(query.get("id", 0))
                return self._send(200, {"transactions": state.transactions[since:], "lastTransactionID": last})
            if len(rest) == 2 and rest[0] == "transactions":
                index = int(rest[1]) - 1
                if not 0 <= index < len(state.transactions):
                    return self._send(404, {"errorCode": "TRANSACTION_DOESNT_EXIST",
                                            "errorMessage": "The Transaction specified does not exist"})
                return self._send(200, {"transaction": state.transactions[index], "lastTransactionID": last})
            if len(rest) == 2 and rest[0] == "positions":
                return self._send(200, {"position": state.position(rest[1]), "lastTransactionID": last})
        return self._send(404, {"errorMessage": f"no route {'/'.join(rest)}"})

    def do_POST(self) -> None:
        state = self.server.state
        url = urlparse(self.path)
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
        state.requests.append({"path": url.path, "method": "POST", "body": body,
                               "authorization": self.headers.get("Authorization")})
        if self._forced("POST", url.path):
            return None
        if self.headers.get("Authorization") != f"Bearer {state.token}":
            return self._send(401, {"errorMessage": "Insufficient authorization to perform request."})
        if state.forced_statuses or state.forced_post_statuses:
            status = (state.forced_post_statuses or state.forced_statuses).pop(0)
            return self._send(status, {"errorMessage": f"forced {status}"})
        parts = url.path.strip("/").split("/")
        if parts != ["v3", "accounts", state.account, "orders"]:
            return self._send(404, {"errorMessage": f"no route {url.path}"})
        order = body.get("order", {})
        client_id = order.get("clientExtensions", {}).get("id")
        with state.lock:
            reject = self._invalid(order)
            if reject is None and client_id in state.orders:
                reject = "CLIENT_ORDER_ID_ALREADY_EXISTS"
            if reject is not None:
                tx = state.add_transaction(**{**order, "type": "MARKET_ORDER_REJECT", "rejectReason": reject})
                return self._send(400, {"orderRejectTransaction": tx, "errorCode": reject,
                                        "errorMessage": f"The order was rejected: {reject}"})
            instrument, units = order["instrument"], int(order["units"])
            create = state.add_transaction(**{**order, "type": "MARKET_ORDER", "reason": "CLIENT_ORDER"})
            record = {"id": create["id"], "createTime": create["time"], "type": "MARKET", "instrument": instrument,
                      "units": str(units), "timeInForce": order.get("timeInForce", "FOK"),
                      "positionFill": order.get("positionFill", "DEFAULT"), "clientExtensions": order.get("clientExtensions")}
            response = {"orderCreateTransaction": create, "relatedTransactionIDs": [create["id"]]}
            if state.cancel_next:
                fill, reason, extra = None, state.cancel_next.pop(0), []
            else:
                fill, reason, extra = state.fill_order(order, create["id"], client_id)
            if fill is None:
                cancel = state.add_transaction(type="ORDER_CANCEL", orderID=create["id"], clientOrderID=client_id,
                                               reason=reason)
                record.update(state="CANCELLED", cancellingTransactionID=cancel["id"], cancelledTime=cancel["time"])
                response["orderCancelTransaction"] = cancel
                extra = [cancel]
            else:
                record.update(state="FILLED", fillingTransactionID=fill["id"], filledTime=fill["time"])
                response["orderFillTransaction"] = fill
                extra = [fill, *extra]
            response["relatedTransactionIDs"] += [tx["id"] for tx in extra]
            state.orders[client_id] = record
            response["lastTransactionID"] = str(len(state.transactions))
            fail = state.fail_after_create.pop(0) if state.fail_after_create else None
            delay = state.delay_next_seconds.pop(0) if state.delay_next_seconds else 0.0
        if delay:
            time.sleep(delay)
        if fail:
            return self._send(fail, {"errorMessage": f"forced {fail} after creating the order"})
        self._send(201, response)

    def _invalid(self, order: dict) -> str | None:
        """v20's reject reason for an order it refuses outright (400), or None."""
        state = self.server.state
        if order.get("instrument") not in state.bars and order.get("instrument") not in state.price_override:
            return "INSTRUMENT_UNKNOWN"
        if order.get("positionFill", "DEFAULT") not in ("OPEN_ONLY", "REDUCE_FIRST", "REDUCE_ONLY", "DEFAULT"):
            return "ORDER_FILL_POSITION_ACTION_INVALID"
        decimals = get_instrument(order["instrument"]).price_decimals
        if "priceBound" in order and _decimals(order["priceBound"]) > decimals:
            return "PRICE_BOUND_PRECISION_EXCEEDED"
        stop = order.get("stopLossOnFill")
        if stop is not None:
            if "distance" in stop and _decimals(stop["distance"]) > decimals:
                return "STOP_LOSS_ON_FILL_DISTANCE_PRECISION_EXCEEDED"
            if stop.get("timeInForce") not in ("GTC", "GTD", "GFD"):
                return "STOP_LOSS_ON_FILL_TIME_IN_FORCE_INVALID"
        return None

    def _candles(self, instrument: str, query: dict) -> None:
        state = self.server.state
        granularity = query.get("granularity", "S5")
        if granularity != "M1":
            return self._send(400, {"errorMessage": f"this test server only has M1, not {granularity}"})
        count = int(query.get("count", 500))
        if not 1 <= count <= 5000:
            return self._send(400, {"errorMessage": "Invalid value specified for 'count'. Maximum count is 5000"})
        bars = state.bars.get(instrument)
        if bars is None:
            return self._send(400, {"errorMessage": f"Invalid value specified for 'instrument': {instrument}"})
        now_ns = state.now.value if state.now is not None else int(bars.ts[-1]) + 2 * NS_PER_MINUTE
        if "from" in query:
            start = pd.Timestamp(query["from"]).tz_convert("UTC").tz_localize(None).value
            include_first = query.get("includeFirst", "true") == "true"
            first = int(np.searchsorted(bars.ts, start, side="left" if include_first else "right"))
        else:  # only a count: the most recent candles up to now, the forming one included
            first = max(0, int(np.searchsorted(bars.ts, now_ns, side="right")) - count)
        step = GRANULARITY_MINUTES[granularity] * NS_PER_MINUTE
        candles = []
        for i in range(first, min(first + count, len(bars))):
            if bars.ts[i] > now_ns:
                break
            complete = bars.ts[i] + step <= now_ns
            candle = {
                "time": pd.Timestamp(int(bars.ts[i])).strftime("%Y-%m-%dT%H:%M:%S.000000000Z"),
                "volume": int(bars.volume[i]),
                "complete": bool(complete),
            }
            prices = query.get("price", "M")
            fields = (("o", "open"), ("h", "high"), ("l", "low"), ("c", "close"))
            half = state.spread_pips / 2 * 0.01
            for letter, key, shift in (("M", "mid", 0.0), ("B", "bid", -half), ("A", "ask", half)):
                if letter in prices:
                    candle[key] = {k: f"{getattr(bars, name)[i] + shift:.3f}" for k, name in fields}
            candles.append(candle)
        self._send(200, {"instrument": instrument, "granularity": granularity, "candles": candles})


class V20Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, state: V20State) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.state = state
        self._thread = threading.Thread(target=self.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def __enter__(self) -> V20Server:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()
        self.server_close()
