"""The local runner (`make run`, `make up`, `make down`) behaves like compose, not
worse: restarts with backoff and gives up with the reason, `up` fails on a
service that never becomes healthy, stops give compose's grace period, and
training and validation run at a lower CPU priority than live."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from deploy.local import (
    BACKGROUND_NICE,
    MAX_FAST_FAILURES,
    ROOT,
    SERVICES,
    GaveUp,
    ServiceSpec,
    Stack,
    load_specs,
    parse_duration,
)


def _stack(tmp_path, code: str, **spec) -> Stack:
    specs = {"svc": ServiceSpec("svc", ["python", "-c", code], {}, 0, **spec)}
    return Stack(specs, tmp_path / "logs")


def test_a_failing_service_is_restarted_with_backoff_then_given_up_with_the_reason(tmp_path):
    """Regression: a bad setting restarted training 19 times in 20 s and `up` said it started."""
    stack = _stack(tmp_path, "import sys; print('bad configuration: episodes_per_iteration must be >= 1'); sys.exit(2)")
    stack.first_backoff_seconds = 0.05
    stack.start("svc")
    starts, deadline = [], time.monotonic() + 60
    with pytest.raises(GaveUp) as gave_up:
        while time.monotonic() < deadline:
            before = stack.processes["svc"]
            stack.supervise()
            if stack.processes["svc"] is not before:
                starts.append(time.monotonic())
            time.sleep(0.01)
    assert len(starts) == MAX_FAST_FAILURES - 1
    gaps = [b - a for a, b in zip(starts, starts[1:])]
    assert all(later > earlier for earlier, later in zip(gaps, gaps[1:])), f"backoff must grow: {gaps}"
    assert "exited with 2" in str(gave_up.value) and "episodes_per_iteration must be >= 1" in str(gave_up.value)


def test_a_stop_gives_each_service_its_grace_period(tmp_path):
    """Regression: `make down` killed training after 20 s while compose allows it 60."""
    code = ("import signal, sys, time\n"
            "signal.signal(signal.SIGTERM, lambda *_: (time.sleep(2.0), sys.exit(0)))\n"
            "print('ready', flush=True)\n"
            "while True: time.sleep(0.1)")
    stack = _stack(tmp_path, code, grace_seconds=10.0)
    stack.start("svc")
    while "ready" not in (tmp_path / "logs" / "svc.log").read_text():
        time.sleep(0.05)
    stack.stop()
    assert stack.processes["svc"].returncode == 0, "finished its work within the grace period, not killed"
    assert parse_duration("60s", 10) == 60 and parse_duration("1m30s", 10) == 90 and parse_duration(None, 10) == 10


def test_compose_gives_live_the_cpu_and_the_runner_nices_the_others(tmp_path):
    specs = load_specs(ROOT / "docker-compose.yml", tmp_path / "runtime", tmp_path / "data", {})
    assert [specs[name].nice for name in SERVICES] == [BACKGROUND_NICE, BACKGROUND_NICE, 0]
    assert all(specs[name].grace_seconds == 60 for name in SERVICES)
    stack = _stack(tmp_path, "import os, time; print(os.nice(0), flush=True); time.sleep(30)", nice=BACKGROUND_NICE)
    process = stack.start("svc")
    deadline = time.monotonic() + 20
    while not (tmp_path / "logs" / "svc.log").read_text().strip() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert int((tmp_path / "logs" / "svc.log").read_text().split()[0]) == os.nice(0) + BACKGROUND_NICE
    process.kill()
    process.wait()


def test_up_with_a_bad_setting_fails_fast_and_names_the_service(data_dir, tmp_path):
    runtime = tmp_path / "runtime"
    env = {**os.environ, "TRAINING_EPISODES_PER_ITERATION": "-3"}
    started = time.monotonic()
    result = subprocess.run([sys.executable, "-m", "deploy.local", "up", "--runtime", str(runtime),
                             "--data", str(data_dir)], cwd=ROOT, env=env, capture_output=True, text=True,
                            timeout=400)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "training never became healthy" in result.stderr and "the runner gave up" in result.stderr
    assert "episodes_per_iteration" in result.stderr, "the reason, from training's own log"
    assert time.monotonic() - started < 120
    assert not (runtime / "stack.pid").exists()
    ps = subprocess.run(["pgrep", "-f", str(runtime)], capture_output=True, text=True)
    assert ps.stdout.strip() == "", "everything it started is stopped"
