"""Each shape users have, written here to a tmp file the way its tool writes it, then imported."""

from __future__ import annotations

import gzip
import json

import numpy as np
import pandas as pd
import pytest

from shared.core.bar_sizes import parse_granularity
from shared.data.importers import CsvFormatError, RefusedImportError, read_bars, read_path


def hourly_frame(n: int = 48, start: str = "2024-01-08 00:00", price: float = 1.10, freq: str = "h") -> pd.DataFrame:
    """Distinct open/high/low/close per bar, so a swapped column shows."""
    index = pd.date_range(start, periods=n, freq=freq)
    close = price + np.cumsum(np.random.default_rng(1).normal(0, 0.0004, n))
    open_ = np.concatenate([[price], close[:-1]])
    return pd.DataFrame({"Open": open_, "High": np.maximum(open_, close) + 0.0003,
                         "Low": np.minimum(open_, close) - 0.0002, "Close": close,
                         "Volume": np.arange(100, 100 + n, dtype=float)}, index=index)


def assert_bars(imported, frame: pd.DataFrame, utc_index: pd.DatetimeIndex) -> None:
    bars = imported.bars
    assert len(bars) == len(frame)
    assert (bars.ts == utc_index.as_unit("ns").asi8).all()
    for name in ("open", "high", "low", "close", "volume"):
        np.testing.assert_allclose(getattr(bars, name), frame[name.capitalize()].to_numpy(), rtol=1e-12)


def test_pandas_named_index_capitalised_and_tz_aware(tmp_path):
    frame = hourly_frame()
    frame.index = frame.index.tz_localize("UTC").rename("Datetime")
    frame.to_csv(path := tmp_path / "eurusd.csv")
    assert open(path).readline().startswith("Datetime,Open,High,Low,Close,Volume")
    imported = read_bars(path, instrument="EURUSD")
    assert imported.report.format == "pandas" and imported.report.granularity == "H1" and not imported.report.bad_rows
    assert_bars(imported, frame, frame.index)
    with pytest.raises(CsvFormatError, match="already carries its zone"):
        read_bars(path, instrument="EURUSD", tz="EET")
    with pytest.raises(CsvFormatError, match="already carries its zone"):
        read_bars(path, instrument="EURUSD", tz_offset_hours=2)


def test_pandas_unnamed_index_lower_case_naive_with_a_zone(tmp_path):
    frame = hourly_frame()
    frame.to_csv(path := tmp_path / "eurusd.csv", header=[c.lower() for c in frame.columns])
    assert open(path).readline().startswith(",open,high,low,close,volume")
    as_utc = read_bars(path, instrument="EURUSD")
    assert_bars(as_utc, frame, frame.index)
    assert any("taken as UTC" in note for note in as_utc.report.notes)
    helsinki = read_bars(path, instrument="EURUSD", tz="Europe/Helsinki")  # January: UTC+2
    assert_bars(helsinki, frame, frame.index - pd.Timedelta(hours=2))
    fixed = read_bars(path, instrument="EURUSD", tz="UTC+2")
    assert (fixed.bars.ts == helsinki.bars.ts).all()
    offset = read_bars(path, instrument="EURUSD", tz_offset_hours=-5)
    assert_bars(offset, frame, frame.index + pd.Timedelta(hours=5))


def test_pandas_daily_file_dated_by_day(tmp_path):
    frame = hourly_frame(n=30, start="2024-01-01", freq="B")  # business days: weekends missing
    frame.index = frame.index.rename("Date")
    frame.to_csv(path := tmp_path / "daily.csv", date_format="%Y-%m-%d")
    assert open(path).read().splitlines()[1].startswith("2024-01-01,")
    imported = read_bars(path, instrument="EURUSD")
    assert imported.report.granularity == "D" and not imported.report.warnings, imported.report.describe()
    assert_bars(imported, frame, frame.index)  # 00:00 UTC
    assert any("dated by day" in note for note in imported.report.notes)
    in_new_york = read_bars(path, instrument="EURUSD", tz="America/New_York")
    assert pd.Timestamp(in_new_york.bars.ts[0]) == pd.Timestamp("2024-01-01 05:00")


