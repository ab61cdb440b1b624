"""One position accounting for the environment, the paper broker and the live
trader: E accounts in arrays, fills and marks in numba.

Units are signed (long > 0). Costs are in the fill prices (bid/ask: mid +-
half the spread), so P&L after costs needs no separate cost line; `costs_pips`
only reports what the spread took. All P&L is in pips x units.

A fill of `delta` units at `price` on a position of `units` at average entry
`entry`:
* flat: a trade opens at `price`;
* the same side (an add): the entry becomes the units-weighted average;
* the other side, smaller (a reduce): `|delta| x side x (price - entry)` is
  realised into the open trade; the entry stays;
* the other side, exactly (a close): all of it is realised and the trade
  closes, its P&L being everything it realised;
* the other side, larger (a flip): a close, then a new trade of the rest at
  `price`.
A resize is therefore never a close plus an entry: a trade runs from flat to
flat (or to a flip). Marking at a price gives the open units' unrealised P&L
and the trade's tracks for the position features: bars since entry, the
trade's P&L so far (realised part + unrealised), its peak, the largest and the
accumulated drawdown from that peak.
"""

from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np

__all__ = ["Book", "FillResult", "fill", "mark"]


@dataclass
class Book:
    """E accounts, each field [E]."""

    units: np.ndarray                # int64, signed net position
    entry_price: np.ndarray          # float64, average fill price of the open units (0 when flat)
    realized_pips: np.ndarray        # float64, closed P&L since the book opened
    trade_realized_pips: np.ndarray  # float64, what the open trade has realised (partial closes)
    trades: np.ndarray               # int64, closed trades
    costs_pips: np.ndarray           # float64, half the spread on every unit filled
    unrealized_pips: np.ndarray      # float64, open units at the last mark
    bars_since_entry: np.ndarray     # int64
    peak_pips: np.ndarray            # float64, best trade P&L since entry
    max_drawdown_pips: np.ndarray    # float64, largest fall from that peak
    accumulated_dd_pips: np.ndarray  # float64, sum over bars of the fall from the peak

    @classmethod
    def flat(cls, accounts: int) -> "Book":
        def zeros(dtype=np.float64):
            return np.zeros(accounts, dtype)
        return cls(zeros(np.int64), zeros(), zeros(), zeros(), zeros(np.int64), zeros(), zeros(), zeros(np.int64),
                   zeros(), zeros(), zeros())

    def trade_pips(self) -> np.ndarray:
        """[E] P&L of the open trade so far (0 when flat)."""
        return np.where(self.units != 0, self.trade_realized_pips + self.unrealized_pips, 0.0)

    def equity_pips(self) -> np.ndarray:
        """[E] realised + unrealised at the last mark."""
        return self.realized_pips + self.unrealized_pips

    def adopt(self, account: int, units: int, entry_price: float | None, mark_price: float, pip: float) -> None:
        """Take a position as the broker reports it (reconciliation): a new trade's tracks."""
        self.units[account] = units
        self.entry_price[account] = entry_price if units and entry_price is not None else (mark_price if units else 0.0)
        self.trade_realized_pips[account] = 0.0
        self.bars_since_entry[account] = 0
        unrealized = units * (mark_price - self.entry_price[account]) / pip if units else 0.0
        self.unrealized_pips[account] = unrealized
        self.peak_pips[account] = unrealized
        self.max_drawdown_pips[account] = 0.0
        self.accumulated_dd_pips[account] = 0.0


@dataclass
class FillResult:
    realized_pips: np.ndarray      # [E] float64, realised by this fill
    closed_trade_pips: np.ndarray  # [E] float64, the P&L of a trade this fill closed; NaN if none closed
    opened: np.ndarray             # [E] bool, a new trade opened (from flat, or the rest of a flip)


