"""End to end: the three services as processes (started exactly as `make run`
starts them, from docker-compose.yml) on a small synthetic market, a real
Prometheus scraping them, then a kill -9 of each service in turn."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path

import duckdb
import httpx
import yaml

from deploy.compose_file import SERVICES, load_specs
from deploy.local import ROOT, Stack
from tests.service_helpers import free_port, require_tool, wait_for

DASHBOARDS = ROOT / "deploy" / "grafana" / "dashboards"
ALERTS = ROOT / "deploy" / "prometheus" / "alerts.yml"

SMALL = {
    "TRAINING_EPISODES_PER_ITERATION": "8", "TRAINING_CHECKPOINT_INTERVAL_EPISODES": "8", "TRAINING_SEARCH__SIMULATIONS": "3",
    "VALIDATION_SIMULATIONS": "2", "VALIDATION_MAX_SESSIONS": "3", "VALIDATION_MC_RUNS": "100",
    "VALIDATION_RESCAN_SECONDS": "2", "LIVE_SIMULATIONS": "4", "LIVE_REPLAY_BARS_PER_SECOND": "20",
    "LIVE_MODEL_WAIT_SECONDS": "1", "LIVE_MAX_DAILY_LOSS_PIPS": "100000",
}


def _queries() -> list[str]:
    exprs = [t["expr"] for d in DASHBOARDS.glob("*.json") for p in json.loads(d.read_text())["panels"] for t in p["targets"]]
    rules = yaml.safe_load(ALERTS.read_text())
    return exprs + [r["expr"] for g in rules["groups"] for r in g["rules"]]


def _journal_and_paper(runtime: Path):
    with duckdb.connect(str(runtime / "checkpoints" / "live" / "journal.duckdb"), read_only=True) as con:
        journal = con.execute("SELECT client_id, bar_ts, status, order_units FROM decisions").df()
    paper = json.loads((runtime / "checkpoints" / "live" / "paper.json").read_text())
    return journal, paper


def test_the_whole_system(tmp_path):
    runtime, data = tmp_path / "runtime", tmp_path / "data"
    specs = load_specs(ROOT / "docker-compose.yml", runtime, data, {})
    ports = {}
    for name in SERVICES:
        ports[name] = free_port()
        specs[name].environment[f"{name.upper()}_PORT"] = str(ports[name])
        specs[name].port = ports[name]
    stack = Stack(specs, runtime / "logs", extra_env=SMALL)
    stack.prepare_data()
    assert (data / "market.duckdb").exists()
    prometheus_binary = require_tool("prometheus")  # before anything starts: a clear failure, not a TypeError
    prometheus = None
    try:
        stack.start_all()
        url = {name: f"http://127.0.0.1:{port}" for name, port in ports.items()}
        for name in SERVICES:
            wait_for(f"{url[name]}/health", timeout=90)

        # training writes candidates, validation promotes one, live trades it
        wait_for(f"{url['training']}/status", lambda r: r.json()["checkpoints_written"] >= 1, timeout=120)
        wait_for(f"{url['validation']}/status", lambda r: r.json()["champion"] is not None, timeout=180)
        champion = httpx.get(f"{url['validation']}/status").json()["champion"]
        wait_for(f"{url['live']}/ready", timeout=60)
        wait_for(f"{url['live']}/metrics", lambda r: "micro_live_decision_latency_seconds_count 0.0" not in r.text,
                 timeout=60)
        assert httpx.get(f"{url['live']}/status").json()["model_version"].startswith(f"ep{champion['episode']:08d}")

        # a real Prometheus scrapes all three; every dashboard and alert query is valid against it
        prom_port = free_port()
        config = yaml.safe_load((ROOT / "deploy" / "prometheus" / "prometheus.yml").read_text())
        config["global"] = {"scrape_interval": "1s", "evaluation_interval": "1s"}
        for job in config["scrape_configs"]:
            job["static_configs"] = [{"targets": [f"127.0.0.1:{ports[job['job_name']]}"]}]
        config["rule_files"] = [str(ALERTS)]
        (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
        prometheus = subprocess.Popen(
            [prometheus_binary, f"--config.file={tmp_path / 'prometheus.yml'}",
             f"--storage.tsdb.path={tmp_path / 'tsdb'}", f"--web.listen-address=127.0.0.1:{prom_port}"],
            stdout=open(tmp_path / "prometheus.log", "wb"), stderr=subprocess.STDOUT)
        api = f"http://127.0.0.1:{prom_port}/api/v1"
        wait_for(f"{api}/query?query=sum(up)", lambda r: r.status_code == 200 and r.json()["data"]["result"]
                 and float(r.json()["data"]["result"][0]["value"][1]) == 3, timeout=60)
        time.sleep(3)  # a few scrapes, so rates have two points
        for expr in _queries():
            answer = httpx.get(f"{api}/query", params={"query": expr}).json()
            assert answer["status"] == "success", (expr, answer)
        for metric in ("micro_training_episodes_total", "micro_validation_promotions_total", "micro_live_decisions_total"):
            result = httpx.get(f"{api}/query", params={"query": metric}).json()["data"]["result"]
            assert result, f"Prometheus has no {metric}"

        # kill -9 each service in turn, restart it: healthy within 30 s and carrying on
        before = httpx.get(f"{url['training']}/status").json()
        stack.processes["training"].send_signal(signal.SIGKILL)
        stack.processes["training"].wait()
        started = time.time()
        stack.start("training")
        wait_for(f"{url['training']}/health", timeout=30)
        assert time.time() - started < 30
        wait_for(f"{url['training']}/status", lambda r: r.json()["resumed"]
                 and r.json()["last_checkpoint_episode"] > before["last_checkpoint_episode"], timeout=120)

        results = runtime / "checkpoints" / "validation" / "results"
        seen = {p.name for p in results.glob("*.json")}
        stack.processes["validation"].send_signal(signal.SIGKILL)
        stack.processes["validation"].wait()
        time.sleep(3)  # candidates keep arriving while validation is down
        started = time.time()
        stack.start("validation")
        wait_for(f"{url['validation']}/health", timeout=30)
        assert time.time() - started < 30
        deadline = time.time() + 120
        while time.time() < deadline and not ({p.name for p in results.glob("*.json")} - seen):
            time.sleep(1)
        assert {p.name for p in results.glob("*.json")} - seen, "validation caught up with what it missed"

        stack.processes["live"].send_signal(signal.SIGKILL)
        stack.processes["live"].wait()
        started = time.time()
        stack.start("live")
        wait_for(f"{url['live']}/health", timeout=30)
        assert time.time() - started < 30
        status = wait_for(f"{url['live']}/ready", timeout=60).json()
        assert status["reconciled"]
        time.sleep(2)
    finally:
        stack.stop()
        if prometheus is not None:
            prometheus.terminate()
            prometheus.wait(timeout=30)
    journal, paper = _journal_and_paper(runtime)
    filled = journal[journal.status == "FILLED"]
    assert set(filled.client_id) == set(paper["orders"]), "no lost journal entry, no order the journal does not know"
    assert journal.client_id.is_unique and journal.bar_ts.is_unique, "no duplicate decision or order"
    assert int(filled.order_units.sum()) == paper["units"]
    assert (journal.status != "decided").all()
