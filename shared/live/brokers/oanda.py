"""OANDA v20 through oandapyV20.

Market orders carry our `clientExtensions.id`. OANDA has no idempotency key,
so after a timeout, a 429 or a 5xx on creation we look the order up by that
id (`@<id>`, retrying briefly: a new order can be invisible for about half a
second) before sending it again. Only v20 itself can prove that an order does
not exist: a 404 whose JSON body says `errorCode: ORDER_DOESNT_EXIST`, on the
last look, allows a resend. Anything else proves nothing: a lookup that fails
(timeout, 5xx, 401/403), and also a 404 without that code (a proxy's HTML page,
a JSON 404 without errorCode), leaves the order UNKNOWN, never resent, and the
trader stops deciding until reconciliation settles it. OANDA's answer to a
resent id, `CLIENT_ORDER_ID_ALREADY_EXISTS`, means the order exists: it is
looked up, not booked as rejected (and, on the first send, marked
`existed_before`: an earlier process sent it, its fill is in the position). A 201 can still carry an
`orderCancelTransaction` (MARKET_HALTED, INSUFFICIENT_MARGIN, BOUNDS_VIOLATION,
...): that is recorded as CANCELLED with the reason, not retried. A fill is
booked as v20 booked it (shared.live.brokers.oanda_fills: its units, which a
REDUCE_ONLY order can make fewer than requested, and its official price).

Closes go out with `positionFill: REDUCE_ONLY`, so a close that races a hand
close or a margin closeout cannot open the other way. Opening orders can carry
broker-side protection (both off unless configured): a stop loss at a distance
(`stopLossOnFill`), which holds while this service is down, and a price bound
(`priceBound`, from a fresh quote) against filling far from the price we
decided on. A close never carries a bound: a loss cap must close at any price.

A hedging account is refused (`check_account`): there an order against the
position opens an opposite trade instead of reducing it, so every close would
leave the account long and short at once.

Every GET answer the broker cannot use is an error of the base kinds, never a
raw library exception: 429, 5xx and network trouble are temporary (retried
within bounds); any other status, a body that is not JSON, or JSON without the
fields v20 sends is operational.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import UTC, datetime

import oandapyV20
import requests
from oandapyV20.endpoints import accounts, orders, positions, pricing, transactions
from oandapyV20.exceptions import V20Error

from shared.core.instruments import Instrument, get_instrument
from shared.core.oanda import is_retryable, request_with_retry
from shared.live.brokers.base import (
    BrokerSnapshot,
    OperationalBrokerError,
    OrderResult,
    OrderStatus,
    Quote,
    TemporaryBrokerError,
    UnsupportedAccountError,
)
from shared.live.brokers.oanda_fills import filled, parse_created

log = logging.getLogger(__name__)
ORDER_TAG = "micro-muzero"
_EXISTS = "OANDA says this client id exists already"
_NETWORK = (requests.Timeout, requests.ConnectionError, requests.exceptions.ChunkedEncodingError)


class OandaBroker:
    name = "oanda"

    def __init__(self, api: oandapyV20.API, account_id: str, *, max_attempts: int = 4, lookup_attempts: int = 4,
                 lookup_wait_seconds: float = 0.25, backoff_seconds: float = 0.5,
                 sleep: Callable[[float], None] = time.sleep, stop_loss_pips: float | None = None,
                 price_bound_pips: float | None = None) -> None:
        if stop_loss_pips is not None and not stop_loss_pips > 0:
            raise ValueError(f"stop_loss_pips must be positive (or None: no stop), got {stop_loss_pips}")
        if price_bound_pips is not None and not price_bound_pips >= 0:
            raise ValueError(f"price_bound_pips must be >= 0 (or None: no bound), got {price_bound_pips}")
        self.api = api
        self.account = account_id
        self.max_attempts = max_attempts
        self.lookup_attempts = lookup_attempts
        self.lookup_wait = lookup_wait_seconds
        self.backoff = backoff_seconds
        self.sleep = sleep
        self.stop_loss_pips = stop_loss_pips
        self.price_bound_pips = price_bound_pips

    def _get(self, endpoint) -> dict:
        answer = self._request(endpoint)
        assert answer is not None  # only `absent` makes None
        return answer

    def _request(self, endpoint, *, attempts: int | None = None, absent: str | None = None) -> dict | None:
        """A GET, retried within bounds; every failure is a TemporaryBrokerError or an
        OperationalBrokerError. With `absent`, a 404 carrying that v20 errorCode returns None."""
        try:
            answer = request_with_retry(self.api, endpoint, max_attempts=attempts or self.max_attempts,
                                        base_delay_seconds=self.backoff, sleep=self.sleep)
        except V20Error as error:
            if absent is not None and int(error.code) == 404 and (_v20_body(error) or {}).get("errorCode") == absent:
                return None
            raise _classify(error) from None
        except _NETWORK as error:
            raise TemporaryBrokerError(f"OANDA unreachable ({type(error).__name__})") from None
        except requests.RequestException as error:
            raise OperationalBrokerError(f"OANDA request failed ({type(error).__name__})") from None
        except ValueError:  # json.loads of a 2xx body: a proxy page, a truncated answer
            raise OperationalBrokerError(f"OANDA answered {_path(endpoint)} with a body that is not JSON") from None
        if not isinstance(answer, dict):
            raise OperationalBrokerError(f"OANDA answered {_path(endpoint)} with JSON that is not an object")
        return answer

    def check_account(self) -> None:
        summary = self._get(accounts.AccountSummary(self.account))
        with _answer("the account summary"):
            hedging = summary["account"]["hedgingEnabled"]
        if not isinstance(hedging, bool):
            raise OperationalBrokerError(f"OANDA's hedgingEnabled is {hedging!r}, not a boolean")
        if hedging:
            raise UnsupportedAccountError(
                f"OANDA account {self.account} has hedging enabled: an order against the position opens an "
                "opposite trade instead of reducing it, so every close would leave the account long and short "
                "at once. Use a non-hedging account.")

    def snapshot(self, instrument: str) -> BrokerSnapshot:
        name = get_instrument(instrument).oanda_name
        answer = self._get(positions.PositionDetails(self.account, instrument=name))
        summary = self._get(accounts.AccountSummary(self.account))
        with _answer(f"the {name} position"):
            position = answer["position"]
            long_units, short_units = int(float(position["long"]["units"])), int(float(position["short"]["units"]))
            if long_units < 0 or short_units > 0:
                raise ValueError(f"long {long_units}, short {short_units}")
            units = long_units + short_units
            side = position["long"] if units > 0 else position["short"] if units < 0 else {}
            average = float(side["averagePrice"]) if side.get("averagePrice") else None
            last = summary.get("lastTransactionID")
        return BrokerSnapshot(units=units, average_price=average, last_transaction_id=last,
                              long_units=long_units, short_units=short_units)

    def quote(self, instrument: str) -> Quote:
        name = get_instrument(instrument).oanda_name
        answer = self._get(pricing.PricingInfo(self.account, params={"instruments": name}))
        with _answer(f"the {name} price"):
            prices = answer["prices"]
            if not prices:
                raise ValueError("no prices")
            price = prices[0]
            if price.get("instrument", name) != name:
                raise ValueError(f"a price for {price.get('instrument')}")
            bid = float(price["bids"][0]["price"]) if price.get("bids") else float(price["closeoutBid"])
            ask = float(price["asks"][0]["price"]) if price.get("asks") else float(price["closeoutAsk"])
            return Quote(bid=bid, ask=ask, time_ns=_time_ns(price["time"]))

    def transactions_since(self, transaction_id: str) -> list[dict]:
        answer = self._get(transactions.TransactionsSinceID(self.account, params={"id": transaction_id}))
        with _answer("the transactions"):
            found = answer["transactions"]
            if not isinstance(found, list):
                raise TypeError("transactions is not a list")
            return found

    def find_order(self, client_id: str, *, attempts: int | None = None) -> OrderResult | None:
        """None only on v20's own 404 ORDER_DOESNT_EXIST for this client id; a pending order is UNKNOWN."""
        answer = self._request(orders.OrderDetails(self.account, orderID=f"@{client_id}"), attempts=attempts,
                               absent="ORDER_DOESNT_EXIST")
        if answer is None:
            return None  # the one definite "no such client id"
        with _answer(f"order @{client_id}"):
            order = answer["order"]
            state = order.get("state")
            units = int(float(order.get("units", 0)))
            if state == "FILLED":
                fill_id = order["fillingTransactionID"]
            elif state == "CANCELLED":
                cancel_id = order["cancellingTransactionID"]
        if state == "FILLED":
            fill = self._get(transactions.TransactionDetails(self.account, fill_id))
            with _answer(f"fill transaction {fill_id}"):
                return filled(client_id, units, order["id"], fill["transaction"])
        if state == "CANCELLED":
            cancel = self._get(transactions.TransactionDetails(self.account, cancel_id))
            with _answer(f"cancel transaction {cancel_id}"):
                return OrderResult(client_id, OrderStatus.CANCELLED, units, order["id"],
                                   reason=cancel["transaction"].get("reason"), transaction_id=cancel_id)
        # PENDING or TRIGGERED: a FOK market order does not stay there; it exists, its fill is not known yet
        return OrderResult(client_id, OrderStatus.UNKNOWN, units, order.get("id"), reason=f"order is {state} at OANDA")

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

    def _protection(self, spec: Instrument, units: int) -> dict:
        """stopLossOnFill and priceBound for an opening order, as configured."""
        extra: dict = {}
        # a distance in basis points is one at the price of the moment
        now = self.quote(spec.name) if self.price_bound_pips is not None or (
            spec.in_bps and self.stop_loss_pips is not None) else None
        price = (now.bid + now.ask) / 2 if now is not None else 0.0
        if self.stop_loss_pips is not None:
            extra["stopLossOnFill"] = {"distance": _price_text(spec.price_distance(self.stop_loss_pips, price), spec),
                                       "timeInForce": "GTC"}
        if self.price_bound_pips is not None:
            away = spec.price_distance(self.price_bound_pips, price)
            bound = now.ask + away if units > 0 else now.bid - away
            extra["priceBound"] = _price_text(bound, spec)
        return extra

    def market_order(self, instrument: str, units: int, client_id: str, *, reduce_only: bool = False) -> OrderResult:
        spec = get_instrument(instrument)
        order = {"type": "MARKET", "instrument": spec.oanda_name, "units": str(int(units)), "timeInForce": "FOK",
                 "positionFill": "REDUCE_ONLY" if reduce_only else "DEFAULT",
                 "clientExtensions": {"id": client_id, "tag": ORDER_TAG}}
        if not reduce_only:
            order.update(self._protection(spec, units))  # once: a resend carries the same bound
        body = {"order": order}
        for attempt in range(1, self.max_attempts + 1):
            try:
                response = self.api.request(orders.OrderCreate(self.account, data=body))
                created = parse_created(client_id, units, response) if isinstance(response, dict) else None
                if created is not None:
                    return created
                cause = "201 without a fill or a cancel"
            except V20Error as error:
                code = int(error.code)
                if code == 400 and _error_code(error) == "CLIENT_ORDER_ID_ALREADY_EXISTS":
                    # an earlier send of this very order exists (it may have filled): find it, never re-book it
                    cause = _EXISTS
                elif not is_retryable(error) and _v20_body(error) is None:
                    # a 4xx that is not v20's (a proxy's HTML page): nothing proves the order was refused
                    cause = f"HTTP {code} {_reason(error)}"
                elif not is_retryable(error):
                    if code in (401, 403):
                        raise OperationalBrokerError(f"OANDA HTTP {code}: check the token and account") from None
                    return OrderResult(client_id, OrderStatus.REJECTED, units, reason=f"HTTP {code}: {_reason(error)}")
                else:
                    cause = f"HTTP {code}"
            except _NETWORK as error:
                cause = type(error).__name__
            except ValueError:  # a 2xx whose body is not JSON: the order may well exist
                cause = "an answer that is not JSON"
            # The order may exist: find it before sending anything again.
            found = self._lookup_after_failure(client_id, units, cause)
            if found is not None:
                if found.status is not OrderStatus.UNKNOWN:
                    log.warning("order %s existed after %s: not resent", client_id, cause)
                if attempt == 1 and cause == _EXISTS:  # not from this call: sent before (a journal that lost it)
                    found = replace(found, existed_before=True)
                return found
            if cause == _EXISTS:
                return OrderResult(client_id, OrderStatus.UNKNOWN, units,
                                   reason=f"{cause}, but the lookup says it does not")
            if attempt < self.max_attempts:
                delay = min(8.0, self.backoff * 2 ** (attempt - 1))
                log.warning("order %s failed (%s) and does not exist: resend %d/%d in %.1fs", client_id, cause,
                            attempt, self.max_attempts - 1, delay)
                self.sleep(delay)
        raise TemporaryBrokerError(f"order {client_id} could not be placed after {self.max_attempts} attempts")


