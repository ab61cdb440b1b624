"""Sessions (gaps, weekends, boundaries), the time split, the feature store
and the synthetic market it is built from by default."""

from __future__ import annotations

import json

import duckdb
import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.cli.data import main as data_cli
from shared.config import SessionConfig, SyntheticMarketConfig
from shared.core.accounting import Book, fill, mark
from shared.core.calendar import FX
from shared.data.bars import NS_PER_MINUTE, Bars
from shared.data.store import BarStore
from shared.data.synthetic import generate_bars
from shared.features import FEATURE_SPEC_VERSION, TEMPORAL_FEATURES
from shared.features.micro import market_outcomes, temporal_features
from shared.features.position import position_features
from shared.features.sessions import split_sessions, valid_session_starts
from shared.features.store import FeatureSpecMismatch, FeatureStoreError, build_feature_store, load_feature_set

PIP = 0.01
SMALL = SessionConfig(length_bars=10, max_gap_minutes=10, min_mean_bar_range_pips=1.0, warmup_bars=0)


def _bars(minutes: np.ndarray, start: str = "2024-01-08 00:00", range_pips: float = 2.0) -> Bars:
    ts = pd.Timestamp(start).value + np.asarray(minutes, dtype=np.int64) * NS_PER_MINUTE
    close = np.full(len(ts), 170.0)
    half = range_pips * PIP / 2
    return Bars(ts, close, close + half, close - half, close, np.ones(len(ts)))


def test_session_boundaries_gaps_and_ranges():
    minutes = np.concatenate([np.arange(20), 20 + 9 + np.arange(20)])  # a 10-minute step: allowed
    bars = _bars(minutes)
    valid = valid_session_starts(bars.ts, bars.high, bars.low, PIP, SMALL)
    # the first start has 10 bars of range behind it; the last leaves exactly 10 bars
    assert not valid[:9].any() and valid[9 : 40 - 10 + 1].all() and not valid[40 - 10 + 1 :].any()

    minutes = np.concatenate([np.arange(20), 20 + 10 + np.arange(20)])  # an 11-minute step between bars 19 and 20
    valid = valid_session_starts(*(lambda b: (b.ts, b.high, b.low))(_bars(minutes)), PIP, SMALL)
    assert valid[9:11].all()     # sessions [9..18], [10..19] end before the gap
    assert not valid[11:20].any()  # any session holding bars 19 and 20 crosses it
    assert valid[20:31].all()


def test_sessions_never_hold_weekend_bars_or_dead_markets():
    friday = pd.Timestamp("2024-01-12 21:41")
    bars = _bars(np.arange(40), start=str(friday))  # 21:41 .. 22:20 Friday: the last 21 are after the close
    valid = valid_session_starts(bars.ts, bars.high, bars.low, PIP, SMALL)
    assert valid[9] and not valid[:9].any() and not valid[10:].any()
    quiet = _bars(np.arange(30), range_pips=0.5)
    assert not valid_session_starts(quiet.ts, quiet.high, quiet.low, PIP, SMALL).any()
    warm = SessionConfig(length_bars=10, warmup_bars=15)
    busy = _bars(np.arange(30))
    assert np.flatnonzero(valid_session_starts(busy.ts, busy.high, busy.low, PIP, warm)).min() == 15


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), start=st.integers(0, 79))
def test_no_session_is_chosen_by_its_future_prices(seed, start):
    """Regression: the range filter read the session's own bars, so which sessions existed
    depended on the prices after their start. Now any change to the prices after a start
    leaves its existence as it was."""
    rng = np.random.default_rng(seed)
    minutes = np.cumsum(rng.choice([1, 1, 1, 1, 2, 12], size=90))  # an occasional gap
    close = 170 + np.cumsum(rng.normal(0, 0.01, 90))
    spread = rng.uniform(0.001, 0.01, 90)  # bar ranges around the 1-pip threshold
    bars = _bars(minutes)
    valid = valid_session_starts(bars.ts, close + spread, close - spread, PIP, SMALL)
    future = spread.copy()
    future[start + 1 :] = rng.uniform(0.0, 0.012, 90 - start - 1)  # other prices after the start
    changed = valid_session_starts(bars.ts, close + future, close - future, PIP, SMALL)
    assert changed[start] == valid[start]


def test_split_is_by_time_with_a_purge_gap_and_no_overlap(market_bars):
    cfg = SessionConfig()
    valid = valid_session_starts(market_bars.ts, market_bars.high, market_bars.low, PIP, cfg)
    splits = split_sessions(market_bars.ts, valid, cfg)
    assert all(len(splits[s]) > 0 for s in ("train", "validation", "test"))
    end = {s: market_bars.ts[splits[s] + cfg.length_bars - 1] for s in splits}
    begin = {s: market_bars.ts[splits[s]] for s in splits}
    purge = cfg.purge_minutes * NS_PER_MINUTE
    assert begin["validation"].min() >= end["train"].max() + purge
    assert begin["test"].min() >= end["validation"].max() + purge
    for name in ("validation", "test"):  # evaluation sessions do not overlap
        assert np.all(np.diff(splits[name]) >= cfg.length_bars)
    assert np.all(np.diff(splits["train"]) >= cfg.train_stride_bars)
    # every bar of every session: no gap over 10 minutes, market open
    for starts in splits.values():
        idx = starts[:, None] + np.arange(cfg.length_bars)
        assert np.diff(market_bars.ts[idx], axis=1).max() <= 10 * NS_PER_MINUTE
        assert (~FX.closed(market_bars.ts[idx])).all()


