"""The feature store: micro features, outcomes and sessions in the bar store's DuckDB file.

Tables (one feature set per instrument and granularity, replaced as a whole
by each build):
  feature_sets(instrument, granularity, feature_spec_version, feature_names, bars,
               first_ts, last_ts, built_at, session_config, split_counts)
  micro_features(instrument, granularity, bar_index, ts, open, high, low, close, volume,
                 <the 9 temporal features as REAL>, outcome)
  sessions(instrument, granularity, split, start_index, start_ts, end_ts)

Loaders refuse a feature set written under another FEATURE_SPEC_VERSION.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from shared.config import SessionConfig
from shared.core.bar_sizes import check_granularity
from shared.core.calendar import calendar_named
from shared.core.errors import StopError
from shared.core.feature_spec import FEATURE_SPEC_VERSION, TEMPORAL_FEATURES
from shared.core.instruments import get_instrument
from shared.data.bars import Bars
from shared.data.store import BarStore
from shared.features.micro import market_outcomes, on_instrument_scale, temporal_features
from shared.features.sessions import SPLITS, split_sessions, valid_session_starts, why_no_sessions

FEATURE_SCHEMA = [
    """CREATE TABLE IF NOT EXISTS feature_sets (
        instrument VARCHAR NOT NULL,
        granularity VARCHAR NOT NULL,
        feature_spec_version VARCHAR NOT NULL,
        feature_names VARCHAR NOT NULL,      -- JSON list, TEMPORAL_FEATURES order
        bars BIGINT NOT NULL,
        first_ts TIMESTAMP,
        last_ts TIMESTAMP,
        built_at TIMESTAMP NOT NULL,
        session_config VARCHAR NOT NULL,     -- JSON
        split_counts VARCHAR NOT NULL,       -- JSON {split: sessions}
        unit VARCHAR,                        -- pips or bps, the instrument's unit when built (NULL: pips)
        PRIMARY KEY (instrument, granularity))""",
    "ALTER TABLE feature_sets ADD COLUMN IF NOT EXISTS unit VARCHAR",
    "CREATE TABLE IF NOT EXISTS micro_features (instrument VARCHAR NOT NULL, granularity VARCHAR NOT NULL, "
    "bar_index BIGINT NOT NULL, ts TIMESTAMP NOT NULL, open DOUBLE, high DOUBLE, low DOUBLE, close DOUBLE, volume DOUBLE, "
    + ", ".join(f"{name} REAL NOT NULL" for name in TEMPORAL_FEATURES)
    + ", outcome TINYINT NOT NULL, PRIMARY KEY (instrument, granularity, bar_index))",
    """CREATE TABLE IF NOT EXISTS sessions (
        instrument VARCHAR NOT NULL,
        granularity VARCHAR NOT NULL,
        split VARCHAR NOT NULL,
        start_index BIGINT NOT NULL,
        start_ts TIMESTAMP NOT NULL,
        end_ts TIMESTAMP NOT NULL)""",
]


class FeatureStoreError(StopError, RuntimeError):
    """The feature store is missing, empty or was built for something else."""


class FeatureSpecMismatch(FeatureStoreError):
    pass


@dataclass
class FeatureSet:
    """Everything training, validation and live read from the store."""

    instrument: str
    granularity: str
    feature_spec_version: str
    feature_names: tuple[str, ...]
    bars: Bars                          # [N] the bars the features came from
    features: np.ndarray                # [N, 9] float32, TEMPORAL_FEATURES order
    outcomes: np.ndarray                # [N] int8 MarketOutcome
    sessions: dict[str, np.ndarray]     # split -> [S] int64 start indices into the arrays above
    session_config: SessionConfig
    expected_drift: np.ndarray | None = None  # [N] the instrument's unit: a synthetic market's, for the oracle
    # several instruments in one set (shared.features.portfolio): their names, the instrument of each bar
    # (an index into them) and what one pip of each weighs in the common unit; empty for one instrument
    instruments: tuple[str, ...] = ()
    bar_instrument: np.ndarray | None = None  # [N] int64
    pip_weights: tuple[float, ...] = ()

    @property
    def instrument_names(self) -> tuple[str, ...]:
        return self.instruments or (self.instrument,)

    def scaled_close(self) -> np.ndarray:
        """[N] closes on each bar's instrument's P&L scale (shared.core.instruments.scale_prices)."""
        owner = self.instrument_of(np.arange(len(self.bars)))
        close = self.bars.close.copy()
        for i, name in enumerate(self.instrument_names):
            close[owner == i] = get_instrument(name).scale_prices(self.bars.close[owner == i])
        return close

    def instrument_of(self, bars: np.ndarray) -> np.ndarray:
        """[len(bars)] the index (into instrument_names) of each bar's instrument."""
        bars = np.asarray(bars, np.int64)
        return self.bar_instrument[bars] if self.bar_instrument is not None else np.zeros(len(bars), np.int64)

    def require_sessions(self, split: str) -> np.ndarray:
        starts = self.sessions.get(split, np.empty(0, np.int64))
        if len(starts) == 0:
            raise FeatureStoreError(
                f"the {split} split of {self.instrument} {self.granularity} has no sessions; "
                "`micro data features` says why and which DATA_SESSIONS__ setting changes it: "
                "load more bars or change the session settings, then rebuild the feature store"
            )
        return starts


