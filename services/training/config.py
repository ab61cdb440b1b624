"""The training service's settings: its own values and the whole TrainingConfig
(`run`, whose fields keep their own names: TRAINING_LEARNER__LEARNING_RATE,
TRAINING_SEARCH__SIMULATIONS, TRAINING_EPISODES_PER_ITERATION). shared/core/settings.py
says where each is read from."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from pydantic import Field

from shared.config import DEVICE_PATTERN, TrainingConfig
from shared.core.settings import Settings


class TrainingSettings(Settings):
    section: ClassVar[str] = "training"

    run: TrainingConfig = Field(default_factory=TrainingConfig, json_schema_extra={"flatten": True})
    checkpoint_dir: Path = Field(Path("runtime/checkpoints"), description="the shared volume")
    data_dir: Path = Field(Path("data"), description="where market.duckdb lives")
    instrument: str = "GBPJPY"
    instruments: tuple[str, ...] = Field((), description="several instruments, one model (EURUSD,BTCUSD); "
                                         "empty: the one instrument")
    demo_instruments: tuple[str, ...] = Field((), description="the synthetic demo market on these "
                                              "instruments (GBPJPY,BTCUSD); empty: GBPJPY")
    granularity: str = "M1"
    host: str = "0.0.0.0"
    port: int = Field(8001, ge=1, le=65535)
    max_episodes: int = Field(0, ge=0, description="stop training after this many episodes (0: never)")
    stall_seconds: float = Field(900.0, gt=0, description="exit non-zero when the loop has not beaten for this long")
    device: str | None = Field(None, pattern=DEVICE_PATTERN, description="cpu, cuda, cuda:N or mps; default cuda > mps > cpu")
    cpus: int = Field(2, ge=1, description="docker-compose.yml's CPU limit for this container "
                      "(the service reads its cores from its cgroup)")
    log_level: str = "INFO"

    @property
    def db_path(self) -> Path:
        return self.data_dir / "market.duckdb"