def test_walk_forward_windows_are_consecutive_anchored_and_leave_test_alone(market_bars):
    plain = SessionConfig()
    valid = valid_session_starts(market_bars.ts, market_bars.high, market_bars.low, PIP, plain)
    test = split_sessions(market_bars.ts, valid, plain)["test"]
    purge = plain.purge_minutes * NS_PER_MINUTE
    windows = [split_sessions(market_bars.ts, valid, SessionConfig(walk_forward_windows=3, walk_forward_window=k))
               for k in range(3)]
    for k, split in enumerate(windows):
        np.testing.assert_array_equal(split["test"], test)  # the test split never moves
        assert len(split["train"]) and len(split["validation"])
        # each window selects on bars after everything it trains on
        train_end = market_bars.ts[split["train"] + plain.length_bars - 1].max()
        assert market_bars.ts[split["validation"]].min() >= train_end + purge
        assert market_bars.ts[split["validation"] + plain.length_bars - 1].max() < market_bars.ts[test].min()
        if k:  # anchored: the train set grows, and this window's train covers the last one's validation
            assert set(windows[k - 1]["train"]) < set(split["train"])
            assert market_bars.ts[split["validation"]].min() > market_bars.ts[windows[k - 1]["validation"]].max()
    # consecutive validation windows: the last ends where the plain validation split ends
    last_plain = split_sessions(market_bars.ts, valid, plain)["validation"].max()
    assert abs(windows[-1]["validation"].max() - last_plain) < plain.eval_stride_bars
    with pytest.raises(ValueError, match="walk_forward_window must be in 0..2"):
        SessionConfig(walk_forward_windows=3, walk_forward_window=3)


def test_bad_session_config_is_a_clear_error():
    with pytest.raises(ValueError, match="fraction"):
        SessionConfig(train_fraction=0.9, validation_fraction=0.2)
    with pytest.raises(ValueError, match="length_bars"):
        SessionConfig(length_bars=1)


def test_position_features_follow_a_trade():
    book = Book.flat(2)
    assert np.array_equal(position_features(book), np.zeros((2, 6), np.float32))
    # long at 170.02 (ask), marked at mid 170.00: -2 pips
    fill(book, np.array([1, 0]), np.array([170.02, 0.0]), PIP, np.array([170.0, 0.0]))
    for price in (170.30, 170.10, 170.20):  # up 28, then back to 8 (20 from peak), then 18
        mark(book, np.array([price, 170.0]), PIP)
    f = position_features(book)
    assert f[1].tolist() == [0.0] * 6
    np.testing.assert_allclose(
        f[0],
        [1.0, np.tanh(18 / 100), np.tanh(3 / 100), np.tanh(10 / 100), np.tanh(20 / 100), np.tanh((0 + 20 + 10) / 100)],
        rtol=1e-5,
    )
    fill(book, np.array([-1, 0]), np.array([170.18, 0.0]), PIP, np.array([170.20, 0.0]))
    assert np.array_equal(position_features(book), np.zeros((2, 6), np.float32))


def test_position_features_show_size():
    book = Book.flat(1)
    fill(book, np.array([2]), np.array([170.02]), PIP, np.array([170.0]))
    mark(book, np.array([170.10]), PIP)
    f = position_features(book, max_units=3)
    np.testing.assert_allclose(f[0, :2], [2 / 3, np.tanh(2 * 8 / 100)], rtol=1e-6)  # 2 units, 8 pips each


