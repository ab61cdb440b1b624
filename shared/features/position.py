"""The 6 position-state features, vectorised over episodes (numba).

A position is tracked from its entry bar with, in pips:
  unrealized_pips     side * (mark - entry price) / pip, costs already in the entry price
  peak_pips           the best unrealized_pips since entry
  max_drawdown_pips   the largest (peak_pips - unrealized_pips) since entry
  accumulated_dd      the sum over bars since entry of (peak_pips - unrealized_pips)

Features (tanh(x / 100) for every continuous one, all 0 when flat):
  position_side       -1 short, 0 flat, +1 long
  position_pips       tanh(unrealized_pips / 100)
  bars_since_entry    tanh(bars / 100)
  pips_from_peak      tanh((peak_pips - unrealized_pips) / 100)
  max_drawdown_pips   tanh(max_drawdown_pips / 100)
  accumulated_dd      tanh(accumulated_dd / 100)
"""

from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np

from shared.features.spec import POSITION_FEATURES, POSITION_SCALE_PIPS

NUM_POSITION = len(POSITION_FEATURES)


@dataclass
class PositionTracks:
    """Per-episode position bookkeeping, each field [E]."""

    side: np.ndarray               # int8: -1, 0, +1
    entry_price: np.ndarray        # float64, fill price including costs
    bars_since_entry: np.ndarray   # int64
    unrealized_pips: np.ndarray    # float64
    peak_pips: np.ndarray          # float64
    max_drawdown_pips: np.ndarray  # float64
    accumulated_dd_pips: np.ndarray  # float64

    @classmethod
    def flat(cls, episodes: int) -> "PositionTracks":
        zeros = np.zeros(episodes)
        return cls(np.zeros(episodes, np.int8), zeros.copy(), np.zeros(episodes, np.int64), zeros.copy(),
                   zeros.copy(), zeros.copy(), zeros.copy())


@numba.njit(cache=True)
def _mark(side, entry_price, bars, unrealized, peak, max_dd, acc_dd, price, pip):
    for e in range(len(side)):
        if side[e] == 0:
            continue
        bars[e] += 1
        unrealized[e] = side[e] * (price[e] - entry_price[e]) / pip
        peak[e] = max(peak[e], unrealized[e])
        drawdown = peak[e] - unrealized[e]
        max_dd[e] = max(max_dd[e], drawdown)
        acc_dd[e] += drawdown


def mark_to_market(tracks: PositionTracks, price: np.ndarray, pip: float) -> None:
    """Advance every open position by one bar at `price` [E] (in place)."""
    _mark(tracks.side, tracks.entry_price, tracks.bars_since_entry, tracks.unrealized_pips, tracks.peak_pips,
          tracks.max_drawdown_pips, tracks.accumulated_dd_pips, np.asarray(price, np.float64), float(pip))


def open_positions(tracks: PositionTracks, which: np.ndarray, side: np.ndarray, fill_price: np.ndarray, pip: float,
                   mark_price: np.ndarray) -> None:
    """Enter positions for episodes `which` (bool [E]) at `fill_price`, marked at `mark_price`."""
    tracks.side[which] = side[which]
    tracks.entry_price[which] = fill_price[which]
    tracks.bars_since_entry[which] = 0
    tracks.unrealized_pips[which] = side[which] * (mark_price[which] - fill_price[which]) / pip
    tracks.peak_pips[which] = tracks.unrealized_pips[which]
    tracks.max_drawdown_pips[which] = 0.0
    tracks.accumulated_dd_pips[which] = 0.0


def close_positions(tracks: PositionTracks, which: np.ndarray) -> None:
    for array in (tracks.side, tracks.entry_price, tracks.bars_since_entry, tracks.unrealized_pips,
                  tracks.peak_pips, tracks.max_drawdown_pips, tracks.accumulated_dd_pips):
        array[which] = 0


def position_features(tracks: PositionTracks) -> np.ndarray:
    """[E, 6] float32 features in POSITION_FEATURES order."""
    scale = POSITION_SCALE_PIPS
    open_ = tracks.side != 0
    out = np.stack(
        [
            tracks.side.astype(np.float64),
            np.tanh(tracks.unrealized_pips / scale),
            np.tanh(tracks.bars_since_entry / scale),
            np.tanh((tracks.peak_pips - tracks.unrealized_pips) / scale),
            np.tanh(tracks.max_drawdown_pips / scale),
            np.tanh(tracks.accumulated_dd_pips / scale),
        ],
        axis=1,
    )
    out[~open_] = 0.0
    return out.astype(np.float32)