YFINANCE_NOW = """Price,Close,High,Low,Open,Volume
Ticker,EURUSD=X,EURUSD=X,EURUSD=X,EURUSD=X,EURUSD=X
Datetime,,,,,
2024-01-08 00:00:00+00:00,1.0950,1.0960,1.0930,1.0940,0
2024-01-08 01:00:00+00:00,1.0955,1.0962,1.0948,1.0950,0
2024-01-08 02:00:00+00:00,1.0958,1.0961,1.0951,1.0955,0
"""
YFINANCE_OLD = """Date,Open,High,Low,Close,Adj Close,Volume
2024-01-08,1.0940,1.0960,1.0930,1.0950,1.2000,0
2024-01-09,1.0950,1.0962,1.0948,1.0955,1.2100,0
2024-01-10,1.0955,1.0961,1.0951,1.0958,1.2200,0
"""


def test_yfinance_three_row_header_keeps_its_column_order(tmp_path):
    (path := tmp_path / "EURUSD=X.csv").write_text(YFINANCE_NOW)
    imported = read_bars(path, instrument="EURUSD")
    assert imported.report.format == "yfinance" and imported.report.granularity == "H1"
    bars = imported.bars
    assert (bars.open[0], bars.high[0], bars.low[0], bars.close[0]) == (1.0940, 1.0960, 1.0930, 1.0950)
    assert pd.Timestamp(bars.ts[2]) == pd.Timestamp("2024-01-08 02:00")
    assert [b.line for b in read_bars(path, instrument="EURUSD", skip_bad=True).report.bad_rows] == []


def test_yfinance_single_header_uses_close_not_adj_close(tmp_path):
    (path := tmp_path / "eurusd.csv").write_text(YFINANCE_OLD)
    imported = read_bars(path, instrument="EURUSD")
    assert imported.report.format == "yfinance" and imported.report.granularity == "D"
    assert list(imported.bars.close) == [1.0950, 1.0955, 1.0958]
    assert any("not Adj Close" in note for note in imported.report.notes)


def test_dukascopy_bid_file(tmp_path):
    text = ("Gmt time,Open,High,Low,Close,Volume\n"
            "08.01.2024 00:00:00.000,1.09402,1.09460,1.09390,1.09450,1520.5\n"
            "08.01.2024 01:00:00.000,1.09450,1.09470,1.09401,1.09420,1311.2\n"
            "08.01.2024 02:00:00.000,1.09420,1.09480,1.09410,1.09470,1200.0\n")
    (path := tmp_path / "EURUSD_Candlestick_1_Hour_BID_08.01.2024-08.01.2024.csv").write_text(text)
    imported = read_bars(path, instrument="EURUSD")
    report = imported.report
    assert (report.format, report.side, report.granularity) == ("dukascopy", "bid", "H1")
    assert pd.Timestamp(imported.bars.ts[1]) == pd.Timestamp("2024-01-08 01:00") and imported.bars.volume[0] == 1520.5
    assert any("bid prices only" in note and "1 pips" in note for note in report.notes)
    with pytest.raises(CsvFormatError, match="already carries its zone"):
        read_bars(path, instrument="EURUSD", tz="EET")


def test_mt5_tab_export_in_server_time(tmp_path):
    text = ("<DATE>\t<TIME>\t<OPEN>\t<HIGH>\t<LOW>\t<CLOSE>\t<TICKVOL>\t<VOL>\t<SPREAD>\n"
            "2024.01.08\t10:00:00\t185.100\t185.200\t185.000\t185.150\t812\t0\t14\n"
            "2024.01.08\t10:05:00\t185.150\t185.300\t185.100\t185.200\t633\t0\t15\n"
            "2024.01.08\t10:10:00\t185.200\t185.250\t185.120\t185.130\t702\t0\t15\n")
    (path := tmp_path / "GBPJPY_M5.csv").write_text(text)
    imported = read_bars(path, instrument="GBPJPY", tz_offset_hours=2)
    report = imported.report
    assert (report.format, report.granularity) == ("mt5", "M5")
    assert pd.Timestamp(imported.bars.ts[0]) == pd.Timestamp("2024-01-08 08:00")
    assert list(imported.bars.volume) == [812, 633, 702]  # tick volume, not the zero exchange volume
    assert any("<SPREAD> column is not stored" in note for note in report.notes)


