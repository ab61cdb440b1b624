"""The data command line: micro data COMMAND --help

  synth      generate the seeded synthetic market into the bar store
  import     import candle files (OANDA, pandas, yfinance, Dukascopy, MT4/5, HistData, freqtrade, ...)
  download   download OANDA v20 candles (token from OANDA_TOKEN / OANDA_TOKEN_FILE)
  gaps       report gaps in the stored bars
  features   build the feature store (features, outcomes, sessions, split)
  info       what the store holds
  demo       the embedded default: synthetic market + feature store
  prepare    what the data job runs: the configured market's feature store, or the demo
             when no market is configured

Instrument, granularity, the store (MICRO_DATA_DIR) and the session rules
(DATA_SESSIONS__LENGTH_BARS, ...) come from the one configuration
(shared/core/settings.py: TOML [data] table, .env, environment); flags override them.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from dataclasses import replace
from pathlib import Path
from typing import ClassVar

from pydantic import Field
from tqdm import tqdm

from shared.config import SessionConfig, SyntheticMarketConfig, session_config_for
from shared.core.bar_sizes import parse_granularity
from shared.core.errors import RetryError, StopError
from shared.core.instruments import INSTRUMENTS, get_instrument
from shared.core.settings import ConfigError, Settings, load_settings
from shared.data.importers import SHAPES, read_path
from shared.data.importers.names import freqtrade_name
from shared.data.store import DEFAULT_DB_NAME, BarStore, write_expected_drift
from shared.data.synthetic import generate_market, synthetic_market_for

# The embedded default market: big enough for sessions in every split and for
# a visible planted edge, small enough to build in seconds.
DEMO_MARKET = SyntheticMarketConfig(weeks=12, seed=7, edge_strength=0.3)


class DataSettings(Settings):
    """The market the system trains on and how its bars become sessions."""

    section: ClassVar[str] = "data"

    data_dir: Path = Field(Path("data"), description="where market.duckdb lives")
    instrument: str = "GBPJPY"
    instruments: tuple[str, ...] = Field((), description="several instruments, one model (EURUSD,BTCUSD); "
                                         "empty: the one instrument")
    demo_instruments: tuple[str, ...] = Field((), description="the synthetic demo market on these "
                                              "instruments (GBPJPY,BTCUSD); empty: GBPJPY")
    granularity: str = "M1"
    sessions: SessionConfig = Field(default_factory=SessionConfig)

    def sessions_for(self, granularity: str) -> SessionConfig:
        """The session settings for this bar size: what the user set, else the bar size's defaults."""
        set_by_user = {name.removeprefix("sessions.") for name in self.sources() if name.startswith("sessions.")}
        return session_config_for(parse_granularity(granularity), self.sessions, set_by_user)

    @property
    def market_configured(self) -> bool:
        """A user named a market (the instrument or the bar size): the demo is not wanted."""
        return bool({"instrument", "instruments", "granularity"} & set(self.sources()))


def _print(message: str) -> None:
    print(message, flush=True)


def cmd_synth(args: argparse.Namespace) -> None:
    config = synthetic_market_for(args.instrument, start=args.start, weeks=args.weeks, seed=args.seed,
                                  edge_strength=args.edge, granularity=parse_granularity(args.granularity))
    _synth(args.db, config, args.quiet)


def _synth(db: Path, config: SyntheticMarketConfig, quiet: bool) -> None:
    with tqdm(total=2, desc=f"synthetic {config.instrument} ({config.weeks} weeks, seed {config.seed})", unit="step",
              disable=quiet) as bar:
        bars, drift = generate_market(config)
        bar.update(1)
        with BarStore(db) as store:
            result = store.upsert(config.instrument, config.granularity, bars)
            write_expected_drift(store, config.instrument, config.granularity, bars.ts, drift)  # for the oracle baseline
        bar.update(1)
    _print(f"synthetic {config.instrument} {config.granularity}: {len(bars)} bars, {result.inserted} new, "
           f"{result.updated} replaced -> {db}")


