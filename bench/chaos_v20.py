"""bench.chaos --broker v20: live trades the loopback v20 server (tests/v20_server.py)
in this process while the services are killed, and faults are injected at random.

The server runs in a thread of the benchmark (never killed), with the market's
GBPJPY bars; live is pointed at it (LIVE_BROKER=oanda, the replay feed,
LIVE_REQUEST_TIMEOUT_SECONDS=2). A second thread, on its own seeded rng (so
the kill sequence is the paper run's), injects one fault every 0.5-3 s:
answers lost after the order was created (a 503, or an answer later than the
timeout), 5xx and 429 on GETs, order lookups answered 503, cancels
(MARKET_HALTED), hand closes (the position set to 0 behind live's back) and,
where the server has it, a margin closeout; and it turns the kill switch
(control/live.flatten) on for 20-60 s, then off for 20-60 s.

Counts, from the journal and the server's own record:
* lost_journal_rows: a server order (by client id) the journal does not know
  or knows with another status (FILLED / CANCELLED), a journal FILLED or
  CANCELLED row the server has no order for, a row settled as not_sent or
  not_filled whose order the server has;
* position_mismatch: (1) the server's net units differ from the journal's
  fills plus its ADOPTED differences; (2) the ADOPTED differences do not add
  up to what changed at the server behind live's back (hand closes and margin
  closeouts, walked from the server's transactions): an own fill live missed
  or booked twice is covered by an adoption at the next reconciliation, so
  (1) alone could never fail after one; (3) each filled order whose journal
  units differ from the server's fill;
* stops_with_position_open: kill-switch periods in which live was up (/health)
  for more than 30 s while the server still held a position;
* closes_that_opened: a filled order the journal records as a close (action
  CLOSE, or a flatten, client id mm-f-...) after which the server's position,
  walked through its transactions in order, was on the other side, or open
  where it had been flat.
Before the stack stops the faults end and the kill switch goes off, and live
gets two reconciliations' time to adopt the last hand close.
"""

from __future__ import annotations

import json
import random
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pandas as pd

from deploy.local import ROOT, healthy

if str(ROOT) not in sys.path:  # tests.v20_server, when not run from the repository root
    sys.path.insert(0, str(ROOT))

INSTRUMENT = "GBP_JPY"
KILL_SWITCH_BOUND_SECONDS = 30.0
FAULTS = ("lost_create_503", "lost_create_late", "get_5xx", "get_429", "lookup_5xx", "cancel", "hand_close",
          "margin_closeout")


