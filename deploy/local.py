"""Run the three services as local processes, with the commands and the
environment docker-compose.yml gives them (read from that file, so the two
ways to run the system cannot drift apart).

    python -m deploy.local run    # foreground: Ctrl-C stops everything cleanly
    python -m deploy.local up     # background; logs in runtime/logs
    python -m deploy.local down   # stop what `up` started

Container paths become local ones: the `checkpoints` volume is
./runtime/checkpoints, /app/data is ./data. Variables in `${VAR:-default}` form
take their value from the environment or .env, as compose does. A service that
exits is restarted (compose's `restart: unless-stopped`).
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
SERVICES = ("training", "validation", "live")
_VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::([-?])([^}]*))?\}")


@dataclass
class ServiceSpec:
    name: str
    command: list[str]
    environment: dict[str, str]
    port: int


def read_dotenv(path: Path) -> dict[str, str]:
    values = {}
    if path.exists():
        for line in path.read_text().splitlines():
            line = line.strip()
            if not line or line.startswith("#") or "=" not in line:
                continue
            key, value = line.split("=", 1)
            values[key.strip()] = value.split(" #", 1)[0].strip()
    return values


def interpolate(value: str, variables: dict[str, str]) -> str:
    def replace(match: re.Match) -> str:
        name, kind, default = match.group(1), match.group(2), match.group(3)
        found = variables.get(name)
        if kind == "-":
            return found if found else default
        if kind == "?":
            if not found:
                raise SystemExit(f"{name} is required: {default}")
            return found
        return found or ""
    return _VARIABLE.sub(replace, str(value))


def load_specs(compose_path: Path, runtime: Path, data: Path, variables: dict[str, str]) -> dict[str, ServiceSpec]:
    compose = yaml.safe_load(compose_path.read_text())
    paths = {"/checkpoints": str(runtime / "checkpoints"), "/app/data": str(data)}
    specs = {}
    for name in ("data",) + SERVICES:
        service = compose["services"][name]
        env = {k: interpolate(v, variables) for k, v in (service.get("environment") or {}).items()}
        env = {k: paths.get(v, v) for k, v in env.items()}
        command = [paths.get(part, part) for part in service["command"]]
        command = [part.replace("/app/data", str(data)) for part in command]
        port = int(env.get(f"{name.upper()}_PORT", 0) or 0)
        specs[name] = ServiceSpec(name, command, env, port)
    return specs


class Stack:
    def __init__(self, specs: dict[str, ServiceSpec], logs: Path, extra_env: dict[str, str] | None = None) -> None:
        self.specs = specs
        self.logs = logs
        self.extra_env = extra_env or {}
        self.processes: dict[str, subprocess.Popen] = {}
        self.restarts = {name: 0 for name in specs}

    def _env(self, spec: ServiceSpec) -> dict[str, str]:
        return {**os.environ, **spec.environment, **self.extra_env, "PYTHONUNBUFFERED": "1"}

    def prepare_data(self) -> None:
        """Run compose's `data` job once: when the feature store is missing."""
        db = Path(next(p for p in self.specs["data"].command if p.endswith(".duckdb")))
        if db.exists() and _has_feature_store(db):
            return
        print(f"building the embedded default market into {db} ...", flush=True)
        subprocess.run([sys.executable] + self.specs["data"].command[1:], cwd=ROOT, check=True,
                       env=self._env(self.specs["data"]))

    def start(self, name: str) -> subprocess.Popen:
        spec = self.specs[name]
        self.logs.mkdir(parents=True, exist_ok=True)
        log = open(self.logs / f"{name}.log", "ab")
        process = subprocess.Popen([sys.executable] + spec.command[1:], cwd=ROOT, env=self._env(spec), stdout=log,
                                   stderr=subprocess.STDOUT)
        self.processes[name] = process
        return process

    def start_all(self) -> None:
        for name in SERVICES:
            self.start(name)

    def supervise(self) -> None:
        """Restart a service that exited (unless we are stopping)."""
        for name, process in list(self.processes.items()):
            if process.poll() is not None:
                self.restarts[name] += 1
                print(f"{name} exited with {process.returncode}; restarting (see {self.logs / (name + '.log')})",
                      flush=True)
                self.start(name)

    def stop(self, timeout: float = 20.0) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        deadline = time.time() + timeout
        for process in self.processes.values():
            try:
                process.wait(timeout=max(0.1, deadline - time.time()))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _has_feature_store(db: Path) -> bool:
    import duckdb

    try:
        with duckdb.connect(str(db), read_only=True) as con:
            return bool(con.execute("SELECT count(*) FROM information_schema.tables WHERE table_name = 'feature_sets'")
                        .fetchall()[0][0])
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
    try:
        while not stopping:
            time.sleep(1.0)
            stack.supervise()
    except KeyboardInterrupt:
        pass
    print("stopping ...", flush=True)
    stack.stop()
    print("stopped.", flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m deploy.local", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["run", "up", "down"])
    args = parser.parse_args(argv)
    runtime = ROOT / "runtime"
    pid_file = runtime / "stack.pid"
    if args.command == "run":
        return run(build_stack())
    if args.command == "up":
        if pid_file.exists():
            print(f"already up (pid {pid_file.read_text().strip()}); `make down` first")
            return 1
        runtime.mkdir(parents=True, exist_ok=True)
        (runtime / "logs").mkdir(exist_ok=True)
        log = open(runtime / "logs" / "stack.log", "ab")
        process = subprocess.Popen([sys.executable, "-m", "deploy.local", "run"], cwd=ROOT, stdout=log,
                                   stderr=subprocess.STDOUT, start_new_session=True)
        pid_file.write_text(str(process.pid))
        print(f"started in the background (pid {process.pid}); logs in {runtime / 'logs'}; `make down` stops it")
        for name in SERVICES:
            print(f"  {name:<10} http://localhost:{build_stack().specs[name].port}/status")
        return 0
    if not pid_file.exists():
        print("nothing is up")
        return 0
    pid = int(pid_file.read_text().strip())
    try:
        os.kill(pid, signal.SIGTERM)
        for _ in range(60):
            os.kill(pid, 0)
            time.sleep(0.5)
    except ProcessLookupError:
        pass
    pid_file.unlink(missing_ok=True)
    print("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
