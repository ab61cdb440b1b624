"""The Oracle forecaster (shared/model/tft*.py): the notes' settings, learning, causality of the windows
and of the decoder, the loss and calibration measures, and the forecast-to-position rule."""

from __future__ import annotations

from dataclasses import replace
from statistics import NormalDist

import numpy as np
import pandas as pd
import pytest
import torch

from shared.core.calendar import FX, bar_in_closed_market
from shared.core.feature_spec import INDICATOR_FEATURES
from shared.data.bars import NS_PER_MINUTE, Bars
from shared.features.indicators import indicator_features
from shared.model.tft import GatedResidualNetwork, TemporalFusionTransformer, TFTConfig, coverage, quantile_loss
from shared.model.tft_data import (
    KNOWN_FEATURES,
    build_windows,
    fit_scaling,
    scheduled_times,
    time_features,
    valid_origins,
    window_inputs,
)
from shared.model.tft_policy import ForecastPolicyConfig, spread_cost, target_position
from tests.helpers import one_torch_thread  # noqa: F401 - the fixture, used by pytestmark

SMALL = TFTConfig(observed_inputs=6, hidden=16, variable_hidden=8, heads=2, encoder_bars=12, decoder_bars=4)
QUANTILES = SMALL.quantiles


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def small_model(seed: int = 0, **overrides) -> TemporalFusionTransformer:
    torch.manual_seed(seed)
    return TemporalFusionTransformer(replace(SMALL, **overrides))


def series(n: int, features: int, seed: int = 0, start: str = "2024-01-03 00:00", bar_minutes: int = 5):
    """(features [n, F] float32, close [n], ts [n]): a random walk on an unbroken bar grid."""
    rng = np.random.default_rng(seed)
    ts = pd.Timestamp(start).value + np.arange(n, dtype=np.int64) * bar_minutes * NS_PER_MINUTE
    close = 100.0 * np.exp(np.cumsum(rng.normal(0, 1e-3, n)))
    return rng.normal(size=(n, features)).astype(np.float32), close, ts


def test_defaults_are_the_product_notes_settings():
    c = TFTConfig()
    assert (c.encoder_bars, c.decoder_bars, c.hidden, c.heads, c.lstm_layers, c.dropout) == (60, 24, 128, 4, 2, 0.1)
    assert (c.variable_hidden, c.learning_rate, c.max_epochs, c.patience_epochs, c.gradient_clip) == (
        64, 1e-3, 100, 15, 0.1)
    assert c.batch_size == 64  # the notes' 256: about 10 s a step on two CPU cores
    assert c.quantiles == (0.1, 0.5, 0.9)
    assert c.observed_inputs == len(INDICATOR_FEATURES) == 40 and c.known_inputs == len(KNOWN_FEATURES) == 4
    with pytest.raises(ValueError, match="multiple of heads"):
        TFTConfig(hidden=10, heads=4)
    with pytest.raises(ValueError, match="ascending"):
        TFTConfig(quantiles=(0.9, 0.1))


def test_default_model_shapes_and_interpretable_outputs():
    torch.manual_seed(0)
    model = TemporalFusionTransformer().eval()
    c = model.config
    with torch.no_grad():
        out = model(torch.randn(3, 60, 40), torch.randn(3, 24, 4))
    assert out.quantiles.shape == (3, 24, 3) and out.attention.shape == (3, 24, 84)
    assert out.observed_weights.shape == (3, 60, 40) and out.known_weights.shape == (3, 24, 4)
    for weights in (out.observed_weights, out.known_weights, out.attention):
        torch.testing.assert_close(weights.sum(-1), torch.ones(weights.shape[:-1]))
    assert (out.quantiles.diff(dim=-1) > 0).all()  # non-crossing
    # the causal mask: decoder step i sees encoder steps and decoder steps <= i only
    later = torch.arange(84)[None, :] > (c.encoder_bars + torch.arange(24))[:, None]
    assert (out.attention[:, later] == 0).all() and (out.attention[:, ~later] > 0).all()
    with pytest.raises(ValueError, match="expected observed"):
        model(torch.randn(3, 59, 40), torch.randn(3, 24, 4))


