"""OANDA v20 through oandapyV20.

Market orders carry our `clientExtensions.id`. OANDA has no idempotency key,
so after a timeout, a 429 or a 5xx on creation we look the order up by that
id (`@<id>`, retrying briefly: a new order can be invisible for about half a
second) before sending it again. Only a definite "no such client id" (a 404
on the last look) allows a resend. A lookup that itself fails (timeout, 5xx,
401/403) proves nothing: the order is UNKNOWN, never resent, and the trader
stops deciding until reconciliation settles it. OANDA's answer to a resent id,
`CLIENT_ORDER_ID_ALREADY_EXISTS`, means the order exists: it is looked up, not
booked as rejected. A 201 can still carry an `orderCancelTransaction`
(MARKET_HALTED, INSUFFICIENT_MARGIN, ...): that is recorded as CANCELLED with
the reason, not retried. GETs back off within bounds on 429 and 5xx.
"""

from __future__ import annotations

import logging
import time
from typing import Callable

import oandapyV20
import requests
from oandapyV20.endpoints import accounts, orders, positions, transactions
from oandapyV20.exceptions import V20Error

from shared.brokers.base import (
    BrokerSnapshot,
    OperationalBrokerError,
    OrderResult,
    OrderStatus,
    TemporaryBrokerError,
)
from shared.instruments import get_instrument
from shared.oanda import is_retryable, request_with_retry

log = logging.getLogger(__name__)
ORDER_TAG = "micro-muzero"


