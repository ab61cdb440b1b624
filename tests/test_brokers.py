"""Brokers: OANDA v20 with the real oandapyV20 client against the loopback
server, and the paper broker."""

from __future__ import annotations

from dataclasses import replace

import pytest

from shared.core.oanda import load_credentials, make_api
from shared.live.brokers import (
    OperationalBrokerError,
    OrderStatus,
    TemporaryBrokerError,
    client_order_id,
)
from shared.live.brokers.oanda import OandaBroker
from shared.live.brokers.paper import PaperBroker
from tests.v20_account import ACCOUNT, TOKEN, V20State
from tests.v20_server import V20Server


@pytest.fixture
def v20(market_bars):
    with V20Server(V20State(bars={"GBP_JPY": market_bars[:3000]})) as server:
        yield server


def _broker(server, token=TOKEN, timeout=2.0) -> OandaBroker:
    api = make_api(load_credentials({"OANDA_TOKEN": token, "OANDA_API_URL": server.url}), timeout_seconds=timeout)
    return OandaBroker(api, ACCOUNT, lookup_wait_seconds=0.05, backoff_seconds=0.05)


def _orders(server) -> list[dict]:
    return [r for r in server.state.requests if r.get("method") == "POST"]


def test_order_carries_the_client_id_and_fills_at_the_ask(v20):
    broker = _broker(v20)
    cid = client_order_id("ep64-abc", 1_700_000_000_000_000_000)
    result = broker.market_order("GBPJPY", 1, cid)
    assert result.status is OrderStatus.FILLED and result.units == 1
    sent = _orders(v20)[0]["body"]["order"]
    assert sent["clientExtensions"]["id"] == cid and sent["type"] == "MARKET" and sent["timeInForce"] == "FOK"
    assert result.fill_price == pytest.approx(v20.state.mid("GBP_JPY") + 0.01, abs=1e-6)
    snap = broker.snapshot("GBPJPY")
    assert snap.units == 1 and snap.average_price == pytest.approx(result.fill_price, abs=1e-3)
    assert broker.find_order(cid).status is OrderStatus.FILLED
    assert broker.find_order("mm-d-unknown") is None


def test_a_201_can_be_a_cancelled_order_and_is_not_retried(v20):
    v20.state.cancel_next = ["MARKET_HALTED"]
    result = _broker(v20).market_order("GBPJPY", -1, "mm-d-halted")
    assert result.status is OrderStatus.CANCELLED and result.reason == "MARKET_HALTED"
    assert len(_orders(v20)) == 1 and v20.state.units.get("GBP_JPY", 0) == 0


@pytest.mark.parametrize("fault", ["5xx_after_create", "timeout_after_create"])
def test_after_a_failure_the_order_is_looked_up_and_never_sent_twice(v20, fault):
    if fault == "5xx_after_create":
        v20.state.fail_after_create = [503]
    else:
        v20.state.delay_next_seconds = [1.5]  # the client gives up after 0.5 s; the order exists
    broker = _broker(v20, timeout=0.5)
    result = broker.market_order("GBPJPY", 1, "mm-d-once")
    assert result.status is OrderStatus.FILLED
    assert len(_orders(v20)) == 1, "looked up, not resent"
    assert len(v20.state.orders) == 1 and v20.state.units["GBP_JPY"] == 1
    assert any(r["path"].endswith("/orders/@mm-d-once") for r in v20.state.requests)


def test_an_order_that_never_arrived_is_resent_after_backoff(v20):
    v20.state.forced_post_statuses = [500, 429]  # refused before creation, twice
    result = _broker(v20).market_order("GBPJPY", 1, "mm-d-retry")
    assert result.status is OrderStatus.FILLED
    assert len(_orders(v20)) == 3 and len(v20.state.orders) == 1
    lookups = [r for r in v20.state.requests if r["path"].endswith("/orders/@mm-d-retry")]
    assert len(lookups) >= 2, "each failure was looked up before the resend"


def test_retries_are_bounded(v20):
    v20.state.forced_post_statuses = [500] * 50
    with pytest.raises(TemporaryBrokerError, match="could not be placed"):
        _broker(v20).market_order("GBPJPY", 1, "mm-d-never")
    assert v20.state.orders == {} and len(_orders(v20)) == 4