def test_grn_context_and_grouped_form():
    torch.manual_seed(0)
    grn = GatedResidualNetwork(5, 7, 3, 0.0, context=2)
    a, ctx = torch.randn(4, 5), torch.randn(4, 2)
    assert grn(a, ctx).shape == (4, 3) and not torch.allclose(grn(a, ctx), grn(a, ctx + 1))
    with pytest.raises(ValueError, match="context"):
        grn(a)
    grouped = GatedResidualNetwork(5, 7, 3, 0.0, groups=2)  # two independent GRNs over [2, N, 5]
    x = torch.randn(2, 4, 5)
    y = grouped(x)
    x2 = x.clone()
    x2[1] += 1.0
    assert y.shape == (2, 4, 3) and torch.equal(grouped(x2)[0], y[0]) and not torch.allclose(grouped(x2)[1], y[1])


def test_overfits_a_small_fixed_batch():
    model = small_model(dropout=0.0)
    torch.manual_seed(1)
    observed, known = torch.randn(16, 12, 6), torch.randn(16, 4, 4)
    target = torch.randn(16, 4)
    optimiser = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(300):
        loss = quantile_loss(model(observed, known).quantiles, target, QUANTILES, scale=model.target_scale)
        optimiser.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimiser.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0] / 10, (losses[0], losses[-1])


def test_inputs_and_forecast_at_t_ignore_every_row_after_t():
    features, close, ts = series(200, 6, seed=2)
    t = 120
    origins = np.array([t, t - 7, 40])
    kwargs = dict(encoder_bars=12, decoder_bars=4, bar_minutes=5, calendar="crypto")
    windows = build_windows(features, close, ts, origins, **kwargs)
    other_features, other_close, _ = series(200, 6, seed=3)
    changed_f, changed_c, changed_ts = features.copy(), close.copy(), ts.copy()
    changed_f[t + 1:], changed_c[t + 1:] = other_features[t + 1:], other_close[t + 1:]
    changed_ts[t + 1:] += 17 * NS_PER_MINUTE  # even the later bars' times
    changed = build_windows(changed_f, changed_c, changed_ts, origins, **kwargs)
    np.testing.assert_array_equal(changed.observed, windows.observed)
    np.testing.assert_array_equal(changed.known, windows.known)
    assert not np.array_equal(changed.target[0], windows.target[0])  # the targets read after t, as they should
    np.testing.assert_array_equal(changed.target[2], windows.target[2])
    # the inputs need nothing after t at all: the series cut at t gives them too
    observed, known = window_inputs(features[: t + 1], ts[: t + 1], origins, **kwargs)
    np.testing.assert_array_equal(observed, windows.observed)
    model = small_model().eval()
    with torch.no_grad():
        a = model(torch.from_numpy(windows.observed), torch.from_numpy(windows.known)).quantiles
        b = model(torch.from_numpy(changed.observed), torch.from_numpy(changed.known)).quantiles
    assert torch.equal(a, b)
    # the windows hold what they say
    np.testing.assert_array_equal(windows.observed[0], features[t - 11: t + 1])
    np.testing.assert_allclose(windows.target[0], np.log(close[t + 1: t + 5] / close[t]), rtol=1e-6)
    np.testing.assert_array_equal(windows.known[0], time_features(ts[t + 1: t + 5]))
    with pytest.raises(ValueError, match="origins"):
        build_windows(features, close, ts, np.array([197]), **kwargs)


