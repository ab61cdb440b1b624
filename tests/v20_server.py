"""A loopback HTTP server that answers like OANDA v20 (shared/reference's
OpenAPI spec), for testing with the real oandapyV20 client.

* `GET /v3/instruments/{instrument}/candles` from bars it is given: `count` at
  most 5000 (400 otherwise), `from` + `count` paging with `includeFirst`, the
  candle that contains `now` incomplete and nothing after it.
* One account: `POST .../orders` (MARKET, FOK; 201 with an
  orderFillTransaction at the last complete mid +- half the spread, or with an
  orderCancelTransaction when told to cancel), `GET .../orders/@{clientID}`,
  `GET .../transactions/{id}`, `.../transactions/sinceid`,
  `.../positions/{instrument}`, `.../summary`.
* Bearer token required (401 otherwise). Faults on demand: the next responses
  forced to a status (429, 500, ...), orders created but answered with a 5xx,
  answers delayed past the client's timeout, cancels with a reason, order
  lookups (`orders/@id`) forced to a status or delayed. A resent client id is
  refused with 400 CLIENT_ORDER_ID_ALREADY_EXISTS, as v20 does.
Every request is recorded.
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

from shared.data.bars import Bars, GRANULARITY_MINUTES, NS_PER_MINUTE

TOKEN = "test-token-0123456789abcdef"


ACCOUNT = "101-004-0000000-001"


@dataclass
class V20State:
    token: str = TOKEN
    bars: dict[str, Bars] = field(default_factory=dict)      # by OANDA name, e.g. GBP_JPY (M1)
    now: pd.Timestamp | None = None                           # the clock; None = after the last bar
    forced_statuses: list[int] = field(default_factory=list)  # statuses for the next requests
    requests: list[dict] = field(default_factory=list)
    account: str = ACCOUNT
    spread_pips: float = 2.0
    units: dict[str, int] = field(default_factory=dict)      # net position by OANDA instrument name
    average_price: dict[str, float] = field(default_factory=dict)
    orders: dict[str, dict] = field(default_factory=dict)    # by client id
    transactions: list[dict] = field(default_factory=list)
    forced_post_statuses: list[int] = field(default_factory=list)  # statuses for the next order creations only
    fail_after_create: list[int] = field(default_factory=list)  # create the order, then answer with this status
    delay_next_seconds: list[float] = field(default_factory=list)  # create the order, then answer this late
    cancel_next: list[str] = field(default_factory=list)     # cancel reasons for the next orders
    forced_lookup_statuses: list[int] = field(default_factory=list)  # statuses for the next GET orders/@id
    delay_lookup_seconds: list[float] = field(default_factory=list)  # the next GET orders/@id answered this late
    lock: threading.Lock = field(default_factory=threading.Lock)

    def mid(self, instrument: str) -> float:
        bars = self.bars[instrument]
        now_ns = self.now.value if self.now is not None else int(bars.ts[-1]) + 2 * NS_PER_MINUTE
        last = int(np.searchsorted(bars.ts, now_ns - NS_PER_MINUTE, side="right")) - 1
        return float(bars.close[max(last, 0)])

    def add_transaction(self, **fields) -> dict:
        tx = {"id": str(len(self.transactions) + 1), "accountID": self.account,
              "time": pd.Timestamp.now(tz="UTC").strftime("%Y-%m-%dT%H:%M:%S.%fZ"), **fields}
        self.transactions.append(tx)
        return tx

    def set_position(self, instrument: str, units: int, price: float | None = None) -> None:
        """A position changed at the broker behind the client's back (a manual close, say)."""
        with self.lock:
            self.units[instrument] = units
            if price is not None:
                self.average_price[instrument] = price
            self.add_transaction(type="TRADE_CLIENT_EXTENSIONS_MODIFY", instrument=instrument, units=str(units))