class V20Chaos:
    def __init__(self, bars, control_dir: Path, live_port: int, seed: int) -> None:
        from tests.v20_account import V20State
        from tests.v20_server import V20Server

        self.state = V20State(bars={INSTRUMENT: bars})
        self.server = V20Server(self.state)
        report = self.server.handle_error
        # an answer delayed past live's timeout finds the connection closed: expected, not worth a traceback
        self.server.handle_error = lambda request, address: (
            None if isinstance(sys.exc_info()[1], ConnectionError) else report(request, address))
        self.switch = control_dir / "live.flatten"
        self.live_port = live_port
        self.rng = random.Random(f"chaos-v20-{seed}")
        self.faults: Counter[str] = Counter()
        self.stops_with_position_open = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def live_env(self) -> dict[str, str]:
        from tests.v20_account import ACCOUNT, TOKEN

        return {"LIVE_BROKER": "oanda", "OANDA_TOKEN": TOKEN, "OANDA_ACCOUNT": ACCOUNT, "OANDA_API_URL": self.server.url,
                "LIVE_ALLOW_OANDA_WITH_REPLAY_FEED": "true", "LIVE_REQUEST_TIMEOUT_SECONDS": "2"}

    def __enter__(self) -> V20Chaos:
        self.server.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.quiesce()
        self.server.__exit__(*exc)

    def start_faults(self) -> None:
        self.switch.parent.mkdir(parents=True, exist_ok=True)
        self._thread.start()

    def quiesce(self) -> None:
        """No more faults, the kill switch off, nothing left queued."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
        self.switch.unlink(missing_ok=True)
        s = self.state
        with s.lock:
            for name in ("forced_statuses", "forced_responses", "fail_after_create", "delay_next_seconds", "cancel_next",
                         "forced_lookup_statuses"):
                getattr(s, name, []).clear()

    # --- the fault thread ------------------------------------------------------------

    def _units(self) -> int:
        with self.state.lock:
            return int(self.state.units.get(INSTRUMENT, 0))

    def _run(self) -> None:
        next_fault = time.monotonic() + self.rng.uniform(0.5, 3.0)
        switch_at = time.monotonic() + self.rng.uniform(20.0, 60.0)
        up_with_switch, counted, last = 0.0, False, time.monotonic()
        while not self._stop.wait(0.5):
            now = time.monotonic()
            if self.switch.exists():
                up_with_switch += (now - last) if healthy(self.live_port) else 0.0
                if up_with_switch > KILL_SWITCH_BOUND_SECONDS and not counted and self._units() != 0:
                    counted = True
                    self.stops_with_position_open += 1
                    print(f"chaos-v20: kill switch on, live up {up_with_switch:.0f}s, the server still holds "
                          f"{self._units()} units", file=sys.stderr, flush=True)
            last = now
            if now >= switch_at:
                if self.switch.exists():
                    self.switch.unlink()
                else:
                    self.switch.write_text("chaos\n")
                    self.faults["kill_switch"] += 1
                    up_with_switch, counted = 0.0, False
                switch_at = now + self.rng.uniform(20.0, 60.0)
            if now >= next_fault:
                self.inject(self.rng.choice(FAULTS))
                next_fault = now + self.rng.uniform(0.5, 3.0)

    def inject(self, fault: str) -> None:
        s = self.state
        if fault == "hand_close":
            if self._units() != 0:
                s.set_position(INSTRUMENT, 0)
                self.faults[fault] += 1
            return
        if fault == "margin_closeout":
            closeout = getattr(s, "margin_closeout", None)
            if closeout is not None and self._units() != 0:
                closeout(INSTRUMENT)
                self.faults[fault] += 1
            return
        with s.lock:
            queue = {"lost_create_503": s.fail_after_create, "lost_create_late": s.delay_next_seconds,
                     "cancel": s.cancel_next, "lookup_5xx": s.forced_lookup_statuses}.get(fault)
            if queue is not None:
                if len(queue) < 2:  # while live is down they wait for it; never a backlog
                    queue.append({"lost_create_503": 503, "lost_create_late": 2.5, "cancel": "MARKET_HALTED",
                                  "lookup_5xx": 503}[fault])
                    self.faults[fault] += 1
                return
            status = self.rng.choice((500, 502, 503)) if fault == "get_5xx" else 429
            self._force_get(status)
            self.faults[fault] += 1

    def _force_get(self, status: int) -> None:
        import tests.v20_server as v20

        forced = getattr(self.state, "forced_responses", None)
        if forced is not None and hasattr(v20, "ForcedResponse"):
            if len(forced) < 3:
                forced.append(v20.ForcedResponse(status, json.dumps({"errorMessage": f"chaos {status}"}), method="GET"))
        elif len(self.state.forced_statuses) < 3:
            self.state.forced_statuses.append(status)  # an older server: the next request, whatever its method

    # --- the counts ------------------------------------------------------------------

    def counts(self, rows: pd.DataFrame) -> dict[str, int]:
        """`rows`: the journal's decisions (client_id, action, status, units: filled or else ordered)."""
        s = self.state
        with s.lock:
            orders = {cid: dict(order) for cid, order in s.orders.items()}
            transactions = list(s.transactions)
            server_units = int(s.units.get(INSTRUMENT, 0))
        journal = dict(zip(rows.client_id, rows.status))
        units = dict(zip(rows.client_id, rows.units.astype(int)))
        fills = {tx["id"]: int(float(tx["units"])) for tx in transactions if tx.get("type") == "ORDER_FILL"}
        lost = misbooked = known_to_broker = 0
        for cid, order in orders.items():
            status = journal.get(cid)
            if status == "known_to_broker":
                known_to_broker += fills.get(order.get("fillingTransactionID"), 0)
            elif status != order.get("state"):
                lost += 1
                print(f"chaos-v20: server order {cid} {order.get('state')}, journal {status}", file=sys.stderr)
            elif status == "FILLED" and fills.get(order.get("fillingTransactionID")) != units[cid]:
                misbooked += 1
        for cid, status in journal.items():
            at_server = cid in orders
            if (status in ("FILLED", "CANCELLED") and not at_server) or (status in ("not_sent", "not_filled") and at_server):
                lost += 1
                print(f"chaos-v20: journal {cid} {status}, at the server: {at_server}", file=sys.stderr)
        closes = set(rows.client_id[(rows.action == "CLOSE") | rows.client_id.str.startswith("mm-f-")])
        client_of = {order["id"]: cid for cid, order in orders.items()}
        net = outside = opened = 0
        for tx in transactions:
            if tx.get("instrument") != INSTRUMENT:
                continue
            if tx.get("type") == "TRADE_CLIENT_EXTENSIONS_MODIFY":  # set_position: a hand trade
                outside += int(tx["units"]) - net
                net = int(tx["units"])
            elif tx.get("type") == "ORDER_FILL":
                change, cid = int(float(tx["units"])), client_of.get(tx.get("orderID"))
                if cid is None:
                    outside += change  # not ours: a margin closeout
                elif cid in closes and ((net == 0 and change != 0) or net * (net + change) < 0):
                    opened += 1
                    print(f"chaos-v20: close {cid} took {net} to {net + change}", file=sys.stderr)
                net += change
        if net != server_units:
            print(f"chaos-v20: the transactions add up to {net}, the server holds {server_units}", file=sys.stderr)
        booked = rows.status.isin(["FILLED", "ADOPTED"])
        adopted = int(rows.units[rows.status == "ADOPTED"].sum())
        mismatch = int(server_units != int(rows.units[booked].sum())) + int(adopted != outside + known_to_broker)
        print(f"chaos-v20: server {server_units} units, journal fills {int(rows.units[rows.status == 'FILLED'].sum())} "
              f"+ adopted {adopted} (outside changes {outside}); faults {dict(self.faults)}", file=sys.stderr, flush=True)
        return {"lost_journal_rows": lost, "position_mismatch": mismatch + misbooked, "closes_that_opened": opened,
                "stops_with_position_open": self.stops_with_position_open, "server_orders": len(orders),
                "faults": sum(self.faults.values())}
