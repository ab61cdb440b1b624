"""The Guardian trained beside any family (issue 26): once per run, carried by every candidate, read back
by validation (its report's regimes, by the Guardian) and by live (the regime guard, by the same
Guardian), causal like every feature."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from shared.config import NetworkConfig, TrainingConfig, ValidationConfig
from shared.config.challengers import ForecastPolicyConfig, GuardianConfig, TFTConfig
from shared.core.feature_spec import INDICATOR_WARMUP_BARS
from shared.data.bars import Bars
from shared.features.indicators import indicator_features
from shared.model.guardian import TrainedGuardian
from shared.model.regimes import REGIMES
from shared.training import guardian as guardian_training
from shared.training.forecaster import ForecasterTrainer
from shared.training.guardian import train_guardian, training_window_ends
from shared.training.trainer import Trainer
from shared.validation.validator import validate
from shared.volume.candidates import load_candidate
from tests.helpers import one_torch_thread  # noqa: F401 - the fixture, used by pytestmark

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SMALL = GuardianConfig(window_bars=16, latent=4, hidden=(24,), batch_size=32, train_steps=12, clusters=4,
                       regime_horizon_bars=12)


@pytest.fixture(scope="module")
def indicators(features):
    return indicator_features(features.bars, "fx")


@pytest.fixture(scope="module")
def record(features, indicators):
    return train_guardian(features, indicators, SMALL, seed=3)


def test_a_trained_guardian_names_its_clusters_and_ranks_their_risk(record, features, indicators):
    assert record["steps"] == SMALL.train_steps and record["train_windows"] > SMALL.batch_size
    assert len(record["names"]) == SMALL.clusters and set(record["names"]) <= set(REGIMES)
    assert sorted(set(record["risk"])) <= list(range(SMALL.risk_levels)) and 0 in record["risk"]
    assert 0 <= record["accuracy"] <= 1 and 0 < record["majority_share"] <= 1
    assert not any(key.startswith("decoder.") for key in record["encoder_state"])  # a candidate carries no decoder
    guardian = TrainedGuardian(record)
    ends = training_window_ends(features, SMALL.window_bars)[::50]
    names, risk = guardian.regimes(indicators, ends)
    assert names.shape == risk.shape == ends.shape and set(names) <= set(record["names"])
    np.testing.assert_array_equal(guardian.regimes(indicators, ends)[0], names)  # evaluated: deterministic


def test_windows_come_from_train_sessions_after_the_warm_up(features):
    ends = training_window_ends(features, SMALL.window_bars)
    length = features.session_config.length_bars
    train = features.sessions["train"]
    in_train = ((ends[:, None] >= train[None]) & (ends[:, None] < train[None] + length)).any(axis=1)
    assert in_train.all() and ends.min() >= INDICATOR_WARMUP_BARS + SMALL.window_bars - 1
    assert ends.max() < features.sessions["validation"].min()


def test_a_regime_at_bar_t_reads_no_bar_after_t(record, features):
    """Perturb every bar after t: the Guardian's regime of each window ending at or before t is the same."""
    guardian = TrainedGuardian(record)
    bars = features.bars
    t = int(features.sessions["validation"][0])
    ends = np.arange(t - 40, t + 1)
    before = guardian.clusters(indicator_features(bars, "fx"), ends)
    rng = np.random.default_rng(0)
    factor = np.ones(len(bars))
    factor[t + 1:] = np.exp(rng.normal(0, 0.01, len(bars) - t - 1))
    wider = np.where(np.arange(len(bars)) > t, 1.001, 1.0)
    moved = Bars(bars.ts, bars.open * factor, bars.high * factor * wider, bars.low * factor / wider,
                 bars.close * factor, bars.volume * np.where(np.arange(len(bars)) > t, 3.0, 1.0))
    after = indicator_features(moved, "fx")
    assert not np.allclose(after[t + 1:], indicator_features(bars, "fx")[t + 1:])  # the perturbation is seen later
    np.testing.assert_array_equal(guardian.clusters(after, ends), before)


