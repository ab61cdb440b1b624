"""The project's .env file: where it is (MICRO_ENV_FILE, default ./.env) and what it says. Read by
the settings loader and by the instrument table, each process for itself."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path


def env_file_path(environ: Mapping[str, str]) -> Path:
    return Path(environ.get("MICRO_ENV_FILE", ".env"))


def read_env_file(path: Path) -> dict[str, str]:
    """The file's variables; an absent file is no error (and no variables)."""
    from dotenv import dotenv_values

    return {k: v for k, v in dotenv_values(path).items() if v is not None} if path.is_file() else {}
