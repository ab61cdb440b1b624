"""Markets as data: the calendars (FX on New York's clock, crypto 24/7), the instrument table a user
extends by a file, and the synthetic market on each calendar."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
import pytest

from shared.config import NetworkConfig, SessionConfig, TrainingConfig, ValidationConfig
from shared.core.calendar import CRYPTO, FX, closure_steps
from shared.core.instruments import INSTRUMENTS, InstrumentTableError, get_instrument, load_instruments
from shared.data.bars import NS_PER_MINUTE
from shared.data.store import BarStore, write_expected_drift
from shared.data.synthetic import generate_market, synthetic_market_for
from shared.features.store import build_feature_store, load_feature_set

ROOT = Path(__file__).resolve().parents[1]
NEW_YORK = ZoneInfo("America/New_York")


def _fx_open_by_hand(now: datetime) -> bool:
    ny = now.astimezone(NEW_YORK)
    weekday, minutes = ny.weekday(), ny.hour * 60 + ny.minute
    return not (weekday == 5 or (weekday == 6 and minutes < 17 * 60) or (weekday == 4 and minutes >= 17 * 60))


def test_the_fx_calendar_follows_new_york_through_both_clock_changes():
    stamps = pd.date_range("2024-01-01", "2025-01-01", freq="17min", tz="UTC").as_unit("ns")
    closed = FX.closed(stamps.asi8)
    assert [not c for c in closed] == [_fx_open_by_hand(t.to_pydatetime()) for t in stamps]
    # the week opens at 22:00 UTC in winter and 21:00 UTC in US summer
    opens = pd.to_datetime(FX.week_opens(pd.Timestamp("2024-03-01"), 3))
    assert [str(t) for t in opens] == ["2024-03-03 22:00:00", "2024-03-10 21:00:00", "2024-03-17 21:00:00"]


def test_crypto_never_closes_and_its_day_rolls_at_midnight_utc():
    saturday = datetime(2024, 6, 8, 12, tzinfo=timezone.utc)
    assert CRYPTO.market_open(saturday) and not FX.market_open(saturday)
    assert not CRYPTO.closed(pd.date_range("2024-01-01", periods=10_000, freq="7min").as_unit("ns").asi8).any()
    assert CRYPTO.trading_day_start(saturday) == pd.Timestamp("2024-06-08 00:00")
    assert CRYPTO.next_trading_day_start(saturday) == pd.Timestamp("2024-06-09 00:00")
    assert FX.trading_day_start(datetime(2024, 6, 7, 20, 30, tzinfo=timezone.utc)) == pd.Timestamp("2024-06-06 21:00")


def test_a_summer_weekend_is_a_closure_not_an_outage(tmp_path):
    # hourly EURUSD in June: the last bar Friday 20:00 UTC, the next Sunday 21:00 UTC (17:00 New York)
    ts = pd.to_datetime(["2024-06-07 19:00", "2024-06-07 20:00", "2024-06-09 21:00", "2024-06-09 22:00",
                         "2024-06-10 03:00"]).as_unit("ns").asi8
    assert closure_steps(FX, ts, 60).tolist() == [False, True, False, False]
    assert not closure_steps(CRYPTO, ts, 60).any()
    closes = np.linspace(1.08, 1.09, len(ts))
    with BarStore(tmp_path / "m.duckdb") as store:
        from shared.data.bars import Bars

        store.upsert("EURUSD", "H1", Bars(ts, closes, closes + 0.001, closes - 0.001, closes, np.ones(len(ts))))
        gaps = store.gaps("EURUSD", "H1")
    assert [(str(g.after), g.weekend) for g in gaps] == [("2024-06-07 20:00:00", True), ("2024-06-09 22:00:00", False)]


def test_the_instrument_table_is_data_and_a_user_file_extends_it(tmp_path):
    assert {"EURUSD", "GBPJPY", "XAUUSD", "BTCUSD", "ETHUSDT"} <= set(INSTRUMENTS)
    assert get_instrument("BTC/USD").calendar == "crypto" and get_instrument("EUR_USD").calendar == "fx"
    table = tmp_path / "mine.toml"
    table.write_text('[SOLUSD]\npip_size = 0.01\nspread_bps = 10.0\nprice_decimals = 3\ntypical_price = 150.0\n'
                     'quote_currency = "USD"\ncalendar = "crypto"\nkind = "crypto"\n'
                     '[EURUSD]\npip_size = 0.0001\nspread_pips = 0.6\nprice_decimals = 5\ntypical_price = 1.1\n')
    instruments = load_instruments(table)
    assert instruments["SOLUSD"].calendar == "crypto" and instruments["EURUSD"].spread_pips == 0.6
    assert instruments["GBPJPY"] == INSTRUMENTS["GBPJPY"]  # the built-in rest stays
    # read by every process that imports the table, named by MICRO_INSTRUMENT_TABLE
    done = subprocess.run([sys.executable, "-c", "from shared.core.instruments import get_instrument as g; "
                           "print(g('SOL_USD').spread_pips, g('EURUSD').spread_pips)"],
                          cwd=ROOT, env={**os.environ, "MICRO_INSTRUMENT_TABLE": str(table)}, capture_output=True, text=True)
    assert done.stdout.split() == ["10.0", "0.6"], done.stderr
    # or in the .env file, relative to it (the services read their .env themselves)
    (tmp_path / "project.env").write_text("MICRO_INSTRUMENT_TABLE=mine.toml\n")
    environ = {k: v for k, v in os.environ.items() if k != "MICRO_INSTRUMENT_TABLE"}
    done = subprocess.run([sys.executable, "-c", "from shared.core.instruments import get_instrument as g; "
                           "print(g('SOLUSD').calendar)"], cwd=ROOT, capture_output=True, text=True,
                          env={**environ, "MICRO_ENV_FILE": str(tmp_path / "project.env")})
    assert done.stdout.strip() == "crypto", done.stderr


@pytest.mark.parametrize("text,message", [
    ('[XYZ]\npip_size = 1.0\nspread_pips = 1.0\nprice_decimals = 2\npip = 3\n', "unknown keys pip"),
    ('[XYZ]\npip_size = 1.0\nspread_pips = 1.0\nprice_decimals = 2\ncalendar = "lse"\n', "calendar must be one of"),
    ('[XYZ]\npip_size = 0\nspread_pips = 1.0\nprice_decimals = 2\n', "pip_size must be positive"),
    ('[XYZ]\nspread_pips = 1.0\nprice_decimals = 2\n', "pip_size"),
    ('XYZ = 3\n', "must be a table"),
    ('[XYZ\n', "not TOML"),
])
def test_a_bad_instrument_table_names_the_entry(tmp_path, text, message):
    table = tmp_path / "bad.toml"
    table.write_text(text)
    with pytest.raises(InstrumentTableError, match=message) as caught:
        load_instruments(table)
    assert str(table) in str(caught.value)


def test_the_default_market_carried_to_another_instrument_keeps_its_proportions():
    from shared.config import SyntheticMarketConfig

    assert synthetic_market_for("GBPJPY") == SyntheticMarketConfig()
    btc = synthetic_market_for("BTCUSD", weeks=1)
    assert btc.start_price == 40_000 and btc.base_volatility_pips / 20.0 == SyntheticMarketConfig().base_volatility_pips / 4.0


def test_the_fx_synthetic_market_opens_on_new_yorks_clock():
    bars, _ = generate_market(synthetic_market_for("GBPJPY", start="2024-03-03", weeks=2, missing_bar_probability=0.0,
                                                   outages_per_week=0.0))
    first = pd.Timestamp(int(bars.ts[0]))
    second_week = pd.Timestamp(int(bars.ts[5 * 1440]))
    assert (str(first), str(second_week)) == ("2024-03-03 22:00:00", "2024-03-10 21:00:00")
    assert not FX.closed(bars.ts).any()


def crypto_store(tmp_path, weeks: int = 3):
    config = synthetic_market_for("BTCUSD", weeks=weeks, edge_strength=0.3)
    bars, drift = generate_market(config)
    db = tmp_path / "market.duckdb"
    with BarStore(db) as store:
        store.upsert("BTCUSD", "M1", bars)
        write_expected_drift(store, "BTCUSD", "M1", bars.ts, drift)
    build_feature_store(db, "BTCUSD", "M1", session_config=SessionConfig(), progress=False)
    return db, bars


def test_the_crypto_market_trades_through_the_weekend_and_validates(tmp_path):
    from shared.training.trainer import Trainer
    from shared.validation.validator import validate
    from shared.volume.candidates import load_candidate

    db, bars = crypto_store(tmp_path)
    assert np.diff(bars.ts).max() <= 46 * NS_PER_MINUTE  # no weekend: only missing bars and outages
    saturdays = pd.to_datetime(bars.ts).day_of_week == 5
    assert saturdays.sum() > 1000 and 30_000 < bars.close.mean() < 50_000
    features = load_feature_set(db, "BTCUSD", "M1")
    session_days = pd.to_datetime(features.bars.ts[np.concatenate(list(features.sessions.values()))]).day_of_week
    assert (session_days >= 5).any(), "sessions on Saturday and Sunday"
    trainer = Trainer(features, tmp_path / "ck", TrainingConfig(network=NetworkConfig(tcn_channels=8, hidden=16),
                                                                 episodes_per_iteration=2, checkpoint_interval_episodes=2))
    try:
        report = trainer.run_iteration()
    finally:
        trainer.close()
    candidate = load_candidate(tmp_path / "ck" / "training" / report.checkpoint)
    assert candidate.payload["instrument"] == "BTCUSD"
    result = validate(candidate, features, ValidationConfig(simulations=2, mc_runs=20, max_sessions=2))
    assert result.sessions == 2 and len(result.session_pnl) == 2
    assert sum(result.session_pnl) == pytest.approx(result.stats.total_pips)


def test_a_crypto_trader_decides_on_saturday_an_fx_trader_stands_aside(tmp_path):
    from shared.live.brokers.paper import PaperBroker
    from shared.live.journal import Journal
    from shared.live.trader import LiveTrader
    from tests.live_helpers import load, trading_checkpoint

    db, _ = crypto_store(tmp_path)
    features = load_feature_set(db, "BTCUSD", "M1")
    model = load(trading_checkpoint(features, tmp_path / "ck", 64))
    saturday = np.flatnonzero(pd.to_datetime(features.bars.ts).day_of_week == 5)
    at = int(saturday[len(saturday) // 2])
    trader = LiveTrader("BTCUSD", PaperBroker(tmp_path / "paper.json", spread_pips=20.0, pip_size=1.0),
                        Journal(tmp_path / "journal.duckdb"), model, features.bars[:at], simulations=2)
    trader.reconcile()
    now = datetime.fromtimestamp((int(features.bars.ts[at]) + NS_PER_MINUTE) / 1e9, timezone.utc)
    decision = trader.on_bar(features.bars[at:at + 1], now)
    assert decision.reason != "market_closed" and decision.status in ("FILLED", "no_order")
    assert trader.calendar is CRYPTO and not FX.market_open(now)


def test_the_synthetic_market_at_another_bar_size(tmp_path, monkeypatch):
    from shared.cli.data import main as data_main

    config = synthetic_market_for("EURUSD", granularity="H1", weeks=2, missing_bar_probability=0.0, outages_per_week=0.0)
    bars, drift = generate_market(config)
    assert len(bars) == 2 * 120 and set(np.diff(bars.ts[:120])) == {60 * NS_PER_MINUTE}
    minute_bars, _ = generate_market(synthetic_market_for("EURUSD", weeks=2, missing_bar_probability=0.0,
                                                          outages_per_week=0.0))
    # an hour moves about sqrt(60) minutes' worth
    ratio = np.std(np.diff(bars.close)) / np.std(np.diff(minute_bars.close))
    assert 5 < ratio < 11
    monkeypatch.setenv("MICRO_ENV_FILE", str(tmp_path / "absent.env"))
    db = tmp_path / "market.duckdb"
    assert data_main(["--quiet", "--db", str(db), "synth", "--instrument", "EURUSD", "--granularity", "1h",
                      "--weeks", "3"]) == 0
    with BarStore(db, read_only=True) as store:
        assert store.summary()[["instrument", "granularity", "bars"]].values.tolist()[0][:2] == ["EURUSD", "H1"]


def test_exchange_hours_are_a_calendar_too():
    from shared.core.calendar import NYSE

    stamps = pd.to_datetime(["2024-06-10 13:29", "2024-06-10 13:30", "2024-06-10 19:59", "2024-06-10 20:00",
                             "2024-06-08 15:00", "2024-01-08 14:30", "2024-01-08 14:29"]).as_unit("ns").asi8
    # 09:30-16:00 New York: 13:30-20:00 UTC in summer, 14:30-21:00 in winter; Saturday closed
    assert NYSE.closed(stamps).tolist() == [True, False, False, True, True, False, True]
    spy = synthetic_market_for("SPY", weeks=2, missing_bar_probability=0.0, outages_per_week=0.0)
    assert 400 < spy.start_price < 500
    bars, _ = generate_market(spy)
    assert len(bars) == 2 * 5 * 390 and not NYSE.closed(bars.ts).any()  # 390 minutes a day, weekdays only
    daily, _ = generate_market(synthetic_market_for("SPY", weeks=2, granularity="D", missing_bar_probability=0.0,
                                                    outages_per_week=0.0))
    assert len(daily) == 10  # a daily bar from 00:00 New York holds the session: it is open
    assert get_instrument("SPY").kind == "equity"


def test_an_exchange_night_is_a_closure_and_a_midday_hole_is_not():
    from shared.core.calendar import NYSE

    ts = pd.to_datetime(["2024-06-10 19:58", "2024-06-10 19:59", "2024-06-11 13:30", "2024-06-11 13:31",
                         "2024-06-11 14:10", "2024-06-14 19:59", "2024-06-17 13:30"]).as_unit("ns").asi8
    assert closure_steps(NYSE, ts, 1).tolist() == [False, True, False, False, False, True]
    assert closure_steps(FX, ts, 1)[1] is np.False_  # FX trades through New York's night


@pytest.mark.parametrize("granularity,weeks", [("M5", 30), ("H1", 300)])
def test_an_exchange_has_sessions_over_its_nights(tmp_path, granularity, weeks):
    from shared.config import session_config_for

    config = synthetic_market_for("SPY", granularity=granularity, weeks=weeks, edge_strength=0.3)
    bars, _ = generate_market(config)
    db = tmp_path / "market.duckdb"
    with BarStore(db) as store:
        store.upsert("SPY", granularity, bars)
    report = build_feature_store(db, "SPY", granularity, session_config=session_config_for(granularity, SessionConfig()),
                                 progress=False)
    assert all(report.sessions.values()), report.why_no_sessions
    features = load_feature_set(db, "SPY", granularity)
    start = int(features.sessions["test"][0])
    days = pd.to_datetime(features.bars.ts[start:start + features.session_config.length_bars]).normalize().unique()
    assert len(days) > 1, "a session runs over the exchange's night"


def test_a_candidate_names_its_market_and_another_table_or_bar_size_is_refused(tmp_path, monkeypatch):
    from dataclasses import replace

    import shared.core.instruments as instruments
    from shared.volume.candidates import CandidateError, check_market
    from tests.live_helpers import load, trading_checkpoint

    db, _ = crypto_store(tmp_path, weeks=2)
    candidate = load(trading_checkpoint(load_feature_set(db, "BTCUSD", "M1"), tmp_path / "ck", 64))
    assert candidate.payload["instrument_spec"] == {"pip_size": 1.0, "calendar": "crypto", "spread_pips": 5.0,
                                                    "quote_currency": "USD", "unit": "bps"}
    check_market(candidate, "BTCUSD", "M1")  # its own market: no error
    with pytest.raises(CandidateError, match="instrument_mismatch: .* trades BTCUSD, this service ETHUSD"):
        check_market(candidate, "ETHUSD", "M1")
    with pytest.raises(CandidateError, match="granularity_mismatch: .* trained on M1 bars, this service trades H1"):
        check_market(candidate, "BTCUSD", "H1")
    # another process's table prices BTC in 10-dollar pips: its features and costs would be another market
    btc = instruments.INSTRUMENTS["BTCUSD"]
    monkeypatch.setitem(instruments.INSTRUMENTS, "BTCUSD", replace(btc, pip_size=10.0))
    with pytest.raises(CandidateError, match="pip_size 1.0, this service's instrument table says 10.0"):
        check_market(candidate, "BTCUSD", "M1")
    # a model saved before units was trained in pips: not a coin's bps
    monkeypatch.setitem(instruments.INSTRUMENTS, "BTCUSD", btc)
    old = replace(candidate, payload={**candidate.payload, "instrument_spec": {
        k: v for k, v in candidate.payload["instrument_spec"].items() if k != "unit"}, "instrument_specs": None})
    with pytest.raises(CandidateError, match="unit pips, this service's instrument table says bps"):
        check_market(old, "BTCUSD", "M1")
    # or counts BTC in pips: its rewards and statistics would be in another unit
    monkeypatch.setitem(instruments.INSTRUMENTS, "BTCUSD", replace(btc, unit="pips"))
    with pytest.raises(CandidateError, match="unit bps, this service's instrument table says pips"):
        check_market(candidate, "BTCUSD", "M1")


# --- units: pips for FX and metals, basis points for crypto and equities ----------------------------


def test_each_kind_counts_in_its_unit_and_a_table_spells_a_bps_spread_in_bps(tmp_path):
    assert [get_instrument(n).unit for n in ("EURUSD", "XAUUSD", "BTCUSD", "SPY")] == ["pips", "pips", "bps", "bps"]
    btc = get_instrument("BTCUSD")
    assert btc.spread_pips == 5.0 and btc.point == 1.0 and get_instrument("EURUSD").point == 0.0001
    prices = np.array([40_000.0, 40_400.0])
    assert np.diff(btc.scale_prices(prices))[0] == pytest.approx(10_000 * np.log(1.01))  # about 99.5 bps
    np.testing.assert_allclose(btc.unscale_prices(btc.scale_prices(prices)), prices)
    assert btc.to_pips(400.0, 40_000.0) == pytest.approx(100.0) and btc.price_distance(5.0, 40_000.0) == 20.0
    with pytest.raises(ValueError, match="needs its price"):
        btc.to_pips(400.0)
    table = tmp_path / "mine.toml"
    table.write_text('[SOLUSD]\npip_size = 0.01\nspread_bps = 8\nprice_decimals = 2\nkind = "crypto"\n'
                     'calendar = "crypto"\n')
    assert load_instruments(table)["SOLUSD"].spread_pips == 8.0
    for body, message in (('spread_pips = 1\nspread_bps = 8', "one spread"),
                          ('spread_bps = 8\nunit = "pips"', "spread_bps for an instrument counted in pips"),
                          ('spread_pips = 1\nunit = "points"', "unit must be one of pips, bps"),
                          ('spread_pips = 20\nkind = "crypto"', "counted in basis points: give its spread as spread_bps")):
        table.write_text(f"[SOLUSD]\npip_size = 0.01\nprice_decimals = 2\n{body}\n")
        with pytest.raises(InstrumentTableError, match=message):
            load_instruments(table)


def test_a_coins_features_costs_and_pnl_are_in_basis_points_of_its_price(tmp_path):
    from shared.env import TradingEnv
    from shared.features.micro import on_instrument_scale, temporal_features

    db, bars = crypto_store(tmp_path, weeks=2)
    features = load_feature_set(db, "BTCUSD", "M1")
    change = np.tanh(10_000 * np.log(bars.close[1:] / bars.close[:-1]) / 10)  # price_change_pips, in bps
    np.testing.assert_allclose(features.features[1:, 4], change, atol=1e-6)
    # the same bars at a tenth of the price: the same features, costs and P&L (bps do not see the level)
    tenth = type(bars)(bars.ts, bars.open / 10, bars.high / 10, bars.low / 10, bars.close / 10, bars.volume)
    np.testing.assert_allclose(temporal_features(*on_instrument_scale(tenth, get_instrument("BTCUSD"))),
                               features.features, atol=1e-5)
    env = TradingEnv(features)
    start = features.sessions["train"][:1]
    env.reset(start)
    env.step(np.array([1]))  # BUY at the decision bar's close
    for _ in range(env.steps_per_episode - 1):
        if env.step(np.array([0])).done:
            break
    entry, exit_ = bars.close[start[0]], bars.close[start[0] + env.steps_per_episode]
    expected = 10_000 * np.log(exit_ / entry) - get_instrument("BTCUSD").spread_pips
    assert env.stats[0].pnl_pips == pytest.approx(expected, abs=1e-6)
    assert env.stats[0].trades_pips == [pytest.approx(expected, abs=1e-6)]


def test_a_feature_set_built_in_another_unit_is_refused_until_rebuilt(tmp_path):
    from shared.features.store import FeatureSpecMismatch

    db, _ = crypto_store(tmp_path, weeks=2)
    with BarStore(db) as store:
        store.con.execute("UPDATE feature_sets SET unit = NULL WHERE instrument = 'BTCUSD'")  # before units: pips
    with pytest.raises(FeatureSpecMismatch, match="built in pips; BTCUSD counts in bps now .* rebuild"):
        load_feature_set(db, "BTCUSD", "M1")
    build_feature_store(db, "BTCUSD", "M1", session_config=SessionConfig(), progress=False)
    assert load_feature_set(db, "BTCUSD", "M1").instrument == "BTCUSD"


def test_live_trades_a_coin_in_basis_points_as_training_counted_them(tmp_path):
    from shared.live.brokers.paper import PaperBroker
    from shared.live.journal import Journal
    from shared.live.trader import LiveTrader, buffer_bars
    from tests.live_helpers import load, trading_checkpoint

    db, _ = crypto_store(tmp_path, weeks=2)
    features = load_feature_set(db, "BTCUSD", "M1")
    model = load(trading_checkpoint(features, tmp_path / "ck", 64))
    btc = get_instrument("BTCUSD")
    broker = PaperBroker(tmp_path / "paper.json", spread_pips=btc.spread_pips, pip_size=btc.pip_size, unit="bps")
    at = int(features.sessions["validation"][0])
    trader = LiveTrader("BTCUSD", broker, Journal(tmp_path / "journal.duckdb"), model,
                        features.bars[at - buffer_bars(32):at], simulations=2)
    trader.reconcile()
    window, _ = trader.observation()  # the live features are the store's, in bps
    np.testing.assert_array_equal(window[0], features.features[at - 32:at])
    # a round trip at the paper broker: bid/ask 2.5 bps either side of the mid, the loss the spread in bps
    mid = float(features.bars.close[at])
    broker.mark(mid, int(features.bars.ts[at]))
    quote = broker.quote("BTCUSD")
    assert (quote.ask - quote.bid) / mid * 10_000 == pytest.approx(5.0, rel=1e-6)
    bought = broker.market_order("BTCUSD", 1, "buy-1")
    assert bought.fill_price == pytest.approx(mid * np.exp(2.5 / 10_000))
    # the trader adopts the broker's long and counts it in bps of its entry price
    trader.reconcile()
    assert trader.position == 1 and trader.entry_price == pytest.approx(bought.fill_price)
    assert trader.unrealized_pips(mid * 1.01) == pytest.approx(10_000 * np.log(1.01 / np.exp(2.5 / 10_000)))
    broker.market_order("BTCUSD", -1, "sell-1")
    assert broker.realized_pips == pytest.approx(-5.0)
