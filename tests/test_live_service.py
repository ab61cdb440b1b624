"""The live service as a real process: kill -9 and restart (no duplicate
order, no lost journal entry, healthy again quickly), a hot swap and a refused
model, OANDA mode with the token in no output."""

from __future__ import annotations

import json
import signal
import time

import duckdb
import httpx
import numpy as np

from shared.volume.checkpoints import atomic_write_json
from shared.volume.promotion import read_current
from tests.live_helpers import promote_checkpoint, trading_checkpoint
from tests.service_helpers import free_port, start, wait_for
from tests.v20_account import ACCOUNT, TOKEN, V20State
from tests.v20_server import V20Server


def _env(data_dir, root, port, **extra):
    env = {"MICRO_DATA_DIR": str(data_dir), "CHECKPOINT_DIR": str(root), "LIVE_PORT": str(port),
           "LIVE_SIMULATIONS": "4", "LIVE_REPLAY_BARS_PER_SECOND": "40", "LIVE_MODEL_WAIT_SECONDS": "0.5",
           "LIVE_MAX_DAILY_LOSS_PIPS": "100000"}
    env.update({k: str(v) for k, v in extra.items()})
    return env


def _journal(root):
    with duckdb.connect(str(root / "live" / "journal.duckdb"), read_only=True) as con:
        return con.execute("SELECT client_id, bar_ts, status, order_units FROM decisions").df()


def test_kill9_and_restart_never_duplicates_or_loses_an_order(data_dir, features, tmp_path):
    promote_checkpoint(tmp_path, trading_checkpoint(features, tmp_path, 64), 64)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    rng = np.random.default_rng(0)
    for _ in range(4):
        service = start("services.live", _env(data_dir, tmp_path, port), tmp_path / "live.log")
        started = time.time()
        wait_for(f"{url}/health", process=service, timeout=30)
        assert time.time() - started < 30, "healthy again within 30 seconds"
        wait_for(f"{url}/ready", process=service, timeout=90)
        time.sleep(1.0 + rng.random() * 2.0)
        service.send_signal(signal.SIGKILL)
        service.wait()
    # a last, clean start settles whatever the last kill left unfinished
    service = start("services.live", _env(data_dir, tmp_path, port), tmp_path / "live.log")
    try:
        wait_for(f"{url}/ready", process=service, timeout=60)
    finally:
        service.terminate()
        service.wait(timeout=30)
    journal = _journal(tmp_path)
    paper = json.loads((tmp_path / "live" / "paper.json").read_text())
    filled = journal[journal.status == "FILLED"]
    assert len(filled) > 10, journal.status.value_counts()
    assert set(filled.client_id) == set(paper["orders"]), "every order the broker has is journaled as filled"
    assert journal.client_id.is_unique and journal.bar_ts.is_unique, "no bar decided twice"
    assert (journal.status != "decided").all(), "nothing left unsettled"
    assert int(filled.order_units.sum()) == paper["units"], "the journal's fills add up to the broker's position"


def test_hot_swap_and_a_refused_model(data_dir, features, tmp_path):
    promote_checkpoint(tmp_path, trading_checkpoint(features, tmp_path, 64), 64)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    service = start("services.live", _env(data_dir, tmp_path, port), tmp_path / "live.log")
    try:
        wait_for(f"{url}/ready", process=service, timeout=60)
        first = httpx.get(f"{url}/status").json()["model_version"]
        # a pointer to a file that does not match it: refused, the old model keeps trading
        bad = tmp_path / "promoted" / "model-ep00000099.pt"
        bad.write_bytes(b"garbage")
        pointer = read_current(tmp_path).__dict__ | {"model": bad.name, "episode": 99, "sha256": "0" * 64}
        atomic_write_json(tmp_path / "promoted" / "CURRENT", pointer)
        wait_for(f"{url}/metrics", lambda r: 'micro_live_model_swaps_total{result="refused"} 1.0' in r.text,
                 process=service, timeout=20)
        assert httpx.get(f"{url}/status").json()["model_version"] == first
        promote_checkpoint(tmp_path, trading_checkpoint(features, tmp_path, 128), 128)
        wait_for(f"{url}/status", lambda r: r.json()["model_version"].startswith("ep00000128"), process=service,
                 timeout=30)
        assert "refused promoted model model-ep00000099.pt" in (tmp_path / "live.log").read_text()
    finally:
        service.kill()
        service.wait()


def test_oanda_mode_trades_through_v20_and_never_shows_the_token(data_dir, features, tmp_path):
    promote_checkpoint(tmp_path, trading_checkpoint(features, tmp_path, 64), 64)
    state = V20State(bars={"GBP_JPY": features.bars})
    with V20Server(state) as server:
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        env = _env(data_dir, tmp_path, port, LIVE_BROKER="oanda", OANDA_TOKEN=TOKEN, OANDA_ACCOUNT=ACCOUNT,
                   OANDA_API_URL=server.url, LIVE_REPLAY_BARS_PER_SECOND=10, LIVE_ALLOW_OANDA_WITH_REPLAY_FEED="true")
        service = start("services.live", env, tmp_path / "live.log")
        try:
            wait_for(f"{url}/ready", process=service, timeout=60)
            wait_for(f"{url}/metrics", lambda r: 'micro_live_orders_total{status="filled"} 0.0' not in r.text,
                     process=service, timeout=30)
            outputs = [httpx.get(f"{url}/{p}").text for p in ("status", "metrics", "health", "ready")]
        finally:
            service.terminate()
            service.wait(timeout=30)
    orders = [r for r in state.requests if r.get("method") == "POST"]
    assert orders and all(r["body"]["order"]["clientExtensions"]["id"].startswith("mm-") for r in orders)
    journal = _journal(tmp_path)
    assert set(journal[journal.status == "FILLED"].client_id) <= set(state.orders)
    outputs.append((tmp_path / "live.log").read_text())
    outputs.append(journal.to_json(date_format="iso"))
    outputs.append((tmp_path / "live" / "journal.duckdb").read_bytes().decode("latin-1"))
    for text in outputs:
        assert TOKEN not in text


def test_oanda_profile_without_credentials_stops_with_the_variable_to_set(data_dir, tmp_path):
    """Compose passes `${OANDA_TOKEN:-}` (empty when unset): the service's own settings
    check must refuse, with exit 2 and the variable's name, before anything starts."""
    import os
    import subprocess
    import sys

    from tests.service_helpers import ROOT

    base = {k: v for k, v in os.environ.items() if not k.startswith("OANDA_")}
    for extra, missing in (({"OANDA_TOKEN": "", "OANDA_ACCOUNT": ""}, "OANDA_TOKEN"),
                           ({"OANDA_TOKEN": TOKEN, "OANDA_ACCOUNT": ""}, "OANDA_ACCOUNT")):
        env = {**base, **_env(data_dir, tmp_path, free_port(), LIVE_BROKER="oanda", LIVE_FEED="oanda"), **extra}
        result = subprocess.run([sys.executable, "-m", "services.live"], cwd=ROOT, env=env,
                                capture_output=True, text=True, timeout=120)
        assert result.returncode == 2, result.stderr
        assert "bad configuration" in result.stderr and missing in result.stderr
        assert TOKEN not in result.stderr + result.stdout
