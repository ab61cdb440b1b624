"""Every bar size gets sessions with its own defaults, and a store without sessions says why."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from shared.cli.data import main as data_main
from shared.config import SESSION_DEFAULTS_BY_BAR_SIZE, NetworkConfig, SessionConfig, TrainingConfig, session_config_for
from shared.core.bar_sizes import check_granularity
from shared.core.calendar import FX, bar_in_closed_market
from shared.data.bars import NS_PER_MINUTE, Bars
from shared.data.store import BarStore
from shared.features.sessions import valid_session_starts, why_no_sessions
from shared.features.store import build_feature_store, load_feature_set


def fx_bars(granularity: str, weeks: int, seed: int = 0) -> Bars:
    """A random walk on the FX week's bars (Sunday 22:00 to Friday 22:00 UTC) of this size."""
    minutes = check_granularity(granularity)
    first_open = pd.Timestamp("2020-01-05 22:00").value  # a Sunday
    if granularity == "D":  # daily files are dated by day, Monday to Friday, 00:00 UTC
        days = pd.bdate_range("2010-01-04", periods=weeks * 5)
        ts = days.as_unit("ns").asi8.astype(np.int64)
    else:
        ts = np.arange(first_open, first_open + weeks * 7 * 1440 * NS_PER_MINUTE, minutes * NS_PER_MINUTE)
        ts = ts[~FX.closed(ts)]
    rng = np.random.default_rng(seed)
    step_pips = 3.0 * np.sqrt(minutes)
    close = 1.1 + np.cumsum(rng.normal(0, step_pips, len(ts))) * 0.0001
    open_ = np.concatenate([[close[0]], close[:-1]])
    spread = np.abs(rng.normal(0, step_pips, len(ts))) * 0.0001
    return Bars(ts, open_, np.maximum(open_, close) + spread, np.minimum(open_, close) - spread, close,
                np.full(len(ts), 100.0))


def store_with(tmp_path, granularity: str, bars: Bars):
    db = tmp_path / "market.duckdb"
    with BarStore(db) as store:
        store.upsert("EURUSD", granularity, bars)
    return db


@pytest.mark.parametrize("granularity,weeks", [("M5", 8), ("M15", 16), ("H1", 40), ("H2", 70), ("H4", 130),
                                               ("H12", 400), ("D", 520)])
def test_each_bar_size_has_sessions_in_every_split_with_its_defaults(tmp_path, granularity, weeks):
    db = store_with(tmp_path, granularity, fx_bars(granularity, weeks))
    config = session_config_for(granularity, SessionConfig())
    report = build_feature_store(db, "EURUSD", granularity, session_config=config, progress=False)
    assert all(count > 0 for count in report.sessions.values()), (report.sessions, report.why_no_sessions)
    assert report.why_no_sessions == []
    features = load_feature_set(db, "EURUSD", granularity)
    assert features.session_config.length_bars == SESSION_DEFAULTS_BY_BAR_SIZE[granularity]["length_bars"]
    starts = features.sessions["validation"]
    # evaluation sessions never overlap
    assert np.all(np.diff(starts) >= config.eval_stride_bars)


def test_hourly_bars_with_the_minute_defaults_have_no_sessions_and_say_which_setting(tmp_path):
    db = store_with(tmp_path, "H1", fx_bars("H1", 40))
    report = build_feature_store(db, "EURUSD", "H1", session_config=SessionConfig(), progress=False)
    assert report.sessions == {"train": 0, "validation": 0, "test": 0}
    text = "\n".join(report.why_no_sessions)
    assert "typical step 60 min" in text
    assert "DATA_SESSIONS__MAX_GAP_MINUTES" in text and "--granularity" in text


def test_too_little_history_names_the_warmup(tmp_path):
    bars = fx_bars("H1", 6)  # 720 bars: less than the 1,500-bar warm-up
    config = session_config_for("H1", SessionConfig())
    valid = valid_session_starts(bars.ts, bars.high, bars.low, 0.0001, config, 60)
    assert not valid.any()
    lines = why_no_sessions(bars.ts, bars.high, bars.low, 0.0001, config, {}, 60)
    assert any("too few bars" in line and "warmup_bars 1500" in line for line in lines)


def test_a_split_too_short_for_a_session_is_named(tmp_path):
    bars = fx_bars("H1", 40)
    config = session_config_for("H1", SessionConfig(validation_fraction=0.004, train_fraction=0.9))
    valid = valid_session_starts(bars.ts, bars.high, bars.low, 0.0001, config, 60)
    from shared.features.sessions import split_sessions

    sessions = split_sessions(bars.ts, valid, config)
    assert len(sessions["validation"]) == 0 and len(sessions["train"]) > 0
    lines = why_no_sessions(bars.ts, bars.high, bars.low, 0.0001, config, sessions, 60)
    assert any("the validation split is" in line and "VALIDATION_FRACTION" in line for line in lines)


