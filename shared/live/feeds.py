"""Bar feeds for the live service: a replay of held-out bars (the local
default) and OANDA candles of the model's bar size (complete candles only, polled)."""

from __future__ import annotations

import time
from typing import Callable

import numpy as np
import oandapyV20
import pandas as pd
from oandapyV20.endpoints.instruments import InstrumentsCandles

from shared.core.bar_sizes import check_granularity
from shared.core.instruments import get_instrument
from shared.core.oanda import request_with_retry
from shared.data.bars import NS_PER_MINUTE, Bars
from shared.data.oanda_candles import candles_to_bars


class ReplayFeed:
    """Plays `bars[start:]` one bar at a time, `bars_per_second` fast (0: no
    waiting). Its clock is the replayed market's: a bar is `now` when it closes."""

    last_spread_pips = None  # held-out bars carry no spread: the paper broker's applies

    def __init__(self, bars: Bars, start: int, *, bars_per_second: float = 0.0, granularity: str = "M1",
                 sleep: Callable[[float], None] = time.sleep) -> None:
        if not 0 < start <= len(bars):
            raise ValueError(f"replay start {start} outside 1..{len(bars)}")
        self.bars = bars
        self.bar_ns = check_granularity(granularity) * NS_PER_MINUTE
        self.position = start
        self.interval = 1.0 / bars_per_second if bars_per_second > 0 else 0.0
        self.sleep = sleep
        self._last = None

    def history(self) -> Bars:
        return self.bars[: self.position]

    def skip_to_after(self, ts_ns: int) -> None:
        """Resume after a bar already handled (after a restart)."""
        self.position = max(self.position, int(np.searchsorted(self.bars.ts, ts_ns, side="right")))

    def next_bars(self) -> Bars:
        if self.position >= len(self.bars):
            return self.bars[len(self.bars):]
        if self.interval and self._last is not None:
            wait = self._last + self.interval - time.monotonic()
            if wait > 0:
                self.sleep(wait)
        self._last = time.monotonic()
        self.position += 1
        return self.bars[self.position - 1 : self.position]

    def now_ns(self) -> int:
        last = min(self.position, len(self.bars)) - 1
        return int(self.bars.ts[last]) + self.bar_ns

    @property
    def exhausted(self) -> bool:
        return self.position >= len(self.bars)


class OandaCandleFeed:
    """Complete candles of one bar size, polled, with bid and ask so the spread is known. A
    candle whose `complete` flag is late is not used: the next poll asks for
    it again."""

    def __init__(self, api: oandapyV20.API, instrument: str, *, history_bars: int = 5000,
                 granularity: str = "M1") -> None:
        self.api = api
        self.granularity = granularity
        self.bar_ns = check_granularity(granularity) * NS_PER_MINUTE
        self.instrument = get_instrument(instrument)
        self.history_bars = history_bars
        self.last_ts: int | None = None
        self.last_spread_pips: float | None = None

    def _candles(self, params: dict) -> Bars:
        params = {"granularity": self.granularity, "price": "MBA", **params}
        response = request_with_retry(self.api, InstrumentsCandles(self.instrument.oanda_name, params=params))
        complete = []
        for candle in response.get("candles", []):
            if not candle.get("complete"):
                break
            complete.append(candle)
        if complete and "bid" in complete[-1] and "ask" in complete[-1]:
            last = complete[-1]
            ask, bid = float(last["ask"]["c"]), float(last["bid"]["c"])
            self.last_spread_pips = self.instrument.to_pips(ask - bid, (ask + bid) / 2)
        return candles_to_bars(complete) if complete else candles_to_bars([])

    def history(self) -> Bars:
        bars = self._candles({"count": min(self.history_bars, 5000)})
        if len(bars):
            self.last_ts = int(bars.ts[-1])
        return bars

    def skip_to_after(self, ts_ns: int) -> None:
        self.last_ts = max(self.last_ts or ts_ns, ts_ns)

    def next_bars(self) -> Bars:
        if self.last_ts is None:
            return self.history()[-1:]
        start = pd.Timestamp(self.last_ts + self.bar_ns).strftime("%Y-%m-%dT%H:%M:%S.000000000Z")
        bars = self._candles({"from": start, "count": 500})
        if len(bars):
            self.last_ts = int(bars.ts[-1])
        return bars

    def now_ns(self) -> int:
        return pd.Timestamp.now(tz="UTC").value

    exhausted = False


class DeskFeed:
    """One feed per instrument, merged by bar time: each `next_bars` gives the bars of the next
    bar time any instrument has (instrument -> one bar), so a desk decides them in one search.
    An instrument with no bar at that time (its market closed) is simply absent. A live bar that
    comes late for one instrument (OANDA's `complete` flag) is given at a later call, on its own:
    waiting for it would delay the others. Replayed feeds share one clock: the close of the bar
    time given last."""

    def __init__(self, feeds: dict) -> None:
        self.feeds = dict(feeds)                                    # instrument -> ReplayFeed | OandaCandleFeed
        self.waiting: dict[str, list[Bars]] = {name: [] for name in self.feeds}  # fetched, not yet given
        self.replay = all(isinstance(feed, ReplayFeed) for feed in self.feeds.values())
        self.bar_ns = next(iter(self.feeds.values())).bar_ns
        self._clock_ns: int | None = None

    def history(self, instrument: str) -> Bars:
        return self.feeds[instrument].history()

    def skip_to_after(self, instrument: str, ts_ns: int) -> None:
        self.feeds[instrument].skip_to_after(ts_ns)

    @property
    def last_spread_pips(self) -> dict[str, float | None]:
        return {name: feed.last_spread_pips for name, feed in self.feeds.items()}

    def next_bars(self) -> dict[str, Bars]:
        for name, feed in self.feeds.items():
            if not self.waiting[name] and not feed.exhausted:
                bars = feed.next_bars()
                self.waiting[name] = [bars[i : i + 1] for i in range(len(bars))]
        heads = {name: int(queue[0].ts[0]) for name, queue in self.waiting.items() if queue}
        if not heads:
            return {}
        first = min(heads.values())
        out = {name: self.waiting[name].pop(0) for name, ts in heads.items() if ts == first}
        self._clock_ns = first + self.bar_ns
        return out

    def now_ns(self) -> int:
        if not self.replay:
            return pd.Timestamp.now(tz="UTC").value
        if self._clock_ns is None:
            return max(feed.now_ns() for feed in self.feeds.values())
        return self._clock_ns

    @property
    def exhausted(self) -> bool:
        return self.replay and all(feed.exhausted and not self.waiting[name] for name, feed in self.feeds.items())
