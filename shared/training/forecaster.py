"""TRAINING_MODEL=tft: the Oracle forecaster trained on the train split; its candidates go to the
checkpoint volume as every family's do (shared/training/offline.py).

What it learns from: windows at every origin bar t of the train sessions whose D forecast bars
also lie in train sessions (shared/model/tft_data.py: inputs from rows <= t, targets after), the
indicators-v1 features over the whole bar series (causal). The newest `holdout_share` of those
origins is held out: its quantile loss decides early stopping (`patience_epochs` epochs without a
better one) and its quantile coverage is the calibration each candidate carries. Scaling is
fitted on the learning windows' bars only.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from shared.config import TrainingConfig
from shared.core.feature_spec import INDICATOR_WARMUP_BARS
from shared.features.store import FeatureSet
from shared.model.tft import TemporalFusionTransformer, coverage, quantile_loss
from shared.model.tft_data import build_windows, fit_scaling
from shared.training.offline import HOLDOUT_WINDOWS, OfflineTrainer

RESUME_KIND = "micro-muzero-forecaster-resume"


def train_origins(features: FeatureSet, encoder_bars: int, decoder_bars: int) -> np.ndarray:
    """[B] origins t whose encoder window starts after the indicators' warm-up and whose D target
    bars t + 1 .. t + D are all bars of train sessions (never a validation or test bar)."""
    n = len(features.bars)
    in_train = np.zeros(n + 1, bool)
    length = features.session_config.length_bars
    for start in features.require_sessions("train"):
        in_train[start : start + length] = True
    covered = np.concatenate([[0], np.cumsum(in_train[:n])])  # covered[i]: train bars before bar i
    t = np.arange(INDICATOR_WARMUP_BARS + encoder_bars - 1, n - decoder_bars)
    targets_in_train = covered[t + decoder_bars + 1] - covered[t + 1] == decoder_bars
    return t[targets_in_train & in_train[t]]


class ForecasterTrainer(OfflineTrainer):
    RESUME_KIND = RESUME_KIND
    LOSS_NAME = "quantile"
    PAYLOAD_KEY = "forecast"

    def __init__(self, features: FeatureSet, checkpoint_root: Path, config: TrainingConfig,
                 device: torch.device | None = None, config_sources: dict[str, str] | None = None) -> None:
        super().__init__(features, checkpoint_root, config, device, config_sources)
        c = self.family_config = config.tft
        self.starts = features.require_sessions("train")
        origins = train_origins(features, c.encoder_bars, c.decoder_bars)
        held = max(1, int(len(origins) * c.holdout_share))
        if len(origins) - held < c.batch_size:
            raise ValueError(f"the train split gives {len(origins)} forecast windows of {c.encoder_bars} + "
                             f"{c.decoder_bars} bars: too few for batches of {c.batch_size} (more bars, or smaller "
                             "TRAINING_TFT__BATCH_SIZE / TRAINING_TFT__ENCODER_BARS)")
        self.learn_origins, self.holdout_origins = origins[:-held], origins[-held:]
        # the held-out windows: the newest, scored at every candidate (an evenly spread subset of them)
        scored = self.holdout_origins[np.linspace(0, held - 1, min(held, HOLDOUT_WINDOWS)).astype(np.int64)]
        self.holdout = self._windows(scored)
        bars = np.unique((self.learn_origins[:, None] + np.arange(1 - c.encoder_bars, c.decoder_bars + 1)).ravel())
        scaling = fit_scaling(self.indicators[bars], features.bars.close[bars], len(bars), first=0)
        torch.manual_seed(config.seed)
        self.model = TemporalFusionTransformer(c).to(self.device)
        self.model.set_scaling(scaling.observed_mean, scaling.observed_std, scaling.return_std)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=c.learning_rate)
        self.open_volume(checkpoint_root)

    @property
    def steps_per_epoch(self) -> int:
        return max(1, len(self.learn_origins) // self.config.tft.batch_size)

    def describe(self) -> str:
        params = sum(p.numel() for p in self.model.parameters())
        return (f"tft forecaster: {params:,} parameters, {len(self.learn_origins):,} learning windows, "
                f"{len(self.holdout_origins):,} held out, {self.steps_per_epoch:,} steps an epoch")

    # --- data ----------------------------------------------------------------------

    def _windows(self, origins: np.ndarray):
        c = self.config.tft
        return build_windows(self.indicators, self.features.bars.close, self.features.bars.ts, origins,
                             encoder_bars=c.encoder_bars, decoder_bars=c.decoder_bars, bar_minutes=self.bar_minutes,
                             calendar=self.calendar)

    def _tensors(self, windows) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return tuple(torch.from_numpy(a).to(self.device) for a in (windows.observed, windows.known, windows.target))

    # --- learning ------------------------------------------------------------------

    def step(self) -> float:
        c = self.config.tft
        observed, known, target = self._tensors(self._windows(self.rng.choice(self.learn_origins, c.batch_size)))
        self.model.train()
        loss = quantile_loss(self.model(observed, known).quantiles, target, c.quantiles, scale=self.model.target_scale)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), c.gradient_clip)
        self.optimizer.step()
        self.learner.steps += 1
        return float(loss.detach())

    def score_holdout(self) -> dict:
        """The held-out windows' quantile loss (scaled, as trained) and each quantile's coverage."""
        c = self.config.tft
        observed, known, target = self._tensors(self.holdout)
        self.model.eval()
        with torch.no_grad():
            forecast = torch.cat([self.model(observed[i : i + 512], known[i : i + 512]).quantiles
                                  for i in range(0, len(target), 512)])
        loss = float(quantile_loss(forecast, target, c.quantiles, scale=self.model.target_scale))
        return {"holdout_loss": loss, "coverage": {str(q): round(f, 4) for q, f in
                                                   coverage(forecast, target, c.quantiles).items()}}
