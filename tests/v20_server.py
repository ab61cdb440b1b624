"""A loopback HTTP server that answers like OANDA v20 (shared/reference's
OpenAPI spec), for testing with the real oandapyV20 client.

It serves `GET /v3/instruments/{instrument}/candles` from bars it is given:
Bearer token required (401 otherwise), `count` at most 5000 (400 otherwise),
`from` + `count` paging with `includeFirst`, the candle that contains `now`
reported as incomplete and nothing after it; the next responses can be forced
to a status (429, 500, ...) to exercise retries. Every request is recorded.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

import numpy as np
import pandas as pd

from shared.data.bars import Bars, GRANULARITY_MINUTES, NS_PER_MINUTE

TOKEN = "test-token-0123456789abcdef"


@dataclass
class V20State:
    token: str = TOKEN
    bars: dict[str, Bars] = field(default_factory=dict)      # by OANDA name, e.g. GBP_JPY (M1)
    now: pd.Timestamp | None = None                           # the clock; None = after the last bar
    forced_statuses: list[int] = field(default_factory=list)  # statuses for the next requests
    requests: list[dict] = field(default_factory=list)


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
        if len(parts) == 4 and parts[:2] == ["v3", "instruments"] and parts[3] == "candles":
            return self._candles(parts[2], query)
        return self._send(404, {"errorMessage": f"no route {url.path}"})

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
        start = pd.Timestamp(query["from"]).tz_convert("UTC").tz_localize(None).value if "from" in query else 0
        include_first = query.get("includeFirst", "true") == "true"
        first = int(np.searchsorted(bars.ts, start, side="left" if include_first else "right"))
        now_ns = state.now.value if state.now is not None else int(bars.ts[-1]) + 2 * NS_PER_MINUTE
        step = GRANULARITY_MINUTES[granularity] * NS_PER_MINUTE
        candles = []
        for i in range(first, min(first + count, len(bars))):
            if bars.ts[i] > now_ns:
                break
            complete = bars.ts[i] + step <= now_ns
            candles.append(
                {
                    "time": pd.Timestamp(int(bars.ts[i])).strftime("%Y-%m-%dT%H:%M:%S.000000000Z"),
                    "volume": int(bars.volume[i]),
                    "complete": bool(complete),
                    "mid": {k: f"{getattr(bars, name)[i]:.3f}" for k, name in
                            (("o", "open"), ("h", "high"), ("l", "low"), ("c", "close"))},
                }
            )
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
