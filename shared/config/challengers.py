"""The challenger families' knobs (issue 26): the Oracle forecaster (a Temporal Fusion Transformer,
shared/model/tft.py), the rule that turns its forecast into a position (shared/model/tft_policy.py),
the Strategist (a Decision Transformer, shared/model/dt.py) and the Guardian (a contrastive VAE
over indicator windows with regime rules, shared/model/guardian.py and regimes.py); the Guardian
is not yet trained by the service.
Plain frozen dataclasses, like the stages' in shared/config/__init__.py, which nests them in
TrainingConfig."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from shared.core.feature_spec import INDICATOR_FEATURES, KNOWN_FEATURES
from shared.core.settings import derived


def _require(name: str, ok: bool, what: str, should_be: str) -> None:
    """One range check of a config field, named as the error says it (`ok` False for NaN too)."""
    if not ok:
        raise ValueError(f"{what}: {name} must be {should_be}")


@dataclass(frozen=True)
class TFTConfig:
    """The Oracle's hyperparameters; the defaults are the product notes' TFT settings."""

    observed_inputs: int = len(INDICATOR_FEATURES)  # past-only inputs per bar (indicators-v1: 40)
    known_inputs: int = len(KNOWN_FEATURES)         # known-future inputs per bar (time of day and week: 4)
    encoder_bars: int = 60        # past steps read (5 h of 5-minute bars)
    decoder_bars: int = 24        # future steps forecast (2 h)
    hidden: int = 128             # width of every layer after the variable selection
    variable_hidden: int = 64     # each variable's embedding width (the notes' "hidden continuous 64")
    heads: int = 4
    lstm_layers: int = 2
    dropout: float = 0.1
    quantiles: tuple[float, ...] = (0.1, 0.5, 0.9)  # ascending
    # training, read by the trainer: Adam, batches, early stopping, gradient clipping by norm
    learning_rate: float = 1e-3
    batch_size: int = 64          # the notes' 256 costs about 10 s a step on two CPU cores
    max_epochs: int = 100
    patience_epochs: int = 15     # epochs without a better hold-out loss before training stops
    gradient_clip: float = 0.1
    steps_per_iteration: int = 10           # gradient steps between status reports
    checkpoint_interval_steps: int = 100    # a candidate (and its hold-out loss) every this many steps
    holdout_share: float = 0.1              # the newest train windows, held out: early stopping and calibration

    def __post_init__(self) -> None:
        for name in ("observed_inputs", "known_inputs", "encoder_bars", "decoder_bars", "hidden", "variable_hidden",
                     "heads", "lstm_layers", "batch_size", "max_epochs", "patience_epochs", "steps_per_iteration",
                     "checkpoint_interval_steps"):
            _require(name, getattr(self, name) >= 1, "tft config", "positive")
        if self.hidden % self.heads:
            raise ValueError(f"tft config: hidden ({self.hidden}) must be a multiple of heads ({self.heads})")
        if not 0 <= self.dropout < 1:
            raise ValueError("tft config: dropout must be in [0, 1)")
        q = self.quantiles
        if not q or any(not 0 < x < 1 for x in q) or any(a >= b for a, b in zip(q, q[1:])):
            raise ValueError(f"tft config: quantiles must be ascending in (0, 1); got {q}")
        if self.learning_rate <= 0 or self.gradient_clip <= 0:
            raise ValueError("tft config: learning_rate and gradient_clip must be positive")
        if not 0 < self.holdout_share < 0.5:
            raise ValueError("tft config: holdout_share must be in (0, 0.5)")


@dataclass(frozen=True)
class ForecastPolicyConfig:
    """Settings of the forecast-to-position rule."""

    # Defaults: the median over the whole forecast against the cost, holding on no signal. The notes'
    # band (long only when the 0.1 quantile clears the spread) never trades on one-minute FX with a
    # 4-pip spread: over 12-24 bars the noise alone puts the 0.1 quantile below zero (measured on
    # the demo market: no trade at any horizon). The longest horizon has the largest expected move
    # against a cost paid once a round trip; holding through a weak forecast is the baselines'
    # hysteresis. Measured once (demo market seed 7, 170 steps): validation +1,904 pips in 116
    # trades this way, +771 at 12 bars, +684 flat on no signal, 0 with the band.
    horizon_bars: int = 24          # H: the rule reads the forecast of the return over the next H bars
    lower_quantile: float = 0.5     # long only when this quantile of R_H exceeds the cost
    upper_quantile: float = 0.5     # short only when this quantile of R_H is below minus the cost
    no_signal: Literal["flat", "hold"] = "hold"  # what neither signal gives: flat, or keep the position

    def __post_init__(self) -> None:
        if self.horizon_bars < 1:
            raise ValueError("forecast policy: horizon_bars must be positive")
        if not 0 < self.lower_quantile <= self.upper_quantile < 1:  # equal: the median (say) against the cost
            raise ValueError("forecast policy: need 0 < lower_quantile <= upper_quantile < 1")
        if self.no_signal not in ("flat", "hold"):
            raise ValueError(f"forecast policy: no_signal must be 'flat' or 'hold', got {self.no_signal!r}")


@dataclass(frozen=True)
class DTConfig:
    """The Strategist's hyperparameters (a Decision Transformer, shared/model/dt.py); the defaults are
    the product notes' Decision Transformer settings but for its context and batch, sized for a
    CPU: the notes' 90 steps and batch 128 cost 34 s a training step on two cores (30 and 64: 1.6 s)
    and 0.9 s a validation step over 29 sessions (one validation: 5 minutes); on a GPU set
    TRAINING_DT__CONTEXT_STEPS=90 and TRAINING_DT__BATCH_SIZE=128."""

    state_inputs: int = derived(len(INDICATOR_FEATURES) + 1, "per step: the indicators-v1 columns and the position")
    num_actions: int = derived(4, "the action space's size (env.action_space)")
    context_steps: int = 30       # K: steps (of three tokens each) the model reads (the notes': 90)
    hidden: int = 256             # token width through the whole stack
    layers: int = 6               # transformer blocks
    heads: int = 8
    dropout: float = 0.1
    # training, read by the trainer: Adam, batches, gradient clipping by norm
    learning_rate: float = 1e-4
    batch_size: int = 64          # the notes': 128
    max_epochs: int = 200
    patience_epochs: int = 20     # epochs without a better hold-out loss before training stops
    gradient_clip: float = 1.0
    steps_per_iteration: int = 10           # gradient steps between status reports
    checkpoint_interval_steps: int = 100    # a candidate (and its hold-out loss) every this many steps
    holdout_share: float = 0.1              # the newest train sessions' episodes, held out: early stopping
    # returns-to-go: R_t = sum_k discount^(k - t) * reward_scale * r_k, fed to the model as R_t / return_scale
    discount: float = 0.99
    reward_scale: float = 1.0
    return_scale: float = 1000.0
    # what it learns from and aims at (shared/training/strategist.py): the rule experts as tuned and with
    # this share of random actions (lower returns, so the conditioning means something), and the
    # return asked for at a decision: this quantile of the learning episodes' returns
    expert_epsilons: tuple[float, ...] = (0.0, 0.1, 0.3)
    expert_sessions: int = 0      # the newest this many train sessions played by the experts (0: every one)
    # one more expert: a MuZero model file (a candidate, or promoted/model-epN.pt) whose greedy search plays
    # the same sessions with the same epsilons, on its own search settings (None: the rules alone)
    muzero_expert: Path | None = None
    target_return_quantile: float = 0.9

    def __post_init__(self) -> None:
        for name in ("state_inputs", "context_steps", "hidden", "layers", "heads", "batch_size", "max_epochs",
                     "patience_epochs", "steps_per_iteration", "checkpoint_interval_steps"):
            _require(name, getattr(self, name) >= 1, "dt config", "positive")
        _require("holdout_share", 0 < self.holdout_share < 1, "dt config", "in (0, 1)")
        _require("expert_sessions", self.expert_sessions >= 0, "dt config", ">= 0 (0: every train session)")
        _require("target_return_quantile", 0 <= self.target_return_quantile <= 1, "dt config", "in [0, 1]")
        _require("expert_epsilons", bool(self.expert_epsilons) and all(0 <= e <= 1 for e in self.expert_epsilons),
                 "dt config", "a non-empty list of shares in [0, 1]")
        if self.num_actions < 2:
            raise ValueError("dt config: num_actions must be at least 2")
        if self.hidden % self.heads:
            raise ValueError(f"dt config: hidden ({self.hidden}) must be a multiple of heads ({self.heads})")
        if not 0 <= self.dropout < 1:
            raise ValueError("dt config: dropout must be in [0, 1)")
        if not 0 <= self.discount <= 1:
            raise ValueError("dt config: discount must be in [0, 1]")
        for name in ("learning_rate", "gradient_clip", "reward_scale", "return_scale"):
            _require(name, getattr(self, name) > 0, "dt config", "positive")


@dataclass(frozen=True)
class GuardianConfig:
    """The Guardian's hyperparameters: a contrastive VAE over windows of indicator rows
    (shared/model/guardian.py) and the regime labels that name its latent clusters
    (shared/model/regimes.py); the defaults are the product notes' contrastive VAE settings."""

    inputs: int = len(INDICATOR_FEATURES)  # features per bar (indicators-v1: 40)
    window_bars: int = 120        # W: bars in a window, the newest the window's end t
    latent: int = 64              # width of the latent (mu and logvar each)
    hidden: tuple[int, ...] = (256, 128, 64)  # encoder widths, input side first; the decoder mirrors them
    beta: float = 4.0             # KL weight (a beta-VAE; guardian.py says in which units)
    temperature: float = 0.5      # NT-Xent temperature on cosine similarities
    contrastive_weight: float = 1.0  # weight of the NT-Xent term (the notes give none)
    jitter_std: float = 0.05      # augmentation: Gaussian noise, in each feature's std
    scale_std: float = 0.1        # augmentation: a factor 1 + N(0, scale_std) per window and feature
    # training, read by a trainer: Adam, batches. train_steps 0: no Guardian is trained (the reports'
    # regimes then come from the rules alone); each step is one batch of windows (about 0.07 s here at
    # the defaults), once per training run, before its first iteration (shared/training/guardian.py)
    train_steps: int = 0
    learning_rate: float = 1e-3
    batch_size: int = 512         # also the contrastive term's batch: 2 * batch_size - 2 negatives a view
    max_epochs: int = 100
    # regime labels (regimes.py), from each window's own last regime_horizon_bars bars
    regime_horizon_bars: int = 60  # n: one-bar log returns read per label, those ending at the window's end
    trend_threshold: float = 2.0   # |sum r| / (rv * sqrt(n)) above this: bull or bear by sign
    volatile_quantile: float = 0.9  # rv above this quantile of the training windows' rv: volatile
    clusters: int = 8              # k-means clusters over the latents, each named by its members' majority label
    risk_levels: int = 4           # risk 0 .. risk_levels - 1, by a cluster's realised-volatility rank

    def __post_init__(self) -> None:
        for name in ("inputs", "window_bars", "latent", "max_epochs", "clusters"):
            _require(name, getattr(self, name) >= 1, "guardian config", "positive")
        _require("train_steps", self.train_steps >= 0, "guardian config", "non-negative")
        if not self.hidden or any(width < 1 for width in self.hidden):
            raise ValueError(f"guardian config: hidden must be one or more positive widths; got {self.hidden}")
        if self.batch_size < 2:
            raise ValueError("guardian config: batch_size must be at least 2 (the contrastive term needs negatives)")
        for name in ("temperature", "learning_rate", "trend_threshold"):
            _require(name, getattr(self, name) > 0, "guardian config", "positive")
        for name in ("beta", "contrastive_weight", "jitter_std", "scale_std"):
            _require(name, getattr(self, name) >= 0, "guardian config", "non-negative")
        if not 2 <= self.regime_horizon_bars <= self.window_bars:
            raise ValueError(f"guardian config: regime_horizon_bars must be in [2, window_bars = {self.window_bars}] "
                             f"(a label describes bars the window holds); got {self.regime_horizon_bars}")
        if not 0 < self.volatile_quantile < 1:
            raise ValueError("guardian config: volatile_quantile must be in (0, 1)")
        if self.risk_levels < 2:
            raise ValueError("guardian config: risk_levels must be at least 2")
