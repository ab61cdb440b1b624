"""The OANDA broker against v20's answers and faults (the loopback server, the real
oandapyV20 client): the account check, both sides of a position, the broker's price,
REDUCE_ONLY closes, fills booked as v20 booked them, absence proven only by v20,
every unclassified answer an error of the base kinds, broker-side protection, and
a margin closeout behind the client's back."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from shared.core.oanda import load_credentials, make_api
from shared.live.brokers import (
    OperationalBrokerError,
    OrderStatus,
    TemporaryBrokerError,
    UnsupportedAccountError,
)
from shared.live.brokers.oanda import OandaBroker
from shared.live.brokers.oanda_fills import fill_price, parse_created
from tests.v20_account import ACCOUNT, REDUCE_ONLY_CANCEL_REASON, TOKEN, ForcedResponse, V20State, html_404
from tests.v20_server import V20Server

GBP = "GBP_JPY"


@pytest.fixture
def v20(market_bars):
    with V20Server(V20State(bars={GBP: market_bars[:3000]})) as server:
        yield server


def _broker(server, timeout=2.0, **settings) -> OandaBroker:
    api = make_api(load_credentials({"OANDA_TOKEN": TOKEN, "OANDA_API_URL": server.url}), timeout_seconds=timeout)
    return OandaBroker(api, ACCOUNT, lookup_wait_seconds=0.05, backoff_seconds=0.01, **settings)


def _sent(server) -> list[dict]:
    return [r["body"]["order"] for r in server.state.requests if r.get("method") == "POST"]


# --- 1. the account -------------------------------------------------------------------------


def test_a_hedging_account_is_refused_and_says_why(v20):
    broker = _broker(v20)
    broker.check_account()  # a netting account: fine
    v20.state.hedging = True
    with pytest.raises(UnsupportedAccountError, match="hedging") as error:
        broker.check_account()
    assert "opposite trade" in str(error.value) and "non-hedging" in str(error.value)
    assert isinstance(error.value, OperationalBrokerError)


def test_with_hedging_an_opposite_order_opens_a_trade_instead_of_reducing(v20):
    v20.state.hedging = True
    broker = _broker(v20)
    broker.market_order("GBPJPY", 2, "mm-d-long")
    sell = broker.market_order("GBPJPY", -1, "mm-d-short")
    fill = v20.state.transactions[int(sell.transaction_id) - 1]
    assert "tradeOpened" in fill and "tradeReduced" not in fill and "tradesClosed" not in fill
    snap = broker.snapshot("GBPJPY")
    assert (snap.long_units, snap.short_units, snap.units) == (2, -1, 1) and snap.both_sides_open


# --- 2. both sides of a position ------------------------------------------------------------


def test_snapshot_reports_each_side_and_the_open_sides_average(v20):
    broker = _broker(v20)
    v20.state.price_override[GBP] = 180.0
    broker.market_order("GBPJPY", 1, "mm-d-1")   # at 180.01
    v20.state.price_override[GBP] = 181.0
    broker.market_order("GBPJPY", 3, "mm-d-2")   # at 181.01: the average is units-weighted
    snap = broker.snapshot("GBPJPY")
    assert (snap.units, snap.long_units, snap.short_units) == (4, 4, 0) and not snap.both_sides_open
    assert snap.average_price == pytest.approx((180.01 + 3 * 181.01) / 4, abs=1e-3)
    broker.market_order("GBPJPY", -6, "mm-d-3")  # closes the long, opens a short at 180.99
    snap = broker.snapshot("GBPJPY")
    assert (snap.units, snap.long_units, snap.short_units) == (-2, 0, -2)
    assert snap.average_price == pytest.approx(180.99, abs=1e-6)


def test_a_fill_against_the_position_closes_trades_oldest_first(v20):
    broker = _broker(v20)
    broker.market_order("GBPJPY", 1, "mm-d-a")
    broker.market_order("GBPJPY", 2, "mm-d-b")
    result = broker.market_order("GBPJPY", -2, "mm-d-c")
    fill = v20.state.transactions[int(result.transaction_id) - 1]
    assert [t["units"] for t in fill["tradesClosed"]] == ["-1"] and fill["tradeReduced"]["units"] == "-1"
    assert "tradeOpened" not in fill and v20.state.units[GBP] == 1


# --- 3. the broker's price ------------------------------------------------------------------


def test_quote_is_the_brokers_price_not_the_bars(v20):
    v20.state.now = pd.Timestamp(int(v20.state.bars[GBP].ts[2000])) + pd.Timedelta(seconds=30, microseconds=123456)
    v20.state.price_override[GBP] = 190.0
    broker = _broker(v20)
    quote = broker.quote("GBPJPY")
    assert (quote.bid, quote.ask) == (pytest.approx(189.99), pytest.approx(190.01))
    assert quote.time_ns == v20.state.now.value
    request = [r for r in v20.state.requests if r["path"].endswith("/pricing")][-1]
    assert request["query"] == {"instruments": GBP}
    assert broker.market_order("GBPJPY", -1, "mm-d-q").fill_price == pytest.approx(189.99), "fills use it too"


def test_quote_falls_back_to_the_closeout_prices_on_an_empty_book(v20):
    price = {"instrument": GBP, "time": "2024-01-02T03:04:05.123456789Z", "bids": [], "asks": [],
             "closeoutBid": "170.100", "closeoutAsk": "170.140"}
    v20.state.forced_responses = [ForcedResponse(200, json.dumps({"prices": [price]}), path_contains="/pricing")]
    quote = _broker(v20).quote("GBPJPY")
    assert (quote.bid, quote.ask) == (170.1, 170.14)
    assert quote.time_ns == pd.Timestamp("2024-01-02T03:04:05.123456789Z").value


# --- 4. REDUCE_ONLY closes ------------------------------------------------------------------


def test_only_closes_are_reduce_only(v20):
    broker = _broker(v20)
    broker.market_order("GBPJPY", 2, "mm-d-open")
    broker.market_order("GBPJPY", -2, "mm-d-close", reduce_only=True)
    assert [o["positionFill"] for o in _sent(v20)] == ["DEFAULT", "REDUCE_ONLY"]


@pytest.mark.parametrize("position", [0, 2], ids=["flat", "same_direction"])
def test_reduce_only_with_nothing_to_reduce_is_cancelled(v20, position):
    if position:
        v20.state.set_position(GBP, position, 170.0)
    result = _broker(v20).market_order("GBPJPY", 1, "mm-d-nothing", reduce_only=True)
    assert result.status is OrderStatus.CANCELLED and result.reason == REDUCE_ONLY_CANCEL_REASON
    assert result.units_filled == 0 and v20.state.units.get(GBP, 0) == position


def test_reduce_only_larger_than_the_position_fills_only_the_reducing_part(v20):
    v20.state.set_position(GBP, 2, 170.0)
    broker = _broker(v20)
    result = broker.market_order("GBPJPY", -5, "mm-d-flatten", reduce_only=True)
    assert result.status is OrderStatus.FILLED and result.units == -5
    assert result.filled_units == -2 and result.units_filled == -2
    assert v20.state.units[GBP] == 0, "never opened the other way"
    assert broker.find_order("mm-d-flatten").filled_units == -2, "the lookup books the same"


# --- 5. fills as booked ---------------------------------------------------------------------


def test_a_partial_fill_books_the_fills_units(v20):
    v20.state.partial_next = [1]
    result = _broker(v20).market_order("GBPJPY", 3, "mm-d-partial")
    assert result.status is OrderStatus.FILLED and (result.units, result.units_filled) == (3, 1)
    assert v20.state.units[GBP] == 1


def test_a_fill_without_the_deprecated_price_is_read_from_fullvwap(v20):
    v20.state.omit_fill_price = True
    v20.state.price_override[GBP] = 175.0
    broker = _broker(v20)
    result = broker.market_order("GBPJPY", 1, "mm-d-noprice")
    assert "price" not in v20.state.transactions[int(result.transaction_id) - 1]
    assert result.status is OrderStatus.FILLED and result.fill_price == pytest.approx(175.01)
    found = broker.find_order("mm-d-noprice")  # reads the fill transaction: no KeyError either
    assert found.status is OrderStatus.FILLED and found.fill_price == pytest.approx(175.01) and found.filled_units == 1


def test_fill_price_prefers_fullvwap_then_the_trades_then_price():
    fill = {"id": "9", "units": "-3", "price": "1.0",
            "tradesClosed": [{"tradeID": "1", "units": "-1", "price": "170.000"}],
            "tradeReduced": {"tradeID": "2", "units": "-1", "price": "170.300"},
            "tradeOpened": {"tradeID": "9", "units": "-1", "price": "170.600"}}
    assert fill_price({**fill, "fullVWAP": "170.250"}) == pytest.approx(170.25)
    assert fill_price(fill) == pytest.approx(170.3), "units-weighted over the trades touched"
    assert fill_price({"units": "1", "price": "171.000"}) == pytest.approx(171.0)
    bare = parse_created("mm-d-x", 1, {"orderCreateTransaction": {"id": "8"}, "orderFillTransaction": {"id": "9"}})
    assert bare.status is OrderStatus.FILLED and bare.fill_price is None and bare.units_filled == 1


# --- 6. only v20 proves absence -------------------------------------------------------------


@pytest.mark.parametrize("answer", [html_404("/orders/@"),
                                    ForcedResponse(404, json.dumps({"errorMessage": "Not found"}), path_contains="/orders/@")],
                         ids=["html", "json_without_error_code"])
def test_a_404_that_is_not_v20s_order_doesnt_exist_proves_nothing(v20, answer):
    broker = _broker(v20)
    v20.state.forced_responses = [answer]
    with pytest.raises(OperationalBrokerError):
        broker.find_order("mm-d-maybe")
    assert broker.find_order("mm-d-maybe") is None, "v20's own 404 does"


def test_after_a_lost_answer_proxy_404s_leave_the_order_unknown_and_unsent(v20):
    v20.state.fail_after_create = [503]  # created and filled; the answer is lost
    v20.state.forced_responses = [html_404("/orders/@") for _ in range(4)]
    result = _broker(v20).market_order("GBPJPY", 1, "mm-d-proxy")
    assert result.status is OrderStatus.UNKNOWN
    assert len(_sent(v20)) == 1 and v20.state.units[GBP] == 1, "filled once, never resent"


# --- 7. every GET answer is classified ------------------------------------------------------

CALLS = {
    "snapshot": lambda b: b.snapshot("GBPJPY"),
    "quote": lambda b: b.quote("GBPJPY"),
    "transactions_since": lambda b: b.transactions_since("1"),
    "find_order": lambda b: b.find_order("mm-d-any"),
    "check_account": lambda b: b.check_account(),
}


@pytest.mark.parametrize("call", CALLS)
@pytest.mark.parametrize("status", [400, 405, 409, 416, 418])
def test_an_unclassified_status_is_an_operational_error(v20, call, status):
    v20.state.forced_statuses = [status]
    with pytest.raises(OperationalBrokerError, match=str(status)):
        CALLS[call](_broker(v20))


@pytest.mark.parametrize("call", CALLS)
@pytest.mark.parametrize("body", ["<html>maintenance</html>", '{"unexpected": true}', "[1, 2]"],
                         ids=["not_json", "json_without_the_fields", "not_an_object"])
def test_an_unusable_200_is_an_operational_error(v20, call, body):
    v20.state.forced_responses = [ForcedResponse(200, body, "text/html" if body.startswith("<") else "application/json")]
    with pytest.raises(OperationalBrokerError):
        CALLS[call](_broker(v20))


@pytest.mark.parametrize("call", CALLS)
def test_429_and_5xx_stay_temporary(v20, call):
    v20.state.forced_statuses = [429, 500, 502, 503]
    with pytest.raises(TemporaryBrokerError):
        CALLS[call](_broker(v20))


def test_an_unparseable_201_is_looked_up_not_raised(v20):
    v20.state.forced_responses = [ForcedResponse(201, "<html>ok</html>", "text/html", method="POST")]
    result = _broker(v20).market_order("GBPJPY", 1, "mm-d-garbled")
    assert result.status is OrderStatus.FILLED
    assert len(_sent(v20)) == 2 and len(v20.state.orders) == 1 and v20.state.units[GBP] == 1, \
        "looked up first: it had not reached v20, so it was sent once more"


# --- 8. broker-side protection --------------------------------------------------------------


def test_protection_is_off_by_default(v20):
    _broker(v20).market_order("GBPJPY", 1, "mm-d-plain")
    assert not {"stopLossOnFill", "priceBound"} & set(_sent(v20)[0])


def test_opening_orders_carry_the_stop_loss_and_closes_do_not(v20):
    broker = _broker(v20, stop_loss_pips=0.7)  # 0.7 * 0.01 is 0.007000000000000001 as a float
    result = broker.market_order("GBPJPY", 1, "mm-d-stop")
    assert result.status is OrderStatus.FILLED, "v20 rejects a distance with more decimals than the instrument"
    assert _sent(v20)[0]["stopLossOnFill"] == {"distance": "0.007", "timeInForce": "GTC"}
    stop = v20.state.transactions[-1]
    assert stop["type"] == "STOP_LOSS_ORDER" and stop["tradeID"] == result.transaction_id
    broker.market_order("GBPJPY", -1, "mm-d-unstop", reduce_only=True)
    assert "stopLossOnFill" not in _sent(v20)[1]


def test_a_price_bound_from_a_fresh_quote_and_bounds_violation(v20):
    v20.state.price_override[GBP] = 170.0
    broker = _broker(v20, price_bound_pips=2.0)
    assert broker.market_order("GBPJPY", 1, "mm-d-buy").status is OrderStatus.FILLED
    assert _sent(v20)[0]["priceBound"] == "170.030"                       # ask 170.01 + 2 pips
    v20.state.slip_next_pips = [3.0]  # the market moved between the quote and the fill
    slipped = broker.market_order("GBPJPY", -1, "mm-d-sell")
    assert _sent(v20)[1]["priceBound"] == "169.970"                       # bid 169.99 - 2 pips
    assert slipped.status is OrderStatus.CANCELLED and slipped.reason == "BOUNDS_VIOLATION"
    assert v20.state.units[GBP] == 1


def test_a_close_never_carries_a_price_bound(v20):
    broker = _broker(v20, price_bound_pips=1.0, stop_loss_pips=30)
    broker.market_order("GBPJPY", 1, "mm-d-open")
    v20.state.slip_next_pips = [50.0]
    close = broker.market_order("GBPJPY", -1, "mm-d-cap", reduce_only=True)
    assert not {"priceBound", "stopLossOnFill"} & set(_sent(v20)[1])
    assert close.status is OrderStatus.FILLED and v20.state.units[GBP] == 0, "a loss cap closes at any price"


# --- 9. behind the client's back ------------------------------------------------------------


def test_a_margin_closeout_flattens_and_is_a_transaction(v20):
    broker = _broker(v20)
    broker.market_order("GBPJPY", 3, "mm-d-big")
    before = broker.snapshot("GBPJPY").last_transaction_id
    v20.state.margin_closeout(GBP)
    assert broker.snapshot("GBPJPY").units == 0
    fills = [t for t in broker.transactions_since(before) if t["type"] == "ORDER_FILL"]
    assert [(f["reason"], f["units"]) for f in fills] == [("MARKET_ORDER_MARGIN_CLOSEOUT", "-3")]
    v20.state.set_position(GBP, -2, 171.0)  # a hand trade still works
    snap = broker.snapshot("GBPJPY")
    assert (snap.units, snap.short_units, snap.average_price) == (-2, -2, 171.0)


def test_a_proxy_4xx_on_an_order_is_looked_up_not_booked_rejected(v20):
    """A 404 page from a load balancer proves nothing about the order: it is looked up, and
    resent only after v20 itself says no order has the id."""
    v20.state.forced_responses.append(html_404(path_contains="/orders", method="POST"))
    result = _broker(v20).market_order("GBPJPY", 1, "mm-d-proxied")
    assert result.status is OrderStatus.FILLED
    assert v20.state.units["GBP_JPY"] == 1 and list(v20.state.orders) == ["mm-d-proxied"]
