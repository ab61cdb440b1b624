"""The instrument table: pip size, default spread, price precision, price level, quote currency,
market calendar, kind.

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

CalendarName = Literal["fx", "crypto", "nyse"]
CALENDARS: tuple[str, ...] = get_args(CalendarName)
Kind = Literal["fx", "metal", "crypto", "equity"]
KINDS: tuple[str, ...] = get_args(Kind)


class InstrumentTableError(StopError, ValueError):
    """An instrument table that cannot be used: the message names the file and the entry."""


@dataclass(frozen=True)
class Instrument:
    name: str                 # OANDA spelling without the underscore, e.g. GBPJPY
    pip_size: float           # price units per pip
    spread_pips: float        # default round-trip cost charged by the environment
    price_decimals: int       # quoted precision (a pipette is one more decimal than a pip)
    # a price the instrument has traded near for years; an import refuses prices beyond
    # PRICE_LEVEL_FACTORS[kind] times it either way (wrong instrument or a scaled file). None: no check
    typical_price: float | None = None
    quote_currency: str = ""
    calendar: CalendarName = "fx"
    kind: Kind = "fx"
    oanda_symbol: str = ""    # OANDA's name where it is not the name split after 3 letters (SPX500_USD)

    def __post_init__(self) -> None:
        problems = [
            (self.name.isalnum() and self.name.isupper(), "a name is upper-case letters and digits (EURUSD)"),
            (self.pip_size > 0, "pip_size must be positive"),
            (self.spread_pips >= 0, "spread_pips must be >= 0"),
            (0 <= self.price_decimals <= 10, "price_decimals must be in 0..10"),
            (self.typical_price is None or self.typical_price > 0, "typical_price must be positive"),
            (self.calendar in CALENDARS, f"calendar must be one of {', '.join(CALENDARS)}"),
            (self.kind in KINDS, f"kind must be one of {', '.join(KINDS)}"),
        ]
        for ok, message in problems:
            if not ok:
                raise InstrumentTableError(f"instrument {self.name!r}: {message}")

    @property
    def oanda_name(self) -> str:
        return self.oanda_symbol or f"{self.name[:3]}_{self.name[3:]}"

    def to_pips(self, price_difference: float) -> float:
        return price_difference / self.pip_size

    @property
    def price_level_factor(self) -> float:
        return PRICE_LEVEL_FACTORS[self.kind]

    def plausible_prices(self) -> tuple[float, float] | None:
        """The range a file's price level must lie in for this instrument, or None where no level is known."""
        if self.typical_price is None:
            return None
        return self.typical_price / self.price_level_factor, self.typical_price * self.price_level_factor


_FIELDS = {f.name for f in fields(Instrument)} - {"name"}


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
