from __future__ import annotations

import os

import pytest

from shared.cli.data import main as data_cli
from shared.config import SyntheticMarketConfig
from shared.core.cpus import usable_cpus
from shared.data.synthetic import generate_bars
from shared.features.store import load_feature_set


def _share_the_cores_between_workers() -> None:
    """`make test` runs two xdist workers on a two-core machine: torch in each of them, and in every
    service and benchmark a test starts (they inherit OMP_NUM_THREADS), takes its share of the
    cores. Two torch processes of two threads each on two cores spin against each other (OpenMP
    threads busy-wait): a benchmark that takes 40 s alone took 180 s beside the learning test."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if workers > 1:
        import torch

        threads = max(1, usable_cpus() // workers)
        os.environ["OMP_NUM_THREADS"] = str(threads)
        torch.set_num_threads(threads)


_share_the_cores_between_workers()


@pytest.fixture(autouse=True)
def _no_developer_env_file(monkeypatch, tmp_path_factory):
    """Settings read ./.env: a developer's own must not change what a test sees."""
    if "MICRO_ENV_FILE" not in __import__("os").environ:
        monkeypatch.setenv("MICRO_ENV_FILE", str(tmp_path_factory.getbasetemp() / "absent.env"))


@pytest.fixture(scope="session")
def market_bars():
    """Six weeks of the synthetic market (about 43k M1 bars)."""
    return generate_bars(SyntheticMarketConfig(weeks=6, seed=11))


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory):
    """A data directory holding the embedded default (`micro data demo`).
    Shared read-only by the service tests: they write only to their own volumes."""
    directory = tmp_path_factory.mktemp("demo-data")
    assert data_cli(["--db", str(directory / "market.duckdb"), "--quiet", "demo"]) == 0
    return directory


@pytest.fixture(scope="session")
def features(data_dir):
    return load_feature_set(data_dir / "market.duckdb", "GBPJPY")

