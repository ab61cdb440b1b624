"""Data health on import, and the import command end to end: each bad input gives its message and
leaves the store as it was; warnings are reported; zones, order and the store's lock are handled."""

from __future__ import annotations

import functools
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import shared.data.oanda_candles as oanda_candles
from shared.cli.data import main as data_cli
from shared.core.calendar import FX
from shared.core.oanda import request_with_retry
from shared.data.bars import Bars
from shared.data.importers import BadRowsError, RefusedImportError, read_bars
from shared.data.store import BarStore
from tests.test_importers_shapes import hourly_frame, write_freqtrade_folder

ROOT = Path(__file__).resolve().parents[1]
HEADER = "Datetime,Open,High,Low,Close,Volume"


def rows_of(frame: pd.DataFrame) -> list[str]:
    """pandas-style CSV rows (no header), one per bar: row i is line i + 2 of the file."""
    values = frame[["Open", "High", "Low", "Close", "Volume"]].to_numpy().tolist()  # Python floats: repr round-trips
    return [f"{ts:%Y-%m-%d %H:%M:%S},{o!r},{h!r},{lo!r},{c!r},{v:g}" for ts, (o, h, lo, c, v) in zip(frame.index, values)]


def write(path: Path, rows: list[str]) -> Path:
    """A pandas-style file: the header, then the rows (unless the rows bring their own header)."""
    lines = rows if rows and not rows[0][:1].isdigit() else [HEADER, *rows]
    path.write_text("\n".join(lines) + "\n")
    return path


def import_cli(db: Path, path: Path, *flags: str) -> int:
    return data_cli(["--db", str(db), "--quiet", "import", str(path), *flags])


def stored_rows(db: Path) -> int:
    if not db.exists():
        return 0
    with BarStore(db, read_only=True) as store:
        return store.con.execute("SELECT count(*) FROM bars").fetchall()[0][0]


def test_cli_imports_a_pandas_hourly_file_end_to_end(tmp_path, capsys):
    frame = hourly_frame()
    frame.index = frame.index.rename("Datetime")
    frame.to_csv(path := tmp_path / "EURUSD_H1.csv")
    db = tmp_path / "m.duckdb"
    assert import_cli(db, path, "--instrument", "EURUSD") == 0
    out = capsys.readouterr().out
    assert "format pandas, H1, 48 rows, 48 good, 0 bad" in out
    assert "imported 48 EURUSD H1 bars (pandas): 48 new, 0 replaced" in out
    with BarStore(db, read_only=True) as store:
        bars = store.load("EURUSD", "H1")
    assert (bars.ts == frame.index.as_unit("ns").asi8).all()
    np.testing.assert_allclose(bars.close, frame["Close"].to_numpy())
    assert import_cli(db, path, "--instrument", "EURUSD", "--granularity", "1h") == 0
    assert "0 new, 48 replaced" in capsys.readouterr().out


def test_cli_imports_a_freqtrade_folder(tmp_path, capsys):
    folder = tmp_path / "user_data" / "data" / "oanda"
    eurusd, gbpjpy = write_freqtrade_folder(folder)
    db = tmp_path / "m.duckdb"
    assert import_cli(db, folder) == 0
    out = capsys.readouterr().out
    assert "imported 48 EURUSD H1 bars (freqtrade): 48 new" in out and "imported 36 GBPJPY M5 bars (freqtrade): 36 new" in out
    assert "skipped (not PAIR-TIMEFRAME candle files): EUR_USD-trades.feather" in out
    with BarStore(db, read_only=True) as store:
        summary = store.summary()
    assert summary[["instrument", "granularity", "bars"]].values.tolist() == [["EURUSD", "H1", 48], ["GBPJPY", "M5", 36]]


def _replace(rows: list[str], index: int, field: int, value: str) -> list[str]:
    cells = rows[index].split(",")
    cells[field] = value
    return rows[:index] + [",".join(cells)] + rows[index + 1:]


def _m1_inside_h1(rows: list[str]) -> list[str]:
    start = pd.Timestamp(rows[10].split(",")[0])
    extra = [f"{start + pd.Timedelta(minutes=m):%Y-%m-%d %H:%M:%S},1.1,1.1005,1.0995,1.1,5" for m in range(1, 60)]
    return rows[:11] + extra + rows[11:]


