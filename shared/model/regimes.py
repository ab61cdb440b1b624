"""The Guardian's regimes: rule-based labels of windows, k-means clusters of the VAE's latents named by
those labels, and a risk level per cluster. Plain numpy (the VAE is shared/model/guardian.py).

Labels (`regime_labels`), for the window that ends at bar t, from its own last n = horizon_bars one-bar
log returns r_s = ln(c_s / c_s-1), s = t - n + 1 .. t (closes t - n .. t: no bar after t):

  trend T  = sum of r_s = ln(c_t / c_t-n)
  rv       = sqrt(mean of r_s^2), the realised volatility per bar (indicators-v1's realized_vol_k)
  score    = T / (rv * sqrt(n)), 0 when rv = 0; in [-sqrt(n), sqrt(n)], sqrt(n) for a steady trend

  "bull"      score >  trend_threshold
  "bear"      score < -trend_threshold
  "volatile"  otherwise, when rv > volatility_threshold
  "sideways"  otherwise

The score is the trend in units of what the window's own noise would give by chance (about N(0, 1)
for a driftless random walk), so a threshold of 2 calls a trend that noise alone makes in about 5% of
windows. Direction comes first: a trending window is bull or bear however volatile (its volatility
shows in the risk level); "volatile" is large movement without a direction. volatility_threshold is
the volatile_quantile of rv over the TRAINING windows (`fit_volatility_threshold`): fitted on bars
before the split only, then held fixed, so a label never reads a bar after its window's end.

Clusters (`label_clusters`): k-means (k-means++ seeding, Lloyd's iterations, numpy, seeded) over the
latent means of the training windows; each cluster is named by the majority label of its members
(ties: the first in REGIMES order), an empty cluster by its nearest window's label. Risk
(`cluster_risk`): clusters ranked by the median rv of their members, the rank spread over levels
0 .. levels - 1 (lowest volatility 0, highest levels - 1). At inference a window's latent mean takes
the name (`regime_of`) and risk (`risk_level`) of its nearest centroid.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = [
    "REGIMES",
    "label",
    "losing_regimes",
    "majority_share",
    "RegimeClusters",
    "cluster_risk",
    "fit_volatility_threshold",
    "kmeans",
    "label_clusters",
    "nearest_cluster",
    "regime_labels",
    "regime_of",
    "risk_level",
    "window_statistics",
]

REGIMES: tuple[str, ...] = ("bull", "bear", "sideways", "volatile")


def window_statistics(close: np.ndarray, window_end_indices: np.ndarray, horizon_bars: int) -> tuple[np.ndarray, np.ndarray]:
    """(score [B], rv [B]) float64 of the windows ending at bars `window_end_indices` [B] (see the module
    docstring); reads close[t - horizon_bars .. t] only, so each end needs t >= horizon_bars."""
    close = np.asarray(close, dtype=np.float64)
    ends = np.asarray(window_end_indices, dtype=np.int64)
    if close.ndim != 1 or not bool((close > 0).all()):
        raise ValueError("close must be 1-d and positive")
    if horizon_bars < 1:
        raise ValueError(f"horizon_bars must be positive; got {horizon_bars}")
    if ends.ndim != 1 or (len(ends) and (ends.min() < horizon_bars or ends.max() >= len(close))):
        raise ValueError(f"window ends must be 1-d in [{horizon_bars}, {len(close)}) (horizon_bars closes before each)")
    log_close = np.log(close)
    returns = np.diff(log_close[ends[:, None] + np.arange(-horizon_bars, 1)], axis=1)  # [B, n], bars <= t
    trend = returns.sum(axis=1)
    rv = np.sqrt(np.mean(returns**2, axis=1))
    scale = rv * np.sqrt(horizon_bars)
    score = np.divide(trend, scale, out=np.zeros_like(trend), where=scale > 0)
    return score, rv


def fit_volatility_threshold(close: np.ndarray, train_window_end_indices: np.ndarray, horizon_bars: int, *,
                             quantile: float) -> float:
    """The `quantile` of rv over the training windows (ends before the split): windows above it are volatile."""
    if not 0 < quantile < 1 or len(train_window_end_indices) == 0:
        raise ValueError("need a quantile in (0, 1) and at least one training window")
    return float(np.quantile(window_statistics(close, train_window_end_indices, horizon_bars)[1], quantile))


def regime_labels(close: np.ndarray, window_end_indices: np.ndarray, horizon_bars: int, *, volatility_threshold: float,
                  trend_threshold: float = 2.0) -> np.ndarray:
    """[B] labels from REGIMES of the windows ending at `window_end_indices` [B], from bars <= each end only."""
    if not trend_threshold > 0:
        raise ValueError("trend_threshold must be positive")
    score, rv = window_statistics(close, window_end_indices, horizon_bars)
    return np.select([score > trend_threshold, score < -trend_threshold, rv > volatility_threshold],
                     ["bull", "bear", "volatile"], default="sideways")


def nearest_cluster(latents: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    """[N] int64: the index of each latent's [N, D] nearest centroid [k, D] (Euclidean; ties: the lowest)."""
    latents = np.asarray(latents, dtype=np.float64)
    centroids = np.asarray(centroids, dtype=np.float64)
    if latents.ndim != 2 or centroids.ndim != 2 or latents.shape[1] != centroids.shape[1]:
        raise ValueError(f"expected latents [N, D] and centroids [k, D]; got {latents.shape}, {centroids.shape}")
    distance = (latents**2).sum(1)[:, None] - 2 * latents @ centroids.T + (centroids**2).sum(1)[None, :]  # [N, k]
    return distance.argmin(axis=1).astype(np.int64)