@numba.njit(cache=True)
def _fill(units, entry, realized, trade_realized, trades, costs, unrealized, bars, peak, max_dd, acc_dd,
          delta, price, half_spread_pips, mark_price, pip, out_realized, out_closed, out_opened):
    for e in range(len(units)):
        out_realized[e] = 0.0
        out_closed[e] = np.nan
        out_opened[e] = False
        d = delta[e]
        if d == 0:  # nothing filled: the open units are valued at the mark all the same
            if units[e] != 0:
                unrealized[e] = units[e] * (mark_price[e] - entry[e]) / pip[e]
            continue
        costs[e] += abs(d) * half_spread_pips[e]
        u = units[e]
        if u != 0 and (u > 0) != (d > 0):  # against the position: realise what it closes
            closing = min(abs(d), abs(u))
            side = 1.0 if u > 0 else -1.0
            pips = closing * side * (price[e] - entry[e]) / pip[e]
            out_realized[e] = pips
            realized[e] += pips
            trade_realized[e] += pips
            if closing == abs(u):  # the trade is over
                out_closed[e] = trade_realized[e]
                trades[e] += 1
                trade_realized[e] = 0.0
                entry[e] = 0.0
                bars[e] = 0
                peak[e] = 0.0
                max_dd[e] = 0.0
                acc_dd[e] = 0.0
        new = u + d
        if new != 0 and (u == 0 or (u > 0) != (new > 0)):  # a new trade: from flat, or the rest of a flip
            entry[e] = price[e]
            trade_realized[e] = 0.0
            bars[e] = 0
            max_dd[e] = 0.0
            acc_dd[e] = 0.0
            out_opened[e] = True
        elif new != 0 and (u > 0) == (d > 0):  # an add: the average entry
            entry[e] = (entry[e] * abs(u) + price[e] * abs(d)) / abs(new)
        units[e] = new
        unrealized[e] = new * (mark_price[e] - entry[e]) / pip[e] if new != 0 else 0.0
        if out_opened[e]:
            peak[e] = unrealized[e]


def _per_account(value, accounts: int) -> np.ndarray:
    return np.ascontiguousarray(np.broadcast_to(np.asarray(value, np.float64), (accounts,)))


def fill(book: Book, delta: np.ndarray, price: np.ndarray, pip: float | np.ndarray, mark_price: np.ndarray,
         half_spread_pips: np.ndarray | float = 0.0) -> FillResult:
    """Fill `delta` [E] units (0: nothing) at `price` [E]; the open units are then valued at
    `mark_price` [E]. `pip` is one size or one per account (accounts of several instruments).
    `half_spread_pips` only feeds `costs_pips` (the cost is in `price`)."""
    e = len(book.units)
    delta = np.ascontiguousarray(delta, np.int64)
    price, mark_price, half = (_per_account(x, e) for x in (price, mark_price, half_spread_pips))
    out = FillResult(np.zeros(e), np.full(e, np.nan), np.zeros(e, np.bool_))
    _fill(book.units, book.entry_price, book.realized_pips, book.trade_realized_pips, book.trades, book.costs_pips,
          book.unrealized_pips, book.bars_since_entry, book.peak_pips, book.max_drawdown_pips, book.accumulated_dd_pips,
          delta, price, half, mark_price, _per_account(pip, e), out.realized_pips, out.closed_trade_pips, out.opened)
    return out


@numba.njit(cache=True)
def _mark(units, entry, trade_realized, unrealized, bars, peak, max_dd, acc_dd, price, pip):
    for e in range(len(units)):
        if units[e] == 0:
            continue
        bars[e] += 1
        unrealized[e] = units[e] * (price[e] - entry[e]) / pip[e]
        trade = trade_realized[e] + unrealized[e]
        peak[e] = max(peak[e], trade)
        drawdown = peak[e] - trade
        max_dd[e] = max(max_dd[e], drawdown)
        acc_dd[e] += drawdown


def mark(book: Book, price: np.ndarray, pip: float | np.ndarray) -> None:
    """One bar passes: value every open position at `price` [E] (pip: one size or one per account)
    and advance its tracks."""
    e = len(book.units)
    price = _per_account(price, e)
    _mark(book.units, book.entry_price, book.trade_realized_pips, book.unrealized_pips, book.bars_since_entry,
          book.peak_pips, book.max_drawdown_pips, book.accumulated_dd_pips, price, _per_account(pip, e))