@contextmanager
def _answer(what: str) -> Iterator[None]:
    """Reading a 200 that lacks what v20 sends is an operational error, not a KeyError."""
    try:
        yield
    except (KeyError, IndexError, TypeError, ValueError, AttributeError) as error:
        raise OperationalBrokerError(f"OANDA's answer for {what} is not what v20 sends "
                                     f"({type(error).__name__}: {str(error)[:120]})") from None


def _classify(error: V20Error) -> Exception:
    code = int(error.code)
    if is_retryable(error):
        return TemporaryBrokerError(f"OANDA HTTP {code}")
    if code in (401, 403):
        return OperationalBrokerError(f"OANDA HTTP {code}: check the token and account")
    if code == 404:
        return OperationalBrokerError(f"OANDA HTTP 404: {_reason(error)}: check the account and instrument")
    return OperationalBrokerError(f"OANDA HTTP {code}: {_reason(error)}")


def _path(endpoint) -> str:
    return str(endpoint).split("?")[0]


def _price_text(value: float, spec: Instrument) -> str:
    """A price or a distance as v20 accepts it: no more decimals than the instrument quotes."""
    return f"{value:.{spec.price_decimals}f}"


def _time_ns(text: str) -> int:
    """v20's time (RFC 3339 with up to nine decimals, or UNIX seconds) as UTC ns."""
    if "T" not in text:
        seconds, _, fraction = text.partition(".")
        return int(seconds) * 1_000_000_000 + int((fraction + "000000000")[:9])
    whole, _, fraction = text.rstrip("Z").partition(".")
    start = datetime.fromisoformat(whole).replace(tzinfo=UTC)
    return int(start.timestamp()) * 1_000_000_000 + int((fraction + "000000000")[:9])


def _v20_body(error: V20Error) -> dict | None:
    """The JSON object v20 puts in an error answer; None for anything else (a proxy's HTML page)."""
    try:
        body = json.loads(error.msg)
    except (ValueError, TypeError):
        return None
    return body if isinstance(body, dict) else None


def _error_code(error: V20Error) -> str | None:
    """v20's errorCode (or the reject transaction's reason) from an error body, if any."""
    body = _v20_body(error) or {}
    return body.get("errorCode") or (body.get("orderRejectTransaction") or {}).get("rejectReason")


def _reason(error: V20Error) -> str:
    body = _v20_body(error)
    if body is None:
        return f"not a v20 answer ({str(error.msg)[:80]!r})"
    return str(body.get("errorMessage") or body.get("errorCode") or body)[:200]
