"""The local runner (`make run`, `make up`, `make down`) behaves like compose, not
worse: restarts with backoff, always after a death by a signal, and gives up
with the reason only on a service that cannot start (without stopping the
others), `up` fails on a service that never becomes healthy, stops give
compose's grace period, and training and validation run at a lower CPU
priority than live."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import deploy.local
from deploy.compose_file import BACKGROUND_NICE, SERVICES, ServiceSpec, load_specs, parse_duration
from deploy.local import FAST_FAILURE_SECONDS, MAX_FAST_FAILURES, ROOT, Stack


def _stack(tmp_path, code: str, **spec) -> Stack:
    specs = {"svc": ServiceSpec("svc", ["python", "-c", code], {}, 0, **spec)}
    return Stack(specs, tmp_path / "logs")


def _restarts_until_given_up(stack: Stack) -> list[float]:
    """The times `svc` was started again, until the runner gave up on it."""
    stack.first_backoff_seconds = 0.05
    stack.start("svc")
    starts, given_up, deadline = [], [], time.monotonic() + 60
    while not given_up and time.monotonic() < deadline:
        before = stack.processes["svc"]
        given_up = stack.supervise()
        if stack.processes["svc"] is not before:
            starts.append(time.monotonic())
        time.sleep(0.01)
    assert given_up == ["svc"] and "svc" in stack.given_up
    return starts


def test_a_failing_service_is_restarted_with_backoff_then_given_up_with_the_reason(tmp_path):
    """Regression: a crash loop restarted training 19 times in 20 s and `up` said it started."""
    stack = _stack(tmp_path, "import sys; print('RuntimeError: the replay is corrupt'); sys.exit(1)")
    starts = _restarts_until_given_up(stack)
    assert len(starts) == MAX_FAST_FAILURES - 1
    gaps = [b - a for a, b in zip(starts, starts[1:])]
    assert all(later > earlier for earlier, later in zip(gaps, gaps[1:])), f"backoff must grow: {gaps}"
    reason = stack.given_up["svc"]
    assert "exited with 1" in reason and "the replay is corrupt" in reason
    assert (tmp_path / "logs" / "svc.gave-up").read_text().strip() == reason.strip(), "for `up` to report"
    time.sleep(0.2)
    assert stack.supervise() == [] and stack.processes["svc"].poll() is not None, "given up: not restarted"


def test_a_bad_setting_is_given_up_after_one_retry(tmp_path):
    """Exit 2 is a service's "a person must act" (a bad setting): the same start fails the same way,
    so the runner retries once, for a transient cause, and then names the reason."""
    stack = _stack(tmp_path, "import sys; print('bad configuration: episodes_per_iteration must be >= 1'); sys.exit(2)")
    assert len(_restarts_until_given_up(stack)) == 1
    reason = stack.given_up["svc"]
    assert "exited with 2 2 times in a row" in reason and "episodes_per_iteration must be >= 1" in reason


def test_a_service_killed_by_a_signal_fast_is_always_restarted_with_a_capped_backoff(tmp_path, monkeypatch):
    """Regression: five SIGKILLs within 15 s of each start (chaos, the OOM killer) made the
    runner give up and stop the whole stack, live included; compose never gives up. Its backoff
    is capped lower than a crash loop's, so a killed service (live) is back within seconds."""
    monkeypatch.setattr(deploy.local, "MAX_BACKOFF_SECONDS", 5.0)  # a failure of its own: not this cap
    monkeypatch.setattr(deploy.local, "MAX_SIGNAL_BACKOFF_SECONDS", 0.4)
    stack = _stack(tmp_path, "import time; print('up', flush=True); time.sleep(60)")
    stack.first_backoff_seconds = 0.05
    stack.start("svc")
    delays = []
    for _ in range(8):
        process = stack.processes["svc"]
        process.send_signal(signal.SIGKILL)
        process.wait()
        assert time.monotonic() - stack.started_at["svc"] < FAST_FAILURE_SECONDS, "a fast failure"
        stack.supervise()  # the old runner raised GaveUp here on the fifth kill and stopped everything
        delays.append(stack.restart_due["svc"] - time.monotonic())
        deadline = time.monotonic() + 10
        while stack.processes["svc"] is process and time.monotonic() < deadline:
            stack.supervise()
            time.sleep(0.01)
        assert stack.processes["svc"] is not process, "restarted"
    assert stack.given_up == {} and stack.restarts["svc"] == 8, "a death by a signal never gives up"
    assert stack.processes["svc"].poll() is None, "running after the eighth kill"
    assert all(later >= earlier - 0.02 for earlier, later in zip(delays, delays[1:])), f"backoff grows: {delays}"
    assert delays[1] > delays[0] + 0.02, f"backoff doubles: {delays}"
    assert max(delays) <= 0.4 + 0.01 and min(delays[-3:]) > 0.3, f"capped at MAX_SIGNAL_BACKOFF_SECONDS: {delays}"
    stack.stop(timeout=2.0)


def test_a_service_that_cannot_start_is_given_up_while_the_others_keep_running(tmp_path, capsys):
    """Giving up on one service must not stop the others (live above all): the runner
    records it, says why once, and still restarts the others when they are killed."""
    specs = {"bad": ServiceSpec("bad", ["python", "-c", "import sys; print('bad setting: x < 0'); sys.exit(2)"], {}, 0),
             "good": ServiceSpec("good", ["python", "-c", "import time; time.sleep(120)"], {}, 0)}
    stack = Stack(specs, tmp_path / "logs")
    stack.first_backoff_seconds = 0.05
    stack.start_all(("bad", "good"))
    good, deadline = stack.processes["good"], time.monotonic() + 60
    while "bad" not in stack.given_up and time.monotonic() < deadline:
        stack.supervise()
        assert good.poll() is None, "the other service keeps running"
        time.sleep(0.01)
    assert "bad" in stack.given_up and "bad setting: x < 0" in stack.given_up["bad"]
    assert stack.processes["good"] is good and good.poll() is None
    good.send_signal(signal.SIGKILL)
    good.wait()
    deadline = time.monotonic() + 10
    while stack.processes["good"] is good and time.monotonic() < deadline:
        stack.supervise()
        time.sleep(0.01)
    assert stack.processes["good"] is not good and stack.processes["good"].poll() is None, "still restarted"
    assert stack.processes["bad"].poll() is not None and list(stack.given_up) == ["bad"]
    assert capsys.readouterr().out.count("giving up") == 1, "the reason is printed once"
    stack.stop(timeout=2.0)


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
    result = subprocess.run([sys.executable, "-m", "deploy.local", "up", "--runtime", str(runtime),
                             "--data", str(data_dir)], cwd=ROOT, env=env, capture_output=True, text=True,
                            timeout=400)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "training never became healthy" in result.stderr and "the runner gave up" in result.stderr
    assert "episodes_per_iteration" in result.stderr, "the reason, from training's own log"
    assert "exited with 2 2 times in a row" in result.stderr, "a bad setting: one retry, then the reason"
    assert not (runtime / "stack.pid").exists()
    ps = subprocess.run(["pgrep", "-f", str(runtime)], capture_output=True, text=True)
    assert ps.stdout.strip() == "", "everything it started is stopped"
