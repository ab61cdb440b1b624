"""CSV import: the OANDA, HistData and MT4 shapes, auto-detection, and every bad-row case."""

from __future__ import annotations

import pandas as pd
import pytest

from shared.cli.data import main as data_cli
from shared.data.csv_import import BadRowsError, CsvFormatError
from shared.data.importers import read_bars
from shared.data.store import BarStore

OANDA = """time,volume,mid_o,mid_h,mid_l,mid_c,complete
2024-01-08T00:00:00.000000000Z,12,185.100,185.200,185.000,185.150,true
2024-01-08T00:01:00.000000000Z,9,185.150,185.300,185.100,185.200,true
"""
HISTDATA = """20240108 000000;185.100;185.200;185.000;185.150;0
20240108 000100;185.150;185.300;185.100;185.200;0
"""
MT4 = """2024.01.08,00:00,185.100,185.200,185.000,185.150,12
2024.01.08,00:01,185.150,185.300,185.100,185.200,9
"""


def read_csv_bars(path, *, fmt="auto", skip_bad=False, tz_offset_hours=None):
    imported = read_bars(path, fmt=fmt, skip_bad=skip_bad, tz_offset_hours=tz_offset_hours, granularity="M1")
    return imported.bars, imported.report


def _write(tmp_path, text: str, name: str = "bars.csv"):
    path = tmp_path / name
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    "text, fmt, first_utc",
    [
        (OANDA, "oanda", "2024-01-08 00:00"),
        (HISTDATA, "histdata", "2024-01-08 05:00"),  # EST (UTC-5) to UTC
        (MT4, "mt4", "2024-01-08 00:00"),
        ("time,open,high,low,close\n2024-01-08T00:00:00+01:00,185.1,185.2,185.0,185.15\n", "oanda", "2024-01-07 23:00"),
    ],
)
def test_formats_are_detected_and_parsed(tmp_path, text, fmt, first_utc):
    bars, report = read_csv_bars(_write(tmp_path, text))
    assert report.format == fmt and not report.bad_rows
    assert pd.Timestamp(bars.ts[0]) == pd.Timestamp(first_utc)
    assert bars.close[0] == pytest.approx(185.15)
    assert bars.high[0] == pytest.approx(185.2) and bars.low[0] == pytest.approx(185.0)


def test_mt4_server_time_offset(tmp_path):
    bars, _ = read_csv_bars(_write(tmp_path, MT4), tz_offset_hours=2)
    assert pd.Timestamp(bars.ts[0]) == pd.Timestamp("2024-01-07 22:00")


@pytest.mark.parametrize(
    "line, reason",
    [
        ("20240108 000200;185.1;nan;185.0;185.1;0", "NaN"),
        ("20240108 000200;185.1;185.2;;185.1;0", "NaN"),
        ("20240108 000200;185.1;abc;185.0;185.1;0", "NaN"),
        ("20240108 000200;185.1;185.0;185.2;185.1;0", "high < low"),
        ("20240108 000200;0;185.2;185.0;185.1;0", "non-positive price"),
        ("20240108 000200;-185.1;185.2;185.0;185.1;0", "non-positive price"),
        ("20240108 000200;185.1;185.2;185.0;185.9;0", "outside [low, high]"),
        ("20240108 000100;185.1;185.2;185.0;185.1;0", "duplicate timestamp"),
        ("20240107 235900;185.1;185.2;185.0;185.1;0", "out of order"),
        ("20240108 002x00;185.1;185.2;185.0;185.1;0", "timestamp"),
        ("20240108 000200;185.1;185.2;185.0;185.1", "wrong number of fields"),
    ],
)
def test_every_bad_row_is_reported_with_its_line_and_nothing_imported(tmp_path, line, reason):
    path = _write(tmp_path, HISTDATA + line + "\n20240108 000500;185.1;185.2;185.0;185.1;0\n")
    with pytest.raises(BadRowsError) as failure:
        read_csv_bars(path)
    bad = failure.value.report.bad_rows
    assert [b.line for b in bad] == [3], f"expected only line 3 to be bad, got {bad}"
    assert reason in bad[0].reason
    assert "line 3" in str(failure.value) and "nothing was imported" in str(failure.value)