def test_a_value_the_user_set_wins_over_the_bar_size_default():
    config = session_config_for("H1", SessionConfig(length_bars=48), set_by_user={"length_bars"})
    assert config.length_bars == 48
    assert config.max_gap_minutes == SESSION_DEFAULTS_BY_BAR_SIZE["H1"]["max_gap_minutes"]
    assert session_config_for("M1", SessionConfig()) == SessionConfig()  # M1 is the dataclass's defaults


def test_a_daily_bar_dated_sunday_is_open_an_hourly_one_is_not():
    # a broker whose day starts at 00:00 UTC dates a short Sunday bar (the market opens at 17:00
    # New York, 21:00 UTC in summer): the daily bar reaches into the open week, an hourly bar at
    # the same stamp lies inside the weekend
    thursday = pd.Timestamp("2024-06-06 00:00").value
    ts = thursday + np.arange(30, dtype=np.int64) * 1440 * NS_PER_MINUTE
    ts = ts[~bar_in_closed_market(FX, ts, 1440)]  # Saturdays: all of the day is closed
    ones = np.ones(len(ts))
    config = SessionConfig(length_bars=3, warmup_bars=0, max_gap_minutes=4 * 1440, min_mean_bar_range_pips=0.0)
    sunday = 2  # Thursday, Friday, Sunday: the first start with a full trailing window
    assert pd.Timestamp(int(ts[sunday])).day_name() == "Sunday"
    assert valid_session_starts(ts, ones * 2, ones, 0.0001, config, bar_minutes=1440)[sunday]
    assert not valid_session_starts(ts, ones * 2, ones, 0.0001, config, bar_minutes=60)[sunday]


