"""docker-compose.yml read as the local runner needs it (deploy/local.py): each service's command,
environment, port, CPU priority and stop grace period, with compose's `${VAR:-default}` and
`${VAR:?message}` interpolation from the environment or .env, and the container paths made local
ones (the `checkpoints` volume -> runtime/checkpoints, /app/data -> data)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import yaml

SERVICES = ("training", "validation", "live")
BACKGROUND_NICE = 10  # for a service whose compose cpu_shares is below the default 1024
_VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::([-?])([^}]*))?\}")


@dataclass
class ServiceSpec:
    name: str
    command: list[str]
    environment: dict[str, str]
    port: int
    nice: int = 0                     # CPU priority: compose's cpu_shares below 1024 -> BACKGROUND_NICE
    grace_seconds: float = 10.0       # compose's stop_grace_period (its default is 10 s)


def parse_duration(value: str | int | float | None, default: float) -> float:
    """compose durations: 60s, 1m30s, 500ms, or a number of seconds."""
    if value is None:
        return default
    if isinstance(value, (int, float)):
        return float(value)
    total, units = 0.0, {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001, "us": 1e-6}
    for number, unit in re.findall(r"([0-9.]+)(ms|us|h|m|s)", value):
        total += float(number) * units[unit]
    return total or default


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
    paths = {"/checkpoints": str(runtime / "checkpoints"), "/app/data": str(data),
             "/project/.env": str(compose_path.parent / ".env")}
    specs = {}
    for name in ("data",) + SERVICES:
        service = compose["services"][name]
        env = {k: interpolate(v, variables) for k, v in (service.get("environment") or {}).items()}
        env = {k: paths.get(v, v) for k, v in env.items()}
        command = [paths.get(part, part) for part in service["command"]]
        command = [part.replace("/app/data", str(data)) for part in command]
        port = int(env.get(f"{name.upper()}_PORT", 0) or 0)
        nice = BACKGROUND_NICE if int(service.get("cpu_shares", 1024)) < 1024 else 0
        specs[name] = ServiceSpec(name, command, env, port, nice,
                                  parse_duration(service.get("stop_grace_period"), 10.0))
    return specs