BAD_INPUTS = {
    # name: (rows -> bad rows, extra flags, what stderr must say)
    "duplicate": (lambda r: r[:10] + [r[9]] + r[10:], (), "line 12: duplicate timestamp"),
    "out of order": (lambda r: r[:10] + [r[3]] + r[10:], (), "line 12: timestamp out of order"),
    "non-positive price": (lambda r: _replace(r, 5, 3, "0"), (), "line 7: non-positive price"),
    "high below low": (lambda r: _replace(r, 5, 2, "1.0"), (), "line 7: high < low"),
    "one implausible row": (lambda r: _replace(r, 5, 2, "180.5"), (), "line 7: price implausible for EURUSD"),
    "mixed granularities": (lambda r: _m1_inside_h1(rows_of(hourly_frame(n=200))), (),
                            "line 13: a bar starting 1 min after the one before, inside the file's H1 bars"),
    "granularity mismatch": (lambda r: r, ("--granularity", "M1"), "--granularity says M1 but the bars are H1"),
    "nothing of a known shape": (lambda r: ["when;bid;offer", "2024-01-08;1.1;1.2"], (), "unknown CSV format"),
    "no readable row": (lambda r: [HEADER, "x;y", "z;w"], (), "line 3: wrong number of fields"),
    "a header and no rows": (lambda r: [HEADER], (), "has a header but no rows"),
    "a forced shape that does not fit": (lambda r: r, ("--format", "mt5"), "--format mt5 does not fit"),
    "a zone for a zoned file": (lambda r: [row.replace(",", "+00:00,", 1) for row in r], ("--tz", "EET"),
                                "already carries its zone"),
    "an unknown zone": (lambda r: r, ("--tz", "Mars/Olympus"), "unknown time zone 'Mars/Olympus'"),
    "two zones": (lambda r: r, ("--tz", "EET", "--tz-offset-hours", "2"), "give --tz or --tz-offset-hours, not both"),
    "a granularity we do not store": (lambda r: r, ("--granularity", "1w"), "unknown granularity '1w'"),
}


@pytest.mark.parametrize("name", list(BAD_INPUTS))
def test_each_bad_input_gives_its_message_and_leaves_the_store_unchanged(tmp_path, capsys, name):
    db = tmp_path / "m.duckdb"
    earlier = hourly_frame(n=24, start="2024-01-01 00:00")
    assert import_cli(db, write(tmp_path / "earlier.csv", rows_of(earlier)), "--instrument", "EURUSD") == 0
    before = stored_rows(db)
    assert before == 24
    capsys.readouterr()
    mutate, flags, message = BAD_INPUTS[name]
    bad = write(tmp_path / "bad.csv", mutate(rows_of(hourly_frame())))
    assert import_cli(db, bad, "--instrument", "EURUSD", *flags) == 2
    err = capsys.readouterr().err
    assert message in err, err
    assert "Traceback" not in err
    assert stored_rows(db) == before


def test_a_file_without_an_instrument_is_refused_before_it_is_read(tmp_path, capsys):
    path = write(tmp_path / "bars.csv", rows_of(hourly_frame()))
    assert import_cli(tmp_path / "m.duckdb", path) == 2
    assert "name the instrument of" in capsys.readouterr().err and not (tmp_path / "m.duckdb").exists()


def test_a_price_level_implausible_for_the_instrument_refuses_the_file(tmp_path, capsys):
    frame = hourly_frame(price=180.0)  # GBPJPY-like bars named EURUSD
    path = write(tmp_path / "eurusd.csv", rows_of(frame))
    refused = r"prices around 18\d.* implausible for EURUSD \(typical 1.2, plausible 0.4..3.6\)"
    with pytest.raises(RefusedImportError, match=refused):
        read_bars(path, instrument="EURUSD", skip_bad=True)
    db = tmp_path / "m.duckdb"
    assert import_cli(db, path, "--instrument", "EURUSD", "--skip-bad") == 2 and stored_rows(db) == 0
    assert import_cli(db, path, "--instrument", "GBPJPY") == 0 and stored_rows(db) == 48


def test_mixed_granularities_name_exactly_the_inner_rows(tmp_path):
    path = write(tmp_path / "h1.csv", _m1_inside_h1(rows_of(hourly_frame(n=200))))
    with pytest.raises(BadRowsError) as failure:
        read_bars(path, instrument="EURUSD")
    assert [bad.line for bad in failure.value.report.bad_rows] == list(range(13, 72))  # the 59 M1 rows
    kept = read_bars(path, instrument="EURUSD", skip_bad=True)
    assert len(kept.bars) == 200 and kept.report.granularity == "H1"
    # where the M1 rows outnumber the H1 steps, the most common step says M1: a stated H1 is then a mismatch
    short = write(tmp_path / "short.csv", _m1_inside_h1(rows_of(hourly_frame(n=48))))
    with pytest.raises(RefusedImportError, match="--granularity says H1 but the bars are M1"):
        read_bars(short, instrument="EURUSD", granularity="H1")


