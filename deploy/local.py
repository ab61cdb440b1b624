"""Run the three services as local processes, with the commands and the
environment docker-compose.yml gives them (read from that file by deploy/compose_file.py, so the two
ways to run the system cannot drift apart).

    python -m deploy.local run    # foreground: Ctrl-C stops everything cleanly
    python -m deploy.local up     # background; logs in runtime/logs
    python -m deploy.local down   # stop what `up` started

Container paths become local ones: the `checkpoints` volume is
./runtime/checkpoints, /app/data is ./data. Variables in `${VAR:-default}` form
take their value from the environment or .env, as compose does.

Like compose, not worse: a service that exits is restarted (`restart:
unless-stopped`) after a backoff that doubles with each fast exit (one within
FAST_FAILURE_SECONDS of its start), capped at MAX_BACKOFF_SECONDS (at
MAX_SIGNAL_BACKOFF_SECONDS when a signal killed it) and reset once the
service has run that long. A death by a signal (SIGKILL, the OOM
killer) is always restarted, as compose does. The runner gives up only on a
service that cannot start: one that exited by itself with a non-zero status
fast, MAX_FAST_FAILURES times in a row (twice for status 2, a bad setting or a
refused account: the same start fails the same way). It then
prints the reason from that service's log once, writes it to
logs/<service>.gave-up and stops restarting that service; the others keep
running (live above all); `run` exits non-zero only once every service has
given up. `up` waits until every service answers /health and exits non-zero,
naming the one that did not (and the reason, when the runner gave up on it);
a stop gives each service its `stop_grace_period`. Live comes first on a
shared host: training and validation run at a lower CPU priority (nice 10, as
their lower `cpu_shares` in compose), live at normal priority.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from deploy.compose_file import SERVICES, ServiceSpec, load_specs, read_dotenv

ROOT = Path(__file__).resolve().parents[1]

FAST_FAILURE_SECONDS = 15.0
MAX_FAST_FAILURES = 5
# exit 2 is the services' "a person must act" (a bad setting, a refused account: shared/service/main.py):
# the same start fails the same way, so one retry (for a transient cause) and then give up
PERSON_MUST_ACT_EXIT_CODE = 2
MAX_PERSON_MUST_ACT_FAILURES = 2
MAX_BACKOFF_SECONDS = 30.0
# a service killed from outside (kill -9, the OOM killer) did nothing wrong: it comes back within
# seconds however often it is killed (live above all), while one that keeps failing by itself
# backs off to MAX_BACKOFF_SECONDS
MAX_SIGNAL_BACKOFF_SECONDS = 4.0
UP_TIMEOUT_SECONDS = 300.0  # `up` waits this long for every /health (the first run builds the market)


class Stack:
    def __init__(self, specs: dict[str, ServiceSpec], logs: Path, extra_env: dict[str, str] | None = None) -> None:
        self.specs = specs
        self.logs = logs
        self.extra_env = extra_env or {}
        self.processes: dict[str, subprocess.Popen] = {}
        self.restarts = {name: 0 for name in specs}
        self.started_at: dict[str, float] = {}
        self.fast_failures = {name: 0 for name in specs}  # fast non-zero exits by itself, in a row: give up at MAX
        self.fast_exits = {name: 0 for name in specs}     # fast exits of any kind, in a row: the backoff doubles
        self.restart_due: dict[str, float] = {}
        self.given_up: dict[str, str] = {}                # service -> why the runner gave up on it
        self.first_backoff_seconds = 1.0

    def _env(self, spec: ServiceSpec) -> dict[str, str]:
        return {**os.environ, **spec.environment, **self.extra_env, "PYTHONUNBUFFERED": "1"}

    def prepare_data(self) -> None:
        """Run compose's `data` job when the configured market (the demo's when none is named)
        has no feature store yet."""
        from shared.cli.data import DataSettings
        from shared.core.settings import load_settings

        env = self._env(self.specs["data"])
        settings = load_settings(DataSettings, environ=env)
        db = settings.data_dir / "market.duckdb"
        if db.exists() and _has_feature_store(db, settings.instrument, settings.granularity):
            return
        what = f"{settings.instrument} {settings.granularity}" if settings.market_configured else "the embedded default market"
        print(f"building the feature store of {what} into {db} ...", flush=True)
        subprocess.run([sys.executable] + self.specs["data"].command[1:], cwd=ROOT, check=True, env=env)

    def start(self, name: str) -> subprocess.Popen:
        spec = self.specs[name]
        self.logs.mkdir(parents=True, exist_ok=True)
        self.given_up.pop(name, None)
        gave_up_path(self.logs, name).unlink(missing_ok=True)
        log = open(self.logs / f"{name}.log", "ab")
        nice = spec.nice
        process = subprocess.Popen([sys.executable] + spec.command[1:], cwd=ROOT, env=self._env(spec), stdout=log,
                                   stderr=subprocess.STDOUT, preexec_fn=(lambda: os.nice(nice)) if nice else None)
        self.processes[name] = process
        self.started_at[name] = time.monotonic()
        return process

    def start_all(self, names: tuple[str, ...] = SERVICES) -> None:
        for name in names:
            self.start(name)

    def log_tail(self, name: str, lines: int = 12) -> str:
        path = self.logs / f"{name}.log"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""

    def supervise(self) -> list[str]:
        """Restart a service that exited, after a backoff that doubles with each fast exit
        (capped at MAX_BACKOFF_SECONDS). A service that exited by itself with a non-zero
        status MAX_FAST_FAILURES times in a row, each fast, is given up: its reason is
        printed once and recorded (self.given_up, logs/<name>.gave-up) and it is not
        restarted again; the other services are left alone. A death by a signal never
        counts towards giving up. Returns the services given up by this call."""
        now, gave_up = time.monotonic(), []
        for name, process in list(self.processes.items()):
            if name in self.given_up:
                continue
            if name in self.restart_due:
                if now >= self.restart_due[name]:
                    del self.restart_due[name]
                    self.start(name)
                continue
            if process.poll() is None:
                if now - self.started_at[name] > FAST_FAILURE_SECONDS:
                    self.fast_failures[name] = self.fast_exits[name] = 0  # it ran long enough: start from zero
                continue
            self.restarts[name] += 1
            code = process.returncode
            fast = now - self.started_at[name] < FAST_FAILURE_SECONDS
            self.fast_exits[name] = self.fast_exits[name] + 1 if fast else 0
            if not fast:
                self.fast_failures[name] = 0
            elif code > 0:  # it could not start; a signal (< 0) or a clean exit (0) never counts
                self.fast_failures[name] += 1
            limit = MAX_PERSON_MUST_ACT_FAILURES if code == PERSON_MUST_ACT_EXIT_CODE else MAX_FAST_FAILURES
            if self.fast_failures[name] >= limit:
                self._give_up(name, code)
                gave_up.append(name)
                continue
            cap = MAX_SIGNAL_BACKOFF_SECONDS if code < 0 else MAX_BACKOFF_SECONDS
            delay = min(cap, self.first_backoff_seconds * 2.0 ** (self.fast_exits[name] - 1)) if fast else 0.0
            how = f"was killed by {_signal_name(-code)}" if code < 0 else f"exited with {code}"
            print(f"{name} {how}; restarting in {delay:.0f}s (see {self.logs / (name + '.log')})", flush=True)
            self.restart_due[name] = now + delay
        return gave_up

    def _give_up(self, name: str, code: int) -> None:
        reason = (f"{name} exited with {code} {self.fast_failures[name]} times in a row within "
                  f"{FAST_FAILURE_SECONDS:.0f}s of starting; giving up on it (the other services keep running). "
                  f"Its log ({self.logs / (name + '.log')}) ends:\n{self.log_tail(name)}")
        self.given_up[name] = reason
        gave_up_path(self.logs, name).write_text(reason + "\n")
        print(f"error: {reason}", flush=True)

    def stop(self, timeout: float | None = None) -> None:
        """SIGTERM to all, then each gets its grace period (compose's stop_grace_period) before SIGKILL."""
        self.restart_due.clear()
        for process in self.processes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        started = time.time()
        for name, process in self.processes.items():
            grace = self.specs[name].grace_seconds if timeout is None else timeout
            try:
                process.wait(timeout=max(0.1, started + grace - time.time()))
            except subprocess.TimeoutExpired:
                print(f"{name} did not stop within {grace:.0f}s; killing it", flush=True)
                process.kill()
                process.wait()


def gave_up_path(logs: Path, name: str) -> Path:
    """Where the runner records that it gave up on a service (read by `up`)."""
    return logs / f"{name}.gave-up"


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def _has_feature_store(db: Path, instrument: str, granularity: str) -> bool:
    import duckdb

    try:
        with duckdb.connect(str(db), read_only=True) as con:
            return bool(con.execute("SELECT count(*) FROM feature_sets WHERE instrument = ? AND granularity = ?",
                                    [instrument, granularity]).fetchall()[0][0])
    except duckdb.Error:
        return False


def build_stack(runtime: Path = ROOT / "runtime", data: Path = ROOT / "data") -> Stack:
    variables = {**read_dotenv(ROOT / ".env"), **os.environ}
    specs = load_specs(ROOT / "docker-compose.yml", runtime, data, variables)
    return Stack(specs, runtime / "logs")


def run(stack: Stack) -> int:
    stack.prepare_data()
    stack.start_all()
    print("micro-muzero is running (Ctrl-C stops it):", flush=True)
    for name in SERVICES:
        port = stack.specs[name].port
        print(f"  {name:<10} http://localhost:{port}/status   /health  /ready  /metrics", flush=True)
    print(f"  logs       {stack.logs}/", flush=True)
    stopping = []
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(True))
    code = 0
    try:
        while not stopping:
            time.sleep(0.5)
            stack.supervise()
            if all(name in stack.given_up for name in stack.processes):
                print("error: the runner gave up on every service", flush=True)
                code = 1
                break
    except KeyboardInterrupt:
        pass
    print("stopping ...", flush=True)
    stack.stop()
    print("stopped.", flush=True)
    return code


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m deploy.local", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["run", "up", "down"])
    parser.add_argument("--runtime", type=Path, default=ROOT / "runtime", help="the volume and logs (./runtime)")
    parser.add_argument("--data", type=Path, default=ROOT / "data", help="where market.duckdb lives (./data)")
    args = parser.parse_args(argv)
    runtime, data = args.runtime.resolve(), args.data.resolve()
    pid_file = runtime / "stack.pid"
    if args.command == "run":
        from shared.core.settings import ConfigError

        try:
            return run(build_stack(runtime, data))
        except ConfigError as error:
            print(f"error: bad configuration: {error}", file=sys.stderr)
            return 2
        except subprocess.CalledProcessError:
            print("error: the data job failed (its reason is above); nothing started", file=sys.stderr)
            return 2
    if args.command == "up":
        if pid_file.exists():
            print(f"already up (pid {pid_file.read_text().strip()}); `make down` first")
            return 1
        return up(runtime, data, pid_file)
    return down(runtime, data, pid_file)