def test_a_decoder_step_sees_no_later_known_input():
    model = small_model(seed=4).eval()
    torch.manual_seed(5)
    observed, known = torch.randn(8, 12, 6), torch.randn(8, 4, 4)
    with torch.no_grad():
        base = model(observed, known).quantiles
        for k in range(4):
            perturbed = known.clone()
            perturbed[:, k] += torch.randn(8, 4) * 3
            out = model(observed, perturbed).quantiles
            torch.testing.assert_close(out[:, :k], base[:, :k], rtol=0, atol=1e-6)
            assert (out[:, k] - base[:, k]).abs().max() > 1e-4  # and step k itself does see it


def test_quantile_loss_by_hand():
    pred = torch.tensor([[[0.0, 1.0, 2.0], [-1.0, 0.0, 0.5]]])  # [1, 2, 3]
    target = torch.tensor([[1.5, -2.0]])
    # step 1: errors 1.5, 0.5, -0.5 -> 0.1*1.5, 0.5*0.5, 0.1*0.5 ; step 2: errors -1, -2, -2.5 -> 0.9, 1.0, 0.25
    expected = (0.15 + 0.25 + 0.05 + 0.9 + 1.0 + 0.25) / 6
    assert quantile_loss(pred, target, (0.1, 0.5, 0.9)).item() == pytest.approx(expected)
    scaled = quantile_loss(pred, target, (0.1, 0.5, 0.9), scale=torch.tensor([1.0, 2.0])).item()
    assert scaled == pytest.approx((0.15 + 0.25 + 0.05 + (0.9 + 1.0 + 0.25) / 2) / 6)


def test_coverage_of_exact_quantiles_is_nominal():
    rng = np.random.default_rng(6)
    sigma = np.array([1.0, 2.0, 3.0])
    target = torch.from_numpy(rng.normal(size=(40_000, 3)) * sigma).float()
    exact = torch.from_numpy(np.array([NormalDist().inv_cdf(q) for q in QUANTILES])[None, None, :] * sigma[None, :, None]).float()
    observed = coverage(exact.expand(40_000, 3, 3), target, QUANTILES)
    assert list(observed) == list(QUANTILES)
    for q, fraction in observed.items():
        assert fraction == pytest.approx(q, abs=0.01)
    halved = coverage(exact.expand(40_000, 3, 3) * 0.5, target, QUANTILES)  # too narrow: over-confident
    assert halved[0.1] > 0.2 and halved[0.9] < 0.8


def test_time_features_and_the_schedule_match_the_real_bars():
    start = pd.Timestamp("2024-03-04 00:00").value  # H1 bars over two FX weekends (one with US DST)
    grid = start + np.arange(24 * 21, dtype=np.int64) * 60 * NS_PER_MINUTE
    ts = grid[~bar_in_closed_market(FX, grid, 60)]
    n = len(ts)
    rng = np.random.default_rng(7)
    close = 150 * np.exp(np.cumsum(rng.normal(0, 1e-3, n)))
    bars = Bars(ts, close, close * 1.001, close * 0.999, close, np.full(n, 10.0))
    columns = [INDICATOR_FEATURES.index(name) for name in KNOWN_FEATURES]
    np.testing.assert_allclose(time_features(ts), indicator_features(bars, FX)[:, columns], atol=1e-6)
    origins = np.arange(0, n - 24)
    np.testing.assert_array_equal(scheduled_times(ts[origins], 24, bar_minutes=60, calendar="fx"),
                                  ts[origins[:, None] + np.arange(1, 25)])


def test_valid_origins_and_scaling_read_the_training_part_only():
    assert valid_origins(400, encoder_bars=60, decoder_bars=24).tolist() == list(range(299, 376))
    assert len(valid_origins(100, encoder_bars=60, decoder_bars=24)) == 0
    features, close, _ = series(300, 6, seed=8)
    scaling = fit_scaling(features, close, 200, first=10)
    features[200:] += 100.0
    close[200:] *= 3.0
    again = fit_scaling(features, close, 200, first=10)
    np.testing.assert_array_equal(again.observed_mean, scaling.observed_mean)
    assert again.return_std == scaling.return_std == pytest.approx(1e-3, rel=0.2)
    model = small_model()
    model.set_scaling(scaling.observed_mean, scaling.observed_std, scaling.return_std)
    torch.testing.assert_close(model.target_scale, scaling.return_std * torch.arange(1.0, 5.0).sqrt())