def test_the_granularity_is_inferred_despite_weekends_and_gaps(tmp_path):
    index = pd.date_range("2024-01-10", "2024-01-17", freq="5min", inclusive="left")
    open_market = ~FX.closed(index.as_unit("ns").asi8)
    frame = hourly_frame(n=len(index)).set_axis(index)[open_market].drop(index[100:140])
    imported = read_bars(write(tmp_path / "m5.csv", rows_of(frame)), instrument="EURUSD")
    assert imported.report.granularity == "M5"
    assert imported.report.warnings == ["1 gaps longer than one bar outside weekends, 40 bars missing in all "
                                        "(longest: 40 bars after line 101, 2024-01-10 08:15:00 UTC)"]


def test_health_warnings_are_reported_and_printed(tmp_path, capsys):
    index = pd.date_range("2024-01-10", "2024-01-17", freq="h", inclusive="left")
    frame = hourly_frame(n=len(index)).set_axis(index)
    frame = frame[~FX.closed(index.as_unit("ns").asi8)]  # a weekend: no warning
    frame = frame.drop(frame.index[30:33])                                          # a midweek gap of 3 bars
    frame.iloc[60:, :4] *= 1.10                                                     # a 10% jump at bar 60
    frame.iloc[20:26, 4] = 0.0                                                      # six zero-volume bars
    path = write(tmp_path / "eurusd.csv", rows_of(frame))
    report = read_bars(path, instrument="EURUSD").report
    assert len(report.warnings) == 3, report.warnings
    gaps, jumps, zero = report.warnings
    assert gaps.startswith("1 gaps longer than one bar outside weekends, 3 bars missing")
    assert jumps.startswith("1 one-bar jumps above 5% and 20x the median move (first: line 62")
    assert zero.startswith("1 runs of 5 or more zero-volume bars, 6 bars in all (longest: 6 bars from line 22)")
    assert import_cli(tmp_path / "m.duckdb", path, "--instrument", "EURUSD") == 0
    out = capsys.readouterr().out
    assert out.count("warning: ") == 3 and f"imported {len(frame)} EURUSD H1 bars" in out


@pytest.mark.parametrize("skip_bad", [False, True])
def test_a_newest_first_file_is_read_oldest_first(tmp_path, capsys, skip_bad):
    """Regression: a newest-first file with --skip-bad imported 1 bar of 300."""
    frame = hourly_frame(n=300, freq="min")
    path = write(tmp_path / "newest_first.csv", rows_of(frame)[::-1])
    imported = read_bars(path, instrument="EURUSD", skip_bad=skip_bad)
    assert len(imported.bars) == 300 and (imported.bars.ts == frame.index.as_unit("ns").asi8).all()
    assert any("newest-first" in note for note in imported.report.notes)
    db = tmp_path / "m.duckdb"
    assert import_cli(db, path, "--instrument", "EURUSD", *(["--skip-bad"] if skip_bad else [])) == 0
    assert stored_rows(db) == 300


def test_a_dst_zone_converts_winter_and_summer_stamps_with_their_own_offsets(tmp_path):
    winter = pd.date_range("2024-01-15 10:00", periods=3, freq="h")
    summer = pd.date_range("2024-07-15 10:00", periods=3, freq="h")
    frame = hourly_frame(n=6).set_axis(winter.append(summer))
    imported = read_bars(write(tmp_path / "eet.csv", rows_of(frame)), instrument="EURUSD", tz="EET")
    stamps = pd.to_datetime(imported.bars.ts)
    assert stamps[0] == pd.Timestamp("2024-01-15 08:00")  # EET, UTC+2
    assert stamps[3] == pd.Timestamp("2024-07-15 07:00")  # EEST, UTC+3
    assert imported.report.granularity == "H1"