def healthy(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2.0) as answer:
            return answer.status == 200
    except (OSError, ValueError):
        return False


def up(runtime: Path, data: Path, pid_file: Path, timeout_seconds: float = UP_TIMEOUT_SECONDS) -> int:
    """Start the stack in the background; return 0 once every service answers /health, or
    1 naming those that never did (the stack is stopped again)."""
    (runtime / "logs").mkdir(parents=True, exist_ok=True)
    for name in SERVICES:  # a record from an earlier run is not this one's
        gave_up_path(runtime / "logs", name).unlink(missing_ok=True)
    log = open(runtime / "logs" / "stack.log", "ab")
    process = subprocess.Popen([sys.executable, "-m", "deploy.local", "run", "--runtime", str(runtime),
                                "--data", str(data)], cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                               start_new_session=True)
    pid_file.write_text(str(process.pid))
    stack = build_stack(runtime, data)
    print(f"starting in the background (pid {process.pid}); logs in {runtime / 'logs'}", flush=True)
    pending, deadline = list(SERVICES), time.monotonic() + timeout_seconds
    gave_up: list[str] = []
    while pending and not gave_up and time.monotonic() < deadline and process.poll() is None:
        for name in list(pending):
            if healthy(stack.specs[name].port):
                pending.remove(name)
                print(f"  {name:<10} healthy   http://localhost:{stack.specs[name].port}/status", flush=True)
            elif gave_up_path(runtime / "logs", name).exists():
                gave_up.append(name)
        if pending and not gave_up:
            time.sleep(1.0)
    if not pending:
        print("up; `make down` stops it")
        return 0
    if gave_up:
        failed, why = gave_up, "the runner gave up"
    elif process.poll() is not None:
        failed, why = pending, f"the runner exited with {process.returncode}"
    else:
        failed, why = pending, f"not healthy within {timeout_seconds:.0f}s"
    print(f"error: {', '.join(failed)} never became healthy ({why}).", file=sys.stderr)
    for name in failed:
        record = gave_up_path(runtime / "logs", name)
        if record.exists():
            print(f"--- {record}:\n{record.read_text(errors='replace').rstrip()}", file=sys.stderr)
        else:
            print(f"--- {runtime / 'logs' / (name + '.log')} ends:\n{stack.log_tail(name)}", file=sys.stderr)
    still = [name for name in pending if name not in failed]
    if still:
        print(f"(not healthy yet either: {', '.join(still)})", file=sys.stderr)
    stack_log = (runtime / "logs" / "stack.log").read_text(errors="replace").splitlines()
    print("--- stack.log ends:\n" + "\n".join(stack_log[-6:]), file=sys.stderr)
    down(runtime, data, pid_file, quiet=True)
    return 1


def _running(pid: int) -> bool:
    """Whether `pid` still runs. When `up` started it in this process and it exited, it is reaped
    here: a zombie answers kill(pid, 0) as if alive (`up` waited out the whole grace period)."""
    try:
        if os.waitpid(pid, os.WNOHANG)[0] == pid:
            return False
    except ChildProcessError:  # not this process's child: `make down` in another shell
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def down(runtime: Path, data: Path, pid_file: Path, *, quiet: bool = False) -> int:
    """Stop what `up` started: the runner gives each service its grace period, so wait for that."""
    if not pid_file.exists():
        print("nothing is up")
        return 0
    pid = int(pid_file.read_text().strip())
    grace = max(spec.grace_seconds for spec in build_stack(runtime, data).specs.values())
    try:
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + grace + 15.0
        while _running(pid):
            if time.monotonic() > deadline:
                print(f"the runner (pid {pid}) did not stop within {grace + 15:.0f}s", file=sys.stderr)
                break
            time.sleep(0.5)
    except ProcessLookupError:
        pass
    pid_file.unlink(missing_ok=True)
    if not quiet:
        print("stopped")
    return 0

if __name__ == "__main__":
    sys.exit(main())
