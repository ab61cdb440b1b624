"""The weight average a candidate carries (TRAINING_LEARNER__WEIGHT_AVERAGE_DECAY): the formula, the
candidate it makes, and a restart that keeps it."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from shared.config import LearnerConfig, NetworkConfig, TrainingConfig
from shared.training.averaging import WeightAverage
from shared.volume.candidates import load_candidate


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))


def test_each_update_moves_the_average_by_one_minus_its_decay():
    model = _net()
    average = WeightAverage(model, decay=0.99)
    start = {k: v.clone() for k, v in average.model.state_dict().items()}
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
        model(torch.randn(8, 3))  # a training-mode pass moves BatchNorm's statistics and counter
    average.update(model)
    # the first update's decay is min(0.99, 1 / 10) = 0.1: nine tenths of the way to the live weights
    for name, value in average.model.state_dict().items():
        live = model.state_dict()[name]
        if value.is_floating_point():
            assert torch.allclose(value, 0.1 * start[name] + 0.9 * live), name
        else:
            assert torch.equal(value, live), name  # the batch counter is copied, not averaged
    assert [average.decay_at(n) for n in (0, 90, 10_000)] == pytest.approx([0.1, 91 / 100, 0.99])


def test_the_average_lags_the_learner_then_reaches_weights_that_stay_put():
    model = _net()
    average = WeightAverage(model, decay=0.9)
    weight = model[0].weight
    with torch.no_grad():
        weight.fill_(1.0)
    average.update(model)
    assert not torch.allclose(average.model[0].weight, weight), "one update goes nine tenths of the way"
    for _ in range(200):
        average.update(model)
    assert torch.allclose(average.model[0].weight, weight, atol=1e-6)
    assert not average.model[0].weight.requires_grad and not average.model.training


def test_decay_out_of_range_is_refused():
    with pytest.raises(ValueError, match="weight_average_decay"):
        LearnerConfig(weight_average_decay=1.0)
    with pytest.raises(ValueError, match="weight_average_decay"):
        LearnerConfig(weight_average_decay=-0.1)
    with pytest.raises(ValueError, match="decay"):
        WeightAverage(_net(), decay=0.0)


def _config(decay: float) -> TrainingConfig:
    return TrainingConfig(network=NetworkConfig(tcn_channels=16, hidden=32, dropout=0.0), episodes_per_iteration=2,
                          checkpoint_interval_episodes=2, learner_steps_per_episode=3.0,
                          learner=LearnerConfig(weight_average_decay=decay))


def _states_equal(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_candidates_carry_the_average_and_a_restart_keeps_it(features, tmp_path):
    from shared.training.trainer import Trainer

    trainer = Trainer(features, tmp_path, _config(0.95))
    trainer.run_iteration()
    trainer.run_iteration()
    assert trainer.weight_average.updates == trainer.learner.steps == 12
    training = tmp_path / "training"
    candidate = load_candidate(training / "ckpt-ep00000004.pt")
    live = trainer.model.state_dict()
    averaged = trainer.weight_average.model.state_dict()
    assert not _states_equal(live, averaged), "twelve steps apart from the average"
    assert _states_equal(candidate.model.state_dict(), averaged), "the candidate is the average"
    assert candidate.config.learner.weight_average_decay == 0.95
    latest = torch.load(training / "latest.pt", weights_only=True)
    assert _states_equal(latest["model_state"], live), "latest.pt resumes the learner's own weights"
    trainer.close()

    restarted = Trainer(features, tmp_path, _config(0.95))
    assert restarted.weight_average.updates == 12
    assert _states_equal(restarted.weight_average.model.state_dict(), averaged)
    assert _states_equal(restarted.model.state_dict(), live)
    restarted.run_iteration()
    assert restarted.weight_average.updates == 18
    restarted.close()


def test_turned_on_at_a_restart_the_average_starts_from_the_resumed_weights(features, tmp_path):
    from shared.training.trainer import Trainer

    plain = Trainer(features, tmp_path, _config(0.0))
    assert plain.weight_average is None
    plain.run_iteration()
    candidate = load_candidate(tmp_path / "training" / "ckpt-ep00000002.pt")
    assert _states_equal(candidate.model.state_dict(), plain.model.state_dict()), "off: the learner's weights"
    live = {k: v.clone() for k, v in plain.model.state_dict().items()}
    plain.close()

    averaged = Trainer(features, tmp_path, _config(0.95))
    assert averaged.weight_average.updates == 0
    assert _states_equal(averaged.weight_average.model.state_dict(), live)
    averaged.close()