@dataclass(frozen=True)
class BuildReport:
    bars: int
    sessions: dict[str, int]
    seconds_features: float
    session_config: SessionConfig = SessionConfig()
    why_no_sessions: list[str] = field(default_factory=list)  # [] when every split has sessions


def build_feature_store(
    db_path: str | Path,
    instrument: str,
    granularity: str = "M1",
    *,
    session_config: SessionConfig = SessionConfig(),
    progress: bool = True,
    require_sessions: tuple[str, ...] = (),
) -> BuildReport:
    """Compute features, outcomes and sessions from the stored bars and replace the feature set.
    A split named in `require_sessions` without sessions stops it before anything is written (the
    feature set in the store stays as it was), saying why."""
    import time

    inst = get_instrument(instrument)
    bar_minutes = check_granularity(granularity)
    steps = tqdm(total=4, desc=f"features {inst.name} {granularity}", unit="step", disable=not progress)
    with BarStore(db_path) as store:
        bars = store.load(inst.name, granularity)
        steps.update(1)
        if len(bars) == 0:
            steps.close()
            raise FeatureStoreError(f"no {inst.name} {granularity} bars in {db_path}: import or generate bars first")
        t0 = time.perf_counter()
        scaled, point = on_instrument_scale(bars, inst)  # pips, or basis points (crypto, equities)
        features = temporal_features(scaled, point)
        outcomes = market_outcomes(scaled, point)
        seconds = time.perf_counter() - t0
        steps.update(1)
        calendar = calendar_named(inst.calendar)
        valid = valid_session_starts(bars.ts, scaled.high, scaled.low, point, session_config, bar_minutes, calendar)
        sessions = split_sessions(bars.ts, valid, session_config)
        why = why_no_sessions(bars.ts, scaled.high, scaled.low, point, session_config, sessions, bar_minutes,
                              calendar)
        missing = [split for split in require_sessions if not len(sessions[split])]
        if missing:
            steps.close()
            lines = "\n  ".join(why)
            raise FeatureStoreError(f"no {' or '.join(missing)} sessions in {inst.name} {granularity}; the feature "
                                    f"store was left as it was:\n  {lines}")
        steps.update(1)

        frame = bars.to_frame()
        frame.insert(0, "bar_index", np.arange(len(bars), dtype=np.int64))
        frame.insert(0, "granularity", granularity)
        frame.insert(0, "instrument", inst.name)
        for j, name in enumerate(TEMPORAL_FEATURES):
            frame[name] = features[:, j]
        frame["outcome"] = outcomes
        session_rows = pd.concat(
            [
                pd.DataFrame(
                    {
                        "instrument": inst.name,
                        "granularity": granularity,
                        "split": split,
                        "start_index": starts,
                        "start_ts": bars.ts[starts].astype("datetime64[ns]"),
                        "end_ts": bars.ts[starts + session_config.length_bars - 1].astype("datetime64[ns]"),
                    }
                )
                for split, starts in sessions.items()
            ]
        )
        counts = {split: int(len(starts)) for split, starts in sessions.items()}
        con = store.con
        for ddl in FEATURE_SCHEMA:
            con.execute(ddl)
        con.register("new_features", frame)
        con.register("new_sessions", session_rows)
        try:
            con.execute("BEGIN TRANSACTION")
            for table in ("feature_sets", "micro_features", "sessions"):
                con.execute(f"DELETE FROM {table} WHERE instrument = ? AND granularity = ?", [inst.name, granularity])
            con.execute("INSERT INTO micro_features SELECT * FROM new_features")
            con.execute("INSERT INTO sessions SELECT * FROM new_sessions")
            con.execute(
                "INSERT INTO feature_sets VALUES (?, ?, ?, ?, ?, ?, ?, now()::TIMESTAMP, ?, ?, ?)",
                [
                    inst.name, granularity, FEATURE_SPEC_VERSION, json.dumps(list(TEMPORAL_FEATURES)), len(bars),
                    pd.Timestamp(bars.ts[0]), pd.Timestamp(bars.ts[-1]),
                    json.dumps(session_config.to_dict()), json.dumps(counts), inst.unit,
                ],
            )
            con.execute("COMMIT")
        except Exception:
            con.execute("ROLLBACK")
            raise
        finally:
            con.unregister("new_features")
            con.unregister("new_sessions")
        steps.update(1)
    steps.close()
    return BuildReport(bars=len(bars), sessions=counts, seconds_features=seconds, session_config=session_config,
                       why_no_sessions=why)