class _Handler(BaseHTTPRequestHandler):
    server: "V20Server"

    def log_message(self, *args: object) -> None:  # keep test output quiet
        pass

    def _send(self, status: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("RequestID", str(len(self.server.state.requests)))
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:  # noqa: N802 - http.server naming
        state = self.server.state
        url = urlparse(self.path)
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        state.requests.append({"path": url.path, "query": query, "authorization": self.headers.get("Authorization")})
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
                return self._send(404, {"errorMessage": "The Account specified does not exist"})
            return self._account_get(parts[3:], query)
        return self._send(404, {"errorMessage": f"no route {url.path}"})

    def _account_get(self, rest: list[str], query: dict) -> None:
        state = self.server.state
        with state.lock:
            if rest == ["summary"]:
                return self._send(200, {"account": {"id": state.account}, "lastTransactionID": str(len(state.transactions))})
            if len(rest) == 2 and rest[0] == "orders" and rest[1].startswith("@"):
                order = state.orders.get(rest[1][1:])
                if order is None:
                    return self._send(404, {"errorCode": "ORDER_DOESNT_EXIST",
                                            "errorMessage": "The Order specified does not exist"})
                return self._send(200, {"order": order, "lastTransactionID": str(len(state.transactions))})
            if rest == ["transactions", "sinceid"]:
                since = int(query.get("id", 0))
                return self._send(200, {"transactions": state.transactions[since:],
                                        "lastTransactionID": str(len(state.transactions))})
            if len(rest) == 2 and rest[0] == "transactions":
                index = int(rest[1]) - 1
                if not 0 <= index < len(state.transactions):
                    return self._send(404, {"errorMessage": "The Transaction specified does not exist"})
                return self._send(200, {"transaction": state.transactions[index]})
            if len(rest) == 2 and rest[0] == "positions":
                units = state.units.get(rest[1], 0)
                price = state.average_price.get(rest[1])
                long = {"units": str(max(units, 0)), **({"averagePrice": f"{price:.3f}"} if units > 0 else {})}
                short = {"units": str(min(units, 0)), **({"averagePrice": f"{price:.3f}"} if units < 0 else {})}
                return self._send(200, {"position": {"instrument": rest[1], "long": long, "short": short},
                                        "lastTransactionID": str(len(state.transactions))})
        return self._send(404, {"errorMessage": f"no route {'/'.join(rest)}"})

    def do_POST(self) -> None:  # noqa: N802 - http.server naming
        state = self.server.state
        url = urlparse(self.path)
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
        state.requests.append({"path": url.path, "method": "POST", "body": body,
                               "authorization": self.headers.get("Authorization")})
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
            if client_id in state.orders:
                reject = state.add_transaction(type="MARKET_ORDER_REJECT", rejectReason="CLIENT_ORDER_ID_ALREADY_EXISTS")
                return self._send(400, {"orderRejectTransaction": reject, "errorCode": "CLIENT_ORDER_ID_ALREADY_EXISTS",
                                        "errorMessage": "The client Order ID specified is already assigned"})
            instrument, units = order["instrument"], int(order["units"])
            create = state.add_transaction(type="MARKET_ORDER", instrument=instrument, units=str(units),
                                           clientExtensions=order.get("clientExtensions"))
            record = {"id": create["id"], "createTime": create["time"], "type": "MARKET", "instrument": instrument,
                      "units": str(units), "clientExtensions": order.get("clientExtensions")}
            response = {"orderCreateTransaction": create, "relatedTransactionIDs": [create["id"]]}
            if state.cancel_next:
                cancel = state.add_transaction(type="ORDER_CANCEL", orderID=create["id"], reason=state.cancel_next.pop(0))
                record.update(state="CANCELLED", cancellingTransactionID=cancel["id"])
                response["orderCancelTransaction"] = cancel
            else:
                price = state.mid(instrument) + (1 if units > 0 else -1) * state.spread_pips / 2 * 0.01
                fill = state.add_transaction(type="ORDER_FILL", orderID=create["id"], instrument=instrument,
                                             units=str(units), price=f"{price:.3f}")
                old = state.units.get(instrument, 0)
                state.units[instrument] = old + units
                if old == 0 or (old > 0) != (old + units > 0):
                    state.average_price[instrument] = price
                record.update(state="FILLED", fillingTransactionID=fill["id"])
                response["orderFillTransaction"] = fill
            state.orders[client_id] = record
            response["lastTransactionID"] = str(len(state.transactions))
            fail = state.fail_after_create.pop(0) if state.fail_after_create else None
            delay = state.delay_next_seconds.pop(0) if state.delay_next_seconds else 0.0
        if delay:
            time.sleep(delay)
        if fail:
            return self._send(fail, {"errorMessage": f"forced {fail} after creating the order"})
        self._send(201, response)

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

    def __enter__(self) -> "V20Server":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()
        self.server_close()
