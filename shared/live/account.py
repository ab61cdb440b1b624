"""One account, several instruments: the caps across them and the account currency.

Exposure is counted in units, not valued: long 1 unit of EURUSD is +1 EUR and -1 USD, long 1 BTCUSD
+1 BTC and -1 USD, whatever the prices. That is a simplification (a unit of BTC is worth far more
than a unit of EUR) that suits this system's positions of a few units per instrument: the cap says
how many units may lean on one currency, so two pairs that both sell USD count twice. An equity or a
metal has no base currency in its name: its base is the instrument itself (SPY, XAUUSD).

Two caps (RiskConfig): `max_total_units`, the sum of |units| over the instruments, and
`max_currency_exposure_units`, the net units per currency. A target beyond either is moved towards
the position held until both hold, or until it is no worse than the position held (an adopted
position may be over a cap already: only reducing it is allowed); the reason goes into the journal.

The account currency (LIVE_ACCOUNT_CURRENCY): P&L in pips x pip size is in the instrument's quote
currency; its rate into the account currency is 1 when they are the same, else the mid of a traded
instrument that converts (USDJPY's for JPY -> USD, inverted; GBPUSD's for GBP -> USD), else a fixed
rate given in code (`fixed_rates`: a benchmark's, a test's; no setting sets one). Anything else is
refused, naming what is missing.
"""

from __future__ import annotations

from typing import Callable, Mapping, Sequence

from shared.config import RiskConfig
from shared.core.errors import StopError
from shared.core.instruments import get_instrument

__all__ = ["AccountCurrency", "AccountLimits", "ConversionError", "currency_legs", "exposure_units"]


def currency_legs(instrument: str) -> tuple[str, str]:
    """(base, quote) of an instrument: EURUSD (EUR, USD), BTCUSDT (BTC, USDT), SPY (SPY, USD)."""
    inst = get_instrument(instrument)
    quote = inst.quote_currency
    if inst.kind in ("fx", "crypto") and quote and inst.name.endswith(quote) and len(inst.name) > len(quote):
        return inst.name[: -len(quote)], quote
    return inst.name, quote


def exposure_units(positions: Mapping[str, int]) -> dict[str, int]:
    """Net units per currency of `positions` (instrument -> signed units)."""
    out: dict[str, int] = {}
    for name, units in positions.items():
        base, quote = currency_legs(name)
        out[base] = out.get(base, 0) + units
        out[quote] = out.get(quote, 0) - units
    return {currency: units for currency, units in out.items() if units}


class AccountLimits:
    """The account caps across instruments (RiskConfig.max_total_units, max_currency_exposure_units)."""

    def __init__(self, risk: RiskConfig) -> None:
        self.max_total_units = risk.max_total_units
        self.max_currency_units = risk.max_currency_exposure_units

    def breach(self, positions: Mapping[str, int]) -> str | None:
        """The first cap `positions` are beyond, or None."""
        return self.worsens({}, positions)

    def worsens(self, held: Mapping[str, int], moved: Mapping[str, int]) -> str | None:
        """The first cap `moved` is beyond by more than `held` is (or newly beyond), or None."""
        if self.max_total_units is not None:
            total = sum(abs(u) for u in moved.values())
            if total > self.max_total_units and total > sum(abs(u) for u in held.values()):
                return "account_units_cap"
        if self.max_currency_units is not None:
            before = exposure_units(held)
            for currency, units in sorted(exposure_units(moved).items()):
                if abs(units) > self.max_currency_units and abs(units) > abs(before.get(currency, 0)):
                    return f"currency_exposure_cap:{currency}"
        return None

    def limit(self, instrument: str, target_units: int, positions: Mapping[str, int]) -> tuple[int, str | None]:
        """The target `instrument` may go to, given every instrument's position now (its own included),
        and why it was clipped (None: not clipped). Moves from the target towards the position held,
        one unit at a time (positions are a few units), and takes the first that is within the caps
        or no worse than holding (a position adopted beyond a cap may only shrink)."""
        held = int(positions.get(instrument, 0))
        why = self.worsens(positions, {**positions, instrument: target_units})
        if why is None:
            return target_units, None
        step = 1 if target_units < held else -1
        for candidate in range(target_units + step, held, step):
            if self.worsens(positions, {**positions, instrument: candidate}) is None:
                return candidate, why
        return held, why


class ConversionError(StopError, ValueError):
    """A quote currency the account currency cannot be reached from: the message says what to add."""


class AccountCurrency:
    """Converts P&L in an instrument's quote currency into the account currency."""

    def __init__(self, account_currency: str, instruments: Sequence[str], *,
                 fixed_rates: Mapping[str, float] | None = None) -> None:
        self.currency = account_currency.upper()
        self.fixed_rates = {k.upper(): float(v) for k, v in (fixed_rates or {}).items()}
        self.instruments = tuple(get_instrument(name).name for name in instruments)
        # quote currency -> (instrument whose mid converts it, whether to invert that mid); None: the same
        # currency or a fixed rate. A traded instrument wins over a fixed rate: it is the market's rate now
        self.routes: dict[str, tuple[str, bool] | None] = {}
        missing = []
        for name in self.instruments:
            quote = get_instrument(name).quote_currency
            route = self._route(quote)
            if route is None and quote != self.currency and quote not in self.fixed_rates:
                missing.append((name, quote))
            else:
                self.routes[quote] = route
        if missing:
            what = ", ".join(f"{name} (quoted in {quote})" for name, quote in missing)
            quote = missing[0][1]
            raise ConversionError(
                f"P&L of {what} cannot be converted into the account currency {self.currency}: trade an "
                f"instrument that converts it beside them (e.g. {self.currency}{quote}), or set "
                "LIVE_ACCOUNT_CURRENCY to the quote currency")

    def _route(self, quote: str) -> tuple[str, bool] | None:
        """The traded instrument whose mid converts `quote` into the account currency, if one does."""
        if quote == self.currency:
            return None
        for name in self.instruments:
            base, other = currency_legs(name)
            if (base, other) == (quote, self.currency):
                return name, False  # GBPUSD's mid is USD per GBP
            if (base, other) == (self.currency, quote):
                return name, True   # USDJPY's mid is JPY per USD: 1 / mid is USD per JPY
        return None

    def rate(self, quote: str, mid: Callable[[str], float | None]) -> float | None:
        """Account currency per unit of `quote` now; None while the converting instrument has no price."""
        route = self.routes[quote]
        if route is None:
            return 1.0 if quote == self.currency else self.fixed_rates[quote]
        name, invert = route
        price = mid(name)
        if price is None or price <= 0:
            return None
        return 1.0 / price if invert else price

    def value(self, instrument: str, pips: float, mid: Callable[[str], float | None]) -> float | None:
        """`pips` (x units) of `instrument` in the account currency."""
        inst = get_instrument(instrument)
        rate = self.rate(inst.quote_currency, mid)
        if rate is None:
            return None
        price = mid(inst.name) if inst.in_bps else 0.0  # a basis point is worth its share of the price now
        return None if price is None else inst.price_distance(pips, price) * rate