def kmeans(points: np.ndarray, k: int, *, seed: int = 0, iterations: int = 100) -> tuple[np.ndarray, np.ndarray]:
    """(centroids [k, D], assignment [N]) of k-means over points [N, D], N >= k: k-means++ seeding from
    np.random.default_rng(seed), then Lloyd's iterations until no point changes cluster (at most
    `iterations`). An empty cluster keeps its centroid."""
    points = np.asarray(points, dtype=np.float64)
    if points.ndim != 2 or not 1 <= k <= len(points):
        raise ValueError(f"need points [N, D] and 1 <= k <= N; got {points.shape}, k = {k}")
    rng = np.random.default_rng(seed)
    centroid = np.empty((k, points.shape[1]))
    centroid[0] = points[rng.integers(len(points))]
    d2 = ((points - centroid[0]) ** 2).sum(axis=1)  # [N] squared distance to the nearest seed so far
    for j in range(1, k):  # k-means++: the next seed drawn with probability proportional to d2
        total = d2.sum()
        centroid[j] = points[rng.choice(len(points), p=d2 / total) if total > 0 else rng.integers(len(points))]
        d2 = np.minimum(d2, ((points - centroid[j]) ** 2).sum(axis=1))
    assignment = nearest_cluster(points, centroid)
    for _ in range(iterations):
        for j in range(k):
            members = assignment == j
            if members.any():
                centroid[j] = points[members].mean(axis=0)
        updated = nearest_cluster(points, centroid)
        if np.array_equal(updated, assignment):
            break
        assignment = updated
    return centroid, assignment


@dataclass(frozen=True)
class RegimeClusters:
    """k named clusters of N training latents (D = latent width)."""

    centroids: np.ndarray   # [k, D] float64
    names: tuple[str, ...]  # k names from REGIMES: each cluster's majority label
    assignment: np.ndarray  # [N] int64, each training latent's cluster

    def __post_init__(self) -> None:
        if self.centroids.ndim != 2 or len(self.names) != len(self.centroids) or self.assignment.ndim != 1:
            raise ValueError(f"cluster shapes disagree: centroids {self.centroids.shape}, {len(self.names)} names, "
                             f"assignment {self.assignment.shape}")


