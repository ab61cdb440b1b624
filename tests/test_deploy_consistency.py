"""docker-compose.yml, the Dockerfile, the Prometheus configuration and the
Grafana dashboards against the code: commands exist, ports and health paths
match the services, every scraped job and every queried metric exists; and
the real promtool checks the config and runs the alert unit tests."""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from services.live.config import LiveSettings
from services.live.metrics import LiveMetrics
from services.training.config import TrainingSettings
from services.training.metrics import TrainingMetrics
from services.validation.config import ValidationSettings
from services.validation.metrics import ValidationMetrics
from shared.env.actions import HOLD_BUY_SELL_CLOSE
from tests.service_helpers import require_tool

ROOT = Path(__file__).resolve().parents[1]
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
PROMETHEUS = ROOT / "deploy" / "prometheus"
SERVICES = {"training": (TrainingSettings, 8001), "validation": (ValidationSettings, 8002),
            "live": (LiveSettings, 8003), "live-oanda": (LiveSettings, 8003)}
LIMITS = {"training": ("8g", "${TRAINING_CPUS:-2}"), "validation": ("4g", "2"), "live": ("2g", "1"), "live-oanda": ("2g", "1")}


def exported_metric_names() -> set[str]:
    names = {"up"}
    live = LiveMetrics(HOLD_BUY_SELL_CLOSE.actions)
    live.model_loaded("ep00000064-0123456789ab")  # the model info exists once a model is loaded
    for metrics in (TrainingMetrics(), ValidationMetrics(), live):
        for family in metrics.registry.collect():
            # from the family, not the samples: a labelled series exists before its first label value
            suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_count", "_sum"), "info": ("_info",)}
            for suffix in suffixes.get(family.type, ("",)):
                names.add(family.name + suffix)
    return names


def test_the_live_model_info_exists_only_once_a_model_is_loaded():
    """Regression (issue 15): micro_live_model_info showed a model (value 1, no labels) before any was loaded."""
    from prometheus_client import generate_latest

    live = LiveMetrics(HOLD_BUY_SELL_CLOSE.actions)
    assert "micro_live_model_info" not in generate_latest(live.registry).decode()
    live.model_loaded("ep00000064-0123456789ab")
    assert 'micro_live_model_info{version="ep00000064-0123456789ab"} 1.0' in generate_latest(live.registry).decode()


def promql_metrics(expr: str) -> set[str]:
    return set(re.findall(r"\b(micro_[a-z0-9_]+|up)\b", expr))


@pytest.mark.parametrize("name", list(SERVICES))
def test_compose_services_match_the_code(name):
    service = COMPOSE["services"][name]
    settings_class, port = SERVICES[name]
    module = service["command"][2]
    assert service["command"][:2] == ["python", "-m"] and importlib.util.find_spec(module) is not None
    assert importlib.util.find_spec(module + ".__main__") is not None
    env = service["environment"]
    prefix = name.split("-")[0].upper()
    assert int(env[f"{prefix}_PORT"]) == port == settings_class.model_fields["port"].default
    assert service["ports"] == [f"{port}:{port}"]
    assert f"http://localhost:{port}/health" in " ".join(service["healthcheck"]["test"])
    assert service["restart"] == "unless-stopped"
    assert env["CHECKPOINT_DIR"] == "/checkpoints" and env["MICRO_DATA_DIR"] == "/app/data"
    assert "checkpoints:/checkpoints" in service["volumes"] and "./data:/app/data:ro" in service["volumes"]
    limits = service["deploy"]["resources"]["limits"]
    assert (limits["memory"], limits["cpus"]) == LIMITS[name]
    known = {variable for knob in settings_class.knobs() for variable in knob.variables}
    for key in env:
        if key.startswith((prefix + "_", "MICRO_")):
            assert key in known | {"MICRO_ENV_FILE"}, f"{name}: {key} is not a setting of {settings_class.__name__}"
    # every setting reaches the service through .env, not only those named here
    assert env["MICRO_ENV_FILE"] == "/project/.env" and ".:/project:ro" in service["volumes"]


