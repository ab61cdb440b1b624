"""Several instruments, one model: the demo on FX and crypto by one setting, the combined feature
set, the environment's per-instrument units, training's equal shares, validation per instrument
and as a portfolio."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from shared.cli.data import main as data_cli
from shared.config import NetworkConfig, TrainingConfig, ValidationConfig
from shared.core.instruments import get_instrument
from shared.env import TradingEnv
from shared.env.baselines import reference_on
from shared.features.portfolio import combine_feature_sets, load_market, typical_move_pips
from shared.features.store import load_feature_set
from shared.training.trainer import Trainer, session_weights
from shared.validation.validator import validate
from shared.volume.candidates import CandidateError, check_market, load_candidate, trained_instruments

SMALL = NetworkConfig(tcn_channels=16, hidden=32, dropout=0.0)
PAIR = ("GBPJPY", "BTCUSD")


@pytest.fixture(scope="module")
def store(tmp_path_factory, monkeypatch_module):
    """The demo market on an FX pair and a crypto pair: one setting, the data job's `prepare`."""
    db = tmp_path_factory.mktemp("portfolio") / "market.duckdb"
    monkeypatch_module.setenv("MICRO_DEMO_INSTRUMENTS", ",".join(PAIR))
    assert data_cli(["--db", str(db), "--quiet", "prepare"]) == 0
    return db


@pytest.fixture(scope="module")
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as patch:
        yield patch


@pytest.fixture(scope="module")
def market(store):
    return load_market(store, PAIR)


