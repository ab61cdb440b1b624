"""Per-instrument constants: pip size, default spread, price precision.

Each instrument's quirks are data here, never `if` branches elsewhere.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Instrument:
    name: str                 # OANDA spelling without the underscore, e.g. GBPJPY
    pip_size: float           # price units per pip
    spread_pips: float        # default round-trip cost charged by the environment
    price_decimals: int       # quoted precision (a pipette is one more decimal than a pip)

    @property
    def oanda_name(self) -> str:
        return f"{self.name[:3]}_{self.name[3:]}"

    def to_pips(self, price_difference: float) -> float:
        return price_difference / self.pip_size


INSTRUMENTS: dict[str, Instrument] = {
    i.name: i
    for i in (
        Instrument("GBPJPY", pip_size=0.01, spread_pips=4.0, price_decimals=3),
        Instrument("USDJPY", pip_size=0.01, spread_pips=1.5, price_decimals=3),
        Instrument("EURJPY", pip_size=0.01, spread_pips=2.0, price_decimals=3),
        Instrument("EURUSD", pip_size=0.0001, spread_pips=1.0, price_decimals=5),
        Instrument("GBPUSD", pip_size=0.0001, spread_pips=1.5, price_decimals=5),
    )
}


def get_instrument(name: str) -> Instrument:
    """Look an instrument up by `GBPJPY` or `GBP_JPY`; unknown names are a clear error."""
    key = name.replace("_", "").replace("/", "").upper()
    try:
        return INSTRUMENTS[key]
    except KeyError:
        raise ValueError(f"unknown instrument {name!r}; known: {', '.join(sorted(INSTRUMENTS))}") from None
