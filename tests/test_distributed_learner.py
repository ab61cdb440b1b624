"""Data-parallel learners (TRAINING_LEARNERS=k): two ranks on CPU take the same steps as one learner."""

from __future__ import annotations

import copy
import os
import signal

import numpy as np
import pytest
import torch

from shared.config import LearnerConfig, NetworkConfig
from shared.model import MuZeroNetworks
from shared.training.distributed import DistributedLearner, make_learner
from shared.training.learner import Learner
from shared.training.replay import TrainingBatch

CPU = torch.device("cpu")
NETWORK = NetworkConfig(tcn_channels=16, hidden=32, value_atoms=51, dropout=0.0)  # small; no dropout: same numbers
CONFIG = LearnerConfig(batch_size=16, learning_rate=3e-3)


def _batch(seed: int, b: int = 16, k: int = 3, actions: int = 4) -> TrainingBatch:
    r = np.random.default_rng(seed)
    return TrainingBatch(
        temporal=r.normal(size=(b, NETWORK.window_bars, 9)).astype(np.float32),
        static=r.normal(size=(b, 6)).astype(np.float32),
        actions=r.integers(0, actions, (b, k)), outcomes=r.integers(0, 3, (b, k)),
        rewards=r.normal(size=(b, k)).astype(np.float32), values=(5 * r.normal(size=(b, k + 1))).astype(np.float32),
        policies=r.dirichlet(np.ones(actions), (b, k + 1)).astype(np.float32),
        mask=(r.random((b, k + 1)) < 0.8).astype(np.float32),
        next_bars=r.normal(size=(b, k, 9)).astype(np.float32),
    )


def _assert_same_state(a: torch.nn.Module, b: torch.nn.Module, steps: int) -> None:
    for (name, x), y in zip(a.state_dict().items(), b.state_dict().values()):
        # the conv's bias feeds a batch norm, which subtracts it again: its gradient is 0 but for
        # rounding, which Adam scales into steps of up to the learning rate (summed in another order
        # on two ranks, another rounding); it changes no output in training. The batch norm's running
        # mean tracks the conv's output, bias included: it follows the same drift (seen at 1e-5 with
        # one torch thread)
        bias_drift = name.endswith("taps.bias") or name.endswith("norm.running_mean")
        atol = CONFIG.learning_rate * steps if bias_drift else 1e-5
        torch.testing.assert_close(y, x, atol=atol, rtol=1e-4, msg=name)


def _assert_same_losses(single: dict[str, float], distributed: dict[str, float]) -> None:
    assert list(distributed) == list(single)
    for name, value in single.items():
        assert distributed[name] == pytest.approx(value, rel=1e-4, abs=1e-5), name


def test_two_ranks_step_like_one_learner_and_a_dead_worker_is_an_error():
    torch.manual_seed(0)
    model = MuZeroNetworks(NETWORK)
    single = Learner(model, CONFIG, CPU)
    learner = make_learner(copy.deepcopy(model), CONFIG, CPU, learners=2)
    assert isinstance(learner, DistributedLearner)
    try:
        for i in range(3):
            _assert_same_losses(single.step(_batch(i)), learner.step(_batch(i)))
        _assert_same_state(single.model, learner.model, 3)  # parameters and the batch norms' running statistics
        assert learner.steps == 3
        worker = learner._workers[0]
        os.kill(worker.pid, signal.SIGKILL)
        worker.join(10)
        with pytest.raises(RuntimeError, match="rank 1.*exited"):
            learner.step(_batch(3))
        with pytest.raises(RuntimeError, match="closed"):
            learner.step(_batch(3))
    finally:
        learner.close()


def test_a_resumed_state_reaches_every_rank():
    torch.manual_seed(1)
    single = Learner(MuZeroNetworks(NETWORK), CONFIG, CPU)
    for i in range(5):
        single.step(_batch(10 + i))
    assert all("exp_avg" in s for s in single.optimizer.state.values())
    # as restore() does, before the first step: another initialisation, then the saved state loaded
    torch.manual_seed(2)
    learner = make_learner(MuZeroNetworks(NETWORK), CONFIG, CPU, learners=2)
    learner.model.load_state_dict(copy.deepcopy(single.model.state_dict()))
    learner.optimizer.load_state_dict(copy.deepcopy(single.optimizer.state_dict()))
    learner.steps = single.steps
    try:
        for i in range(3):  # a worker without rank 0's parameters or Adam moments would part from step 1 or 2
            _assert_same_losses(single.step(_batch(20 + i)), learner.step(_batch(20 + i)))
        _assert_same_state(single.model, learner.model, 3)
        assert learner.steps == 8
        for a, b in zip(single.optimizer.state.values(), learner.optimizer.state.values()):
            torch.testing.assert_close(b["exp_avg_sq"], a["exp_avg_sq"], atol=1e-7, rtol=1e-4)
        # a restore after the workers started: the changed step counter sends rank 0's state again
        for i in range(2):
            single.step(_batch(30 + i))
        learner.model.load_state_dict(copy.deepcopy(single.model.state_dict()))
        learner.optimizer.load_state_dict(copy.deepcopy(single.optimizer.state_dict()))
        learner.steps = single.steps
        for i in range(2):
            _assert_same_losses(single.step(_batch(40 + i)), learner.step(_batch(40 + i)))
        _assert_same_state(single.model, learner.model, 2)
        assert learner.steps == 12
    finally:
        learner.close()


def test_the_batch_must_split_into_equal_shards():
    model = MuZeroNetworks(NETWORK)
    with pytest.raises(ValueError, match="TRAINING_LEARNER__BATCH_SIZE=16.*TRAINING_LEARNERS=3"):
        make_learner(model, CONFIG, CPU, learners=3)


def test_one_learner_is_todays_learner():
    learner = make_learner(MuZeroNetworks(NETWORK), CONFIG, CPU, learners=1)
    assert type(learner) is Learner
    learner.step(_batch(0))
    assert learner.steps == 1