def cmd_import(args: argparse.Namespace) -> None:
    settings: DataSettings = args.settings
    instrument = args.instrument
    if instrument is None and args.path.is_file() and freqtrade_name(args.path.name) is None:
        if "instrument" not in settings.sources():  # a bar size alone names no instrument
            raise ValueError(f"name the instrument of {args.path} with --instrument (known: {', '.join(INSTRUMENTS)})")
        instrument = settings.instrument
    imported = read_path(args.path, fmt=args.format, instrument=instrument, granularity=args.granularity,
                         skip_bad=args.skip_bad, tz=args.tz, tz_offset_hours=args.tz_offset_hours)
    for item in imported.files:
        _print(item.report.describe(limit=50))
        if item.report.bad_rows:
            _print(f"skipped {len(item.report.bad_rows)} bad rows (--skip-bad)")
    if imported.skipped:
        _print(f"skipped (not PAIR-TIMEFRAME candle files): {', '.join(imported.skipped)}")
    with BarStore(args.db) as store:  # every file in one transaction: a failure writes nothing
        results = store.upsert_many([(i.report.instrument, i.report.granularity, i.bars) for i in imported.files])
    for item, result in zip(imported.files, results):
        report = item.report
        _print(f"imported {len(item.bars)} {report.instrument} {report.granularity} bars ({report.format}): "
               f"{result.inserted} new, {result.updated} replaced")


class OandaUnreachableError(RetryError, RuntimeError):
    """The network or OANDA is down (after the bounded retries): nothing to fix in the command, try again later."""


class OandaRefusedError(StopError, RuntimeError):
    """OANDA answered with an error a person must look at (a bad token, an unknown instrument)."""


def cmd_download(args: argparse.Namespace) -> None:
    import requests
    from oandapyV20.exceptions import V20Error

    from shared.core.oanda import load_credentials, make_api
    from shared.data.oanda_candles import download_candles

    credentials = load_credentials()
    api = make_api(credentials, timeout_seconds=args.timeout)
    try:
        with BarStore(args.db) as store:
            result = download_candles(api, store, args.instrument, args.granularity, start=args.start, end=args.end,
                                      progress=not args.quiet)
    except (requests.ConnectionError, requests.Timeout) as error:
        raise OandaUnreachableError(
            f"cannot reach OANDA ({credentials.environment}): {type(error).__name__}; check the network and run the "
            "download again (it resumes after the last stored bar)"
        ) from None
    except V20Error as error:
        retry_later = int(error.code) == 429 or int(error.code) >= 500
        raise (OandaUnreachableError if retry_later else OandaRefusedError)(
            f"OANDA answered HTTP {error.code}" + ("; run the download again later" if retry_later else
                                                    ": check OANDA_TOKEN, OANDA_ENV and the instrument")
        ) from None
    _print(f"downloaded {result.candles} complete candles in {result.requests} requests "
           f"({result.first} .. {result.last}); {result.incomplete_skipped} forming candle(s) left for later")


def cmd_gaps(args: argparse.Namespace) -> None:
    instrument = get_instrument(args.instrument).name
    with BarStore(args.db, read_only=True) as store:
        gaps = store.gaps(instrument, args.granularity, min_missing_bars=args.min_missing)
    weekend = [g for g in gaps if g.weekend]
    other = [g for g in gaps if not g.weekend]
    _print(f"{instrument} {args.granularity}: {len(gaps)} gaps of >= {args.min_missing} bars "
           f"({len(weekend)} weekend closures, {len(other)} other)")
    for gap in other[: args.limit]:
        _print(f"  {gap.after} -> {gap.before}: {gap.missing_bars} bars missing")
    if len(other) > args.limit:
        _print(f"  ... and {len(other) - args.limit} more (--limit)")


