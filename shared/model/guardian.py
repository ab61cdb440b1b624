"""The Guardian: a contrastive VAE over windows of indicator rows, whose latent clusters name the market
regime (shared/model/regimes.py labels the windows and names the clusters).

Plain PyTorch. W = window_bars, F = inputs, L = latent, hidden = (h_1, .., h_m):

1. Input: a window [B, W, F] of indicator rows (indicators-v1), the rows of bars t - W + 1 .. t, each
   feature standardised by the buffers `feature_mean`, `feature_std` (fitted on training bars only:
   tft_data.fit_scaling's observed_mean and observed_std will do; set_scaling), then flattened to W * F.
2. Encoder: an MLP W * F -> h_1 -> .. -> h_m (ReLU after each), then one linear map to (mu, logvar) of
   a diagonal Gaussian q(z | x) over L dims.
3. Reparameterisation: z = mu + exp(logvar / 2) * eps, eps ~ N(0, I), in training mode; z = mu in eval
   mode, so an evaluated model's encoding and reconstruction are deterministic.
4. Decoder: the mirror MLP L -> h_m -> .. -> h_1 -> W * F, the window's reconstruction in standardised
   units (a linear output: standardised features are unbounded).

Loss (`RegimeVAE.loss`), per window then averaged over the batch:

* reconstruction: the mean squared error of the standardised window, per element;
* KL(q(z | x) || N(0, I)) in nats, summed over the L dims, weighted by beta / (W * F) in the total: the
  KL per input element, so that against the per-element squared error beta keeps its beta-VAE meaning
  (the summed KL against the summed squared error);
* contrastive: NT-Xent (SimCLR's normalised temperature-scaled cross-entropy; `nt_xent`) between the
  latent means mu of two views of the same windows, `batch` and `augmented_view` (`augment`: Gaussian
  jitter and random feature scaling), times contrastive_weight. mu, not a sample z: the term asks the
  encoder to map a window and its augmentation close together, and a sample's noise would only blur it.

Reconstruction and KL are of `batch` alone; the caller may pass an augmented batch too (SimCLR augments
both views) at the cost of reconstructing augmented windows. A window's regime at inference is its
latent mean (`RegimeVAE.latent`) against the named cluster centroids (regimes.regime_of).

A trained Guardian travels inside every candidate of the run that trained it (payload["guardian"],
written by shared/training/guardian.py: the encoder's weights and scaling, the named centroids, their
risk levels, the rules that named them); `TrainedGuardian` reads it back, so validation labels a
candidate's sessions and live labels its bars with the same Guardian.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from shared.config.challengers import GuardianConfig
from shared.model.regimes import nearest_cluster
from shared.model.standardise import set_standardisation

__all__ = ["GuardianConfig", "GuardianLoss", "RegimeVAE", "TrainedGuardian", "VAEOutput", "augment", "kl_divergence",
           "latent_means", "nt_xent", "windows_ending_at"]


class VAEOutput(NamedTuple):
    """An encoding and its reconstruction (W = window_bars, F = inputs, L = latent)."""

    reconstruction: torch.Tensor  # [B, W, F] the decoded window, standardised units
    mu: torch.Tensor              # [B, L] posterior mean
    logvar: torch.Tensor          # [B, L] posterior log-variance
    z: torch.Tensor               # [B, L] the decoded latent: a sample in training mode, mu in eval mode


class GuardianLoss(NamedTuple):
    """The loss and its terms, scalars (`total` carries the gradient)."""

    total: torch.Tensor           # reconstruction + beta * kl / (W * F) + contrastive_weight * contrastive
    reconstruction: torch.Tensor  # mean squared error per standardised element
    kl: torch.Tensor              # KL(q || N(0, I)) in nats per window
    contrastive: torch.Tensor     # NT-Xent between the two views' latent means


def _mlp(widths: list[int]) -> nn.Sequential:
    """Linear maps through `widths`, a ReLU after each but the last."""
    layers: list[nn.Module] = []
    for i, (n_in, n_out) in enumerate(zip(widths, widths[1:])):
        layers.append(nn.Linear(n_in, n_out))
        if i < len(widths) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


class RegimeVAE(nn.Module):
    """windows [B, W, F] -> VAEOutput; see the module docstring."""

    def __init__(self, config: GuardianConfig = GuardianConfig()) -> None:
        super().__init__()
        c = config
        self.config = c
        flat = c.window_bars * c.inputs
        self.encoder = nn.Sequential(_mlp([flat, *c.hidden]), nn.ReLU(), nn.Linear(c.hidden[-1], 2 * c.latent))
        self.decoder = nn.Sequential(nn.Linear(c.latent, c.hidden[-1]), nn.ReLU(), _mlp([*reversed(c.hidden), flat]))
        self.register_buffer("feature_mean", torch.zeros(c.inputs))
        self.register_buffer("feature_std", torch.ones(c.inputs))

    def set_scaling(self, feature_mean, feature_std) -> None:
        """Standardise the inputs with [F] mean and positive std, fitted on training bars only."""
        set_standardisation(self.feature_mean, self.feature_std, feature_mean, feature_std)

    def standardise(self, windows: torch.Tensor) -> torch.Tensor:
        """[B, W, F] raw windows -> the same, standardised (shapes checked)."""
        c = self.config
        if windows.dim() != 3 or windows.shape[1:] != (c.window_bars, c.inputs):
            raise ValueError(f"expected windows [B, {c.window_bars}, {c.inputs}]; got {tuple(windows.shape)}")
        return (windows - self.feature_mean) / self.feature_std

    def encode(self, windows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """[B, W, F] raw windows -> (mu [B, L], logvar [B, L])."""
        mu, logvar = self.encoder(self.standardise(windows).flatten(1)).chunk(2, dim=-1)
        return mu, logvar

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """[B, L] latents -> [B, W, F] windows in standardised units."""
        return self.decoder(z).view(z.shape[0], self.config.window_bars, self.config.inputs)

    def forward(self, windows: torch.Tensor) -> VAEOutput:
        mu, logvar = self.encode(windows)
        z = mu + torch.exp(0.5 * logvar) * torch.randn_like(mu) if self.training else mu
        return VAEOutput(self.decode(z), mu, logvar, z)

    @torch.no_grad()
    def latent(self, windows: torch.Tensor) -> torch.Tensor:
        """[B, L] latent means: the embedding the regime clusters are fitted on and matched against."""
        return self.encode(windows)[0]

    @torch.no_grad()
    def reconstruct(self, windows: torch.Tensor) -> torch.Tensor:
        """[B, W, F] the decoded latent means, in the inputs' raw units."""
        return self.decode(self.encode(windows)[0]) * self.feature_std + self.feature_mean

    def loss(self, batch: torch.Tensor, augmented_view: torch.Tensor) -> GuardianLoss:
        """The module docstring's loss on raw windows `batch` [B, W, F], B >= 2, and a second view of the
        same windows, row for row (`augment(batch, rng)`)."""
        c = self.config
        if augmented_view.shape != batch.shape or batch.shape[0] < 2:
            raise ValueError(f"batch and augmented_view must both be [B, W, F] with B >= 2; got {tuple(batch.shape)}, "
                             f"{tuple(augmented_view.shape)}")
        out = self(batch)
        reconstruction = F.mse_loss(out.reconstruction, self.standardise(batch))
        kl = kl_divergence(out.mu, out.logvar).mean()
        contrastive = nt_xent(out.mu, self.encode(augmented_view)[0], c.temperature)
        total = reconstruction + c.beta * kl / (c.window_bars * c.inputs) + c.contrastive_weight * contrastive
        return GuardianLoss(total, reconstruction, kl, contrastive)


