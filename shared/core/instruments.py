"""The instrument table: pip size, default spread, price precision, price level, quote currency,
market calendar, kind, and the unit its costs, rewards and statistics are counted in.

Units. FX pairs and metals count in pips (a price difference over the pip size); crypto pairs and
equities in basis points of the price, measured as 10,000 x the log-price difference, so a move of
a 100-dollar stock and of a 100,000-dollar coin weigh by what they are worth, and bps add up over
bars exactly. One way through: `scale_prices` puts prices on the instrument's scale (the prices
themselves, or 10,000 x ln price) and `point` is one unit on it (the pip size, or 1.0); every
price difference the system divides by a pip goes through these two. Names ending in `_pips` hold
the instrument's unit: pips for FX and metals, basis points for crypto and equities.

Instruments are data (instruments.toml beside this file), never `if` branches elsewhere. A user adds
an instrument, or changes one, with a TOML file of the same shape named by MICRO_INSTRUMENT_TABLE: no
code edit. The table is read once, at import; a bad file stops whoever reads it, naming the entry.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Literal, get_args

from shared.core.env_file import env_file_path, read_env_file
from shared.core.errors import StopError

# How far prices stray from their level, by kind, before a file or a row is refused: FX pairs stay
# within 3x for decades (EURUSD 1.2 -> 0.4..3.6), crypto and equities do not (BTC went from 100 to
# 100,000; a long SPY history starts near 50)
PRICE_LEVEL_FACTORS = {"fx": 3.0, "metal": 5.0, "crypto": 100.0, "equity": 50.0}
BUILT_IN_TABLE = Path(__file__).with_name("instruments.toml")
USER_TABLE_VARIABLE = "MICRO_INSTRUMENT_TABLE"

Unit = Literal["pips", "bps"]
UNITS: tuple[str, ...] = get_args(Unit)
DEFAULT_UNITS = {"fx": "pips", "metal": "pips", "crypto": "bps", "equity": "bps"}
BPS_PER_LOG_PRICE = 10_000.0

CalendarName = Literal["fx", "crypto", "nyse"]
CALENDARS: tuple[str, ...] = get_args(CalendarName)
Kind = Literal["fx", "metal", "crypto", "equity"]
KINDS: tuple[str, ...] = get_args(Kind)


class InstrumentTableError(StopError, ValueError):
    """An instrument table that cannot be used: the message names the file and the entry."""


@dataclass(frozen=True)
class PriceScale:
    """Prices on an instrument's P&L scale (module docstring): what every price difference counted
    in the instrument's unit goes through."""

    unit: Unit
    pip_size: float

    @property
    def in_bps(self) -> bool:
        return self.unit == "bps"

    @property
    def point(self) -> float:
        """One unit on the scale of `scale_prices`: the pip size, or 1.0 (a basis point of log price)."""
        return 1.0 if self.in_bps else self.pip_size

    def scale_prices(self, prices):
        """Prices on the P&L scale: as they are (pips), or 10,000 x ln price (bps)."""
        import numpy as np

        return np.log(prices) * BPS_PER_LOG_PRICE if self.in_bps else prices

    def unscale_prices(self, scaled):
        """The inverse of `scale_prices`."""
        import numpy as np

        return np.exp(np.asarray(scaled, np.float64) / BPS_PER_LOG_PRICE) if self.in_bps else scaled

    def to_pips(self, price_difference: float, price: float | None = None) -> float:
        """A price difference in the unit (bps: relative to `price`)."""
        if self.in_bps:
            if price is None:
                raise ValueError("a price difference in basis points needs its price")
            return price_difference / price * BPS_PER_LOG_PRICE
        return price_difference / self.pip_size

    def price_distance(self, units: float, price: float) -> float:
        """How far `units` of the unit are in price at `price` (stop distances, spreads)."""
        return units * price / BPS_PER_LOG_PRICE if self.in_bps else units * self.pip_size


