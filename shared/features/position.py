"""The 6 position-state features, vectorised over accounts, from the one
position accounting (`shared.core.accounting.Book`) that the environment, the paper
broker and the live trader share.

The trade's P&L so far, in pips x units, is what it has realised (partial
closes) plus its open units marked at the last price; its tracks follow:
  peak_pips           the best trade P&L since entry
  max_drawdown_pips   the largest (peak - trade P&L) since entry
  accumulated_dd      the sum over bars since entry of (peak - trade P&L)

Features (tanh(x / 100) for every continuous one, all 0 when flat):
  position_side       units / the action space's largest position: -1 .. +1 (size shows)
  position_pips       tanh(trade P&L / 100)
  bars_since_entry    tanh(bars / 100)
  pips_from_peak      tanh((peak - trade P&L) / 100)
  max_drawdown_pips   tanh(max_drawdown_pips / 100)
  accumulated_dd      tanh(accumulated_dd / 100)
For a one-unit space these are exactly the features of a single position.
"""

from __future__ import annotations

import numpy as np

from shared.core.accounting import Book
from shared.core.feature_spec import POSITION_FEATURES, POSITION_SCALE_PIPS

NUM_POSITION = len(POSITION_FEATURES)


def position_features(book: Book, max_units: int = 1) -> np.ndarray:
    """[E, 6] float32 features in POSITION_FEATURES order."""
    scale = POSITION_SCALE_PIPS
    open_ = book.units != 0
    trade = book.trade_pips()
    out = np.stack(
        [
            book.units / float(max_units),
            np.tanh(trade / scale),
            np.tanh(book.bars_since_entry / scale),
            np.tanh((book.peak_pips - trade) / scale),
            np.tanh(book.max_drawdown_pips / scale),
            np.tanh(book.accumulated_dd_pips / scale),
        ],
        axis=1,
    )
    out[~open_] = 0.0
    return out.astype(np.float32)
