"""Several instruments, one model: their feature sets as one.

`load_market(db, instruments, granularity)` is what training and validation load: the one
instrument's feature set as it always was, or, for several, one set whose arrays are the
instruments' placed end to end. Every session stays inside its own instrument's bars (a start is
at least the warm-up into them and its episode ends before their last bar), so a window or an
episode never reads another instrument's bars; `bar_instrument` says whose each bar is.

Per-instrument normalisation, not an instrument embedding. The network sees no instrument id:
the temporal features are scaled within each instrument's own history (position in its range,
min-max over its own day), and the rewards are put in one unit, the first instrument's pips at
its typical move: one pip of instrument i weighs `pip_weights[i]` = m_first / m_i, m being the mean
absolute one-bar close change in pips over the instrument's train sessions (a unit, not a choice:
train bars only). A BTCUSD bar that moves as much as its typical bar is then worth what a typical
EURUSD bar is, so one value scale fits both and no instrument drowns the others' rewards. One
instrument: weight 1.0, nothing changes. Statistics per instrument stay in that instrument's pips;
the portfolio's are in the common unit.

Training draws its sessions instrument by instrument in equal shares (a 24/7 market has 7/5 of an
FX pair's sessions; uniform over sessions would tilt the model toward it).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from shared.core.instruments import get_instrument
from shared.data.bars import Bars
from shared.features.store import FeatureSet, FeatureStoreError, load_feature_set


def typical_move_pips(features: FeatureSet) -> float:
    """Mean absolute one-bar close change in the instrument's unit over the bars of the train sessions."""
    starts = features.require_sessions("train")
    bars = np.unique((starts[:, None] + np.arange(1, features.session_config.length_bars)).ravel())
    close = features.scaled_close()
    change = np.abs(close[bars] - close[bars - 1]) / get_instrument(features.instrument).point
    return float(change.mean())


def combine_feature_sets(sets: list[FeatureSet]) -> FeatureSet:
    """One feature set of several instruments' (same bar size, same spec, same session settings)."""
    if len(sets) == 1:
        return sets[0]
    first = sets[0]
    names = tuple(s.instrument for s in sets)
    for s in sets[1:]:
        if s.granularity != first.granularity:
            raise FeatureStoreError(f"{s.instrument} is {s.granularity}, {first.instrument} {first.granularity}: "
                                    "one model trades one bar size")
        if s.session_config.length_bars != first.session_config.length_bars:
            raise FeatureStoreError(f"{s.instrument}'s sessions are {s.session_config.length_bars} bars, "
                                    f"{first.instrument}'s {first.session_config.length_bars}: rebuild both feature "
                                    "sets with the same session settings")
    moves = [typical_move_pips(s) for s in sets]
    for s, move in zip(sets, moves):
        if not move > 0:
            raise FeatureStoreError(f"{s.instrument}'s train bars never move: no unit to weigh its pips by")
    offsets = np.cumsum([0] + [len(s.bars) for s in sets])
    drifts = [s.expected_drift for s in sets]
    return FeatureSet(
        instrument=first.instrument,
        granularity=first.granularity,
        feature_spec_version=first.feature_spec_version,
        feature_names=first.feature_names,
        bars=Bars(*(np.concatenate([getattr(s.bars, f) for s in sets])
                    for f in ("ts", "open", "high", "low", "close", "volume"))),
        features=np.concatenate([s.features for s in sets]),
        outcomes=np.concatenate([s.outcomes for s in sets]),
        sessions={split: _in_time_order(np.concatenate([s.sessions[split] + offset for s, offset in zip(sets, offsets)]),
                                        np.concatenate([s.bars.ts for s in sets]))
                  for split in first.sessions},
        session_config=first.session_config,
        # the oracle's drift in each instrument's pips, where every instrument has one
        expected_drift=None if any(d is None for d in drifts) else np.concatenate(drifts),
        instruments=names,
        bar_instrument=np.repeat(np.arange(len(sets)), [len(s.bars) for s in sets]),
        pip_weights=tuple(moves[0] / move for move in moves),
    )


def _in_time_order(starts: np.ndarray, ts: np.ndarray) -> np.ndarray:
    """Sessions of every instrument by start time (each instrument's own order kept): a portfolio's
    equity, drawdown and a session cap (VALIDATION_MAX_SESSIONS) then run through time, not one
    instrument after another."""
    return starts[np.argsort(ts[starts], kind="stable")]


def load_market(db_path: str | Path, instruments: tuple[str, ...] | list[str], granularity: str = "M1") -> FeatureSet:
    """The feature set training and validation work on: one instrument's, or several combined."""
    return combine_feature_sets([load_feature_set(db_path, name, granularity) for name in instruments])