def load_feature_set(db_path: str | Path, instrument: str, granularity: str = "M1") -> FeatureSet:
    """Read a feature set for training, validation or live; refuses a spec mismatch."""
    inst = get_instrument(instrument)
    path = Path(db_path)
    if not path.exists():
        raise FeatureStoreError(f"feature store {path} does not exist: run `micro data features` first")
    with BarStore(path, read_only=True) as store:
        con = store.con
        tables = {row[0] for row in con.execute("SELECT table_name FROM information_schema.tables").fetchall()}
        if "feature_sets" not in tables:
            raise FeatureStoreError(f"{path} has no feature store yet: run `micro data features`")
        row = con.execute(
            "SELECT feature_spec_version, feature_names, session_config, unit FROM feature_sets "
            "WHERE instrument = ? AND granularity = ?",
            [inst.name, granularity],
        ).fetchall()
        row = row[0] if row else None
        if row is None:
            raise FeatureStoreError(f"no feature set for {inst.name} {granularity} in {path}")
        version, names, config, unit = row
        names = tuple(json.loads(names))
        if (unit or "pips") != inst.unit:
            raise FeatureSpecMismatch(
                f"feature set {inst.name} {granularity} in {path} was built in {unit or 'pips'}; {inst.name} counts "
                f"in {inst.unit} now (the instrument table): rebuild the feature store (micro data features)")
        if version != FEATURE_SPEC_VERSION or names != TEMPORAL_FEATURES:
            raise FeatureSpecMismatch(
                f"feature set {inst.name} {granularity} in {path} was built with spec {version} {list(names)}; "
                f"this code uses {FEATURE_SPEC_VERSION} {list(TEMPORAL_FEATURES)}: rebuild the feature store"
            )
        frame = con.execute(
            "SELECT * FROM micro_features WHERE instrument = ? AND granularity = ? ORDER BY bar_index",
            [inst.name, granularity],
        ).df()
        session_frame = con.execute(
            "SELECT split, start_index FROM sessions WHERE instrument = ? AND granularity = ? ORDER BY start_index",
            [inst.name, granularity],
        ).df()
        drift = None
        if "synthetic_drift" in tables:
            drift_frame = con.execute(
                "SELECT ts, expected_drift_pips FROM synthetic_drift WHERE instrument = ? AND granularity = ? "
                "ORDER BY ts", [inst.name, granularity]).df()
            drift = drift_frame
    bars = Bars.from_frame(frame)
    expected_drift = _aligned_drift(drift, bars.ts) if drift is not None else None
    if expected_drift is not None and inst.in_bps:  # the generator's drift is a price move in pips
        expected_drift = inst.to_pips(expected_drift * inst.pip_size, bars.close)
    sessions = {
        split: session_frame.loc[session_frame["split"] == split, "start_index"].to_numpy(np.int64) for split in SPLITS
    }
    return FeatureSet(
        instrument=inst.name,
        granularity=granularity,
        feature_spec_version=version,
        feature_names=names,
        bars=bars,
        features=frame[list(TEMPORAL_FEATURES)].to_numpy(np.float32),
        outcomes=frame["outcome"].to_numpy(np.int8),
        sessions=sessions,
        session_config=SessionConfig(**json.loads(config)),
        expected_drift=expected_drift,
    )


def _aligned_drift(frame, ts_ns: np.ndarray) -> np.ndarray | None:
    """The drift of every bar, or None unless every bar has one (bars imported later, say)."""
    drift_ts = frame["ts"].to_numpy("datetime64[ns]").astype(np.int64)
    index = np.searchsorted(drift_ts, ts_ns)
    inside = index < len(drift_ts)
    if not inside.all() or not np.array_equal(drift_ts[index], ts_ns):
        return None
    return frame["expected_drift_pips"].to_numpy(np.float64)[index]
