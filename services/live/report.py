"""What the live service shows of each instrument and of the account: /status and the metrics.
Called under the service's lock (the journal's connection is shared with the loop)."""

from __future__ import annotations

from datetime import datetime

from services.live.metrics import LiveMetrics
from shared.live.desk import LiveDesk
from shared.live.trader import LiveTrader


def realized_today_account(trader: LiveTrader, now: datetime) -> float:
    """Closed P&L of this trading day in the account currency, each fill converted when it was booked."""
    return trader.journal.realized_account_since(trader.calendar.trading_day_start(now))


def instrument_page(trader: LiveTrader, now: datetime, account_currency: str | None) -> dict:
    """`account_currency` None: the P&L does not convert (pips only)."""
    page = trader.status()
    page["realized_today_pips"] = round(trader.realized_today, 2)
    page["realized_today_account"] = round(realized_today_account(trader, now), 2) if account_currency else None
    page["account_currency"] = account_currency
    return page


def account_page(desk: LiveDesk, broker, now: datetime) -> dict:
    """The account across instruments: units, exposure per currency, P&L in the account currency."""
    page = desk.account_status()
    converts = desk.currency is not None
    page["realized_today_account"] = round(sum(realized_today_account(t, now) for t in desk.traders.values()), 2) \
        if converts else None
    realized = getattr(broker, "realized_account", None)
    if realized is not None:  # the paper account's own sum since it opened
        page["paper_realized_account"] = round(realized, 2)
    return page


def update_instrument_metrics(m: LiveMetrics, trader: LiveTrader, now: datetime, account_currency: str | None) -> None:
    name = trader.instrument.name
    m.daily_loss_stop.labels(instrument=name).set(1 if trader.stopped_for_the_day(now) else 0)
    m.set_stop_state(name, trader.stop_state())
    m.flatten_attempts.labels(instrument=name).set(trader.flatten_attempts)
    m.position.labels(instrument=name).set(trader.position)
    m.realized.labels(instrument=name).set(trader.realized_today)
    if account_currency:  # else its P&L does not convert: no series
        m.realized_account.labels(instrument=name, currency=account_currency).set(realized_today_account(trader, now))