def cmd_features(args: argparse.Namespace) -> None:
    from shared.features.store import build_feature_store

    args.granularity = parse_granularity(args.granularity)
    sessions = args.settings.sessions_for(args.granularity)
    if args.walk_forward_windows is not None:
        sessions = replace(sessions, walk_forward_windows=args.walk_forward_windows,
                           walk_forward_window=args.walk_forward_window or 0)
    report = build_feature_store(args.db, args.instrument, args.granularity, session_config=sessions,
                                 progress=not args.quiet, require_sessions=("train", "validation"))
    _print(f"feature store: {report.bars} bars, sessions {json.dumps(report.sessions)} "
           f"(features computed in {report.seconds_features:.2f}s) -> {args.db}")
    _print(f"sessions: {report.session_config.length_bars} bars, gaps up to {report.session_config.max_gap_minutes} min, "
           f"train every {report.session_config.train_stride_bars} bars ({args.granularity} settings; "
           f"DATA_SESSIONS__... to change)")
    if report.why_no_sessions:  # no test sessions: train and validation can go on, the test report cannot
        lines = "\n  ".join(report.why_no_sessions)
        _print(f"warning: no test sessions in {args.instrument} {args.granularity}:\n  {lines}")


def cmd_info(args: argparse.Namespace) -> None:
    with BarStore(args.db, read_only=True) as store:
        _print(store.summary().to_string(index=False))
        tables = {r[0] for r in store.con.execute("SELECT table_name FROM information_schema.tables").fetchall()}
        if "feature_sets" in tables:
            _print(store.con.execute(
                "SELECT instrument, granularity, feature_spec_version, bars, split_counts, built_at FROM feature_sets"
            ).df().to_string(index=False))


def demo_markets(instruments: tuple[str, ...] = ()) -> list[SyntheticMarketConfig]:
    """The embedded demo: GBPJPY's market, or the same market carried to each instrument named
    (MICRO_DEMO_INSTRUMENTS), each with its own seed so no two move alike."""
    if not instruments:
        return [DEMO_MARKET]
    return [DEMO_MARKET if name == DEMO_MARKET.instrument else
            synthetic_market_for(name, weeks=DEMO_MARKET.weeks, seed=DEMO_MARKET.seed + 1 + i,
                                 edge_strength=DEMO_MARKET.edge_strength)
            for i, name in enumerate(instruments)]


def cmd_demo(args: argparse.Namespace) -> None:
    from shared.features.store import build_feature_store

    for market in demo_markets(args.settings.demo_instruments):
        _synth(args.db, market, args.quiet)
        report = build_feature_store(args.db, market.instrument, "M1", session_config=args.settings.sessions,
                                     progress=not args.quiet)
        _print(f"feature store ready: {market.instrument} {report.bars} bars, sessions {json.dumps(report.sessions)} "
               f"-> {args.db}")


def cmd_prepare(args: argparse.Namespace) -> None:
    """The data job: the configured market's features (each instrument's), or the demo when none is configured."""
    settings: DataSettings = args.settings
    if not settings.market_configured:
        cmd_demo(args)
        return
    with BarStore(args.db) as store:
        missing = [name for name in settings.traded_instruments if store.last_ts(name, settings.granularity) is None]
    if missing:
        first = missing[0]
        raise ValueError(f"{args.db} holds no {', '.join(missing)} {settings.granularity} bars: import them first "
                         f"(micro data import FILE --instrument {first} --granularity {settings.granularity}), or "
                         "unset MICRO_INSTRUMENT(S) / MICRO_GRANULARITY for the demo market")
    for name in settings.traded_instruments:
        args.instrument, args.granularity, args.walk_forward_windows = name, settings.granularity, None
        cmd_features(args)


