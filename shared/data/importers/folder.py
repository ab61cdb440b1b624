"""A freqtrade data folder (user_data/data/<exchange>/): every PAIR-TIMEFRAME candle file in it.

The pair and the timeframe come from each file's name (EUR_USD-1h.feather -> EURUSD H1). An unknown
pair fails the whole folder, naming it and the known instruments; files that are not candle files
(trades, other names) and subfolders (futures/) are listed as skipped, never read silently.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from shared.core.bar_sizes import parse_granularity
from shared.data.importers.names import freqtrade_granularity, freqtrade_name, instrument_for
from shared.data.importers.read import ImportedFile, read_bars
from shared.data.importers.report import RefusedImportError


@dataclass
class Imported:
    files: list[ImportedFile]
    skipped: list[str] = field(default_factory=list)  # names in a folder that are not candle files


def read_path(
    path: str | Path,
    *,
    fmt: str = "auto",
    instrument: str | None = None,
    granularity: str | None = None,
    skip_bad: bool = False,
    tz: str | None = None,
    tz_offset_hours: float | None = None,
) -> Imported:
    """A file, or every candle file of a freqtrade folder (--instrument / --granularity then pick among them)."""
    path = Path(path)
    options = dict(fmt=fmt, skip_bad=skip_bad, tz=tz, tz_offset_hours=tz_offset_hours)
    if not path.is_dir():
        return Imported([read_bars(path, instrument=instrument, granularity=granularity, **options)])
    wanted_instrument = instrument_for(instrument, source="--instrument").name if instrument else None
    wanted_granularity = parse_granularity(granularity) if granularity else None
    chosen, skipped = [], []
    for entry in sorted(path.iterdir()):
        named = freqtrade_name(entry.name) if entry.is_file() else None
        if named is None:
            skipped.append(entry.name + ("/" if entry.is_dir() else ""))
            continue
        if wanted_instrument and named.pair.replace("_", "").upper() != wanted_instrument:
            continue
        if wanted_granularity and freqtrade_granularity(named, entry.name) != wanted_granularity:
            continue
        chosen.append(entry)
    if not chosen:
        wanted = " ".join(w for w in (wanted_instrument, wanted_granularity) if w)
        found = sorted(entry.name for entry in path.iterdir())[:20]
        raise RefusedImportError(f"{path} holds no {wanted + ' ' if wanted else ''}candle files named PAIR-TIMEFRAME"
                                 f".feather/.json/.parquet (freqtrade's data folder); found: {found}")
    files = [read_bars(entry, **options) for entry in chosen]
    seen: dict[tuple[str | None, str | None], str] = {}
    for item in files:
        where = (item.report.instrument, item.report.granularity)
        if where in seen:
            raise RefusedImportError(f"{path}: {seen[where]} and {Path(item.report.path).name} both hold "
                                     f"{where[0]} {where[1]}: import one of them")
        seen[where] = Path(item.report.path).name
    return Imported(files, skipped)