def test_compose_volumes_secrets_and_monitoring():
    assert set(COMPOSE["volumes"]) >= {"checkpoints"}
    oanda = COMPOSE["services"]["live-oanda"]["environment"]
    # Never `${VAR:?}`: compose interpolates inactive profiles too, so a plain `up` would stop.
    # The live service's own settings check requires them when the oanda profile starts.
    assert oanda["OANDA_TOKEN"] == "${OANDA_TOKEN:-}" and oanda["OANDA_ACCOUNT"] == "${OANDA_ACCOUNT:-}"
    code = [line.split("#")[0] for line in (ROOT / "docker-compose.yml").read_text().splitlines()]
    assert not any(":?" in line for line in code), "a required variable stops `docker compose up` for every profile"
    assert "OANDA_TOKEN" not in COMPOSE["services"]["live"]["environment"]
    for name in ("training", "validation", "live"):
        for value in COMPOSE["services"][name]["environment"].values():
            assert "OANDA_TOKEN" not in str(value)
    assert (ROOT / ".env.example").exists() and "OANDA_TOKEN=" in (ROOT / ".env.example").read_text()
    prometheus = COMPOSE["services"]["prometheus"]
    assert "./deploy/prometheus:/etc/prometheus:ro" in prometheus["volumes"]
    grafana = COMPOSE["services"]["grafana"]
    assert "./deploy/grafana/provisioning:/etc/grafana/provisioning:ro" in grafana["volumes"]
    assert "./deploy/grafana/dashboards:/var/lib/grafana/dashboards:ro" in grafana["volumes"]
    data = COMPOSE["services"]["data"]["command"]
    assert importlib.util.find_spec(data[2]) is not None and data[-1] == "prepare"  # the demo only when no market is named
    assert COMPOSE["services"]["data"]["environment"]["MICRO_ENV_FILE"] == "/project/.env"


def test_the_ray_profile_is_a_head_scalable_workers_and_training_joining_them():
    """`docker compose --profile ray up --scale ray-worker=N`: one image, the head's port the
    address the workers and training use, the object store in shared memory, health checks,
    restarts, limits; every `ray start` flag used is one this Ray has."""
    services = COMPOSE["services"]
    head, worker, training = services["ray-head"], services["ray-worker"], services["training"]
    assert head["profiles"] == worker["profiles"] == ["ray"] and "profiles" not in training
    assert head["image"] == worker["image"] == training["image"] == "micro-muzero:latest"
    assert "--head" in head["command"] and "--port=6379" in head["command"]
    assert "--num-cpus=0" in head["command"]  # no actor on the head: it only schedules
    assert "--address=ray-head:6379" in worker["command"] and "ports" not in worker  # scalable: no fixed host port
    assert worker["depends_on"] == {"ray-head": {"condition": "service_healthy"}}
    cpus = next(part for part in worker["command"] if part.startswith("--num-cpus="))
    assert cpus.split("=", 1)[1] == worker["deploy"]["resources"]["limits"]["cpus"] == "${RAY_WORKER_CPUS:-2}"
    for service in (head, worker):
        assert service["command"][:2] == ["ray", "start"] and "--block" in service["command"]
        assert int(service["shm_size"].rstrip("gb")) >= 1  # docker's 64 MB /dev/shm would push the store to disk
        assert service["healthcheck"]["test"][1:3] == ["ray", "health-check"]
        assert service["restart"] == "unless-stopped"
        assert set(service["deploy"]["resources"]["limits"]) == {"memory", "cpus"}
        assert service["environment"]["RAY_AUTH_MODE"] == "${RAY_AUTH_MODE:-token}"  # the cluster's secret
        assert service["environment"]["RAY_AUTH_TOKEN"] == "${RAY_AUTH_TOKEN:-}"
    env = training["environment"]
    assert env["TRAINING_BACKEND"] == "${TRAINING_BACKEND:-local}" and env["RAY_ADDRESS"] == "${RAY_ADDRESS:-}"
    assert env["RAY_AUTH_TOKEN"] == "${RAY_AUTH_TOKEN:-}" and training["shm_size"]
    ray_cli = Path(sys.executable).parent / "ray"
    usage = subprocess.run([str(ray_cli), "start", "--help"], capture_output=True, text=True, check=True).stdout
    for service in (head, worker):
        for part in service["command"][2:]:
            assert part.split("=")[0] in usage, part
    health = subprocess.run([str(ray_cli), "health-check", "--help"], capture_output=True, text=True, check=True).stdout
    assert "--address" in health


