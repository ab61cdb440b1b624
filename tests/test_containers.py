"""The containers for real: the project image and `docker-compose up` on a
real Docker engine, with the test override (deploy/compose.test.yml: host
networking, test ports, Prometheus from Debian's package).

Run by `make test-containers` (deploy/images/test-containers.sh), which
installs and starts Docker and builds the local bases, the image and the
Prometheus image first; `make test` deselects these (marker `containers`).
Every wait is bounded; the stack is taken down (volumes too) at the end.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.containers

ROOT = Path(__file__).resolve().parents[1]
DOCKER = os.environ.get("MICRO_DOCKER", "docker")
IMAGE = os.environ.get("MICRO_TEST_IMAGE", "micro-muzero:latest")
PROJECT = "micro-muzero-test"
PORTS = {"training": 18001, "validation": 18002, "live": 18003}
PROMETHEUS = "http://127.0.0.1:19090"
APP_SERVICES = ("training", "validation", "live")


def run(*args: str, check: bool = True, timeout: float = 300, env: dict | None = None) -> subprocess.CompletedProcess:
    result = subprocess.run(args, capture_output=True, text=True, timeout=timeout, env=env, cwd=ROOT)
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(args)} exited {result.returncode}:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    return result


def wait_for(what: str, probe, timeout_seconds: float, every_seconds: float = 2.0):
    """Poll `probe` until it returns something truthy; fail naming `what` after the timeout."""
    deadline = time.monotonic() + timeout_seconds
    last_error = None
    while time.monotonic() < deadline:
        try:
            value = probe()
            if value:
                return value
        except Exception as error:  # noqa: BLE001 - a service still starting answers with errors
            last_error = error
        time.sleep(every_seconds)
    raise AssertionError(f"timed out after {timeout_seconds:.0f} s waiting for {what} (last error: {last_error})")


def get_json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.loads(response.read())


def get_text(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as response:
        return response.read().decode()


def status(service: str) -> dict:
    return get_json(f"http://127.0.0.1:{PORTS[service]}/status")


def healthy(service: str) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{PORTS[service]}/health", timeout=5) as response:
            return response.status == 200
    except OSError:
        return False


def merged_compose_file(env: dict, out: Path) -> Path:
    """docker-compose.yml with deploy/compose.test.yml, as `docker-compose config`
    merges them, less the published ports: they mean nothing on the host
    network, and compose refuses both (the override cannot remove a key)."""
    merged = yaml.safe_load(run("docker-compose", "-f", "docker-compose.yml", "-f", "deploy/compose.test.yml",
                                "config", env=env).stdout)
    for service in merged["services"].values():
        if service.get("network_mode") == "host":
            service.pop("ports", None)
    out.write_text(yaml.safe_dump(merged, sort_keys=False))
    return out


class Stack:
    def __init__(self, data_dir: Path, compose_file: Path) -> None:
        self.env = {**os.environ, "MICRO_TEST_DATA_DIR": str(data_dir), "MICRO_TEST_IMAGE": IMAGE}
        self.file = merged_compose_file(self.env, compose_file)

    def compose(self, *args: str, check: bool = True, timeout: float = 300) -> subprocess.CompletedProcess:
        return run("docker-compose", "-p", PROJECT, "--project-directory", str(ROOT), "-f", str(self.file),
                   *args, check=check, timeout=timeout, env=self.env)

    def container(self, service: str) -> str:
        cid = self.compose("ps", "-q", service).stdout.strip()
        assert cid, f"no {service} container"
        return cid

    def inspect(self, service: str, template: str) -> str:
        return run(DOCKER, "inspect", "-f", template, self.container(service)).stdout.strip()

    def health(self, service: str) -> str:
        return self.inspect(service, "{{.State.Health.Status}}")

    def up(self) -> None:
        self.compose("up", "-d", "--no-build", *APP_SERVICES, "prometheus", timeout=600)

    def volume_file(self, path: str) -> str:
        """A file of the checkpoints volume, read through the live container."""
        return run(DOCKER, "exec", self.container("live"), "cat", f"/checkpoints/{path}").stdout


@pytest.fixture(scope="module")
def stack():
    for image in (IMAGE, "micro-muzero/prometheus:bookworm"):
        if run(DOCKER, "image", "inspect", image, check=False).returncode != 0:
            pytest.fail(f"image {image} is missing: run `make test-containers`, which builds it")
    work = Path(tempfile.mkdtemp(prefix="micro-compose-test-"))
    data_dir = work / "data"
    data_dir.mkdir()
    data_dir.chmod(0o777)  # the image's user (uid 10001) writes the market here
    s = Stack(data_dir, work / "compose.yml")
    s.compose("down", "-v", "--remove-orphans", check=False)
    try:
        s.up()
        yield s
    finally:
        logs = s.compose("logs", "--no-color", "--tail", "40", check=False)
        print(logs.stdout[-20000:])
        s.compose("down", "-v", "--remove-orphans", check=False, timeout=300)
        shutil.rmtree(work, ignore_errors=True)


def test_compose_file_passes_docker_compose_config():
    result = run("docker-compose", "-f", "docker-compose.yml", "config", "-q", check=False)
    assert result.returncode == 0, result.stderr
    with tempfile.TemporaryDirectory() as tmp:
        path = merged_compose_file({**os.environ, "MICRO_TEST_DATA_DIR": tmp}, Path(tmp) / "compose.yml")
        services = yaml.safe_load(path.read_text())["services"]
    assert all(services[name]["network_mode"] == "host" for name in (*APP_SERVICES, "data", "prometheus"))
    assert any(str(v).startswith(f"{tmp}:/app/data") for v in services["training"]["volumes"])
    assert not any("ports" in services[name] for name in (*APP_SERVICES, "prometheus"))


def test_image_is_a_good_citizen():
    config = json.loads(run(DOCKER, "image", "inspect", IMAGE).stdout)[0]["Config"]
    assert config["User"] == "micro"
    assert not [e for e in config["Env"] if re.match(r"(PIP_CERT|CARGO_HTTP_CAINFO|REQUESTS_CA_BUNDLE|OANDA_)", e)]
    history = run(DOCKER, "history", "--no-trunc", IMAGE).stdout
    assert "BEGIN CERTIFICATE" not in history and "OANDA_TOKEN=" not in history
    # the build context's exclusions, and no secret mount left behind
    listing = run(DOCKER, "run", "--rm", "--network", "none", IMAGE, "sh", "-c",
                  "id -u; ls -A /app; ls -A /app/data; test -e /run/secrets/ca && echo SECRET-LEFT; true").stdout.split()
    assert listing[0] == "10001"
    assert not {".venv", "runtime", ".git", "mcts_rs", "tests"} & set(listing)
    assert "SECRET-LEFT" not in listing and "market.duckdb" not in listing
    # the build's CA bundle (PIP_CERT): certificates the image's own bundle lacks are in no file of it
    bundle = Path(os.environ.get("PIP_CERT", "/etc/ssl/certs/ca-certificates.crt"))
    if bundle.exists():
        image_bundle = run(DOCKER, "run", "--rm", "--network", "none", IMAGE,
                           "cat", "/etc/ssl/certs/ca-certificates.crt", check=False).stdout
        certs = re.findall(r"-----BEGIN CERTIFICATE-----\n(.*?)-----END", bundle.read_text(), re.S)
        extra = [c.split("\n")[1] for c in certs if c.split("\n")[1] not in image_bundle]
        for line in extra[:5]:
            found = run(DOCKER, "run", "--rm", "--network", "none", IMAGE, "grep", "-rlF", line,
                        "/etc", "/opt", "/app", "/home", "/root", "/tmp", "/usr/local", check=False)
            assert found.stdout.strip() == "", f"a build CA certificate is in the image: {found.stdout}"


def test_data_job_completes_and_services_become_healthy(stack):
    wait_for("the data job to finish", lambda: stack.inspect("data", "{{.State.Status}}") == "exited", 420)
    assert stack.inspect("data", "{{.State.ExitCode}}") == "0"
    for service in APP_SERVICES:
        wait_for(f"{service} to be healthy by its healthcheck", lambda s=service: stack.health(s) == "healthy", 300)


def test_candidate_promoted_through_the_volume_and_paper_traded(stack):
    champion = wait_for("validation to promote a candidate",
                        lambda: status("validation")["champion"], 900, every_seconds=5)
    current = json.loads(stack.volume_file("promoted/CURRENT"))
    assert current["episode"] == champion["episode"]
    live = wait_for("live to load the promoted model", lambda: status("live").get("model_version") and status("live"),
                    300)
    assert live["broker"] == "paper" and live["model_version"]
    decisions = wait_for("live to decide bars with it", lambda: sum(
        float(v) for v in re.findall(r"^micro_live_decisions_total\{[^}]*\} (\S+)",
                                     get_text("http://127.0.0.1:18003/metrics"), re.M)), 300)
    assert decisions > 0


def test_prometheus_scrapes_all_three(stack):
    def all_up():
        targets = get_json(f"{PROMETHEUS}/api/v1/targets")["data"]["activeTargets"]
        jobs = {t["labels"]["job"]: t["health"] for t in targets}
        return jobs if jobs == {"training": "up", "validation": "up", "live": "up"} else None
    wait_for("Prometheus to have training, validation and live up", all_up, 180)
    rules = get_json(f"{PROMETHEUS}/api/v1/rules")["data"]["groups"]
    assert rules, "the alert rules are loaded"


def test_killed_training_is_restarted_and_resumes_from_latest(stack):
    saved = wait_for("a saved training checkpoint", lambda: status("training")["episode"], 600, every_seconds=5)
    before = int(stack.inspect("training", "{{.RestartCount}}"))
    pid = stack.inspect("training", "{{.State.Pid}}")
    # the process dies (as a crash or the OOM killer would): the restart policy brings it back
    run("kill", "-9", pid)
    wait_for("docker to restart training", lambda: int(stack.inspect("training", "{{.RestartCount}}")) > before, 120)
    page = wait_for("training to resume", lambda: status("training").get("resumed") and status("training"), 300)
    assert page["episode"] >= saved
    # `docker kill` is an operator's stop: compose's `up` starts it again, and it resumes too
    run(DOCKER, "kill", stack.container("training"))
    stack.compose("up", "-d", "--no-build", "training")
    page = wait_for("training to resume after docker kill", lambda: status("training").get("resumed") and status("training"),
                    300)
    assert page["episode"] >= saved


@pytest.mark.parametrize("service", ["validation", "live"])
def test_restarting_one_container_leaves_the_others_serving(stack, service):
    others = [s for s in APP_SERVICES if s != service]
    restart = subprocess.Popen([DOCKER, "restart", "-t", "30", stack.container(service)], cwd=ROOT)
    try:
        while restart.poll() is None:
            assert all(healthy(s) for s in others), f"restarting {service} took another service down"
            time.sleep(0.5)
    finally:
        restart.wait(timeout=120)
    assert restart.returncode == 0
    wait_for(f"{service} to answer again", lambda: healthy(service), 180)
    assert all(healthy(s) for s in others)


def test_down_and_up_keep_the_volume(stack):
    current = stack.volume_file("promoted/CURRENT")
    episode = status("training")["episode"]
    stack.compose("down", timeout=300)  # no -v: the named volume stays
    stack.up()
    for service in APP_SERVICES:
        wait_for(f"{service} to be healthy after up", lambda s=service: stack.health(s) == "healthy", 300)
    assert json.loads(stack.volume_file("promoted/CURRENT"))["episode"] == json.loads(current)["episode"]
    page = status("training")
    assert page["resumed"] and page["episode"] >= episode


def test_the_ray_profile_trains_on_scaled_workers(stack):
    """`docker compose --profile ray up --scale ray-worker=2` with TRAINING_BACKEND=ray: the head
    becomes healthy, both workers join it, training joins as a node of its own and its actors (on
    the workers) write candidates. Compose's own network here (the profile's service names), the
    main stack stopped first so the cores are the Ray stack's."""
    stack.compose("stop", timeout=300)
    env = {**stack.env, "TRAINING_BACKEND": "ray", "RAY_ADDRESS": "ray-head:6379", "RAY_WORKER_CPUS": "1",
           "RAY_AUTH_TOKEN": os.urandom(16).hex()}
    merged = yaml.safe_load(run("docker-compose", "-f", "docker-compose.yml", "--profile", "ray", "config",
                                env=env).stdout)
    services = {name: merged["services"][name] for name in ("data", "training", "ray-head", "ray-worker")}
    for name, service in services.items():
        service.pop("ports", None)  # nothing published: the test reads through `docker exec`
        service.pop("build", None)
        service["image"] = IMAGE
        service["volumes"] = [stack.env["MICRO_TEST_DATA_DIR"] + ":/app/data" + (":ro" if name != "data" else "")
                              if str(v).endswith(("/app/data", "/app/data:ro")) or ":/app/data" in str(v) else v
                              for v in service.get("volumes", [])]
    services["training"]["environment"].update({
        "TRAINING_ACTORS": "2", "TRAINING_EPISODES_PER_ITERATION": "8", "TRAINING_CHECKPOINT_INTERVAL_EPISODES": "8",
        "TRAINING_SEARCH__SIMULATIONS": "3", "OMP_NUM_THREADS": "1"})
    merged["services"] = services
    work = Path(tempfile.mkdtemp(prefix="micro-ray-test-"))
    compose_file = work / "compose.yml"
    compose_file.write_text(yaml.safe_dump(merged, sort_keys=False))
    project = PROJECT + "-ray"

    def compose(*args: str, check: bool = True, timeout: float = 300) -> subprocess.CompletedProcess:
        return run("docker-compose", "-p", project, "--project-directory", str(ROOT), "-f", str(compose_file),
                   *args, check=check, timeout=timeout, env=env)

    def training_status() -> dict:
        cid = compose("ps", "-q", "training").stdout.strip()
        out = run(DOCKER, "exec", cid, "python", "-c", "import urllib.request; "
                  "print(urllib.request.urlopen('http://localhost:8001/status', timeout=5).read().decode())",
                  check=False)
        return json.loads(out.stdout) if out.returncode == 0 else {}

    try:
        compose("up", "-d", "--no-build", "--scale", "ray-worker=2", "data", "ray-head", "ray-worker", "training",
                timeout=600)
        head = compose("ps", "-q", "ray-head").stdout.strip()
        wait_for("the Ray head to be healthy",
                 lambda: run(DOCKER, "inspect", "-f", "{{.State.Health.Status}}", head).stdout.strip() == "healthy",
                 180)
        page = wait_for("training's actors to write two candidates",
                        lambda: (lambda s: s if s.get("checkpoints_written", 0) >= 2 else None)(training_status()), 420)
        self_play = page["self_play"]
        assert self_play["backend"] == "ray" and self_play["address"] == "ray-head:6379"
        assert self_play["actors"] == 2 and self_play["actors_alive"] == 2
        nodes = run(DOCKER, "exec", head, "python", "-c", "import ray; ray.init(address='auto', log_to_driver=False); "
                    "print(sum(n['Alive'] for n in ray.nodes()))").stdout.strip().splitlines()[-1]
        assert int(nodes) == 4, "the head, two workers and training's node"
    finally:
        logs = compose("logs", "--no-color", "--tail", "30", check=False)
        print(logs.stdout[-15000:])
        compose("down", "-v", "--remove-orphans", check=False, timeout=300)
        shutil.rmtree(work, ignore_errors=True)