def build_parser(settings: DataSettings | None = None) -> argparse.ArgumentParser:
    settings = settings or DataSettings()
    parser = argparse.ArgumentParser(prog="micro data", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--db", type=Path, default=settings.data_dir / DEFAULT_DB_NAME, help="DuckDB file (default %(default)s)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("synth", help="generate the synthetic market")
    p.add_argument("--instrument", default=settings.instrument)
    p.add_argument("--start", default=SyntheticMarketConfig.start)
    p.add_argument("--weeks", type=int, default=SyntheticMarketConfig.weeks)
    p.add_argument("--seed", type=int, default=SyntheticMarketConfig.seed)
    p.add_argument("--edge", type=float, default=0.0, help="planted edge strength, 0 = none (see shared/data/synthetic.py)")
    p.add_argument("--granularity", default="M1", help="the bar size generated (M1, M5, H1, D, or 5m, 1h, ...)")
    p.set_defaults(func=cmd_synth)

    p = sub.add_parser("import", help="import a candle file, or a freqtrade data folder",
                       formatter_class=argparse.RawDescriptionHelpFormatter,
                       description="The shape is detected (--format insists on one):\n"
                       + "\n".join(f"  {name:10} {what}" for name, what in SHAPES.items()))
    p.add_argument("path", type=Path, help="a file (CSV, gzip, Parquet, Feather, JSON) or a freqtrade data folder")
    p.add_argument("--instrument", default=None,
                   help="the instrument (a folder's file names give theirs; then this picks one of them)")
    p.add_argument("--granularity", default=None,
                   help="M1, 5m, 1h, H4, D, daily, ... (default: inferred from the stamps; a disagreement is an error)")
    p.add_argument("--format", default="auto", choices=["auto", *SHAPES])
    p.add_argument("--skip-bad", action="store_true", help="import the good rows and report the bad ones")
    p.add_argument("--tz", default=None, metavar="ZONE",
                   help="zone of naive stamps: an IANA name with its DST rules (Europe/Helsinki, EET) or UTC+2")
    p.add_argument("--tz-offset-hours", type=float, default=None,
                   help="naive stamps are this many hours ahead of UTC (a fixed offset, no DST)")
    p.set_defaults(func=cmd_import)

    p = sub.add_parser("download", help="download OANDA candles")
    p.add_argument("--instrument", required=not settings.market_configured, default=settings.instrument)
    p.add_argument("--granularity", default=settings.granularity)
    p.add_argument("--start", help="UTC start; default: after the last stored bar")
    p.add_argument("--end", help="UTC end (exclusive); default: now")
    p.add_argument("--timeout", type=float, default=10.0, help="seconds per request")
    p.set_defaults(func=cmd_download)

    p = sub.add_parser("gaps", help="report gaps")
    p.add_argument("--instrument", required=not settings.market_configured, default=settings.instrument)
    p.add_argument("--granularity", default=settings.granularity)
    p.add_argument("--min-missing", type=int, default=1)
    p.add_argument("--limit", type=int, default=30)
    p.set_defaults(func=cmd_gaps)

    p = sub.add_parser("features", help="build the feature store")
    p.add_argument("--instrument", default=settings.instrument)
    p.add_argument("--granularity", default=settings.granularity)
    p.add_argument("--walk-forward-windows", type=int, default=None, metavar="K",
                   help="split the span before test into K consecutive train/validation windows (0: the plain split)")
    p.add_argument("--walk-forward-window", type=int, default=None, metavar="k",
                   help="which window the store's train/validation split is (0..K-1); the test split never moves")
    p.set_defaults(func=cmd_features)

    sub.add_parser("info", help="what the store holds").set_defaults(func=cmd_info)
    sub.add_parser("demo", help="synthetic market + feature store (the embedded default)").set_defaults(func=cmd_demo)
    sub.add_parser("prepare", help="the configured market's feature store, or the demo when none is configured"
                   ).set_defaults(func=cmd_prepare)
    return parser


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        settings = load_settings(DataSettings)
    except ConfigError as error:
        print(f"error: bad configuration: {error}", file=sys.stderr)
        return 2
    args = build_parser(settings).parse_args(argv)
    args.settings = settings
    try:
        args.func(args)
    except (StopError, RetryError, FileNotFoundError, ValueError, RuntimeError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