def test_dockerfile_builds_the_search_and_runs_as_a_user():
    dockerfile = (ROOT / "deploy" / "Dockerfile").read_text()
    assert len(re.findall(r"^FROM ", dockerfile, re.M)) >= 2, "multi-stage"
    assert "maturin build" in dockerfile and "COPY mcts_rs/" in dockerfile
    assert re.search(r"^USER micro", dockerfile, re.M) and "useradd" in dockerfile
    assert "ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu" in dockerfile
    for service in ("training", "validation", "live"):
        assert COMPOSE["services"][service]["build"]["dockerfile"] == "deploy/Dockerfile"


def test_dockerfile_takes_its_bases_as_build_args_and_no_secret_in_a_layer():
    dockerfile = (ROOT / "deploy" / "Dockerfile").read_text()
    assert "ARG RUST_IMAGE=rust:1-slim-bookworm" in dockerfile and "FROM ${RUST_IMAGE} AS" in dockerfile
    assert "ARG PYTHON_IMAGE=python:3.11-slim-bookworm" in dockerfile and "FROM ${PYTHON_IMAGE} AS" in dockerfile
    assert not dockerfile.startswith("# syntax="), "a syntax line pulls a frontend image from Docker Hub"
    # the CA only as a BuildKit secret mount, never copied or set in ENV
    code = [line for line in dockerfile.splitlines() if not line.lstrip().startswith("#")]
    assert not any(re.match(r"\s*(ENV|ARG)\b.*(CERT|CAINFO|TOKEN)", line) for line in code)
    assert all("--mount=type=secret,id=ca" in block for block in re.split(r"\nRUN ", dockerfile)
               if "/run/secrets/ca" in block)
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert {".venv", "runtime", "data", ".git"} <= set(ignored)


def test_compose_file_stays_within_the_compose_specification():
    """What `docker compose` v2 reads and users rely on; no legacy (v1 file format) keys."""
    legacy_top = {"version", "name"} & set(COMPOSE)  # `name` is v2-only: docker-compose 1.29 refuses it
    assert not legacy_top
    legacy_service_keys = {"net", "volume_driver", "log_driver", "log_opt", "dockerfile", "links", "external_links",
                           "extends", "cpu_quota", "mem_limit", "memswap_limit"}
    for name, service in COMPOSE["services"].items():
        assert not legacy_service_keys & set(service), name
    for name in ("training", "validation", "live"):
        service = COMPOSE["services"][name]
        assert service["depends_on"] == {"data": {"condition": "service_completed_successfully"}}
        assert set(service["healthcheck"]) >= {"test", "interval", "timeout", "retries", "start_period"}
        assert service["restart"] == "unless-stopped" and service["stop_grace_period"]
        assert set(service["deploy"]["resources"]["limits"]) == {"memory", "cpus"}
    assert COMPOSE["services"]["data"]["restart"] == "no"
    assert COMPOSE["services"]["live-oanda"]["profiles"] == ["oanda"]
    # the container test's override: host networking for every service it starts, on test ports
    override = yaml.safe_load((ROOT / "deploy" / "compose.test.yml").read_text())
    started = {"data", "training", "validation", "live", "prometheus"}
    assert set(override["services"]) == started
    assert all(s["network_mode"] == "host" for s in override["services"].values())
    test_prometheus = yaml.safe_load((PROMETHEUS / "prometheus.compose-test.yml").read_text())
    targets = {job["job_name"]: job["static_configs"][0]["targets"][0] for job in test_prometheus["scrape_configs"]}
    for name in ("training", "validation", "live"):
        port = override["services"][name]["environment"][f"{name.upper()}_PORT"]
        assert targets[name] == f"127.0.0.1:{port}"
        assert f"127.0.0.1:{port}/health" in " ".join(override["services"][name]["healthcheck"]["test"])


