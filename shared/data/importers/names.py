"""What a file's name tells: the instrument (the one lookup every importer uses), freqtrade's pair and
timeframe, and Dukascopy's price side."""

from __future__ import annotations

import re
from dataclasses import dataclass

from shared.core.bar_sizes import parse_granularity
from shared.core.instruments import Instrument, get_instrument
from shared.data.importers.report import RefusedImportError

# freqtrade: PAIR-TIMEFRAME[-CANDLETYPE].EXT, e.g. EUR_USD-1h.feather, BTC_USDT_USDT-5m-futures.feather
_FREQTRADE_NAME = re.compile(r"^(?P<pair>[A-Za-z0-9_]+)-(?P<timeframe>\d+[a-zA-Z]+)(?:-(?P<candle>[a-z_]+))?"
                             r"\.(?P<ext>feather|parquet|json|json\.gz|jsongz)$")
_SIDE = re.compile(r"(?:^|[_\-. ])(BID|ASK)(?:[_\-. ]|$)", re.IGNORECASE)


@dataclass(frozen=True)
class FreqtradeName:
    pair: str          # as on disk: EUR_USD
    timeframe: str     # as freqtrade writes it: 1h
    candle_type: str   # "" for spot, else futures, mark, ...


def instrument_for(name: str, *, source: str) -> Instrument:
    """The instrument a user or a file name calls `name` (EURUSD, EUR_USD, EUR/USD). Unknown names are
    refused with the known ones; `source` says where the name came from."""
    try:
        return get_instrument(name)
    except ValueError as error:
        raise RefusedImportError(f"{source}: {error}") from None


def freqtrade_name(file_name: str) -> FreqtradeName | None:
    match = _FREQTRADE_NAME.match(file_name)
    if match is None:
        return None
    return FreqtradeName(match["pair"], match["timeframe"], match["candle"] or "")


def freqtrade_granularity(name: FreqtradeName, file_name: str) -> str:
    try:
        return parse_granularity(name.timeframe)
    except ValueError as error:
        raise RefusedImportError(f"{file_name}: timeframe {name.timeframe!r}: {error}") from None


def side_from_name(file_name: str) -> str | None:
    """bid or ask where the name says (Dukascopy: EURUSD_Candlestick_1_Hour_BID_...csv), else None."""
    match = _SIDE.search(file_name)
    return match.group(1).lower() if match else None