def test_bad_token_is_an_operational_error_and_never_printed(v20):
    broker = _broker(v20, token="secret-wrong-token")
    with pytest.raises(OperationalBrokerError) as error:
        broker.snapshot("GBPJPY")
    assert "secret-wrong-token" not in str(error.value)
    with pytest.raises(OperationalBrokerError):
        broker.market_order("GBPJPY", 1, "mm-d-x")


def test_transactions_since_an_id(v20):
    broker = _broker(v20)
    first = broker.snapshot("GBPJPY").last_transaction_id
    broker.market_order("GBPJPY", 1, "mm-d-a")
    kinds = [t["type"] for t in broker.transactions_since(first)]
    assert kinds == ["MARKET_ORDER", "ORDER_FILL"]


def test_paper_broker_fills_at_bid_ask_persists_and_is_idempotent(tmp_path):
    broker = PaperBroker(tmp_path / "paper.json", spread_pips=4.0, pip_size=0.01)
    broker.mark(170.00)
    buy = broker.market_order("GBPJPY", 1, "mm-d-1")
    assert buy.fill_price == pytest.approx(170.02)
    again = broker.market_order("GBPJPY", 1, "mm-d-1")  # the same decision again: nothing new
    assert again.existed_before and replace(again, existed_before=False) == buy
    assert broker.snapshot("GBPJPY").units == 1
    broker.mark(170.30)
    sell = broker.market_order("GBPJPY", -1, "mm-d-2")
    assert sell.fill_price == pytest.approx(170.28)
    assert broker.realized_pips == pytest.approx(26.0)
    restarted = PaperBroker(tmp_path / "paper.json", spread_pips=4.0, pip_size=0.01)
    assert restarted.snapshot("GBPJPY").units == 0 and restarted.realized_pips == pytest.approx(26.0)
    assert restarted.find_order("mm-d-2").fill_price == pytest.approx(170.28)


def test_client_ids_are_a_function_of_model_and_bar():
    a = client_order_id("ep64-abc", 100)
    assert a == client_order_id("ep64-abc", 100) and len(a) <= 128
    assert a != client_order_id("ep64-abc", 160) and a != client_order_id("ep128-def", 100)
    assert client_order_id("ep64-abc", 100, "flatten") != a


# --- an order's fate: only a definite "no such client id" allows a resend ----------------


@pytest.mark.parametrize("lookup_fault", ["timeout", "5xx", "401"])
def test_a_failed_lookup_leaves_the_order_unknown_and_never_resends(v20, lookup_fault):
    """Regression: a lookup that failed (timeout, 5xx, 401/403) was read as "does not exist",
    the order was sent again, and OANDA's answer to the resent id became REJECTED for an
    order that had filled."""
    v20.state.fail_after_create = [503]  # the order is created and filled; the answer is lost
    if lookup_fault == "timeout":
        v20.state.delay_lookup_seconds = [1.0] * 4
    elif lookup_fault == "5xx":
        v20.state.forced_lookup_statuses = [500] * 4
    else:
        v20.state.forced_lookup_statuses = [401] * 4
    result = _broker(v20, timeout=0.5).market_order("GBPJPY", 1, "mm-d-unknown")
    assert result.status is OrderStatus.UNKNOWN and result.units == 1
    assert len(_orders(v20)) == 1, "never resent while its fate is unknown"
    assert v20.state.units["GBP_JPY"] == 1, "it did fill at the broker"


def test_client_id_already_exists_means_it_exists_and_is_looked_up(v20):
    """Regression: OANDA's CLIENT_ORDER_ID_ALREADY_EXISTS was booked as REJECTED for a filled order."""
    broker = _broker(v20)
    first = broker.market_order("GBPJPY", 1, "mm-d-twice")
    again = broker.market_order("GBPJPY", 1, "mm-d-twice")  # say, sent again after a restart
    assert again.status is OrderStatus.FILLED and again.fill_price == pytest.approx(first.fill_price)
    assert again.existed_before and not first.existed_before, "its fill is in the position already"
    assert v20.state.units["GBP_JPY"] == 1 and len(v20.state.orders) == 1


def test_find_order_raises_when_the_broker_cannot_tell(v20):
    broker = _broker(v20)
    assert broker.find_order("mm-d-nothing") is None  # a definite 404
    v20.state.forced_lookup_statuses = [500] * 4
    with pytest.raises(TemporaryBrokerError):
        broker.find_order("mm-d-nothing")
    v20.state.forced_lookup_statuses = [403]
    with pytest.raises(OperationalBrokerError):
        broker.find_order("mm-d-nothing")
