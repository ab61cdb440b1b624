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
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

import numpy as np
import pandas as pd

from shared.core.bar_sizes import GRANULARITY_MINUTES
from shared.core.instruments import get_instrument
from shared.data.bars import NS_PER_MINUTE
from tests.v20_account import V20State, v20_time


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
                return self._send(200, {"prices": [state.client_price(n) for n in names], "time": v20_time(state.now)})
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