def test_features_command_uses_the_bar_size_and_refuses_a_store_without_sessions(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MICRO_ENV_FILE", str(tmp_path / "absent.env"))
    db = store_with(tmp_path, "H1", fx_bars("H1", 40))
    assert data_main(["--quiet", "--db", str(db), "features", "--instrument", "EURUSD", "--granularity", "1h"]) == 0
    out = capsys.readouterr().out
    assert "sessions: 24 bars" in out and "(H1 settings" in out
    monkeypatch.setenv("DATA_SESSIONS__MAX_GAP_MINUTES", "30")
    assert data_main(["--quiet", "--db", str(db), "features", "--instrument", "EURUSD", "--granularity", "H1"]) == 2
    err = capsys.readouterr().err
    assert "no train or validation sessions" in err and "max_gap_minutes is 30" in err
    assert "left as it was" in err
    kept = load_feature_set(db, "EURUSD", "H1")  # the good feature set of the first run, untouched
    assert kept.session_config.max_gap_minutes == 360 and len(kept.sessions["train"]) > 0


def test_a_short_training_run_on_hourly_bars(tmp_path):
    from shared.training.trainer import Trainer

    db = store_with(tmp_path, "H1", fx_bars("H1", 40))
    build_feature_store(db, "EURUSD", "H1", session_config=session_config_for("H1", SessionConfig()), progress=False)
    features = load_feature_set(db, "EURUSD", "H1")
    trainer = Trainer(features, tmp_path / "ck", TrainingConfig(network=NetworkConfig(tcn_channels=8, hidden=16),
                                                                 episodes_per_iteration=2, checkpoint_interval_episodes=2))
    try:
        report = trainer.run_iteration()
        assert trainer.config.env.episode_bars == 24  # one H1 session: a trading day
        assert trainer.env.steps_per_episode == 23  # a decision per bar but the last (it closes)
        assert report.episodes == 2 and report.decisions == 2 * 23 and report.checkpoint is not None
    finally:
        trainer.close()


def test_live_decides_hourly_bars_of_an_hourly_model(tmp_path):
    from datetime import datetime, timezone

    from shared.live.brokers.paper import PaperBroker
    from shared.live.feeds import ReplayFeed
    from shared.live.journal import Journal
    from shared.live.trader import LiveTrader
    from tests.live_helpers import load, trading_checkpoint

    db = store_with(tmp_path, "H1", fx_bars("H1", 40))
    build_feature_store(db, "EURUSD", "H1", session_config=session_config_for("H1", SessionConfig()), progress=False)
    features = load_feature_set(db, "EURUSD", "H1")
    model = load(trading_checkpoint(features, tmp_path / "ck", 64))
    assert model.payload["granularity"] == "H1"
    feed = ReplayFeed(features.bars, int(features.sessions["test"][0]), granularity="H1")
    trader = LiveTrader("EURUSD", PaperBroker(tmp_path / "paper.json", spread_pips=1.0, pip_size=0.0001),
                        Journal(tmp_path / "journal.duckdb"), model, feed.history(), simulations=2, granularity="H1")
    trader.reconcile()
    decisions = []
    for _ in range(6):
        bars = feed.next_bars()
        now = datetime.fromtimestamp(feed.now_ns() / 1e9, timezone.utc)
        assert feed.now_ns() == int(bars.ts[-1]) + 60 * NS_PER_MINUTE  # an hourly bar is decided when it closes
        decisions.append(trader.on_bar(bars, now))
    # an hour-old bar is fresh at H1 (stale_bars counts bars of the model's size), so the model decides
    assert all(d.reason not in ("stale_data",) for d in decisions)
    assert any(d.status in ("FILLED", "no_order") for d in decisions), [d.reason for d in decisions]


def test_the_network_window_is_a_setting_that_training_validation_and_live_follow(tmp_path):
    from datetime import datetime, timezone

    from shared.config import ValidationConfig
    from shared.live.brokers.paper import PaperBroker
    from shared.live.feeds import ReplayFeed
    from shared.live.journal import Journal
    from shared.live.trader import LiveTrader
    from shared.training.trainer import Trainer
    from shared.validation.validator import validate
    from shared.volume.candidates import load_candidate

    db = store_with(tmp_path, "H1", fx_bars("H1", 40))
    build_feature_store(db, "EURUSD", "H1", session_config=session_config_for("H1", SessionConfig()), progress=False)
    features = load_feature_set(db, "EURUSD", "H1")
    config = TrainingConfig(network=NetworkConfig(tcn_channels=8, hidden=16, window_bars=12), episodes_per_iteration=2,
                            checkpoint_interval_episodes=2)
    assert config.env.window_bars == 12  # derived: the environment shows what the network sees
    trainer = Trainer(features, tmp_path / "ck", config)
    try:
        assert trainer.env.reset(trainer.starts[:2]).temporal.shape[1:] == (12, 9)
        report = trainer.run_iteration()
        assert trainer.replay.sample(4, np.random.default_rng(0)).temporal.shape[1:] == (12, 9)
    finally:
        trainer.close()
    candidate = load_candidate(tmp_path / "ck" / "training" / report.checkpoint)
    assert candidate.config.network.window_bars == 12 and candidate.env_config.window_bars == 12
    assert validate(candidate, features, ValidationConfig(simulations=2, mc_runs=20, max_sessions=2)).sessions == 2
    feed = ReplayFeed(features.bars, int(features.sessions["test"][0]), granularity="H1")
    trader = LiveTrader("EURUSD", PaperBroker(tmp_path / "paper.json", spread_pips=1.0, pip_size=0.0001),
                        Journal(tmp_path / "journal.duckdb"), candidate, feed.history(), simulations=2, granularity="H1")
    trader.reconcile()
    trader.on_bar(feed.next_bars(), datetime.fromtimestamp(feed.now_ns() / 1e9, timezone.utc))
    temporal, _ = trader.observation()
    assert temporal.shape == (1, 12, 9)
    last = feed.position - 1
    np.testing.assert_array_equal(temporal[0], features.features[last - 11: last + 1])


def test_a_window_longer_than_the_warm_up_is_refused():
    with pytest.raises(ValueError, match="window_bars must be at most 1500"):
        NetworkConfig(window_bars=1501)


def test_the_stale_feed_flatten_waits_for_the_next_bar_of_the_models_size(tmp_path):
    from datetime import datetime, timedelta, timezone

    from shared.config import RiskConfig
    from shared.live.brokers.paper import PaperBroker
    from shared.live.journal import Journal
    from shared.live.trader import LiveTrader
    from tests.live_helpers import load, trading_checkpoint

    db = store_with(tmp_path, "H1", fx_bars("H1", 40))
    build_feature_store(db, "EURUSD", "H1", session_config=session_config_for("H1", SessionConfig()), progress=False)
    features = load_feature_set(db, "EURUSD", "H1")
    model = load(trading_checkpoint(features, tmp_path / "ck", 64))
    # the last bar before a weekend: Friday 16:00 New York (20:00 UTC in summer, 21:00 in winter)
    fridays = np.flatnonzero(FX.closed(features.bars.ts + 60 * NS_PER_MINUTE))
    end = int(fridays[fridays > 2000][0]) + 1
    paper = PaperBroker(tmp_path / "paper.json", spread_pips=1.0, pip_size=0.0001)
    paper.mark(float(features.bars.close[end - 1]))
    trader = LiveTrader("EURUSD", paper, Journal(tmp_path / "journal.duckdb"), model, features.bars[:end], simulations=2,
                        granularity="H1", risk=RiskConfig(flatten_stale_seconds=600.0))
    paper.market_order("EURUSD", 1, "open-by-hand")
    trader.reconcile()
    assert trader.position == 1
    ts = int(features.bars.ts[end - 1])
    closes = datetime.fromtimestamp(ts / 1e9 + 3600, timezone.utc)
    # the market closes at the bar's close: no stall over the weekend, nor in the first bar after the open
    assert trader.risk_check(ts, closes - timedelta(minutes=30)) is None
    reopens = closes + timedelta(days=2)
    assert not FX.market_open(reopens - timedelta(minutes=1)) and FX.market_open(reopens)
    assert trader.risk_check(ts, reopens + timedelta(minutes=65)) is None, "the first H1 bar closes an hour after the open"
    assert trader.position == 1
    assert trader.risk_check(ts, reopens + timedelta(minutes=75)) == "stale_feed"
    assert paper.snapshot("EURUSD").units == 0


def test_every_bar_size_we_store_has_session_defaults_and_any_spelling_configures_it(monkeypatch, tmp_path):
    from shared.cli.data import DataSettings
    from shared.core.bar_sizes import GRANULARITY_MINUTES
    from shared.core.settings import load_settings

    assert set(SESSION_DEFAULTS_BY_BAR_SIZE) == set(GRANULARITY_MINUTES)
    for granularity, minutes in GRANULARITY_MINUTES.items():
        config = session_config_for(granularity, SessionConfig())
        assert config.max_gap_minutes >= 2 * minutes, granularity  # a step of one bar is never a gap
    environ = {"MICRO_ENV_FILE": str(tmp_path / "absent.env"), "MICRO_GRANULARITY": "1h"}
    assert load_settings(DataSettings, environ).granularity == "H1"
    with pytest.raises(ValueError, match="MICRO_GRANULARITY.*7 minutes long are not a granularity we store"):
        load_settings(DataSettings, {**environ, "MICRO_GRANULARITY": "7m"})


def test_the_baselines_play_sessions_of_the_bar_sizes_length(tmp_path):
    from shared.env.baselines import disjoint_train_sessions, reference_on

    db = store_with(tmp_path, "H1", fx_bars("H1", 40))
    build_feature_store(db, "EURUSD", "H1", session_config=session_config_for("H1", SessionConfig()), progress=False)
    features = load_feature_set(db, "EURUSD", "H1")
    train = disjoint_train_sessions(features)
    assert np.all(np.diff(train) >= 24)  # one H1 session apart: each train bar once
    reference = reference_on(features, features.sessions["test"])  # the last test session ends near the data's end
    assert np.isfinite(reference.momentum_pips) and reference.oracle_pips is None


def test_live_stands_aside_on_bars_that_open_elsewhere_in_their_period_than_the_models(tmp_path):
    from datetime import datetime, timedelta, timezone

    from shared.live.brokers.paper import PaperBroker
    from shared.live.journal import Journal
    from shared.live.trader import LiveTrader
    from tests.live_helpers import load, trading_checkpoint

    db = store_with(tmp_path, "D", fx_bars("D", 520))  # a file's daily bars: 00:00 UTC
    build_feature_store(db, "EURUSD", "D", session_config=session_config_for("D", SessionConfig()), progress=False)
    features = load_feature_set(db, "EURUSD", "D")
    model = load(trading_checkpoint(features, tmp_path / "ck", 64))
    assert model.payload["bar_phase_minutes"] == 0

    def trader_on(history: Bars, name: str) -> LiveTrader:
        trader = LiveTrader("EURUSD", PaperBroker(tmp_path / f"{name}.json", spread_pips=1.0, pip_size=0.0001),
                            Journal(tmp_path / f"{name}.duckdb"), model, history, simulations=2, granularity="D")
        trader.reconcile()
        return trader

    end = int(features.sessions["test"][0])
    history = features.bars[:end]
    # OANDA's dailies open at 17:00 New York: the same days, stamped three hours earlier in winter
    oanda = Bars(history.ts - 3 * 3600 * 10**9, history.open, history.high, history.low, history.close, history.volume)
    for name, bars, reason in (("file", history, None), ("oanda", oanda, "bars_misaligned")):
        trader = trader_on(bars[:-1], name)
        now = datetime.fromtimestamp(int(bars.ts[-1]) / 1e9, timezone.utc) + timedelta(days=1)
        decision = trader.on_bar(bars[-1:], now)
        assert (decision.reason == "bars_misaligned") == (reason is not None), (name, decision)
        assert (trader.status()["bars_misaligned"] is not None) == (reason is not None)