def test_synthetic_market_is_seeded_gbpjpy_like_and_closed_at_weekends():
    config = SyntheticMarketConfig(weeks=3, seed=5)
    a, b = generate_bars(config), generate_bars(config)
    np.testing.assert_array_equal(a.close, b.close)
    assert not np.array_equal(a.close, generate_bars(SyntheticMarketConfig(weeks=3, seed=6)).close)
    assert (~FX.closed(a.ts)).all()
    assert 140 <= a.low.min() and a.high.max() <= 200
    assert np.all(a.high >= np.maximum(a.open, a.close)) and np.all(a.low <= np.minimum(a.open, a.close))
    np.testing.assert_array_equal(np.round(a.close, 3), a.close)  # quoted to a pipette
    mean_range = ((a.high - a.low) / PIP).mean()
    assert 2.0 < mean_range < 6.0  # the product notes' GBPJPY: 3.87 pips
    moves = np.diff(a.close) / PIP
    kurtosis = ((moves - moves.mean()) ** 4).mean() / moves.var() ** 2
    assert kurtosis > 4  # fat tails
    hour = (a.ts // NS_PER_MINUTE // 60) % 24
    by_hour = pd.Series(np.abs(np.concatenate([[0], moves]))).groupby(hour).mean()
    assert by_hour[14] > 1.5 * by_hour[2]  # the London/New York overlap is busier than Asia


def test_planted_edge_makes_momentum_predictive():
    """With the edge, the sign of the last 15 bars' move predicts the next
    15 bars' move; without it, it does not."""
    def predictive_pips(edge: float) -> float:
        bars = generate_bars(SyntheticMarketConfig(weeks=20, seed=3, edge_strength=edge))
        c = bars.close / PIP
        past = c[15:-15] - c[:-30]
        future = c[30:] - c[15:-15]
        return float((np.sign(past) * future).mean())

    assert abs(predictive_pips(0.0)) < 0.3
    assert predictive_pips(0.3) > 2.0


def test_bad_synthetic_config_is_a_clear_error():
    with pytest.raises(ValueError, match="edge_strength"):
        SyntheticMarketConfig(edge_strength=2.0)
    with pytest.raises(ValueError, match="unknown instrument"):
        SyntheticMarketConfig(instrument="XAUXAG")


def test_feature_store_round_trip_and_spec_check(tmp_path, capsys):
    db = tmp_path / "m.duckdb"
    with pytest.raises(FeatureStoreError, match="does not exist"):
        load_feature_set(db, "GBPJPY")
    assert data_cli(["--db", str(db), "--quiet", "synth", "--weeks", "4", "--seed", "2"]) == 0
    with pytest.raises(FeatureStoreError, match="no feature store"):
        load_feature_set(db, "GBPJPY")
    assert data_cli(["--db", str(db), "--quiet", "features"]) == 0
    assert "feature store" in capsys.readouterr().out

    fs = load_feature_set(db, "GBPJPY")
    with BarStore(db, read_only=True) as store:
        bars = store.load("GBPJPY", "M1")
    assert fs.feature_spec_version == FEATURE_SPEC_VERSION and fs.feature_names == TEMPORAL_FEATURES
    np.testing.assert_array_equal(fs.bars.ts, bars.ts)
    np.testing.assert_array_equal(fs.features, temporal_features(bars, PIP))
    np.testing.assert_array_equal(fs.outcomes, market_outcomes(bars, PIP))
    assert len(fs.require_sessions("train")) > len(fs.require_sessions("validation")) > 0

    # a walk-forward window as the store's split: validation right after train, test unchanged
    assert data_cli(["--db", str(db), "--quiet", "features", "--walk-forward-windows", "2",
                     "--walk-forward-window", "0"]) == 0
    window = load_feature_set(db, "GBPJPY")
    np.testing.assert_array_equal(window.sessions["test"], fs.sessions["test"])
    assert window.sessions["validation"].max() < fs.sessions["validation"].min()
    assert data_cli(["--db", str(db), "--quiet", "features", "--walk-forward-windows", "2",
                     "--walk-forward-window", "2"]) == 2
    assert "walk_forward_window must be in 0..1" in capsys.readouterr().err

    # rebuilding replaces the set instead of adding to it
    assert data_cli(["--db", str(db), "--quiet", "features"]) == 0
    with duckdb.connect(str(db), read_only=True) as con:
        assert con.execute("SELECT count(*) FROM micro_features").fetchall()[0][0] == len(bars)
        assert con.execute("SELECT count(*) FROM feature_sets").fetchall()[0][0] == 1
    with duckdb.connect(str(db)) as con:
        con.execute("UPDATE feature_sets SET feature_spec_version = 'micro-v0'")
    with pytest.raises(FeatureSpecMismatch, match="micro-v0"):
        load_feature_set(db, "GBPJPY")


def test_empty_split_and_missing_bars_are_clear_errors(tmp_path, capsys):
    db = tmp_path / "m.duckdb"
    assert data_cli(["--db", str(db), "--quiet", "features"]) == 2
    assert "no GBPJPY M1 bars" in capsys.readouterr().err
    assert data_cli(["--db", str(db), "--quiet", "synth", "--weeks", "1"]) == 0
    build_feature_store(db, "GBPJPY", progress=False)
    fs = load_feature_set(db, "GBPJPY")
    with pytest.raises(FeatureStoreError, match="has no sessions"):
        fs.require_sessions("test")  # one week: warm-up plus purge leave no test sessions


def test_demo_builds_the_embedded_default(tmp_path, capsys):
    db = tmp_path / "m.duckdb"
    assert data_cli(["--db", str(db), "--quiet", "demo"]) == 0
    out = capsys.readouterr().out
    counts = json.loads(out.split("sessions ")[1].split(" ->")[0])
    assert min(counts.values()) > 0