def forecast_at(h_value_lower: float, h_value_upper: float, steps: int = 24) -> np.ndarray:
    """[steps, 3]: zeros but at step 12 (the default horizon): lower, middle, upper."""
    forecast = np.zeros((steps, 3))
    forecast[11] = (h_value_lower, (h_value_lower + h_value_upper) / 2, h_value_upper)
    return forecast


# the notes' band at 12 bars, flat on no signal (the defaults read the median at 24 bars, holding)
BAND = ForecastPolicyConfig(horizon_bars=12, lower_quantile=0.1, upper_quantile=0.9, no_signal="flat")


def test_policy_long_short_flat_and_the_cost_boundary():
    cost = 2e-4
    assert target_position(forecast_at(3e-4, 9e-4), QUANTILES, cost, config=BAND) == 1
    assert target_position(forecast_at(-9e-4, -3e-4), QUANTILES, cost, config=BAND) == -1
    assert target_position(forecast_at(-1e-4, 5e-4), QUANTILES, cost, config=BAND) == 0  # the lower quantile below 0
    assert target_position(forecast_at(1e-4, 5e-4), QUANTILES, cost, config=BAND) == 0   # above 0 but not above the cost
    assert target_position(forecast_at(cost, 5e-4), QUANTILES, cost, config=BAND) == 0   # exactly the cost: no trade
    assert target_position(forecast_at(np.nextafter(cost, 1), 5e-4), QUANTILES, cost, config=BAND) == 1
    assert target_position(forecast_at(-5e-4, -cost), QUANTILES, cost, config=BAND) == 0
    assert target_position(forecast_at(-5e-4, np.nextafter(-cost, -1)), QUANTILES, cost, config=BAND) == -1
    assert target_position(forecast_at(5e-4, -5e-4), QUANTILES, cost, config=BAND) == 0  # crossed: no signal
    hold = replace(BAND, no_signal="hold")
    assert target_position(forecast_at(-1e-4, 5e-4), QUANTILES, cost, current=-1, config=hold) == -1
    assert target_position(forecast_at(3e-4, 9e-4), QUANTILES, cost, current=-1, config=hold) == 1
    batch = np.stack([forecast_at(3e-4, 9e-4), forecast_at(-9e-4, -3e-4), forecast_at(0.0, 0.0)])
    assert target_position(batch, QUANTILES, cost, config=BAND).tolist() == [1, -1, 0]
    assert target_position(forecast_at(3e-4, 9e-4), QUANTILES, cost, config=replace(BAND, horizon_bars=3)) == 0
    with pytest.raises(ValueError, match="beyond"):
        target_position(np.zeros((4, 3)), QUANTILES, cost, config=BAND)
    with pytest.raises(ValueError, match="quantiles"):
        target_position(forecast_at(0, 0), (0.2, 0.5, 0.8), cost, config=BAND)
    # the defaults: the median at the forecast's last step against the cost
    median = np.zeros((24, 3))
    median[23] = (-9e-4, 3e-4, 9e-4)
    assert target_position(median, QUANTILES, cost) == 1
    assert target_position(median, QUANTILES, 4e-4, current=-1) == -1  # no signal: hold


def test_spread_cost_is_the_round_trip_log_return():
    assert spread_cost(0.02, 150.0) == pytest.approx(np.log(150.01 / 149.99))
    assert spread_cost(0.02, 150.0) == pytest.approx(0.02 / 150.0, rel=1e-6)
    assert spread_cost(0.0, 1.1) == 0.0
    with pytest.raises(ValueError):
        spread_cost(-0.1, 1.0)