def kl_divergence(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """[B] KL(N(mu, exp(logvar)) || N(0, I)) in nats, summed over the last dim:
    -0.5 * sum(1 + logvar - mu^2 - exp(logvar))."""
    return -0.5 * (1 + logvar - mu.square() - logvar.exp()).sum(dim=-1)


def nt_xent(a: torch.Tensor, b: torch.Tensor, temperature: float) -> torch.Tensor:
    """NT-Xent (Chen et al. 2020) of N positive pairs (a[i], b[i]), a and b [N, D], N >= 2.

    The 2N rows are L2-normalised and s(u, v) = cos(u, v) / temperature. Each row u's loss is the
    cross-entropy of picking its partner among the other 2N - 1 rows:
    -log(exp(s(u, partner)) / sum over v != u of exp(s(u, v))); the result is the mean over all 2N rows.
    """
    if a.dim() != 2 or a.shape != b.shape or a.shape[0] < 2:
        raise ValueError(f"a and b must both be [N, D] with N >= 2; got {tuple(a.shape)}, {tuple(b.shape)}")
    n = a.shape[0]
    u = F.normalize(torch.cat([a, b]), dim=-1)                        # [2N, D]
    scores = (u @ u.T) / temperature                                  # [2N, 2N]
    scores = scores.masked_fill(torch.eye(2 * n, dtype=torch.bool, device=u.device), float("-inf"))  # not itself
    partner = torch.cat([torch.arange(n, 2 * n), torch.arange(n)]).to(u.device)
    return F.cross_entropy(scores, partner)


def augment(windows: torch.Tensor, rng: torch.Generator | None = None, *, jitter_std: float = GuardianConfig.jitter_std,
            scale_std: float = GuardianConfig.scale_std) -> torch.Tensor:
    """A random view of raw windows [B, W, F]: each window's features scaled about the batch mean by a factor
    1 + N(0, scale_std) drawn per window and feature (the whole window alike), plus Gaussian jitter of
    jitter_std per element. Both in units of each feature's spread: mean and std per feature over the
    batch's B * W rows, so the same call serves raw or standardised windows (a constant feature is left
    as it is). `rng` None: torch's global generator; else a generator on the windows' device."""
    if windows.dim() != 3:
        raise ValueError(f"expected windows [B, W, F]; got {tuple(windows.shape)}")
    b, _, f = windows.shape
    mean = windows.mean(dim=(0, 1))                                   # [F]
    std = windows.std(dim=(0, 1), correction=0)                      # [F]
    scale = 1 + scale_std * torch.randn(b, 1, f, generator=rng, device=windows.device, dtype=windows.dtype)
    jitter = jitter_std * torch.randn(windows.shape, generator=rng, device=windows.device, dtype=windows.dtype)
    return mean + (windows - mean) * scale + jitter * std


def windows_ending_at(indicators: np.ndarray, ends: np.ndarray, window_bars: int) -> np.ndarray:
    """[N, W, F] float32: the indicator rows [T, F] of bars end - W + 1 .. end for each of `ends` [N]
    (each end >= W - 1): bars <= each end only."""
    ends = np.asarray(ends, dtype=np.int64)
    if ends.ndim != 1 or (len(ends) and (ends.min() < window_bars - 1 or ends.max() >= len(indicators))):
        raise ValueError(f"window ends must be 1-d in [{window_bars - 1}, {len(indicators)}): a whole window of bars")
    return np.ascontiguousarray(indicators[ends[:, None] + np.arange(1 - window_bars, 1)], dtype=np.float32)


def latent_means(model: RegimeVAE, indicators: np.ndarray, ends: np.ndarray, batch: int = 1024) -> np.ndarray:
    """[N, L] float32: the latent means of the windows ending at `ends` [N] of `indicators` [T, F], in batches."""
    w = model.config.window_bars
    return np.concatenate([model.latent(torch.from_numpy(windows_ending_at(indicators, ends[i:i + batch], w))).numpy()
                           for i in range(0, len(ends), batch)])


ENCODER_PREFIXES = ("encoder.", "feature_mean", "feature_std")  # what a candidate carries: no decoder


class TrainedGuardian:
    """A candidate's Guardian (payload["guardian"]): its encoder and its named, risk-ranked clusters."""

    def __init__(self, record: dict) -> None:
        self.record = record
        self.config = GuardianConfig(**{k: tuple(v) if k == "hidden" else v for k, v in record["config"].items()})
        self.model = RegimeVAE(self.config)
        missing, unexpected = self.model.load_state_dict(record["encoder_state"], strict=False)
        if unexpected or any(not key.startswith("decoder.") for key in missing):
            raise ValueError(f"not a Guardian encoder: missing {missing[:3]}, unexpected {unexpected[:3]}")
        self.model.eval()
        self.centroids = np.asarray(record["centroids"], dtype=np.float64)  # [k, L]
        self.names = tuple(record["names"])                                  # [k] regime names
        self.risk = np.asarray(record["risk"], dtype=np.int64)              # [k] risk levels

    @staticmethod
    def of(payload: dict) -> "TrainedGuardian | None":
        """The Guardian a candidate's payload carries, or None (trained without one)."""
        record = payload.get("guardian")
        return TrainedGuardian(record) if record else None

    @property
    def window_bars(self) -> int:
        return self.config.window_bars

    def clusters(self, indicators: np.ndarray, ends: np.ndarray) -> np.ndarray:
        """[N] int64: the nearest cluster of each window ending at `ends` [N] of `indicators` [T, F]."""
        if len(ends) == 0:
            return np.zeros(0, dtype=np.int64)
        return nearest_cluster(latent_means(self.model, indicators, np.asarray(ends)), self.centroids)

    def regimes(self, indicators: np.ndarray, ends: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """([N] regime names, [N] risk levels) of the windows ending at `ends`."""
        cluster = self.clusters(indicators, ends)
        return np.array(self.names, dtype=object)[cluster].astype(str), self.risk[cluster]
