"""Reading OANDA v20's answer to an order: what the broker booked, not what we asked for.

A fill's units are its orderFillTransaction's `units`: a REDUCE_ONLY order larger
than the position fills only the reducing part, so `filled_units` can be fewer
than requested, and the position must be booked from it. Its price is `fullVWAP`;
without it, the units-weighted price of the trades it opened, closed and reduced
(tradeOpened, tradesClosed, tradeReduced), which v20 calls the official prices;
the deprecated `price` only as the last resort. A fill that carries none of them
is still FILLED (with no price): the units moved at the broker, and a KeyError
here would lose that.
"""

from __future__ import annotations

from shared.live.brokers.base import OrderResult, OrderStatus


def _number(value) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def fill_units(fill: dict) -> int | None:
    """The signed units the fill booked, or None when the transaction does not say."""
    units = _number(fill.get("units"))
    return None if units is None else int(units)


def fill_price(fill: dict) -> float | None:
    """fullVWAP, else the units-weighted price of the trades touched, else the deprecated `price`."""
    vwap = _number(fill.get("fullVWAP"))
    if vwap is not None:
        return vwap
    total_units = total_value = 0.0
    for part in [*(fill.get("tradesClosed") or []), fill.get("tradeReduced"), fill.get("tradeOpened")]:
        if not isinstance(part, dict):
            continue
        units, price = abs(_number(part.get("units")) or 0.0), _number(part.get("price"))
        if units > 0 and price is not None:
            total_units, total_value = total_units + units, total_value + units * price
    if total_units > 0:
        return total_value / total_units
    return _number(fill.get("price"))


def filled(client_id: str, units: int, order_id: str | None, fill: dict) -> OrderResult:
    return OrderResult(client_id, OrderStatus.FILLED, units, order_id, fill_price(fill), transaction_id=fill.get("id"),
                       filled_units=fill_units(fill))


def parse_created(client_id: str, units: int, response: dict) -> OrderResult | None:
    """The result in a 201 to an order creation; None when the answer holds neither a fill nor a
    cancel (the order exists, its fate must be looked up)."""
    order_id = (response.get("orderCreateTransaction") or {}).get("id")
    fill = response.get("orderFillTransaction")
    if isinstance(fill, dict):
        return filled(client_id, units, order_id, fill)
    cancel = response.get("orderCancelTransaction")
    if isinstance(cancel, dict):
        return OrderResult(client_id, OrderStatus.CANCELLED, units, order_id, reason=cancel.get("reason"),
                           transaction_id=cancel.get("id"))
    return None
