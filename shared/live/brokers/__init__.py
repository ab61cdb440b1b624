"""Brokers behind one interface: OANDA v20 and a paper broker."""

from shared.live.brokers.base import (
    Broker,
    BrokerSnapshot,
    OperationalBrokerError,
    OrderResult,
    OrderStatus,
    Quote,
    TemporaryBrokerError,
    UnsupportedAccountError,
    client_order_id,
)

__all__ = ["Broker", "BrokerSnapshot", "OperationalBrokerError", "OrderResult", "OrderStatus", "Quote",
           "TemporaryBrokerError", "UnsupportedAccountError", "client_order_id"]