def test_prometheus_scrapes_exactly_the_three_services():
    config = yaml.safe_load((PROMETHEUS / "prometheus.yml").read_text())
    jobs = {job["job_name"]: job["static_configs"][0]["targets"] for job in config["scrape_configs"]}
    assert jobs == {name: [f"{name}:{SERVICES[name][1]}"] for name in ("training", "validation", "live")}
    for rules in config["rule_files"]:
        assert (PROMETHEUS / rules).exists()


def test_every_queried_metric_is_exported():
    exported = exported_metric_names()
    queries = []
    for dashboard in (ROOT / "deploy" / "grafana" / "dashboards").glob("*.json"):
        data = json.loads(dashboard.read_text())
        assert data["uid"] in ("micro-training", "micro-validation", "micro-live")
        queries += [target["expr"] for panel in data["panels"] for target in panel["targets"]]
    rules = yaml.safe_load((PROMETHEUS / "alerts.yml").read_text())
    queries += [rule["expr"] for group in rules["groups"] for rule in group["rules"]]
    assert len(queries) > 30
    for expr in queries:
        for metric in promql_metrics(expr):
            assert metric in exported, f"{metric} (in {expr!r}) is not exported by any service"
    uids = [json.loads(p.read_text())["uid"] for p in (ROOT / "deploy" / "grafana" / "dashboards").glob("*.json")]
    assert sorted(uids) == ["micro-live", "micro-training", "micro-validation"]


def test_promtool_checks_config_and_runs_the_alert_unit_tests():
    promtool = require_tool("promtool")
    for args in (["check", "config", "prometheus.yml"], ["check", "config", "prometheus.compose-test.yml"],
                 ["check", "rules", "alerts.yml"],
                 ["test", "rules", "alerts_test.yml"]):
        result = subprocess.run([promtool, *args], cwd=PROMETHEUS, capture_output=True, text=True)
        assert result.returncode == 0, result.stdout + result.stderr
    rules = yaml.safe_load((PROMETHEUS / "alerts.yml").read_text())
    tested = (PROMETHEUS / "alerts_test.yml").read_text()
    for rule in rules["groups"][0]["rules"]:
        assert f"alertname: {rule['alert']}" in tested, f"{rule['alert']} has no unit test"


def test_metric_names_follow_the_conventions():
    for name in exported_metric_names() - {"up"}:
        assert name.startswith(("micro_training_", "micro_validation_", "micro_live_")), name
        assert not name.endswith("_ms"), name


def test_make_test_installs_its_tools_or_says_the_one_command(tmp_path):
    """Regression: without prometheus, `make test` ended in a TypeError deep in test_system."""
    script = ROOT / "deploy" / "tools" / "ensure-test-tools.sh"
    bare = tmp_path / "bin"  # a PATH with bash and nothing of prometheus or apt
    bare.mkdir()
    (bare / "bash").symlink_to(shutil.which("bash"))
    result = subprocess.run([str(bare / "bash"), str(script)], env={"PATH": str(bare)}, capture_output=True, text=True)
    assert result.returncode == 1
    assert "promtool prometheus" in result.stderr and "sudo apt-get install prometheus" in result.stderr
    for tool in ("promtool", "prometheus", "chromium", "chromedriver"):  # present: nothing to do
        (bare / tool).write_text("#!/bin/sh\n")
        (bare / tool).chmod(0o755)
    result = subprocess.run([str(bare / "bash"), str(script)], env={"PATH": str(bare)}, capture_output=True, text=True)
    assert result.returncode == 0 and result.stderr == ""
    makefile = (ROOT / "Makefile").read_text()
    assert "test: setup test-tools" in makefile