def test_skip_bad_keeps_good_rows_and_still_reports(tmp_path):
    path = _write(tmp_path, HISTDATA + "20240108 000200;185.1;185.0;185.2;185.1;0\n20240108 000300;185.1;185.2;185.0;185.1;0\n")
    bars, report = read_csv_bars(path, skip_bad=True)
    assert len(bars) == 3 and report.good == 3 and report.rows == 4
    assert [(b.line, b.reason) for b in report.bad_rows] == [(3, "high < low")]


def test_oanda_incomplete_candle_is_bad_and_line_numbers_count_the_header(tmp_path):
    text = OANDA + "2024-01-08T00:02:00.000000000Z,3,185.2,185.3,185.1,185.2,false\n"
    with pytest.raises(BadRowsError) as failure:
        read_csv_bars(_write(tmp_path, text))
    assert [(b.line, b.reason) for b in failure.value.report.bad_rows] == [(4, "incomplete candle (complete=false)")]


@pytest.mark.parametrize(
    "text",
    ["date;open;close\n1;2;3\n", "hello world\n", "2024-01-08,185.1,185.2\n", "time,open,high,low\n2024,1,2,1\n"],
)
def test_unknown_format_is_a_clear_error(tmp_path, text):
    with pytest.raises(CsvFormatError, match="unknown CSV format"):
        read_csv_bars(_write(tmp_path, text))


def test_empty_and_missing_files(tmp_path):
    with pytest.raises(CsvFormatError, match="empty"):
        read_csv_bars(_write(tmp_path, "\n\n"))
    with pytest.raises(FileNotFoundError):
        read_csv_bars(tmp_path / "nope.csv")
    with pytest.raises(CsvFormatError, match="unknown format"):
        read_csv_bars(_write(tmp_path, HISTDATA), fmt="excel")


def test_short_columns_and_a_byte_order_mark_read_as_oanda(tmp_path):
    path = tmp_path / "bom.csv"
    path.write_bytes("\ufefftime,o,h,l,c,volume\n2024-01-08T00:00:00Z,1,2,0.5,1.5,3\n".encode())
    _, report = read_csv_bars(path)
    assert report.format == "oanda" and report.good == 1


def test_a_forced_format_that_does_not_fit_is_a_clear_error(tmp_path):
    """Regression: --format oanda on a headerless file ended in a StopIteration traceback."""
    with pytest.raises(CsvFormatError, match="--format oanda does not fit .* reads as histdata"):
        read_csv_bars(_write(tmp_path, HISTDATA), fmt="oanda")
    with pytest.raises(CsvFormatError, match="--format mt4 does not fit .*unknown CSV format"):
        read_csv_bars(_write(tmp_path, "2024-01-08;1;2\n"), fmt="mt4")


def test_cli_import_refuses_bad_rows_and_writes_nothing(tmp_path, capsys):
    db = tmp_path / "m.duckdb"
    bad = _write(tmp_path, HISTDATA + "20240108 000200;185.1;185.0;185.2;185.1;0\n")
    assert data_cli(["--db", str(db), "--quiet", "import", str(bad), "--instrument", "GBPJPY"]) == 2
    assert "line 3: high < low" in capsys.readouterr().err
    assert not db.exists() or len(BarStore(db, read_only=True).load("GBPJPY", "M1")) == 0

    assert data_cli(["--db", str(db), "--quiet", "import", str(bad), "--instrument", "GBP_JPY", "--skip-bad"]) == 0
    out = capsys.readouterr().out
    assert "line 3: high < low" in out and "imported 2 GBPJPY M1 bars" in out
    with BarStore(db, read_only=True) as store:
        assert len(store.load("GBPJPY", "M1")) == 2
    # importing the same file again changes nothing
    assert data_cli(["--db", str(db), "--quiet", "import", str(bad), "--instrument", "GBPJPY", "--skip-bad"]) == 0
    assert "0 new, 2 replaced" in capsys.readouterr().out


@pytest.mark.parametrize("content", [bytes(range(256)) * 8, "170.0;ü".encode("latin-1") * 50])
def test_a_binary_file_is_refused_with_its_name(tmp_path, capsys, content):
    """Regression: a binary file ended in a bare UnicodeDecodeError without the file's name."""
    bad = tmp_path / "not-a-csv.bin"
    bad.write_bytes(content)
    assert data_cli(["--db", str(tmp_path / "m.duckdb"), "--quiet", "import", str(bad), "--instrument", "GBPJPY"]) == 2
    err = capsys.readouterr().err
    assert "not-a-csv.bin" in err and "not a candle CSV" in err
