"""Learned chance outcomes (network.chance_codes = K): trained, stored, searched over K codes and
validated like the market-outcome model; the learner's side is in test_replay_learner.py."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import torch

from shared.config import NetworkConfig, TrainingConfig, ValidationConfig
from shared.env import TradingEnv
from shared.model.networks import outcome_names
from shared.search import NetworkSearch
from shared.training.trainer import Trainer
from shared.validation.validator import validate
from shared.volume.candidates import load_candidate

SMALL = NetworkConfig(tcn_channels=16, hidden=32, dropout=0.0)
CODES = 5


def _chance_outcomes(node: dict, seen: set[int]) -> None:
    for edge in node.get("children", []):
        if node["kind"] == "chance":
            seen.add(int(edge["outcome"]))
        _chance_outcomes(edge["child"], seen)


def test_a_model_with_learned_codes_trains_is_stored_searched_and_validated(features, tmp_path):
    config = TrainingConfig(network=replace(SMALL, chance_codes=CODES), episodes_per_iteration=2)
    trainer = Trainer(features, tmp_path, config)
    report = trainer.run_iteration()
    assert report.losses["commitment"] > 0  # the encoder was trained
    checkpoint = trainer.write_checkpoint()
    trainer.close()

    candidate = load_candidate(tmp_path / "training" / checkpoint)
    assert candidate.config.network.chance_codes == CODES and candidate.config.network.num_outcomes == CODES
    assert candidate.model.chance_encoder is not None
    for name, value in trainer.model.state_dict().items():
        torch.testing.assert_close(candidate.model.state_dict()[name], value, msg=name)

    # the search expands chance nodes over the K codes, not the market's 3 outcomes
    env = TradingEnv(features, config.env)
    obs = env.reset(features.require_sessions("validation")[:4])
    search = NetworkSearch(candidate.model, 4, env.space, replace(candidate.search_config, simulations=40))
    search.run(obs.temporal, obs.static, obs.legal, obs.position, np.arange(4, dtype=np.uint64), add_noise=False)
    seen: set[int] = set()
    for root in range(4):
        _chance_outcomes(json.loads(search.tree.tree_json(root, max_depth=6)), seen)
    assert seen <= set(range(CODES)) and max(seen) >= 3, seen

    result = validate(candidate, features, ValidationConfig(simulations=2, mc_runs=50, max_sessions=2))
    assert result.sessions == 2


def test_outcome_names_follow_the_chance_outcomes():
    assert outcome_names(NetworkConfig()) == ["down", "neutral", "up"]
    assert outcome_names(NetworkConfig(chance_codes=4)) == ["code_0", "code_1", "code_2", "code_3"]
