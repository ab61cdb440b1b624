"""The Guardian trained beside any family (TRAINING_GUARDIAN__TRAIN_STEPS > 0, issue 26): once per
training run, before its first iteration, on windows of indicators-v1 rows that end at bars of the
train sessions; then frozen and carried inside every candidate the run writes (payload["guardian"]),
so the validation report labels that candidate's sessions, and live its bars, with the Guardian it
was trained beside (shared/model/guardian.py, TrainedGuardian).

1. Windows: every bar t of a train session with a whole window of exact indicator rows behind it
   (t >= INDICATOR_WARMUP_BARS + W - 1); scaling fitted on those bars' rows.
2. `train_steps` Adam steps on batches of `batch_size` windows drawn with replacement (capped at
   `max_epochs` passes over them), each against an augmented view (guardian.py's loss).
3. Clusters: the latent means of up to LABELLED_WINDOWS of those windows (evenly spread) in k-means,
   each cluster named by its members' rule labels (shared/model/regimes.py, the volatile threshold
   fitted on these training windows), ranked into risk levels by their realised volatility.

`accuracy` in the record is the share of those windows whose cluster's name is their own rule label:
how well the latent clusters reproduce the rules (the product notes expect 75-85% regime accuracy);
`majority_share` is what naming every window by the commonest rule label would score, the floor
that accuracy must clear to mean anything.
"""

from __future__ import annotations

import dataclasses
import logging
import time

import numpy as np
import torch

from shared.config import TrainingConfig
from shared.config.challengers import GuardianConfig
from shared.core.feature_spec import INDICATOR_WARMUP_BARS
from shared.core.instruments import get_instrument
from shared.features.indicators import indicator_features
from shared.features.store import FeatureSet
from shared.model.guardian import ENCODER_PREFIXES, RegimeVAE, augment, latent_means, windows_ending_at
from shared.model.regimes import (
    cluster_risk,
    fit_volatility_threshold,
    label_clusters,
    majority_share,
    regime_labels,
    window_statistics,
)
from shared.model.tft_data import fit_scaling

log = logging.getLogger("shared.training.guardian")

LABELLED_WINDOWS = 20_000  # at most this many training windows clustered and named


def guardian_instrument(features: FeatureSet) -> str:
    """The one instrument a Guardian is trained on (its indicators follow one calendar)."""
    if len(features.instrument_names) != 1:
        raise ValueError(f"the Guardian learns one instrument's regimes; this market has "
                         f"{', '.join(features.instrument_names)}: TRAINING_GUARDIAN__TRAIN_STEPS=0, or one instrument")
    return features.instrument_names[0]


def guardian_for(run_guardian: dict | None, features: FeatureSet, config: TrainingConfig,
                 indicators: np.ndarray | None = None) -> dict | None:
    """The run's Guardian: the one it has (resumed from latest.pt), else one trained now where
    TRAINING_GUARDIAN__TRAIN_STEPS > 0 (`indicators`: the store's indicators-v1 rows, if computed)."""
    if run_guardian is not None or not config.guardian.train_steps:
        return run_guardian
    if indicators is None:
        indicators = indicator_features(features.bars, get_instrument(guardian_instrument(features)).calendar)
    return train_guardian(features, indicators, config.guardian, seed=config.seed)


def training_window_ends(features: FeatureSet, window_bars: int) -> np.ndarray:
    """[N] the bars of train sessions that end a whole window of exact indicator rows."""
    length = features.session_config.length_bars
    bars = np.unique(np.concatenate([np.arange(s, s + length) for s in features.require_sessions("train")]))
    return bars[(bars >= INDICATOR_WARMUP_BARS + window_bars - 1) & (bars < len(features.bars))]


def train_guardian(features: FeatureSet, indicators: np.ndarray, config: GuardianConfig, *, seed: int = 0) -> dict:
    """The Guardian's record (what a candidate carries) trained on `features`' train sessions;
    `indicators` [T, F] the indicators-v1 rows of its bars."""
    c = config
    started = time.perf_counter()
    ends = training_window_ends(features, c.window_bars)
    if len(ends) < max(c.batch_size, c.clusters):
        raise ValueError(f"the train sessions give {len(ends)} Guardian windows of {c.window_bars} bars after the "
                         f"indicators' {INDICATOR_WARMUP_BARS}-bar warm-up: too few for batches of {c.batch_size} "
                         "(more bars, or smaller TRAINING_GUARDIAN__BATCH_SIZE / TRAINING_GUARDIAN__WINDOW_BARS, "
                         "or TRAINING_GUARDIAN__TRAIN_STEPS=0)")
    close = features.bars.close
    scaling = fit_scaling(indicators[ends], close[ends], len(ends), first=0)
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    rng = np.random.default_rng(seed)
    model = RegimeVAE(c)
    model.set_scaling(scaling.observed_mean, scaling.observed_std)
    optimizer = torch.optim.Adam(model.parameters(), lr=c.learning_rate)
    steps = min(c.train_steps, c.max_epochs * -(-len(ends) // c.batch_size))
    model.train()
    losses = None
    for step in range(1, steps + 1):
        batch = torch.from_numpy(windows_ending_at(indicators, rng.choice(ends, c.batch_size), c.window_bars))
        losses = model.loss(batch, augment(batch, generator, jitter_std=c.jitter_std, scale_std=c.scale_std))
        optimizer.zero_grad(set_to_none=True)
        losses.total.backward()
        optimizer.step()
        if step % max(1, steps // 10) == 0 or step == steps:  # progress: a tenth at a time
            log.info("guardian: step %d of %d, loss %.4f (reconstruction %.4f, contrastive %.4f), %.0f s", step,
                     steps, *(float(x.detach()) for x in (losses.total, losses.reconstruction, losses.contrastive)),
                     time.perf_counter() - started)
    model.eval()

    labelled = ends[np.linspace(0, len(ends) - 1, min(len(ends), LABELLED_WINDOWS)).astype(np.int64)]
    latents = latent_means(model, indicators, labelled)
    n = c.regime_horizon_bars
    threshold = fit_volatility_threshold(close, labelled, n, quantile=c.volatile_quantile)
    labels = regime_labels(close, labelled, n, volatility_threshold=threshold, trend_threshold=c.trend_threshold)
    clusters = label_clusters(latents, labels, c.clusters, seed=seed)
    risk = cluster_risk(window_statistics(close, labelled, n)[1], clusters.assignment, c.clusters, levels=c.risk_levels)
    accuracy = float(np.mean(np.array(clusters.names)[clusters.assignment] == labels))
    seconds = time.perf_counter() - started
    log.info("guardian: %d steps on %d windows in %.0f s; clusters %s, risk %s, regime accuracy %.2f against the "
             "rules", steps, len(ends), seconds, ", ".join(clusters.names), risk.tolist(), accuracy)
    return {
        "config": dataclasses.asdict(c),
        "encoder_state": {k: v for k, v in model.state_dict().items() if k.startswith(ENCODER_PREFIXES)},
        "centroids": torch.from_numpy(clusters.centroids),
        "names": list(clusters.names),
        "risk": risk.tolist(),
        "rules": {"horizon_bars": n, "trend_threshold": c.trend_threshold, "volatility_threshold": threshold},
        "steps": steps,
        "train_windows": int(len(ends)),
        "accuracy": round(accuracy, 4),
        "majority_share": round(majority_share(labels), 4),
        "loss": round(float(losses.total.detach()), 4) if losses is not None else None,
        "train_seconds": round(seconds, 1),
        "seed": seed,
    }
