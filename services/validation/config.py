"""The validation service's settings, from the environment, validated at start."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class ValidationSettings(BaseSettings):
    """Every variable is VALIDATION_<NAME> unless noted."""

    model_config = SettingsConfigDict(env_prefix="VALIDATION_", extra="ignore", frozen=True)

    checkpoint_dir: Path = Field(Path("runtime/checkpoints"), validation_alias=AliasChoices("CHECKPOINT_DIR"))
    data_dir: Path = Field(Path("data"), validation_alias=AliasChoices("MICRO_DATA_DIR"))
    instrument: str = "GBPJPY"
    granularity: str = "M1"
    host: str = "0.0.0.0"
    port: int = Field(8002, ge=1, le=65535)
    simulations: int = Field(50, ge=1, le=1000, description="search simulations per decision, as live")
    mc_runs: int = Field(1000, ge=1)
    seed: int = 0
    max_sessions: int = Field(0, ge=0, description="validate on the first N validation sessions (0: all)")
    timeout_seconds: float = Field(1800.0, gt=0, description="a validation taking longer is recorded as timeout")
    rescan_seconds: float = Field(10.0, gt=0, description="rescan the volume this often, events or not")
    polling: bool = Field(False, description="use watchdog's PollingObserver (volumes without inotify)")
    min_trades: int = Field(20, ge=0)
    min_expectancy_pips: float = 0.0
    min_mc_p5_final_pips: float = 0.0
    max_drawdown_pips: float = Field(1000.0, gt=0)
    score: Literal["quality", "sqn_100", "expectancy_pips", "total_pips"] = "quality"
    selection: Literal["paired_test", "score"] = Field(
        "paired_test", description="beat the champion by a paired test on validation sessions, or by the score")
    max_p_value: float = Field(0.10, gt=0, le=1, description="paired test: the one-sided p must be below this")
    report_test_split: bool = Field(True, description="play a new champion on the test split too (reported, "
                                                      "never used to choose)")
    stall_seconds: float = Field(3600.0, gt=0)
    device: str | None = Field(None, pattern=r"^(cpu|cuda(:\d+)?|mps)$",
                               description="cpu, cuda, cuda:N or mps; default cuda > mps > cpu")
    log_level: str = "INFO"

    @property
    def db_path(self) -> Path:
        return self.data_dir / "market.duckdb"