@dataclass(frozen=True)
class Instrument:
    name: str                 # OANDA spelling without the underscore, e.g. GBPJPY
    pip_size: float           # price units per pip (the tick people count in, whatever the unit)
    spread_pips: float        # default round-trip cost charged by the environment, in the instrument's unit
    price_decimals: int       # quoted precision (a pipette is one more decimal than a pip)
    # a price the instrument has traded near for years; an import refuses prices beyond
    # PRICE_LEVEL_FACTORS[kind] times it either way (wrong instrument or a scaled file). None: no check
    typical_price: float | None = None
    quote_currency: str = ""
    calendar: CalendarName = "fx"
    kind: Kind = "fx"
    oanda_symbol: str = ""    # OANDA's name where it is not the name split after 3 letters (SPX500_USD)
    unit: Unit | None = None  # pips or bps; None: by kind (DEFAULT_UNITS)

    def __post_init__(self) -> None:
        if self.unit is None and self.kind in DEFAULT_UNITS:
            object.__setattr__(self, "unit", DEFAULT_UNITS[self.kind])
        problems = [
            (self.name.isalnum() and self.name.isupper(), "a name is upper-case letters and digits (EURUSD)"),
            (self.pip_size > 0, "pip_size must be positive"),
            (self.spread_pips >= 0, "spread_pips must be >= 0"),
            (0 <= self.price_decimals <= 10, "price_decimals must be in 0..10"),
            (self.typical_price is None or self.typical_price > 0, "typical_price must be positive"),
            (self.calendar in CALENDARS, f"calendar must be one of {', '.join(CALENDARS)}"),
            (self.kind in KINDS, f"kind must be one of {', '.join(KINDS)}"),
            (self.unit in UNITS, f"unit must be one of {', '.join(UNITS)}"),
        ]
        for ok, message in problems:
            if not ok:
                raise InstrumentTableError(f"instrument {self.name!r}: {message}")

    @property
    def oanda_name(self) -> str:
        return self.oanda_symbol or f"{self.name[:3]}_{self.name[3:]}"

    @property
    def price_scale(self) -> PriceScale:
        return PriceScale(self.unit, self.pip_size)

    # the price scale's, on the instrument
    in_bps = property(lambda self: self.price_scale.in_bps)
    point = property(lambda self: self.price_scale.point)

    def scale_prices(self, prices):
        return self.price_scale.scale_prices(prices)

    def unscale_prices(self, scaled):
        return self.price_scale.unscale_prices(scaled)

    def to_pips(self, price_difference: float, price: float | None = None) -> float:
        if self.in_bps and price is None:
            raise ValueError(f"{self.name} counts in basis points: a price difference needs its price")
        return self.price_scale.to_pips(price_difference, price)

    def price_distance(self, units: float, price: float) -> float:
        return self.price_scale.price_distance(units, price)

    @property
    def price_level_factor(self) -> float:
        return PRICE_LEVEL_FACTORS[self.kind]

    def plausible_prices(self) -> tuple[float, float] | None:
        """The range a file's price level must lie in for this instrument, or None where no level is known."""
        if self.typical_price is None:
            return None
        return self.typical_price / self.price_level_factor, self.typical_price * self.price_level_factor


_FIELDS = ({f.name for f in fields(Instrument)} - {"name"}) | {"spread_bps"}


def read_table(path: Path, base: dict[str, Instrument] | None = None) -> dict[str, Instrument]:
    """The instruments of a TOML table, added to (or replacing entries of) `base`."""
    try:
        tree = tomllib.loads(Path(path).read_text())
    except FileNotFoundError:
        raise InstrumentTableError(f"{USER_TABLE_VARIABLE} names {path}, which does not exist") from None
    except tomllib.TOMLDecodeError as error:
        raise InstrumentTableError(f"{path}: not TOML: {error}") from None
    table = dict(base or {})
    for name, entry in tree.items():
        if not isinstance(entry, dict):
            raise InstrumentTableError(f"{path}: {name} must be a table ([{name}] with pip_size, spread_pips, ...)")
        unknown = set(entry) - _FIELDS
        if unknown:
            raise InstrumentTableError(f"{path}: [{name}] has unknown keys {', '.join(sorted(unknown))}; "
                                       f"known: {', '.join(sorted(_FIELDS))}")
        key = _key(name)
        entry = dict(entry)
        if "spread_pips" in entry and "unit" not in entry and DEFAULT_UNITS.get(entry.get("kind", "fx")) == "bps":
            # a crypto or equity spread once given in pips of the pip size would now be read as bps: say so
            raise InstrumentTableError(f"{path}: [{name}] is a {entry['kind']} instrument, counted in basis points: "
                                       "give its spread as spread_bps (or unit = \"pips\" to count it in pips)")
        if "spread_bps" in entry:  # a bps instrument's spread, spelt in its unit
            if "spread_pips" in entry:
                raise InstrumentTableError(f"{path}: [{name}] gives spread_pips and spread_bps: one spread")
            entry["spread_pips"] = entry.pop("spread_bps")
            entry.setdefault("unit", "bps")
            if entry["unit"] != "bps":
                raise InstrumentTableError(f"{path}: [{name}] gives spread_bps for an instrument counted in pips")
        try:
            table[key] = Instrument(name=key, **entry)
        except TypeError as error:  # a required field missing
            raise InstrumentTableError(f"{path}: [{name}]: {error}".replace("__init__() ", "")) from None
        except InstrumentTableError as error:
            raise InstrumentTableError(f"{path}: {error}") from None
    return table


def load_instruments(user_table: str | Path | None = None) -> dict[str, Instrument]:
    """The built-in table, then the user's over it: `user_table`, else MICRO_INSTRUMENT_TABLE from the
    environment, else from the .env file (MICRO_ENV_FILE, default ./.env; a path there is relative
    to the .env file, as MICRO_CONFIG's is)."""
    table = read_table(BUILT_IN_TABLE)
    if user_table is None:
        user_table = os.environ.get(USER_TABLE_VARIABLE)
    if user_table is None:
        env_path = env_file_path(os.environ)
        named = read_env_file(env_path).get(USER_TABLE_VARIABLE)
        user_table = env_path.parent / named if named else None
    return read_table(Path(user_table), table) if user_table else table


def _key(name: str) -> str:
    return name.replace("_", "").replace("/", "").upper()


INSTRUMENTS: dict[str, Instrument] = load_instruments()


def get_instrument(name: str) -> Instrument:
    """Look an instrument up by `GBPJPY`, `GBP_JPY` or `GBP/JPY`; unknown names are a clear error."""
    try:
        return INSTRUMENTS[_key(name)]
    except KeyError:
        raise ValueError(f"unknown instrument {name!r}; known: {', '.join(sorted(INSTRUMENTS))} "
                         f"(add one with a TOML table named by {USER_TABLE_VARIABLE})") from None
