"""Start services as real processes for tests, and talk to them over HTTP."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(module: str, env: dict[str, str], log_path: Path) -> subprocess.Popen:
    # hermetic: a developer's ./.env does not reach a test's service unless the test names one
    full_env = {**os.environ, "MICRO_ENV_FILE": str(log_path.parent / "absent.env"), **env, "PYTHONUNBUFFERED": "1"}
    log = open(log_path, "ab")
    return subprocess.Popen([sys.executable, "-m", module], cwd=ROOT, env=full_env, stdout=log, stderr=subprocess.STDOUT)


def wait_for(url: str, ok=lambda r: r.status_code == 200, timeout: float = 90.0, process: subprocess.Popen | None = None):
    deadline = time.time() + timeout
    last = None
    while time.time() < deadline:
        if process is not None and process.poll() is not None:
            raise AssertionError(f"process exited with {process.returncode} while waiting for {url}")
        try:
            last = httpx.get(url, timeout=2.0)
            if ok(last):
                return last
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {url}; last answer: {last.text if last is not None else None}")


def require_tool(name: str, package: str = "prometheus") -> str:
    """The path of a command-line tool the test needs; a missing one fails with what to do."""
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is not installed: `make test-tools` installs it (Debian package {package}), "
                    f"or run `sudo apt-get install {package}`", pytrace=False)
    return path
