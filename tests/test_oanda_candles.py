"""OANDA candle download with the real oandapyV20 client against a loopback v20 server."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from oandapyV20.exceptions import V20Error

from shared.cli.data import main as data_cli
from shared.core.oanda import OandaConfigError, load_credentials, make_api, request_with_retry
from shared.data.oanda_candles import download_candles
from shared.data.store import BarStore
from tests.v20_account import TOKEN, V20State
from tests.v20_server import V20Server


@pytest.fixture
def v20(market_bars):
    state = V20State(bars={"GBP_JPY": market_bars[:12_000]})
    with V20Server(state) as server:
        yield server


def _api(server: V20Server, token: str = TOKEN):
    creds = load_credentials({"OANDA_TOKEN": token, "OANDA_API_URL": server.url})
    return make_api(creds, timeout_seconds=5)


def test_download_pages_resumes_and_stores_complete_candles_only(v20, tmp_path, market_bars):
    bars = v20.state.bars["GBP_JPY"]
    # the clock sits inside bar 11_000: it is still forming, later bars do not exist yet
    v20.state.now = pd.Timestamp(int(bars.ts[11_000])) + pd.Timedelta(seconds=30)
    with BarStore(tmp_path / "m.duckdb") as store:
        result = download_candles(_api(v20), store, "GBPJPY", start=pd.Timestamp(int(bars.ts[0])), progress=False)
        assert result.candles == 11_000 and result.incomplete_skipped == 1
        candle_requests = [r for r in v20.state.requests if r["path"].endswith("/candles")]
        assert len(candle_requests) == 3  # 5000 + 5000 + 1001 (the last one forming)
        assert all(int(r["query"]["count"]) == 5000 for r in candle_requests)
        assert all(r["query"]["price"] == "M" for r in candle_requests)
        stored = store.load("GBPJPY", "M1")
        np.testing.assert_array_equal(stored.ts, bars.ts[:11_000])
        np.testing.assert_allclose(stored.close, bars.close[:11_000], atol=5e-4)

        # later, the clock has moved on: a run without --start resumes after the last stored bar
        v20.state.now = None
        v20.state.requests.clear()
        result = download_candles(_api(v20), store, "GBPJPY", progress=False)
        assert result.candles == 1_000 and result.first == pd.Timestamp(int(bars.ts[11_000]))
        first_query = pd.Timestamp(v20.state.requests[0]["query"]["from"]).tz_convert(None)
        assert first_query == pd.Timestamp(int(bars.ts[10_999])) + pd.Timedelta(minutes=1)
        np.testing.assert_array_equal(store.load("GBPJPY", "M1").ts, bars.ts)


def test_download_stops_at_end(v20, tmp_path):
    bars = v20.state.bars["GBP_JPY"]
    end = pd.Timestamp(int(bars.ts[7_000]))
    with BarStore(tmp_path / "m.duckdb") as store:
        result = download_candles(_api(v20), store, "GBP_JPY", start=pd.Timestamp(int(bars.ts[0])), end=end, progress=False)
        assert result.candles == 7_000
        assert store.last_ts("GBPJPY", "M1") == pd.Timestamp(int(bars.ts[6_999]))


def test_429_and_5xx_are_retried_with_backoff(v20, tmp_path):
    bars = v20.state.bars["GBP_JPY"]
    v20.state.forced_statuses = [429, 503]
    with BarStore(tmp_path / "m.duckdb") as store:
        result = download_candles(
            _api(v20), store, "GBPJPY", start=pd.Timestamp(int(bars.ts[0])),
            end=pd.Timestamp(int(bars.ts[100])), progress=False,
        )
    assert result.candles == 100
    assert len(v20.state.requests) == 3


def test_retries_are_bounded_and_client_errors_are_not_retried(v20):
    from oandapyV20.endpoints.instruments import InstrumentsCandles

    sleeps: list[float] = []
    v20.state.forced_statuses = [500] * 10
    with pytest.raises(V20Error) as error:
        request_with_retry(_api(v20), InstrumentsCandles("GBP_JPY", {"granularity": "M1", "count": 5}),
                           max_attempts=4, sleep=sleeps.append)
    assert error.value.code == 500 and len(sleeps) == 3
    assert all(s <= 8.0 for s in sleeps) and sleeps[0] < sleeps[-1] * 2

    v20.state.forced_statuses = []
    sleeps.clear()
    with pytest.raises(V20Error) as error:  # count above 5000 is a 400, never retried
        request_with_retry(_api(v20), InstrumentsCandles("GBP_JPY", {"granularity": "M1", "count": 6000}),
                           sleep=sleeps.append)
    assert error.value.code == 400 and sleeps == []


def test_bad_token_is_401_and_token_never_in_reprs_or_errors(v20, tmp_path, capsys):
    creds = load_credentials({"OANDA_TOKEN": "wrong-token-secret", "OANDA_API_URL": v20.url})
    assert "wrong-token-secret" not in repr(creds)
    bars = v20.state.bars["GBP_JPY"]
    with BarStore(tmp_path / "m.duckdb") as store, pytest.raises(V20Error) as error:
        download_candles(make_api(creds), store, "GBPJPY", start=pd.Timestamp(int(bars.ts[0])), progress=False)
    assert error.value.code == 401 and "wrong-token-secret" not in str(error.value)


def test_credentials_from_file_and_clear_config_errors(tmp_path):
    secret = tmp_path / "token"
    secret.write_text("file-token\n")
    creds = load_credentials({"OANDA_TOKEN_FILE": str(secret), "OANDA_ENV": "live", "OANDA_ACCOUNT": "101-1"})
    assert creds.token == "file-token" and creds.environment == "live" and creds.account_id == "101-1"
    with pytest.raises(OandaConfigError, match="OANDA_TOKEN"):
        load_credentials({})
    with pytest.raises(OandaConfigError, match="not a readable file"):
        load_credentials({"OANDA_TOKEN_FILE": str(tmp_path / "missing")})
    with pytest.raises(OandaConfigError, match="OANDA_ENV"):
        load_credentials({"OANDA_TOKEN": "x", "OANDA_ENV": "production"})
    with pytest.raises(OandaConfigError, match="account"):
        load_credentials({"OANDA_TOKEN": "x"}, require_account=True)


def test_cli_download(v20, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("OANDA_TOKEN", TOKEN)
    monkeypatch.setenv("OANDA_API_URL", v20.url)
    bars = v20.state.bars["GBP_JPY"]
    db = tmp_path / "m.duckdb"
    args = ["--db", str(db), "--quiet", "download", "--instrument", "GBPJPY",
            "--start", str(pd.Timestamp(int(bars.ts[0]))), "--end", str(pd.Timestamp(int(bars.ts[50])))]
    assert data_cli(args) == 0
    out = capsys.readouterr().out
    assert "downloaded 50 complete candles" in out and TOKEN not in out
    # no start and nothing stored: a clear error
    assert data_cli(["--db", str(tmp_path / "empty.duckdb"), "--quiet", "download", "--instrument", "GBPJPY"]) == 2
    assert "give a start time" in capsys.readouterr().err