class OandaBroker:
    name = "oanda"

    def __init__(self, api: oandapyV20.API, account_id: str, *, max_attempts: int = 4, lookup_attempts: int = 4,
                 lookup_wait_seconds: float = 0.25, backoff_seconds: float = 0.5,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.api = api
        self.account = account_id
        self.max_attempts = max_attempts
        self.lookup_attempts = lookup_attempts
        self.lookup_wait = lookup_wait_seconds
        self.backoff = backoff_seconds
        self.sleep = sleep

    def _get(self, endpoint) -> dict:
        try:
            return request_with_retry(self.api, endpoint, max_attempts=self.max_attempts,
                                      base_delay_seconds=self.backoff, sleep=self.sleep)
        except V20Error as error:
            if is_retryable(error):
                raise TemporaryBrokerError(f"OANDA HTTP {error.code}") from None
            if int(error.code) in (401, 403, 404):
                raise OperationalBrokerError(f"OANDA HTTP {error.code}: check the token, account and instrument") from None
            raise
        except (requests.Timeout, requests.ConnectionError) as error:
            raise TemporaryBrokerError(f"OANDA unreachable ({type(error).__name__})") from None

    def snapshot(self, instrument: str) -> BrokerSnapshot:
        name = get_instrument(instrument).oanda_name
        position = self._get(positions.PositionDetails(self.account, instrument=name))["position"]
        long_units, short_units = int(position["long"]["units"]), int(position["short"]["units"])
        units = long_units + short_units
        side = position["long"] if units > 0 else position["short"]
        average = float(side["averagePrice"]) if units != 0 and side.get("averagePrice") else None
        summary = self._get(accounts.AccountSummary(self.account))
        return BrokerSnapshot(units=units, average_price=average, last_transaction_id=summary.get("lastTransactionID"))

    def transactions_since(self, transaction_id: str) -> list[dict]:
        return self._get(transactions.TransactionsSinceID(self.account, params={"id": transaction_id})).get("transactions", [])

    def find_order(self, client_id: str, *, attempts: int | None = None) -> OrderResult | None:
        """None only on a definite 404 for this client id; a pending order is UNKNOWN."""
        try:
            order = request_with_retry(self.api, orders.OrderDetails(self.account, orderID=f"@{client_id}"),
                                       max_attempts=attempts or self.max_attempts, base_delay_seconds=self.backoff,
                                       sleep=self.sleep)["order"]
        except V20Error as error:
            if int(error.code) == 404 and _error_code(error) in (None, "ORDER_DOESNT_EXIST"):
                return None  # the one definite "no such client id"
            raise self._classify(error) from None
        except (requests.Timeout, requests.ConnectionError) as error:
            raise TemporaryBrokerError(f"OANDA unreachable ({type(error).__name__})") from None
        state = order.get("state")
        units = int(float(order.get("units", 0)))
        if state == "FILLED":
            fill = self._get(transactions.TransactionDetails(self.account, order["fillingTransactionID"]))["transaction"]
            return OrderResult(client_id, OrderStatus.FILLED, units, order["id"], float(fill["price"]),
                               transaction_id=fill["id"])
        if state == "CANCELLED":
            cancel = self._get(transactions.TransactionDetails(self.account, order["cancellingTransactionID"]))
            return OrderResult(client_id, OrderStatus.CANCELLED, units, order["id"],
                               reason=cancel["transaction"].get("reason"), transaction_id=order["cancellingTransactionID"])
        # PENDING or TRIGGERED: a FOK market order does not stay there; it exists, its fill is not known yet
        return OrderResult(client_id, OrderStatus.UNKNOWN, units, order.get("id"), reason=f"order is {state} at OANDA")

    @staticmethod
    def _classify(error: V20Error) -> Exception:
        if is_retryable(error):
            return TemporaryBrokerError(f"OANDA HTTP {error.code}")
        if int(error.code) in (401, 403):
            return OperationalBrokerError(f"OANDA HTTP {error.code}: check the token and account")
        return OperationalBrokerError(f"OANDA HTTP {error.code}: {_reason(error)}")

    def _lookup_after_failure(self, client_id: str, units: int, cause: str) -> OrderResult | None:
        """After a create whose answer was lost: the order, or None when the broker says
        definitely (on the last look, after waiting for a new order to become visible) that
        it does not exist. Anything else is UNKNOWN: it may have filled, so it is not resent."""
        last: OrderResult | None | str = "no answer"
        for attempt in range(self.lookup_attempts):
            try:
                last = self.find_order(client_id, attempts=1)  # this loop is the retry
            except (TemporaryBrokerError, OperationalBrokerError) as error:
                last = str(error)
            if isinstance(last, OrderResult) and last.status is not OrderStatus.UNKNOWN:
                return last
            if attempt < self.lookup_attempts - 1:
                self.sleep(self.lookup_wait * (attempt + 1))
        if last is None:
            return None
        detail = last.reason if isinstance(last, OrderResult) else f"the lookup failed: {last}"
        log.error("order %s: %s and %s; its fate is unknown: no resend, reconciliation decides", client_id,
                  cause, detail)
        return OrderResult(client_id, OrderStatus.UNKNOWN, units, reason=f"{cause}; {detail}")

    def market_order(self, instrument: str, units: int, client_id: str) -> OrderResult:
        body = {"order": {"type": "MARKET", "instrument": get_instrument(instrument).oanda_name,
                          "units": str(int(units)), "timeInForce": "FOK", "positionFill": "DEFAULT",
                          "clientExtensions": {"id": client_id, "tag": ORDER_TAG}}}
        for attempt in range(1, self.max_attempts + 1):
            try:
                response = self.api.request(orders.OrderCreate(self.account, data=body))
                created = self._parse_created(client_id, units, response)
                if created is not None:
                    return created
                cause = "201 without a fill or a cancel"
            except V20Error as error:
                code = int(error.code)
                if code == 400 and _error_code(error) == "CLIENT_ORDER_ID_ALREADY_EXISTS":
                    # an earlier send of this very order exists (it may have filled): find it, never re-book it
                    cause = "OANDA says this client id exists already"
                elif not is_retryable(error):
                    if code in (401, 403):
                        raise OperationalBrokerError(f"OANDA HTTP {code}: check the token and account") from None
                    return OrderResult(client_id, OrderStatus.REJECTED, units, reason=f"HTTP {code}: {_reason(error)}")
                else:
                    cause = f"HTTP {code}"
            except (requests.Timeout, requests.ConnectionError) as error:
                cause = type(error).__name__
            # The order may exist: find it before sending anything again.
            found = self._lookup_after_failure(client_id, units, cause)
            if found is not None:
                if found.status is not OrderStatus.UNKNOWN:
                    log.warning("order %s existed after %s: not resent", client_id, cause)
                return found
            if cause == "OANDA says this client id exists already":
                return OrderResult(client_id, OrderStatus.UNKNOWN, units,
                                   reason=f"{cause}, but the lookup says it does not")
            if attempt < self.max_attempts:
                delay = min(8.0, self.backoff * 2 ** (attempt - 1))
                log.warning("order %s failed (%s) and does not exist: resend %d/%d in %.1fs", client_id, cause,
                            attempt, self.max_attempts - 1, delay)
                self.sleep(delay)
        raise TemporaryBrokerError(f"order {client_id} could not be placed after {self.max_attempts} attempts")

    @staticmethod
    def _parse_created(client_id: str, units: int, response: dict) -> OrderResult | None:
        order_id = response.get("orderCreateTransaction", {}).get("id")
        if "orderFillTransaction" in response:
            fill = response["orderFillTransaction"]
            return OrderResult(client_id, OrderStatus.FILLED, units, order_id, float(fill["price"]),
                               transaction_id=fill["id"])
        if "orderCancelTransaction" in response:
            cancel = response["orderCancelTransaction"]
            return OrderResult(client_id, OrderStatus.CANCELLED, units, order_id, reason=cancel.get("reason"),
                               transaction_id=cancel.get("id"))
        return None  # created, fate not in the answer: look it up


def _error_code(error: V20Error) -> str | None:
    """v20's errorCode (or the reject transaction's reason) from an error body, if any."""
    import json

    try:
        body = json.loads(error.msg)
    except (ValueError, TypeError):
        return None
    if not isinstance(body, dict):
        return None
    return body.get("errorCode") or (body.get("orderRejectTransaction") or {}).get("rejectReason")


def _reason(error: V20Error) -> str:
    import json

    try:
        return json.loads(error.msg).get("errorMessage", str(error.msg))[:200]
    except (ValueError, AttributeError):
        return str(error.msg)[:200]
