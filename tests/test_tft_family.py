"""The tft forecaster as a model family (issue 26): trained by the training service's trainer,
written to the volume as any candidate, loaded, validated and gated like the MuZero agent's."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from shared.config import ForecastPolicyConfig, GateConfig, TFTConfig, TrainingConfig, ValidationConfig
from shared.core.feature_spec import INDICATOR_FEATURES, INDICATORS_SPEC_VERSION
from shared.data.bars import Bars
from shared.features.indicators import indicator_features
from shared.model.tft import TemporalFusionTransformer
from shared.model.tft_policy import forecast_at
from shared.training.forecaster import ForecasterTrainer, train_origins
from shared.validation.gate import gate
from shared.validation.validator import validate
from shared.volume.candidates import CandidateError, load_candidate, serialize
from shared.volume.checkpoints import ReadySignal, signal_name

TINY = TFTConfig(hidden=16, variable_hidden=8, heads=2, lstm_layers=1, encoder_bars=20, decoder_bars=12,
                 batch_size=16, steps_per_iteration=5, checkpoint_interval_steps=10)


def _config(**overrides) -> TrainingConfig:
    return TrainingConfig(model="tft", tft=TINY, forecast_policy=ForecastPolicyConfig(horizon_bars=6), **overrides)


@pytest.fixture(scope="module")
def trained(features, tmp_path_factory):
    """Two iterations of a tiny forecaster: one candidate at step 10."""
    root = tmp_path_factory.mktemp("tft")
    trainer = ForecasterTrainer(features, root, _config())
    reports = [trainer.run_iteration() for _ in range(2)]
    trainer.close()
    return root, reports


def test_train_windows_never_reach_a_validation_or_test_bar(features):
    c = TINY
    origins = train_origins(features, c.encoder_bars, c.decoder_bars)
    length = features.session_config.length_bars
    train = np.zeros(len(features.bars), bool)
    for start in features.sessions["train"]:
        train[start : start + length] = True
    held_out = np.zeros(len(features.bars), bool)
    for split in ("validation", "test"):
        for start in features.sessions[split]:
            held_out[start : start + length] = True
    targets = origins[:, None] + np.arange(1, c.decoder_bars + 1)
    assert len(origins) > 1000
    assert train[targets].all() and not held_out[targets].any()
    assert origins.min() >= 240 + c.encoder_bars - 1  # the indicators' warm-up, then a whole encoder window


def test_a_candidate_is_written_signalled_and_loads_as_its_family(trained):
    root, reports = trained
    assert [r.checkpoint for r in reports] == [None, "ckpt-ep00000010.pt"]
    assert reports[1].learner_steps == 10 and "holdout" in reports[1].losses
    signal = ReadySignal.read(root / "training" / signal_name(10))
    assert signal.feature_spec_version == INDICATORS_SPEC_VERSION
    candidate = load_candidate(root / "training" / signal.checkpoint, signal.sha256)
    assert candidate.family == "tft" and isinstance(candidate.model, TemporalFusionTransformer)
    assert candidate.episode == 10 and candidate.config.tft == TINY
    forecast = candidate.payload["forecast"]
    assert set(forecast["coverage"]) == {"0.1", "0.5", "0.9"} and forecast["holdout_loss"] > 0


def test_validation_plays_its_forecast_rule_and_the_gate_judges_it(trained, features):
    root, _ = trained
    candidate = load_candidate(root / "training" / "ckpt-ep00000010.pt")
    report = validate(candidate, features, ValidationConfig(max_sessions=4, mc_runs=20))
    assert report.family == "tft" and report.sessions == 4 and len(report.session_pnl) == 4
    assert set(report.baselines) == {"random", "flat"}       # no search, so no raw network beside it
    assert report.search_beats_raw is None and report.to_dict()["search_vs_raw"] is None
    # its calibration on these sessions: each quantile's share of realised returns below it
    assert set(report.calibration) == {"0.1", "0.5", "0.9"}
    shares = list(report.calibration.values())
    assert all(0 <= x <= 1 for x in shares) and shares == sorted(shares)
    assert isinstance(gate(report, None, GateConfig()), list)

    # a rule that always clears the cost trades: the quantiles it reads are the forecast's own
    eager = replace(candidate, config=replace(candidate.config, forecast_policy=ForecastPolicyConfig(
        horizon_bars=6, lower_quantile=0.5, upper_quantile=0.5)))
    with torch.no_grad():  # a forecast far above any spread: the median says long at every bar
        eager.model.head.bias.fill_(50.0)
    played = validate(eager, features, ValidationConfig(max_sessions=4, mc_runs=20))
    assert played.stats.trades > 0 and played.stats.action_share[1] > 0  # BUY


def test_the_forecast_at_a_bar_reads_no_later_bar(trained, features):
    root, _ = trained
    model = load_candidate(root / "training" / "ckpt-ep00000010.pt").model
    bars = features.bars
    t = 5_000
    origins = np.array([t - 100, t - 1, t])
    before = forecast_at(model, indicator_features(bars, "fx"), bars.ts, origins, bar_minutes=1, calendar="fx")
    later = slice(t + 1, None)
    changed = Bars(bars.ts, *(np.concatenate([a[: t + 1], a[later] * 1.5])
                              for a in (bars.open, bars.high, bars.low, bars.close, bars.volume)))
    after = forecast_at(model, indicator_features(changed, "fx"), changed.ts, origins, bar_minutes=1, calendar="fx")
    np.testing.assert_array_equal(before, after)


def test_a_restart_resumes_the_forecaster_where_it_stopped(features, tmp_path):
    first = ForecasterTrainer(features, tmp_path, _config())
    first.run_iteration()
    first.run_iteration()
    weights = {k: v.clone() for k, v in first.model.state_dict().items()}
    first.close()
    again = ForecasterTrainer(features, tmp_path, _config())
    assert again.resumed and again.episode == 10 and again.checkpoints_written == 1
    for name, value in again.model.state_dict().items():
        assert torch.equal(value, weights[name]), name
    assert again.run_iteration().learner_steps == 15
    again.close()


def test_another_familys_latest_and_a_spec_mismatch_are_refused(features, tmp_path, trained):
    from shared.training.trainer import Trainer

    root, _ = trained
    (tmp_path / "training").mkdir()
    (tmp_path / "training" / "latest.pt").write_bytes((root / "training" / "latest.pt").read_bytes())
    with pytest.raises(ValueError, match="feature spec indicators-v1"):
        Trainer(features, tmp_path, TrainingConfig())  # the MuZero trainer on a forecaster's run
    payload = torch.load(root / "training" / "ckpt-ep00000010.pt", weights_only=True)
    payload["feature_spec_version"] = "micro-v1"
    (tmp_path / "bad.pt").write_bytes(serialize(payload))
    with pytest.raises(CandidateError, match="feature_spec_mismatch"):
        load_candidate(tmp_path / "bad.pt")


def test_settings_that_cannot_work_together_are_refused():
    with pytest.raises(ValueError, match="horizon_bars 30 is beyond"):
        TrainingConfig(model="tft", forecast_policy=ForecastPolicyConfig(horizon_bars=30))
    with pytest.raises(ValueError, match="reads quantiles 0.25"):
        TrainingConfig(model="tft", forecast_policy=ForecastPolicyConfig(lower_quantile=0.25))
    with pytest.raises(ValueError, match="lower_quantile <= upper_quantile"):
        ForecastPolicyConfig(lower_quantile=0.9, upper_quantile=0.1)


def test_the_forecaster_refuses_a_market_of_several_instruments():
    from shared.model.tft_data import single_instrument

    class Two:
        instrument_names = ("EURUSD", "GBPUSD")

    with pytest.raises(ValueError, match="one model per instrument"):
        single_instrument(Two())



def _always_long(root: Path):
    candidate = load_candidate(root / "training" / "ckpt-ep00000010.pt")
    with torch.no_grad():  # every quantile far above the spread: the rule wants long at every bar
        candidate.model.head.bias.fill_(50.0)
    return candidate


def test_live_paper_trades_a_forecaster_and_journals_what_it_forecast(trained, features, tmp_path):
    from datetime import datetime, timezone

    from shared.live.brokers.paper import PaperBroker
    from shared.live.feeds import ReplayFeed
    from shared.live.journal import Journal
    from shared.live.provenance import TreeStore, decision_detail
    from shared.live.trader import LiveTrader

    root, _ = trained
    candidate = _always_long(root)
    feed = ReplayFeed(features.bars, int(features.sessions["test"][0]))
    broker = PaperBroker(tmp_path / "paper.json", spread_pips=4.0, pip_size=0.01)
    journal = Journal(tmp_path / "journal.duckdb")
    trees = TreeStore(tmp_path / "trees", 100)
    trader = LiveTrader("GBPJPY", broker, journal, candidate, feed.history(), control_dir=tmp_path / "control",
                        trees=trees)
    trader.reconcile()
    decisions = [trader.on_bar(feed.next_bars(), datetime.fromtimestamp(feed.now_ns() / 1e9, timezone.utc))
                 for _ in range(5)]
    assert decisions[0].action == "BUY" and decisions[0].status == "FILLED"
    assert [d.status for d in decisions[1:]] == ["no_order"] * 4  # long and staying long: one order
    assert broker.snapshot("GBPJPY").units == trader.position == 1 == journal.filled_units()

    # the inputs it forecast from are the batch indicators of the same bars (each row from bars <= it)
    observed, static = trader.observation()
    last = feed.position - 1
    batch = indicator_features(features.bars, "fx")[last - TINY.encoder_bars + 1 : last + 1]
    np.testing.assert_allclose(observed[0], batch, rtol=1e-4, atol=1e-5)
    assert static.shape == (1, TINY.decoder_bars * 4 + 2)
    frame = journal.frame()
    assert frame.client_id.is_unique and (frame.model_version == trader.version).all()
    tree = json.loads(trader.search.run(observed, static, trader.space.legal_mask(np.array([1], np.int8)),
                                        np.array([1], np.int8)).tree_json(0))
    assert tree["family"] == "tft" and tree["target_position"] == 1 and tree["quantiles"]["0.1"] > tree["cost"] > 0

    # the decision page's data: the forecast it acted on, and its inputs rebuilt from the journal's bars
    order = frame[frame.status == "FILLED"].client_id.iloc[0]
    detail = decision_detail(journal.con, trees, order, list(trader.space.actions), [])
    assert detail["tree"]["family"] == "tft" and detail["tree"]["target_position"] == 1
    assert detail["feature_spec"] == INDICATORS_SPEC_VERSION and "error" not in detail["features"]
    assert detail["features"]["names"] == list(INDICATOR_FEATURES) and len(detail["features"]["window"]) == TINY.encoder_bars
    assert detail["static"]["names"][-2:] == ["cost_log_return", "units_per_log_return"]
    assert len(detail["static"]["names"]) == len(detail["static"]["values"]) == TINY.decoder_bars * 4 + 2


def test_the_arena_ranks_entrants_and_tests_each_pair_on_the_same_sessions():
    from shared.validation.arena import Entrant, arena, best_of_each_family
    from shared.validation.statistics import paired_sign_flip_p

    rng = np.random.default_rng(0)
    strong, weak = rng.normal(5, 1, 40), rng.normal(0, 1, 40)
    entrants = best_of_each_family([("muzero", 64, list(weak)), ("muzero", 128, list(strong)), ("tft", 10, list(weak))])
    assert [e.name for e in entrants] == ["muzero ep00000128", "tft ep00000010"]
    out = arena([*entrants, Entrant("flat", "rule", (0.0,) * 40), Entrant("elsewhere", "rule", (1.0,) * 7)])
    totals = [r["total_pips"] for r in out["ranking"]]
    assert out["ranking"][0]["name"] == "muzero ep00000128" and totals == sorted(totals, reverse=True)
    assert [r["rank"] for r in out["ranking"]] == [1, 2, 3] and out["sessions"] == 40
    assert "elsewhere" not in out["paired_p"]                    # other sessions: not comparable
    assert out["paired_p"]["muzero ep00000128"]["tft ep00000010"] == round(paired_sign_flip_p(strong, weak), 4) < 0.01
    assert out["paired_p"]["tft ep00000010"]["muzero ep00000128"] > 0.99


def test_the_validation_service_judges_both_families_in_one_arena(trained, features, tmp_path):
    import shutil

    from services.validation.service import ValidationService
    from shared.env.baselines import Reference
    from tests.test_validation import result, service_for, write_candidate

    root, _ = trained
    write_candidate(features, tmp_path, 64)  # a MuZero candidate
    for name in ("ckpt-ep00000010.pt", signal_name(10)):  # and the forecaster's, on the same volume
        shutil.copy(root / "training" / name, tmp_path / "training" / name)
    service: ValidationService = service_for(features, tmp_path)
    service.reference = Reference(momentum_pips=3.0, oracle_pips=None, momentum_sessions=(1.0, 2.0))
    for episode in (64, 10):
        service.handle(episode, tmp_path / "training" / signal_name(episode))
    assert result(tmp_path, 10)["report"]["family"] == "tft" and result(tmp_path, 64)["report"]["family"] == "muzero"
    # every policy per regime, the rule baselines the service played on the same sessions too
    by_regime = result(tmp_path, 10)["report"]["regimes"]["by_regime"]
    assert sum(row["momentum"] for row in by_regime.values()) == 3.0 and "oracle" not in next(iter(by_regime.values()))
    stored = json.loads((tmp_path / "validation" / "arena.json").read_text())
    names = {r["name"]: r for r in stored["ranking"]}
    assert set(names) == {"muzero ep00000064", "tft ep00000010", "momentum", "flat"}
    assert names["momentum"]["total_pips"] == 3.0 and stored["sessions"] == 2
    assert set(stored["paired_p"]["tft ep00000010"]) == set(names) - {"tft ep00000010"}
    assert service.status_page()["arena"]["ranking"] == stored["ranking"]
    gauge = service.metrics.arena_pips.labels(entrant="tft")._value.get()
    assert gauge == names["tft ep00000010"]["total_pips"]
    service.records.db.close()


def test_the_training_service_trains_the_forecaster_when_told(data_dir, tmp_path):
    """`TRAINING_MODEL=tft python -m services.training`: candidates signalled, /status and /metrics
    name the family and its losses, a graceful stop."""
    import httpx

    from tests.service_helpers import free_port, start, wait_for

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {"MICRO_DATA_DIR": str(data_dir), "CHECKPOINT_DIR": str(tmp_path / "ck"), "TRAINING_PORT": str(port),
           "TRAINING_MODEL": "tft", "TRAINING_TFT__HIDDEN": "16", "TRAINING_TFT__VARIABLE_HIDDEN": "8",
           "TRAINING_TFT__HEADS": "2", "TRAINING_TFT__LSTM_LAYERS": "1", "TRAINING_TFT__BATCH_SIZE": "16",
           "TRAINING_TFT__STEPS_PER_ITERATION": "5", "TRAINING_TFT__CHECKPOINT_INTERVAL_STEPS": "10"}
    service = start("services.training", env, tmp_path / "training.log")
    try:
        wait_for(f"{url}/status", lambda r: r.json()["checkpoints_written"] >= 1, process=service, timeout=240)
        status = httpx.get(f"{url}/status").json()
        assert status["model"] == "tft" and status["finished"] is None and status["self_play"] == {"backend": "local"}
        assert status["candidates"][-1].startswith("ckpt-ep") and status["learner_steps"] >= 10
        metrics = httpx.get(f"{url}/metrics").text
        assert 'micro_training_loss{component="quantile"}' in metrics
        assert 'micro_training_loss{component="holdout"}' in metrics
    finally:
        service.terminate()
        service.wait(timeout=60)
    assert list((tmp_path / "ck" / "training").glob("*.ready"))  # the newest (older ones pruned as it goes on)


def test_calibration_is_the_share_of_realised_returns_below_each_quantile():
    from shared.validation.forecaster import calibration

    close = np.exp(np.linspace(0.0, 0.1, 200))            # rising: every realised return is positive
    forecasts = np.zeros((3, 4, 3))
    forecasts[..., 2] = 1.0                                # the top quantile far above any outcome
    origins = np.array([10, 50, 198])                      # 198: its forecast runs past the data, left out
    assert calibration(forecasts, close, origins, (0.1, 0.5, 0.9)) == {"0.1": 0.0, "0.5": 0.0, "0.9": 1.0}
    assert calibration(forecasts[:1], close, np.array([199]), (0.1, 0.5, 0.9)) == {}


def test_a_forecasters_validation_reports_progress_while_forecasting_and_keeps_its_deadline(trained, features):
    from shared.validation.validator import ValidationTimeout

    root, _ = trained
    candidate = load_candidate(root / "training" / "ckpt-ep00000010.pt")
    seen: list[float] = []
    validate(candidate, features, ValidationConfig(max_sessions=4, mc_runs=20), progress=seen.append)
    # the first quarter: one report per batch of forecasts (4 sessions x 359 decisions, batches of 512)
    decisions = 4 * (features.session_config.length_bars - 1)
    assert [round(x, 4) for x in seen if x <= 0.25] == [round(0.25 * n / decisions, 4)
                                                       for n in (512, 1024, decisions)]
    assert seen == sorted(seen) and seen[-1] == 1.0
    with pytest.raises(ValidationTimeout):
        validate(candidate, features, ValidationConfig(max_sessions=4, mc_runs=20, timeout_seconds=1e-9))