def test_semicolons_with_decimal_commas_and_separate_date_time(tmp_path):
    text = ("Date;Time;Open;High;Low;Close;Volume\n"
            "08.01.2024;00:00;1,1050;1,1060;1,1040;1,1055;10\n"
            "08.01.2024;00:15;1,1055;1,1070;1,1050;1,1065;12\n"
            "08.01.2024;00:30;1,1065;1,1068;1,1049;1,1050;9\n")
    (path := tmp_path / "eurusd.csv").write_text(text)
    imported = read_bars(path, instrument="EURUSD")
    assert (imported.report.format, imported.report.granularity) == ("table", "M15")
    assert list(imported.bars.close) == [1.1055, 1.1065, 1.105]
    assert pd.Timestamp(imported.bars.ts[1]) == pd.Timestamp("2024-01-08 00:15")
    assert any("decimal commas" in note for note in imported.report.notes)


def test_gzip_is_recognised_by_its_bytes_not_its_name(tmp_path):
    frame = hourly_frame()
    (path := tmp_path / "eurusd.download").write_bytes(gzip.compress(frame.to_csv().encode()))
    imported = read_bars(path, instrument="EURUSD")
    assert (imported.report.format, imported.report.container) == ("pandas", "csv.gz")
    assert_bars(imported, frame, frame.index)


def test_parquet_with_a_datetime_index(tmp_path):
    frame = hourly_frame()
    frame.index = frame.index.tz_localize("UTC")
    frame.to_parquet(path := tmp_path / "eurusd.parquet")
    imported = read_bars(path, instrument="EURUSD")
    assert (imported.report.container, imported.report.granularity, imported.report.row_word) == ("parquet", "H1", "row")
    assert_bars(imported, frame, frame.index)


@pytest.mark.parametrize("scale", [1, 1000], ids=["seconds", "milliseconds"])
def test_epoch_seconds_and_milliseconds(tmp_path, scale):
    frame = hourly_frame(n=10)
    epochs = frame.index.as_unit("s").asi8 * scale
    table = pd.DataFrame({"timestamp": epochs, "open": frame["Open"].to_numpy(), "high": frame["High"].to_numpy(),
                          "low": frame["Low"].to_numpy(), "close": frame["Close"].to_numpy(),
                          "volume": frame["Volume"].to_numpy()})
    table.to_csv(path := tmp_path / "epoch.csv", index=False)
    imported = read_bars(path, instrument="EURUSD")
    assert_bars(imported, frame, frame.index)
    unit = "epoch milliseconds" if scale == 1000 else "epoch seconds"
    assert any(unit in note for note in imported.report.notes), imported.report.notes
    with pytest.raises(CsvFormatError, match="already carries its zone"):
        read_bars(path, instrument="EURUSD", tz="EET")


def _freqtrade_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """freqtrade's candle table: a UTC `date` column and lower-case columns, no index."""
    return pd.DataFrame({"date": frame.index.tz_localize("UTC"), "open": frame["Open"].to_numpy(),
                         "high": frame["High"].to_numpy(), "low": frame["Low"].to_numpy(),
                         "close": frame["Close"].to_numpy(), "volume": frame["Volume"].to_numpy()})