def _muzero(guardian: GuardianConfig = SMALL) -> TrainingConfig:
    return TrainingConfig(network=NetworkConfig(tcn_channels=16, hidden=32, dropout=0.0), episodes_per_iteration=2,
                          checkpoint_interval_episodes=2, guardian=guardian)


@pytest.fixture(scope="module")
def muzero_run(features, tmp_path_factory):
    root = tmp_path_factory.mktemp("guardian-muzero")
    trainer = Trainer(features, root, _muzero())
    assert trainer.guardian is None  # trained before the first iteration, not at construction
    report = trainer.run_iteration()
    trainer.close()
    return root, report, trainer.guardian


def test_the_guardian_trains_beside_muzero_and_every_candidate_carries_it(muzero_run):
    root, report, record = muzero_run
    assert record is not None and report.checkpoint is not None
    candidate = load_candidate(root / "training" / report.checkpoint)
    assert candidate.guardian is not None and candidate.guardian.names == tuple(record["names"])
    assert "guardian" not in candidate.payload  # read once, into candidate.guardian
    np.testing.assert_array_equal(candidate.guardian.centroids, record["centroids"].numpy())


def test_a_restart_keeps_the_runs_guardian(muzero_run, features, monkeypatch):
    root, _, record = muzero_run

    def retrain(*args, **kwargs):
        raise AssertionError("the Guardian was trained again")

    monkeypatch.setattr("shared.training.guardian.train_guardian", retrain)
    trainer = Trainer(features, root, _muzero())
    report = trainer.run_iteration()
    trainer.close()
    torch.testing.assert_close(trainer.guardian["centroids"], record["centroids"])
    assert load_candidate(root / "training" / report.checkpoint).guardian.names == tuple(record["names"])


def test_no_guardian_unless_asked(features, tmp_path):
    trainer = Trainer(features, tmp_path, _muzero(replace(SMALL, train_steps=0)))
    report = trainer.run_iteration()
    trainer.close()
    assert trainer.guardian is None and load_candidate(tmp_path / "training" / report.checkpoint).guardian is None


def test_the_guardian_trains_beside_an_offline_family(features, tmp_path):
    config = TrainingConfig(model="tft", tft=TFTConfig(hidden=16, variable_hidden=8, heads=2, lstm_layers=1,
                                                       encoder_bars=20, decoder_bars=12, batch_size=16,
                                                       steps_per_iteration=5, checkpoint_interval_steps=5),
                            forecast_policy=ForecastPolicyConfig(horizon_bars=6), guardian=SMALL)
    trainer = ForecasterTrainer(features, tmp_path, config)
    report = trainer.run_iteration()
    trainer.close()
    candidate = load_candidate(tmp_path / "training" / report.checkpoint)
    assert candidate.family == "tft" and candidate.guardian is not None
    # resumed from latest.pt with the Guardian it had
    again = ForecasterTrainer(features, tmp_path, config)
    torch.testing.assert_close(again.guardian["centroids"], trainer.guardian["centroids"])
    again.close()


def test_a_market_of_several_instruments_is_refused_at_start(features):
    several = replace(features, instruments=("GBPJPY", "EURUSD"))
    with pytest.raises(ValueError, match="one instrument's regimes"):
        guardian_training.guardian_instrument(several)


def test_validation_labels_the_sessions_by_the_candidates_guardian(muzero_run, features):
    root, report, record = muzero_run
    candidate = load_candidate(root / "training" / report.checkpoint)
    result = validate(candidate, features, ValidationConfig(max_sessions=4, mc_runs=20)).regimes
    assert result["labeller"] == "guardian"
    assert sum(row["sessions"] for row in result["by_regime"].values()) == 4
    assert sum(row["sessions"] for row in result["by_risk"].values()) == 4
    assert set(result["by_regime"]) <= set(record["names"])
    assert 0 <= result["guardian"]["agreement"] <= 1 and result["guardian"]["clusters"] == record["names"]
    assert {"candidate", "flat", "raw_network"} <= set(next(iter(result["by_regime"].values())))
    # without a Guardian, the rules label them
    candidate.guardian = None
    assert validate(candidate, features, ValidationConfig(max_sessions=4, mc_runs=20)).regimes["labeller"] == "rules"