def test_the_hours_of_a_dst_switch_are_read_deterministically(tmp_path):
    autumn = ["2024-10-27 02:00:00", "2024-10-27 03:00:00", "2024-10-27 03:00:00", "2024-10-27 04:00:00"]
    rows = [f"{stamp},1.1,1.1005,1.0995,1.1,5" for stamp in autumn]
    imported = read_bars(write(tmp_path / "autumn.csv", rows), instrument="EURUSD", tz="Europe/Helsinki", granularity="H1")
    assert list(pd.to_datetime(imported.bars.ts).strftime("%d %H:%M")) == ["26 23:00", "27 00:00", "27 01:00", "27 02:00"]

    spring = ["2024-03-31 02:00:00", "2024-03-31 03:00:00", "2024-03-31 04:00:00"]
    path = write(tmp_path / "spring.csv", [f"{stamp},1.1,1.1005,1.0995,1.1,5" for stamp in spring])
    with pytest.raises(BadRowsError, match="line 3: local time that does not exist in the zone"):
        read_bars(path, instrument="EURUSD", tz="Europe/Helsinki", granularity="H1")
    kept = read_bars(path, instrument="EURUSD", tz="Europe/Helsinki", granularity="H1", skip_bad=True)
    assert list(pd.to_datetime(kept.bars.ts).strftime("%d %H:%M")) == ["31 00:00", "31 01:00"]


def test_a_failed_write_writes_nothing(tmp_path, monkeypatch):
    bars = Bars.from_frame(hourly_frame(n=5).rename(columns=str.lower).rename_axis("ts").reset_index())
    calls = []

    def fail_on_the_second(self, frame):
        calls.append(len(frame))
        if len(calls) == 2:
            raise RuntimeError("disk full")
        return real(self, frame)

    real = BarStore._upsert_frame
    monkeypatch.setattr(BarStore, "_upsert_frame", fail_on_the_second)
    with BarStore(tmp_path / "m.duckdb") as store:
        with pytest.raises(RuntimeError, match="disk full"):
            store.upsert_many([("EURUSD", "H1", bars), ("GBPJPY", "H1", bars)])
        assert store.con.execute("SELECT count(*) FROM bars").fetchall()[0][0] == 0
    assert calls == [5, 5]


def test_a_store_open_in_another_process_is_named_as_such(tmp_path, capsys):
    db = tmp_path / "m.duckdb"
    holder = subprocess.Popen(
        [sys.executable, "-c", f"from shared.data.store import BarStore; s = BarStore({str(db)!r}); print('ready', flush=True); "
                               "import sys; sys.stdin.read()"],
        cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "ready"
        path = write(tmp_path / "eurusd.csv", rows_of(hourly_frame()))
        assert import_cli(db, path, "--instrument", "EURUSD") == 2
        err = capsys.readouterr().err
        assert f"the store {db} is open in another process (pid {holder.pid}) — stop it or use another --db" in err
    finally:
        holder.stdin.close()
        holder.wait(timeout=30)
    assert stored_rows(db) == 0


def test_download_without_a_network_is_a_clear_message(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("OANDA_TOKEN", "not-a-real-token")
    monkeypatch.setenv("OANDA_API_URL", "http://127.0.0.1:9")  # the discard port: nothing listens
    monkeypatch.setattr(oanda_candles, "request_with_retry", functools.partial(request_with_retry, sleep=lambda _: None))
    args = ["--db", str(tmp_path / "m.duckdb"), "--quiet", "download", "--instrument", "EURUSD", "--start", "2024-01-08"]
    assert data_cli(args) == 2
    err = capsys.readouterr().err
    assert "cannot reach OANDA" in err and "ConnectionError" in err and "Traceback" not in err


def test_a_long_crypto_history_is_plausible_a_pair_at_another_level_is_not(tmp_path):
    from shared.data.importers import RefusedImportError, read_bars

    days = pd.date_range("2016-01-01", periods=3000, freq="D", name="Date")
    close = np.geomspace(400.0, 60_000.0, len(days))  # BTC from 2016: 150x over the file
    frame = pd.DataFrame({"Open": close, "High": close * 1.01, "Low": close * 0.99, "Close": close, "Volume": 1.0},
                         index=days)
    frame.to_csv(tmp_path / "btc.csv")
    imported = read_bars(tmp_path / "btc.csv", instrument="BTCUSD")
    assert len(imported.bars) == 3000 and imported.report.granularity == "D"
    frame.assign(Open=1.1, High=1.2, Low=1.0, Close=1.1).to_csv(tmp_path / "eurusd_named_btc.csv")
    with pytest.raises(RefusedImportError, match="implausible for BTCUSD"):
        read_bars(tmp_path / "eurusd_named_btc.csv", instrument="BTCUSD")
