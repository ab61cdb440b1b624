"""The DuckDB bar store: unique key, idempotent upsert, ranges, gaps."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from shared.data.bars import NS_PER_MINUTE, Bars
from shared.data.store import BarStore


def _bars(start: str, minutes: list[int], price: float = 180.0) -> Bars:
    ts = pd.Timestamp(start).value + np.asarray(minutes, dtype=np.int64) * NS_PER_MINUTE
    n = len(minutes)
    close = price + np.arange(n) * 0.01
    return Bars(ts, close - 0.005, close + 0.02, close - 0.02, close, np.full(n, 5.0))


def test_upsert_is_idempotent_and_replaces_corrected_bars(tmp_path):
    with BarStore(tmp_path / "m.duckdb") as store:
        bars = _bars("2024-01-08 00:00", list(range(10)))
        assert store.upsert("GBPJPY", "M1", bars).inserted == 10
        again = store.upsert("GBPJPY", "M1", bars)
        assert (again.inserted, again.updated) == (0, 10)
        assert len(store.load("GBPJPY", "M1")) == 10

        corrected = bars[3:5]
        corrected.close = corrected.close + 0.5
        corrected.high = corrected.high + 0.5
        store.upsert("GBPJPY", "M1", corrected)
        stored = store.load("GBPJPY", "M1")
        assert len(stored) == 10
        np.testing.assert_allclose(stored.close[3:5], bars.close[3:5] + 0.5)
        np.testing.assert_allclose(stored.close[:3], bars.close[:3])


def test_instruments_and_granularities_are_separate_keys(tmp_path):
    with BarStore(tmp_path / "m.duckdb") as store:
        bars = _bars("2024-01-08", list(range(5)))
        store.upsert("GBPJPY", "M1", bars)
        store.upsert("GBPJPY", "M5", bars)
        store.upsert("USDJPY", "M1", bars)
        assert set(map(tuple, store.summary()[["instrument", "granularity"]].to_numpy())) == {
            ("GBPJPY", "M1"), ("GBPJPY", "M5"), ("USDJPY", "M1")}
        with pytest.raises(ValueError, match="granularity"):
            store.upsert("GBPJPY", "M3", bars)  # OANDA has no M3


def test_range_queries_are_half_open_and_ordered(tmp_path):
    with BarStore(tmp_path / "m.duckdb") as store:
        bars = _bars("2024-01-08", list(range(60)))
        # write out of order: the store orders by time
        store.upsert("GBPJPY", "M1", bars[30:])
        store.upsert("GBPJPY", "M1", bars[:30])
        window = store.load("GBPJPY", "M1", start="2024-01-08 00:10", end="2024-01-08 00:20")
        assert len(window) == 10
        assert pd.Timestamp(window.ts[0]) == pd.Timestamp("2024-01-08 00:10")
        assert np.all(np.diff(window.ts) > 0)
        tz_aware = store.load("GBPJPY", "M1", start=pd.Timestamp("2024-01-08 00:10", tz="Europe/London"))
        assert len(tz_aware) == 50  # London is UTC in January
        assert store.last_ts("GBPJPY", "M1") == pd.Timestamp(bars.ts[-1])
        assert store.last_ts("EURUSD", "M1") is None


def test_gap_report_flags_weekends_and_outages(tmp_path):
    friday_close = pd.Timestamp("2024-01-12 21:55")  # last bars of the week
    minutes = list(range(5))                               # 21:55 .. 21:59 Friday
    minutes += [2 * 24 * 60 + 5 + i for i in range(30)]     # Sunday 22:00 onwards
    minutes += [2 * 24 * 60 + 5 + 30 + 20 + i for i in range(5)]  # a 20-minute outage
    with BarStore(tmp_path / "m.duckdb") as store:
        store.upsert("GBPJPY", "M1", _bars(str(friday_close), minutes))
        gaps = store.gaps("GBPJPY", "M1")
    assert len(gaps) == 2
    weekend, outage = gaps
    assert weekend.weekend and weekend.after == pd.Timestamp("2024-01-12 21:59")
    assert not outage.weekend and outage.missing_bars == 20


def test_read_only_store_must_exist(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        BarStore(tmp_path / "missing.duckdb", read_only=True)