def label_clusters(latents: np.ndarray, labels, k: int, *, seed: int = 0, iterations: int = 100) -> RegimeClusters:
    """k-means over latents [N, D], each cluster named by the majority of its members' labels [N] (from
    REGIMES; ties go to the earlier in REGIMES), an empty cluster by the label of its nearest latent."""
    labels = np.asarray(labels)
    if labels.shape != (len(latents),) or not np.isin(labels, REGIMES).all():
        raise ValueError(f"labels must be [N = {len(latents)}] names from {REGIMES}")
    centroids, assignment = kmeans(latents, k, seed=seed, iterations=iterations)
    counts = np.stack([np.bincount(assignment[labels == name], minlength=k) for name in REGIMES], axis=1)  # [k, R]
    nearest = nearest_cluster(centroids, np.asarray(latents, dtype=np.float64))  # [k] each centroid's nearest latent
    names = tuple(REGIMES[int(counts[j].argmax())] if counts[j].any() else str(labels[nearest[j]]) for j in range(k))
    return RegimeClusters(centroids, names, assignment)


def cluster_risk(volatility: np.ndarray, assignment: np.ndarray, k: int, *, levels: int = 4) -> np.ndarray:
    """[k] int64 risk levels 0 .. levels - 1 from each cluster's median realised volatility (rv of its
    member windows, volatility [N] by assignment [N]): the clusters' rank by it, lowest 0, spread
    evenly, round((levels - 1) * rank / (k - 1)); so with k = levels each level is one cluster. An empty
    cluster ranks highest (unknown, so cautious); one cluster is level 0."""
    volatility = np.asarray(volatility, dtype=np.float64)
    assignment = np.asarray(assignment, dtype=np.int64)
    if volatility.shape != assignment.shape or volatility.ndim != 1 or levels < 2 or k < 1:
        raise ValueError(f"need volatility and assignment [N] alike, levels >= 2, k >= 1; got {volatility.shape}, "
                         f"{assignment.shape}, {levels}, {k}")
    median = np.array([np.median(volatility[assignment == j]) if (assignment == j).any() else np.inf for j in range(k)])
    rank = np.empty(k, dtype=np.int64)
    rank[np.argsort(median, kind="stable")] = np.arange(k)
    if k == 1:
        return np.zeros(1, dtype=np.int64)
    return np.rint((levels - 1) * rank / (k - 1)).astype(np.int64)


def regime_of(latent: np.ndarray, centroids: np.ndarray, names) -> str:
    """The regime name of one latent mean [D]: its nearest centroid's [k, D] name (names [k])."""
    latent = np.asarray(latent, dtype=np.float64)
    if latent.ndim != 1 or len(names) != len(centroids):
        raise ValueError(f"expected one latent [D] and as many names as centroids; got {latent.shape}, "
                         f"{len(names)} names, {len(centroids)} centroids")
    return str(names[int(nearest_cluster(latent[None], centroids)[0])])


def risk_level(latent: np.ndarray, centroids: np.ndarray, risk: np.ndarray) -> int:
    """The risk level of one latent mean [D]: its nearest centroid's [k, D] level (cluster_risk's [k])."""
    latent = np.asarray(latent, dtype=np.float64)
    if latent.ndim != 1 or len(risk) != len(centroids):
        raise ValueError(f"expected one latent [D] and a risk level per centroid; got {latent.shape}, "
                         f"{len(risk)} levels, {len(centroids)} centroids")
    return int(risk[int(nearest_cluster(latent[None], centroids)[0])])


def label(close: np.ndarray, window_ends: np.ndarray, rules: dict) -> np.ndarray:
    """[B] the regime of the windows ending at bars `window_ends` [B], by `rules`: {"horizon_bars",
    "trend_threshold", "volatility_threshold"} as a validation report carries them
    (shared/validation/regimes.py)."""
    return regime_labels(close, np.asarray(window_ends), rules["horizon_bars"],
                         volatility_threshold=rules["volatility_threshold"], trend_threshold=rules["trend_threshold"])


def majority_share(labels: np.ndarray) -> float:
    """The share of the commonest label in [N] `labels`: what naming every window by it scores, the
    floor a labeller's agreement with them must clear."""
    return float(np.unique(np.asarray(labels), return_counts=True)[1].max() / len(labels))


def losing_regimes(results: dict) -> dict[str, float]:
    """{regime: the candidate's pips there} for the regimes where it lost (flat makes 0), from a
    validation report's `regimes` ({"rules", "by_regime"}; empty or None: none)."""
    return {regime: row["candidate"] for regime, row in (results or {}).get("by_regime", {}).items()
            if row["candidate"] < 0}