def test_one_setting_builds_every_instrument_and_one_instrument_loads_as_before(store, market):
    gbpjpy, btcusd = (load_feature_set(store, name) for name in PAIR)
    assert gbpjpy.instruments == () and load_market(store, ("GBPJPY",)).instruments == ()
    assert market.instrument_names == PAIR and market.instrument == "GBPJPY"
    assert len(market.bars) == len(gbpjpy.bars) + len(btcusd.bars)
    # the crypto market trades at the weekend, the FX pair does not
    weekday = (btcusd.bars.ts // (86_400 * 10**9) + 3) % 7  # 0 = Monday
    assert (weekday == 5).any() and not ((gbpjpy.bars.ts // (86_400 * 10**9) + 3) % 7 == 5).any()
    assert np.array_equal(market.features[len(gbpjpy.bars):], btcusd.features)


def test_every_session_stays_inside_its_own_instruments_bars(market):
    window, length = NetworkConfig().window_bars, market.session_config.length_bars
    for split, starts in market.sessions.items():
        owner = market.instrument_of(starts)
        assert np.array_equal(market.instrument_of(starts - window + 1), owner), split
        assert np.array_equal(market.instrument_of(starts + length - 1), owner), split
        assert set(owner.tolist()) == {0, 1}, f"{split} has sessions of both instruments"
        assert (np.diff(market.bars.ts[starts]) >= 0).all(), f"{split}: the portfolio's sessions run through time"


def test_pip_weights_put_each_instruments_typical_move_in_the_first_instruments_pips(store, market):
    gbpjpy, btcusd = (load_feature_set(store, name) for name in PAIR)
    assert market.pip_weights[0] == 1.0
    assert market.pip_weights[1] == pytest.approx(typical_move_pips(gbpjpy) / typical_move_pips(btcusd))
    assert market.pip_weights[1] != pytest.approx(1.0, rel=0.05)  # a dollar of BTC is no GBPJPY pip


def test_an_episode_is_played_in_its_instruments_pips_and_rewarded_in_the_common_unit(store, market):
    btcusd = load_feature_set(store, "BTCUSD")
    offset = len(load_feature_set(store, "GBPJPY").bars)
    alone, combined = TradingEnv(btcusd), TradingEnv(market)
    start = btcusd.sessions["train"][:3]
    alone.reset(start)
    train = market.sessions["train"]
    combined.reset(np.concatenate([start + offset, train[market.instrument_of(train) == 0][:1]]))  # + one GBPJPY
    assert combined.pip.tolist() == [1.0, 1.0, 1.0, 0.01]
    assert combined.spread_pips.tolist()[-2:] == [get_instrument("BTCUSD").spread_pips,
                                                  get_instrument("GBPJPY").spread_pips]
    rng = np.random.default_rng(0)
    for _ in range(alone.steps_per_episode):
        actions = rng.integers(0, alone.num_actions, size=4)
        actions = np.where(combined.observe().legal[np.arange(4), actions], actions, 0)
        a, c = alone.step(actions[:3]), combined.step(actions)
        np.testing.assert_allclose(c.pnl_pips[:3], a.pnl_pips)
        np.testing.assert_allclose(c.reward[:3], (a.pnl_pips * market.pip_weights[1]).astype(np.float32), rtol=1e-6)
        np.testing.assert_allclose(c.reward[3], c.pnl_pips[3], rtol=1e-6)  # the first instrument's weight is 1


def test_training_draws_each_instrument_in_equal_shares_and_the_model_names_both(market, tmp_path):
    starts = market.require_sessions("train")
    weights = session_weights(market, starts)
    owner = market.instrument_of(starts)
    assert weights[owner == 0].sum() == pytest.approx(0.5) and weights[owner == 1].sum() == pytest.approx(0.5)
    assert (owner == 1).sum() > (owner == 0).sum()  # 24/7 has more sessions: uniform would tilt toward it
    trainer = Trainer(market, tmp_path, TrainingConfig(network=SMALL, episodes_per_iteration=8))
    report = trainer.run_iteration()
    assert report.episodes == 8
    candidate = load_candidate(tmp_path / "training" / trainer.write_checkpoint())
    trainer.close()
    assert trained_instruments(candidate) == PAIR
    assert set(candidate.payload["instrument_specs"]) == set(PAIR)
    for name in PAIR:
        check_market(candidate, name, "M1")
    with pytest.raises(CandidateError, match="trades GBPJPY, BTCUSD, this service EURUSD"):
        check_market(candidate, "EURUSD", "M1")


def test_validation_reports_each_instrument_as_validated_alone_and_the_portfolio_in_the_common_unit(store, market,
                                                                                                    tmp_path):
    trainer = Trainer(market, tmp_path, TrainingConfig(network=SMALL, episodes_per_iteration=8))
    trainer.run_iteration()
    candidate = load_candidate(tmp_path / "training" / trainer.write_checkpoint())
    trainer.close()
    config = ValidationConfig(simulations=4, mc_runs=50)
    report = validate(candidate, market, config)
    assert set(report.instruments) == set(PAIR)
    owner = market.instrument_of(market.require_sessions("validation"))
    masks = {name: owner == i for i, name in enumerate(PAIR)}
    total = 0.0
    for i, name in enumerate(PAIR):
        alone = validate(candidate, load_feature_set(store, name), config)
        mine = report.instruments[name]
        assert mine["sessions"] == alone.sessions == int(masks[name].sum())
        assert mine["stats"]["total_pips"] == pytest.approx(alone.stats.total_pips)
        assert mine["stats"]["trades"] == alone.stats.trades
        assert mine["raw_network_pips"] == pytest.approx(alone.baselines["raw_network"].total_pips)
        total += alone.stats.total_pips * market.pip_weights[i]
    assert report.stats.total_pips == pytest.approx(total)
    assert sum(report.session_pnl) == pytest.approx(total)
    assert report.sessions == len(report.session_pnl) == sum(int(m.sum()) for m in masks.values())


def test_reference_rules_on_several_instruments_are_in_the_common_unit(store, market, monkeypatch):
    from shared.env import baselines

    # a coarse grid: what is checked here is the unit, not the tuning (test_baselines checks that)
    monkeypatch.setattr(baselines, "ENTER_QUANTILES", (0.8, 0.95))
    monkeypatch.setattr(baselines, "EXIT_RATIOS", (-0.5, 0.0))
    starts = market.require_sessions("validation")
    reference = reference_on(market, starts)
    assert reference.oracle_pips is not None and reference.momentum_pips is not None
    single = reference_on(load_feature_set(store, "GBPJPY"), load_feature_set(store, "GBPJPY").sessions["validation"])
    assert single.oracle_pips != reference.oracle_pips  # the pair adds BTCUSD's sessions, weighed


def test_feature_sets_of_different_bar_sizes_or_session_lengths_are_refused(store):
    gbpjpy, btcusd = (load_feature_set(store, name) for name in PAIR)
    with pytest.raises(Exception, match="one model trades one bar size"):
        combine_feature_sets([gbpjpy, replace(btcusd, granularity="M5")])
    longer = replace(btcusd, session_config=replace(btcusd.session_config, length_bars=btcusd.session_config.length_bars * 2))
    with pytest.raises(Exception, match="same session settings"):
        combine_feature_sets([gbpjpy, longer])


def test_instruments_are_one_setting_written_as_users_write_them():
    from services.training.config import TrainingSettings
    from shared.core.settings import ConfigError, load_settings

    settings = load_settings(TrainingSettings, {"MICRO_INSTRUMENTS": "eur_usd, BTC/USD"})
    assert settings.traded_instruments == ("EURUSD", "BTCUSD") and settings.instrument == "EURUSD"
    assert load_settings(TrainingSettings, {}).traded_instruments == ("GBPJPY",)
    demo = load_settings(TrainingSettings, {"MICRO_DEMO_INSTRUMENTS": "GBPJPY,BTCUSD"})
    assert demo.traded_instruments == ("GBPJPY", "BTCUSD")
    for environ, message in (({"MICRO_INSTRUMENTS": "EURUSD,EUR_USD"}, "EURUSD named twice"),
                             ({"MICRO_INSTRUMENTS": "EURUSD,NOPE"}, "unknown instrument 'NOPE'"),
                             ({"MICRO_INSTRUMENTS": "EURUSD", "MICRO_DEMO_INSTRUMENTS": "BTCUSD"}, "set one of them")):
        with pytest.raises(ConfigError, match=message):
            load_settings(TrainingSettings, environ)
