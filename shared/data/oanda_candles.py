"""Download OANDA v20 candles into the bar store.

Paged with `count` = 5000 (OANDA answers a larger count with 400), mid prices,
complete candles only (the newest candle is usually still forming: it and
anything after it are left for the next run), and resumable: without an
explicit start it continues from the last stored bar. Each page is committed
as it arrives, so an interrupted download loses at most one page.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import oandapyV20
import pandas as pd
from oandapyV20.endpoints.instruments import InstrumentsCandles
from tqdm import tqdm

from shared.core.bar_sizes import check_granularity
from shared.core.instruments import get_instrument
from shared.core.oanda import request_with_retry
from shared.data.bars import Bars
from shared.data.store import BarStore

MAX_CANDLES_PER_REQUEST = 5000


@dataclass(frozen=True)
class DownloadResult:
    requests: int
    candles: int          # complete candles stored
    incomplete_skipped: int
    first: pd.Timestamp | None
    last: pd.Timestamp | None


def _rfc3339(ts: pd.Timestamp) -> str:
    return ts.strftime("%Y-%m-%dT%H:%M:%S.000000000Z")


def _utc(value: str | pd.Timestamp) -> pd.Timestamp:
    ts = pd.Timestamp(value)
    return ts.tz_convert("UTC").tz_localize(None) if ts.tzinfo is not None else ts


def candles_to_bars(candles: list[dict]) -> Bars:
    frame = pd.DataFrame(
        {
            "ts": [c["time"] for c in candles],
            "open": [float(c["mid"]["o"]) for c in candles],
            "high": [float(c["mid"]["h"]) for c in candles],
            "low": [float(c["mid"]["l"]) for c in candles],
            "close": [float(c["mid"]["c"]) for c in candles],
            "volume": [float(c.get("volume", 0)) for c in candles],
        }
    )
    return Bars.from_frame(frame)


def download_candles(
    api: oandapyV20.API,
    store: BarStore,
    instrument: str,
    granularity: str = "M1",
    *,
    start: str | pd.Timestamp | None = None,
    end: str | pd.Timestamp | None = None,
    page_size: int = MAX_CANDLES_PER_REQUEST,
    progress: bool = True,
) -> DownloadResult:
    """Fetch complete candles from `start` (or after the last stored bar) up to `end` (or now)."""
    inst = get_instrument(instrument)
    step = pd.Timedelta(minutes=check_granularity(granularity))
    if not 1 <= page_size <= MAX_CANDLES_PER_REQUEST:
        raise ValueError(f"page_size must be in 1..{MAX_CANDLES_PER_REQUEST}, got {page_size}")
    last_stored = store.last_ts(inst.name, granularity)
    if start is not None:
        cursor = _utc(start)
        if last_stored is not None and last_stored + step > cursor:
            cursor = last_stored + step  # resume: never fetch what is stored already
    elif last_stored is not None:
        cursor = last_stored + step
    else:
        raise ValueError(f"no {inst.name} {granularity} bars stored yet: give a start time")
    stop = _utc(end) if end is not None else pd.Timestamp.now(tz="UTC").tz_localize(None)

    requests_made = stored = incomplete = 0
    first = last = None
    total_minutes = max(1.0, (stop - cursor).total_seconds() / 60)
    with tqdm(total=round(total_minutes), unit="min", desc=f"download {inst.name} {granularity}", disable=not progress) as bar:
        while cursor < stop:
            params = {"granularity": granularity, "price": "M", "from": _rfc3339(cursor), "count": page_size}
            response = request_with_retry(api, InstrumentsCandles(instrument=inst.oanda_name, params=params))
            requests_made += 1
            candles = response.get("candles", [])
            complete: list[dict] = []
            for candle in candles:
                if not candle.get("complete", False):
                    incomplete += 1
                    break  # a forming candle: it and everything after wait for the next run
                complete.append(candle)
            page = candles_to_bars(complete) if complete else None
            if page is not None:
                page = page[: int(np.searchsorted(page.ts, stop.value, side="left"))]
            if page is not None and len(page):
                store.upsert(inst.name, granularity, page)
                stored += len(page)
                first = first or pd.Timestamp(page.ts[0])
                last = pd.Timestamp(page.ts[-1])
                advanced = (last + step - cursor).total_seconds() / 60
                bar.update(max(0, min(round(advanced), bar.total - bar.n)))
                cursor = last + step
            if (not candles or len(complete) < len(candles) or len(candles) < page_size
                    or (page is not None and len(page) < len(complete))):
                break
    return DownloadResult(requests_made, stored, incomplete, first, last)
