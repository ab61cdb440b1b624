"""The Guardian (shared/model/guardian.py, shared/model/regimes.py): the notes' settings, causal regime
labels, k-means naming and risk, the contrastive VAE's learning and its NT-Xent term."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest
import torch

from shared.core.feature_spec import INDICATOR_FEATURES
from shared.model.guardian import GuardianConfig, RegimeVAE, augment, kl_divergence, nt_xent
from shared.model.regimes import (
    cluster_risk,
    fit_volatility_threshold,
    label_clusters,
    regime_labels,
    regime_of,
    risk_level,
    window_statistics,
)
from tests.helpers import one_torch_thread  # noqa: F401 - the fixture, used by pytestmark

TINY = GuardianConfig(inputs=3, window_bars=8, hidden=(32, 16), latent=4, batch_size=32, regime_horizon_bars=4)
N = 60  # label horizon of the synthetic series tests


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def walk(returns: np.ndarray) -> np.ndarray:
    """Closes from one-bar log returns, starting at 100."""
    return 100.0 * np.exp(np.concatenate([[0.0], np.cumsum(returns)]))


def test_defaults_are_the_product_notes_settings():
    c = GuardianConfig()
    assert (c.latent, c.hidden, c.window_bars, c.beta, c.temperature) == (64, (256, 128, 64), 120, 4.0, 0.5)
    assert (c.batch_size, c.learning_rate, c.max_epochs) == (512, 1e-3, 100)
    assert c.inputs == len(INDICATOR_FEATURES) == 40 and c.regime_horizon_bars == 60


@pytest.mark.parametrize("overrides, message", [
    ({"latent": 0}, "latent must be positive"),
    ({"hidden": ()}, "hidden"),
    ({"hidden": (64, 0)}, "hidden"),
    ({"batch_size": 1}, "batch_size"),
    ({"temperature": 0.0}, "temperature must be positive"),
    ({"learning_rate": -1e-3}, "learning_rate must be positive"),
    ({"beta": -1.0}, "beta must be non-negative"),
    ({"jitter_std": float("nan")}, "jitter_std must be non-negative"),
    ({"regime_horizon_bars": 121}, "regime_horizon_bars"),
    ({"regime_horizon_bars": 1}, "regime_horizon_bars"),
    ({"volatile_quantile": 1.0}, "volatile_quantile"),
    ({"trend_threshold": 0.0}, "trend_threshold"),
    ({"risk_levels": 1}, "risk_levels"),
])
def test_config_rejects_bad_values(overrides, message):
    with pytest.raises(ValueError, match=message):
        GuardianConfig(**overrides)


def test_labels_read_no_bar_after_the_window_end():
    rng = np.random.default_rng(0)
    block = np.repeat(np.arange(10), 60)  # blocks of 60 bars, each with its own drift and volatility
    close = walk(rng.normal(0, 4e-4, 10)[block] + rng.normal(0, 1e-3, 600) * np.array([1, 1, 3, 1, 1, 0.5, 1, 3, 1, 1])[block])
    ends = np.arange(N, len(close))
    threshold = fit_volatility_threshold(close, ends[ends <= 300], N, quantile=0.8)
    labels = regime_labels(close, ends, N, volatility_threshold=threshold)
    assert set(labels) == {"bull", "bear", "sideways", "volatile"}  # the test can see every label change
    for t in (N, 200, 300, 450):
        perturbed = close.copy()
        perturbed[t + 1:] *= np.exp(rng.normal(0, 5e-3, len(close) - t - 1).cumsum())  # a different future
        relabelled = regime_labels(perturbed, ends, N, volatility_threshold=threshold)
        assert np.array_equal(relabelled[ends <= t], labels[ends <= t])
        assert (relabelled[ends > t] != labels[ends > t]).any()  # the perturbation does reach later windows
        if t >= 300:
            assert fit_volatility_threshold(perturbed, ends[ends <= 300], N, quantile=0.8) == threshold


def test_rising_falling_flat_and_burst_series_are_labelled_so():
    rng = np.random.default_rng(1)
    calm = walk(rng.normal(0, 1e-4, 2000))  # the training windows: a driftless random walk
    threshold = fit_volatility_threshold(calm, np.arange(N, len(calm)), N, quantile=0.99)
    segments = {  # log prices of 300 bars each, every segment starting where the one before ended
        "bull": np.cumsum(rng.normal(1e-4, 1e-4, 300)),
        "bear": np.cumsum(rng.normal(-1e-4, 1e-4, 300)),
        "sideways": rng.normal(0, 5e-5, 300),   # flat with noise: noise on the level, not a walk
        "volatile": rng.normal(0, 1e-3, 300),   # a burst: the same, twenty times larger
    }
    log_close = np.concatenate(list(segments.values()))
    for i in range(1, 4):
        log_close[300 * i:] += log_close[300 * i - 1] - log_close[300 * i]
    close = 100.0 * np.exp(log_close)
    for i, name in enumerate(segments):
        ends = np.arange(300 * i + N, 300 * (i + 1))  # windows wholly inside the segment
        assert (regime_labels(close, ends, N, volatility_threshold=threshold) == name).all(), name
    steady = walk(np.full(N, 1e-4))
    score, rv = window_statistics(steady, np.array([N]), N)
    assert score[0] == pytest.approx(math.sqrt(N)) and rv[0] == pytest.approx(1e-4)
    assert regime_labels(np.full(100, 150.0), np.array([N, 99]), N, volatility_threshold=0.0).tolist() == [
        "sideways", "sideways"]  # flat: no trend, no volatility


def blobs(seed: int = 0):
    """300 2-d latents in three blobs, with labels mostly by blob and realised volatility rising by blob."""
    rng = np.random.default_rng(seed)
    centres = np.array([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    blob = np.repeat(np.arange(3), 100)
    latents = centres[blob] + rng.normal(0, 0.5, (300, 2))
    labels = np.array(["bull", "bear", "volatile"])[blob]
    labels[0:30] = "bear"      # a 70/30 majority in blob 0
    labels[100:140] = "bull"   # 60/40 in blob 1
    labels[200:245] = "sideways"  # 55/45 in blob 2
    volatility = np.array([1.0, 2.0, 5.0])[blob] + rng.uniform(0, 0.1, 300)
    return latents, labels, volatility, centres, blob


def test_clusters_are_named_by_their_members_majority_and_ranked_by_volatility():
    latents, labels, volatility, centres, blob = blobs()
    clusters = label_clusters(latents, labels, 3, seed=0)
    for b, name in enumerate(("bull", "bear", "volatile")):
        j = clusters.assignment[blob == b]
        assert (j == j[0]).all()  # each blob is one cluster
        assert clusters.names[j[0]] == name
        assert regime_of(centres[b] + 0.3, clusters.centroids, clusters.names) == name
    risk = cluster_risk(volatility, clusters.assignment, 3, levels=4)
    assert [risk_level(centres[b], clusters.centroids, risk) for b in range(3)] == [0, 2, 3]
    # the same seed gives the same clusters; a tie goes to the earlier name in REGIMES
    again = label_clusters(latents, labels, 3, seed=0)
    assert np.array_equal(again.centroids, clusters.centroids) and again.names == clusters.names
    tied = labels.copy()
    tied[blob == 0] = np.where(np.arange(100) % 2, "sideways", "bear")
    assert label_clusters(latents, tied, 3, seed=0).names[clusters.assignment[0]] == "bear"
    with pytest.raises(ValueError, match="labels"):
        label_clusters(latents, np.full(300, "crash"), 3)


def test_risk_levels_spread_over_the_clusters():
    assignment = np.repeat(np.arange(8), 5)
    volatility = np.repeat([8.0, 1, 7, 2, 6, 3, 5, 4], 5)
    assert cluster_risk(volatility, assignment, 8, levels=4).tolist() == [3, 0, 3, 0, 2, 1, 2, 1]
    assert cluster_risk(volatility[:10], assignment[:10], 3, levels=4).tolist() == [2, 0, 3]  # cluster 2 empty: highest


def test_nt_xent_equals_a_hand_computation():
    a = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    b = torch.tensor([[1.0, 1.0], [0.0, 2.0]])  # cosines: a0.b0 = a1.b0 = b0.b1 = 1/sqrt(2), a1.b1 = 1, others 0
    h, tau = 1 / math.sqrt(2), 0.5

    def row(partner: float, others: list[float]) -> float:
        return -partner / tau + math.log(sum(math.exp(s / tau) for s in [partner, *others]))

    expected = (row(h, [0, 0]) + row(1, [0, h]) + row(h, [h, h]) + row(1, [0, h])) / 4
    assert nt_xent(a, b, tau).item() == pytest.approx(expected, rel=1e-6)
    assert nt_xent(a, a * 3, tau).item() < nt_xent(a, a.flip(0), tau).item()  # scale-free; matched beats swapped


def test_kl_and_augment():
    assert kl_divergence(torch.zeros(2, 4), torch.zeros(2, 4)).tolist() == [0.0, 0.0]
    assert kl_divergence(torch.ones(1, 4), torch.zeros(1, 4)).item() == pytest.approx(2.0)
    windows = torch.randn(16, 8, 3) * torch.tensor([1.0, 100.0, 0.0]) + 5
    view = augment(windows, torch.Generator().manual_seed(0))
    assert view.shape == windows.shape and not torch.equal(view, windows)
    assert torch.equal(view, augment(windows, torch.Generator().manual_seed(0)))  # seeded
    assert torch.equal(view[..., 2], windows[..., 2])  # a constant feature stays
    relative = ((view - windows) / windows.std(dim=(0, 1), keepdim=True)).std(dim=(0, 1))[:2]
    assert ((relative > 0.03) & (relative < 0.3)).all()  # small, and in each feature's own units
    torch.testing.assert_close(augment(windows, jitter_std=0.0, scale_std=0.0), windows)


def test_vae_shapes_and_scaling():
    torch.manual_seed(0)
    model = RegimeVAE(TINY)
    with pytest.raises(ValueError, match=r"\[B, 8, 3\]"):
        model.encode(torch.zeros(2, 7, 3))
    with pytest.raises(ValueError, match="positive std"):
        model.set_scaling(np.zeros(3), np.zeros(3))
    model.set_scaling([1.0, 2.0, 3.0], [2.0, 2.0, 2.0])
    windows = torch.randn(5, 8, 3)
    torch.testing.assert_close(model.standardise(windows), (windows - torch.tensor([1.0, 2.0, 3.0])) / 2)
    out = model.eval()(windows)
    assert out.reconstruction.shape == (5, 8, 3) and out.mu.shape == out.logvar.shape == out.z.shape == (5, 4)
    torch.testing.assert_close(out.z, out.mu)  # eval: no sampling
    assert model.latent(windows).shape == (5, 4) and model.reconstruct(windows).shape == (5, 8, 3)
    assert RegimeVAE(replace(TINY, window_bars=120, inputs=40)).encoder[0][0].in_features == 4800


def test_vae_learns_a_tiny_batch():
    torch.manual_seed(0)
    rng = torch.Generator().manual_seed(1)
    factors = torch.randn(32, 2, generator=rng)  # windows on a 2-d manifold, each feature in its own units
    basis = torch.randn(2, 8 * 3, generator=rng)
    batch = torch.tanh(factors @ basis).view(32, 8, 3) * torch.tensor([1.0, 10.0, 0.1]) + torch.tensor([0.0, 5.0, -1.0])
    model = RegimeVAE(TINY)
    flat = batch.flatten(0, 1)
    model.set_scaling(flat.mean(0), flat.std(0))

    def measures() -> tuple[float, float, float]:
        """(reconstruction MSE in raw units, NT-Xent of matched views, of shuffled views), in eval mode."""
        model.eval()
        mu, view_mu = model.latent(batch), model.latent(augment(batch, rng))
        shuffled = view_mu[torch.randperm(32, generator=rng)]
        return (torch.nn.functional.mse_loss(model.reconstruct(batch), batch).item(),
                nt_xent(mu, view_mu, TINY.temperature).item(), nt_xent(mu, shuffled, TINY.temperature).item())

    before = measures()
    optimiser = torch.optim.Adam(model.parameters(), lr=3e-3)
    terms = []
    model.train()
    for _ in range(300):
        loss = model.loss(batch, augment(batch, rng))
        optimiser.zero_grad()
        loss.total.backward()
        optimiser.step()
        terms.append([loss.total.item(), loss.reconstruction.item(), loss.contrastive.item()])
    first, last = np.mean(terms[:20], axis=0), np.mean(terms[-20:], axis=0)
    assert last[0] < 0.85 * first[0] and last[1] < 0.5 * first[1] and last[2] < first[2]
    after = measures()
    assert after[0] < 0.25 * before[0]  # the decoded latent means reconstruct the batch
    assert after[1] < 0.8 * before[1] and after[1] < after[2]  # views of one window embed together, apart from others