def write_freqtrade_folder(folder) -> tuple[pd.DataFrame, pd.DataFrame]:
    folder.mkdir(parents=True)
    eurusd = hourly_frame()
    _freqtrade_frame(eurusd).to_feather(folder / "EUR_USD-1h.feather")
    gbpjpy = hourly_frame(n=36, price=185.0, freq="5min")
    rows = [[int(ts.value // 1_000_000), o, h, lo, c, v] for ts, (o, h, lo, c, v) in
            zip(gbpjpy.index, gbpjpy[["Open", "High", "Low", "Close", "Volume"]].to_numpy())]
    (folder / "GBP_JPY-5m.json").write_text(json.dumps(rows))
    _freqtrade_frame(eurusd).to_feather(folder / "EUR_USD-trades.feather")  # not a candle file: skipped, said so
    return eurusd, gbpjpy


def test_freqtrade_folder_feather_and_json(tmp_path):
    folder = tmp_path / "user_data" / "data" / "oanda"
    eurusd, gbpjpy = write_freqtrade_folder(folder)
    imported = read_path(folder)
    assert imported.skipped == ["EUR_USD-trades.feather"]
    by_instrument = {item.report.instrument: item for item in imported.files}
    assert set(by_instrument) == {"EURUSD", "GBPJPY"}
    assert (by_instrument["EURUSD"].report.format, by_instrument["EURUSD"].report.granularity) == ("freqtrade", "H1")
    assert (by_instrument["GBPJPY"].report.container, by_instrument["GBPJPY"].report.granularity) == ("json", "M5")
    assert_bars(by_instrument["EURUSD"], eurusd, eurusd.index)
    assert_bars(by_instrument["GBPJPY"], gbpjpy, gbpjpy.index)
    only = read_path(folder, instrument="GBP_JPY")
    assert [item.report.instrument for item in only.files] == ["GBPJPY"]


def test_freqtrade_unknown_pair_names_it_and_the_known_ones(tmp_path):
    folder = tmp_path / "binance"
    folder.mkdir()
    _freqtrade_frame(hourly_frame(price=0.08)).to_feather(folder / "DOGE_USDT-5m.feather")
    with pytest.raises(RefusedImportError, match=r"DOGE_USDT.*unknown instrument 'DOGE_USDT'; known: AUDUSD, BTCUSD"):
        read_path(folder)
    with pytest.raises(RefusedImportError, match=r"holds no D candle files .*found: \['DOGE_USDT-5m.feather'\]"):
        read_path(tmp_path / "binance", granularity="1d")


def test_a_freqtrade_name_that_disagrees_with_its_bars_or_flags(tmp_path):
    path = tmp_path / "EUR_USD-5m.feather"
    _freqtrade_frame(hourly_frame()).to_feather(path)
    with pytest.raises(RefusedImportError, match=r"its name \(5m\) says M5 but the bars are H1"):
        read_bars(path)
    with pytest.raises(RefusedImportError, match="EUR_USD by its name, but the instrument given is GBPJPY"):
        read_bars(path, instrument="GBPJPY")


def test_an_unknown_shape_names_the_shapes_and_the_columns_found(tmp_path):
    (path := tmp_path / "odd.csv").write_text("when,bid,offer\n2024-01-08,1.1,1.2\n")
    with pytest.raises(CsvFormatError) as failure:
        read_bars(path)
    message = str(failure.value)
    assert "unknown CSV format" in message and "['when', 'bid', 'offer']" in message
    for shape in ("oanda", "pandas", "yfinance", "dukascopy", "mt5", "freqtrade", "histdata", "mt4"):
        assert f"  {shape}: " in message


@pytest.mark.parametrize(
    "written, stored",
    [("M1", "M1"), ("1m", "M1"), ("1min", "M1"), ("1T", "M1"), ("M5", "M5"), ("5m", "M5"), ("5min", "M5"),
     ("M15", "M15"), ("M30", "M30"), ("H1", "H1"), ("1h", "H1"), ("60min", "H1"), ("H4", "H4"), ("4h", "H4"),
     ("D", "D"), ("D1", "D"), ("1d", "D"), ("daily", "D")],
)
def test_timeframe_names_as_users_write_them(written, stored):
    assert parse_granularity(written) == stored


@pytest.mark.parametrize("written, message", [("1M", "month"), ("3m", "3 minutes long"), ("1w", "unknown granularity")])
def test_timeframes_we_do_not_store_are_refused(written, message):
    with pytest.raises(ValueError, match=message):
        parse_granularity(written)
