"""The networks: shapes, the sparse TCN against a dense causal conv, the value support, device choice."""

from __future__ import annotations

import pytest
import torch
from torch.nn import functional as F

from shared.config import NetworkConfig
from shared.model import MuZeroNetworks, ValueSupport, parameter_counts, select_device
from shared.model.networks import CausalConvBlock
from shared.model.support import scale, unscale


def dense_block(block: CausalConvBlock, x: torch.Tensor) -> torch.Tensor:
    """The same block as a textbook dense causal Conv1d over every position ([B, T, C] in and out)."""
    c_in = x.shape[2]
    weight = block.taps.weight.reshape(block.taps.out_features, block.kernel, c_in).permute(0, 2, 1)
    xc = x.transpose(1, 2)
    y = F.conv1d(F.pad(xc, ((block.kernel - 1) * block.dilation, 0)), weight, block.taps.bias, dilation=block.dilation)
    y = block.norm(y)
    skip = block.skip(x).transpose(1, 2)
    return F.relu(skip + F.relu(y)).transpose(1, 2)


def test_sparse_tcn_equals_dense_causal_convolution():
    torch.manual_seed(0)
    model = MuZeroNetworks(NetworkConfig(tcn_channels=16, hidden=32)).eval()
    for block in model.representation.blocks:  # non-trivial batch-norm statistics
        block.norm.running_mean.uniform_(-0.5, 0.5)
        block.norm.running_var.uniform_(0.5, 2.0)
    x = torch.randn(5, 32, 9)
    with torch.no_grad():
        dense = x
        for block in model.representation.blocks:
            dense = dense_block(block, dense)
        sparse = x
        positions = list(range(32))
        for block, out_pos in zip(model.representation.blocks, model.representation.out_positions):
            sparse = block(sparse, positions, out_pos)
            positions = out_pos
    torch.testing.assert_close(sparse[:, -1, :], dense[:, -1, :], rtol=1e-5, atol=1e-5)
    assert model.representation.out_positions[-1] == [31]


def test_the_last_bar_output_sees_15_bars_only_through_the_tcn_but_the_pool_sees_all():
    torch.manual_seed(1)
    model = MuZeroNetworks(NetworkConfig(tcn_channels=16, hidden=32)).eval()
    x = torch.randn(1, 32, 9)
    s = torch.zeros(1, 6)
    changed = x.clone()
    changed[0, 0] += 5.0  # the oldest bar: outside the TCN's receptive field, inside the pooled mean
    with torch.no_grad():
        assert not torch.allclose(model.represent(x, s), model.represent(changed, s))


def test_shapes_and_parameter_counts():
    config = NetworkConfig()
    model = MuZeroNetworks(config).eval()
    counts = parameter_counts(model)
    assert counts["total"] == sum(v for k, v in counts.items() if k != "total")
    b = 7
    with torch.no_grad():
        state = model.represent(torch.randn(b, 32, 9), torch.randn(b, 6))
        policy, value = model.predict(state)
        after, chance, after_value = model.afterstate(state, torch.randint(0, 4, (b,)))
        nxt, reward = model.dynamics(after, torch.randint(0, 3, (b,)))
    assert state.shape == after.shape == nxt.shape == (b, 256)
    assert policy.shape == (b, 4) and chance.shape == (b, 3)
    assert value.shape == after_value.shape == (b, 601) and reward.shape == (b,)


def test_value_support_round_trips_and_clips():
    support = ValueSupport()
    pips = torch.tensor([-1000.0, -300.0, -12.5, -0.3, 0.0, 0.3, 12.5, 299.0, 1000.0])
    target = support.two_hot(pips)
    assert torch.allclose(target.sum(-1), torch.ones(len(pips)))
    assert (target > 0).sum(-1).max() <= 2
    recovered = unscale((target * support.support).sum(-1))
    torch.testing.assert_close(recovered, pips.clamp(-300, 300), rtol=1e-3, atol=1e-3)
    x = torch.linspace(-300, 300, 101)
    torch.testing.assert_close(unscale(scale(x)), x, rtol=1e-4, atol=1e-3)


def test_device_selection(monkeypatch):
    monkeypatch.delenv("MICRO_DEVICE", raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert select_device().type == "cuda"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    assert select_device().type == "mps"
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    assert select_device().type == "cpu"
    monkeypatch.setenv("MICRO_DEVICE", "cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert select_device().type == "cpu"


def test_bad_network_config():
    with pytest.raises(ValueError, match="dropout"):
        NetworkConfig(dropout=1.5)


def test_the_inference_plan_computes_what_the_modules_do():
    """The search's flat eager plan (transposed weights, one-hot folded into a bias table,
    fused heads) against the modules, output by output, whatever mode the model is in."""
    from shared.model.inference import InferencePlan

    torch.manual_seed(1)
    model = MuZeroNetworks(NetworkConfig(tcn_channels=16, hidden=32))
    for block in model.representation.blocks:  # non-trivial batch-norm statistics
        block.norm.running_mean.uniform_(-0.5, 0.5)
        block.norm.running_var.uniform_(0.5, 2.0)
    for p in model.parameters():  # weights away from their initialisation, layer norms included
        p.data.add_(0.1 * torch.randn_like(p))
    support = ValueSupport(model.config.value_atoms, model.config.value_max_pips)
    model.train()  # the plan is an eval-mode copy: the training model's mode must not matter
    plan = InferencePlan(model, support.support)
    model.eval()
    b = 7
    temporal, static = torch.randn(b, 32, 9), torch.randn(b, 6)
    legal = torch.rand(b, 4) > 0.3
    legal[:, 0] = True
    state_in, action, outcome = torch.randn(b, 32), torch.randint(0, 4, (b,)), torch.randint(0, 3, (b,))
    with torch.inference_mode():
        state, prior, value = plan.roots(temporal, static, legal)
        want_state = model.represent(temporal, static)
        policy_logits, value_logits = model.predict(want_state)
        want_prior = torch.softmax(policy_logits.masked_fill(~legal, float("-inf")), -1)
        torch.testing.assert_close(state, want_state, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(prior, want_prior, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(value, support.value(value_logits), atol=1e-4, rtol=1e-5)
        assert torch.all(prior[~legal] == 0)

        after, chance, after_value = plan.afterstates(state_in, action)
        want_after, want_chance, want_after_value = model.afterstate(state_in, action)
        torch.testing.assert_close(after, want_after, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(chance, want_chance, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(after_value, support.value(want_after_value), atol=1e-4, rtol=1e-5)

        nxt, policy, value, reward = plan.states(state_in, outcome)
        want_next, want_reward = model.dynamics(state_in, outcome)
        want_policy, want_value = model.predict(want_next)
        torch.testing.assert_close(nxt, want_next, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(policy, want_policy, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(value, support.value(want_value), atol=1e-4, rtol=1e-5)
        torch.testing.assert_close(reward, want_reward, atol=1e-5, rtol=1e-5)
