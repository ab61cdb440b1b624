"""One file to bars: read its cells, recognise its shape, read its stamps into UTC, check its health."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timezone, tzinfo
from pathlib import Path

import numpy as np
import pandas as pd

from shared.core.bar_sizes import GRANULARITY_MINUTES, parse_granularity
from shared.core.calendar import FX, calendar_named
from shared.core.instruments import Instrument
from shared.data.bars import Bars
from shared.data.importers.health import (
    bad_row_reasons,
    check_price_level,
    health_warnings,
    mixed_granularity_reasons,
    newest_first,
    settle_granularity,
)
from shared.data.importers.names import FreqtradeName, freqtrade_granularity, freqtrade_name, instrument_for
from shared.data.importers.report import BadRow, BadRowsError, CsvFormatError, ImportReport, RefusedImportError
from shared.data.importers.shapes import SHAPES, Mapped, check_shape, find_columns, map_columns
from shared.data.importers.source import read_table
from shared.data.importers.stamps import Stamps, localize, observes_dst, parse_stamps, to_ns, zone_from_flags


@dataclass
class ImportedFile:
    bars: Bars
    report: ImportReport  # report.instrument and report.granularity say where the bars go


def read_bars(
    path: str | Path,
    *,
    fmt: str = "auto",
    instrument: str | None = None,
    granularity: str | None = None,
    skip_bad: bool = False,
    tz: str | None = None,
    tz_offset_hours: float | None = None,
) -> ImportedFile:
    """Parse one candle file into bars and a report; raises on anything that cannot be stored as asked."""
    path = Path(path)
    if fmt != "auto" and fmt not in SHAPES:
        raise CsvFormatError(f"unknown format {fmt!r}; choose one of {', '.join(SHAPES)} or auto")
    if not path.is_file():
        raise FileNotFoundError(f"no such file: {path}")
    named = freqtrade_name(path.name)
    if named is not None and instrument and not _is_instrument(named.pair):
        named = None  # a name like prices-5m.parquet, not freqtrade's: the instrument given decides
    inst = _instrument(instrument, named, path)
    expected, expected_by = _expected_granularity(granularity, named, path)
    user_zone = zone_from_flags(tz, tz_offset_hours)

    table = read_table(path)
    try:
        columns = find_columns(table)
    except CsvFormatError as error:
        raise (CsvFormatError(f"--format {fmt} does not fit {path}: {error}") if fmt != "auto" else error) from None
    shape = check_shape(table, columns, fmt)
    if len(table.cells) == 0:
        raise CsvFormatError(f"{path} has a header but no rows")
    mapped = map_columns(table, columns, shape)
    report = ImportReport(path=str(path), format=shape, container=table.container, instrument=inst.name if inst else None,
                          side=mapped.side, rows=len(table.cells), row_word=table.row_word, notes=list(mapped.notes))
    if inst is not None:
        check_price_level(mapped.prices["close"].to_numpy(), inst, str(path))

    stamps = parse_stamps(mapped.stamps, mapped.stamp_format)
    order = np.arange(len(table.cells))
    if newest_first(to_ns(stamps.ts)):
        order = order[::-1]
        report.notes.append("the file is newest-first: its rows were read oldest-first")
    ts = stamps.ts.iloc[order].reset_index(drop=True)
    prices = mapped.prices.iloc[order].reset_index(drop=True)
    lines = table.line_numbers[order]
    ts_utc, nonexistent, zone = _to_utc(stamps, ts, user_zone, mapped, report, path)
    ts_ns = to_ns(ts_utc)

    reasons = bad_row_reasons(ts_ns, prices, malformed=table.malformed[order], nonexistent=nonexistent,
                              complete=None if mapped.complete is None else mapped.complete[order], instrument=inst)
    if not (reasons == "").any():
        report.bad_rows = [BadRow(int(lines[i]), str(reasons[i]), table.row_text(int(order[i]))) for i in range(len(reasons))]
        raise RefusedImportError(report.describe(limit=20) + "\nno good rows: nothing to import")
    report.granularity = settle_granularity(ts_ns[reasons == ""], expected, f"{path}", given_by=expected_by)
    step_minutes = GRANULARITY_MINUTES[report.granularity]
    dst_allowance = 60 if zone is not None and observes_dst(zone) and step_minutes > 60 else 0
    mixed = mixed_granularity_reasons(ts_ns, reasons == "", report.granularity, step_minutes, dst_allowance)
    reasons = np.where(reasons == "", mixed, reasons)
    good = reasons == ""
    report.good = int(good.sum())
    report.bad_rows = [BadRow(int(lines[i]), str(reasons[i]), table.row_text(int(order[i]))) for i in np.flatnonzero(~good)]
    if report.bad_rows and not skip_bad:
        raise BadRowsError(report)
    if not good.any():
        raise RefusedImportError(f"{path}: no good rows to import")

    bars = Bars(ts=ts_ns[good], open=_column(prices, "open", good), high=_column(prices, "high", good),
                low=_column(prices, "low", good), close=_column(prices, "close", good), volume=_column(prices, "volume", good))
    good_lines = lines[good]
    calendar = calendar_named(inst.calendar) if inst else FX
    report.warnings = health_warnings(bars.ts, bars.close, bars.volume, lambda i: f"{report.row_word} {good_lines[i]}",
                                      step_minutes, dst_allowance, calendar)
    if report.side in ("bid", "ask"):
        spread = f"{inst.name}'s typical spread ({inst.spread_pips:g} {inst.unit})" if inst else "the instrument's typical spread"
        report.notes.append(f"{report.side} prices only: the environment models the spread with {spread}, as for mid files")
    return ImportedFile(bars, report)


def _column(prices: pd.DataFrame, name: str, good: np.ndarray) -> np.ndarray:
    return prices[name].to_numpy(np.float64)[good]


def _instrument(name: str | None, named: FreqtradeName | None, path: Path) -> Instrument | None:
    """The instrument given, or the one a freqtrade file name says; both must agree."""
    given = instrument_for(name, source="--instrument") if name else None
    if named is None:
        return given
    if given is None:
        return instrument_for(named.pair, source=f"{path.name} (the pair in its name)")
    if named.pair.replace("_", "").upper() != given.name:
        raise RefusedImportError(f"{path.name} is {named.pair} by its name, but the instrument given is {given.name}")
    return given


def _is_instrument(name: str) -> bool:
    try:
        instrument_for(name, source="")
    except RefusedImportError:
        return False
    return True


def _expected_granularity(given: str | None, named: FreqtradeName | None, path: Path) -> tuple[str | None, str]:
    """The granularity given (any spelling), else the one a freqtrade file name says, with who said it."""
    if given:
        expected = parse_granularity(given)
        if named is not None and freqtrade_granularity(named, path.name) != expected:
            raise RefusedImportError(f"{path.name} is {named.timeframe} by its name, but --granularity says {expected}")
        return expected, "--granularity"
    if named is not None:
        return freqtrade_granularity(named, path.name), f"its name ({named.timeframe})"
    return None, ""


def _to_utc(stamps: Stamps, ts: pd.Series, user_zone: tzinfo | None, mapped: Mapped, report: ImportReport,
            path: Path) -> tuple[pd.Series, np.ndarray, tzinfo | None]:
    """UTC stamps, the rows in a non-existent local hour, and the zone the naive stamps were read in."""
    example = next((str(v) for v in mapped.stamps if str(v).strip()), "")
    if stamps.aware or mapped.shape_zone is not None:
        if user_zone is not None:
            raise CsvFormatError(f"{path} already carries its zone (stamps like {example!r}, read as {stamps.form}"
                                 f"{', UTC by its format' if mapped.shape_zone else ''}): drop --tz / --tz-offset-hours")
        if stamps.aware:
            if stamps.form.startswith("epoch"):
                report.notes.append(f"stamps are {stamps.form}")
            return ts, np.zeros(len(ts), bool), None
    zone = user_zone or mapped.shape_zone or mapped.default_zone or timezone.utc
    name = getattr(zone, "key", None) or zone.tzname(None)
    if user_zone is not None:
        rules = " with its daylight-saving rules" if observes_dst(zone) else ""
        report.notes.append(f"naive stamps ({stamps.form}) read as {name} time{rules}, converted to UTC")
    elif mapped.default_zone is not None:
        report.notes.append(f"stamps read as {name}, the shape's clock; --tz overrides it")
    elif mapped.shape_zone is None:
        report.notes.append(f"naive stamps ({stamps.form}) taken as UTC: pass --tz if the file is in another zone")
    if stamps.date_only:
        report.notes.append(f"dated by day: each bar is stamped 00:00 {name}" + ("" if zone is timezone.utc else ", then UTC"))
    utc, nonexistent = localize(ts, zone)
    return utc, nonexistent, zone
