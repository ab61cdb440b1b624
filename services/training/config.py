"""The training service's settings, from the environment, validated at start."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class TrainingSettings(BaseSettings):
    """Every variable is TRAINING_<NAME> unless noted."""

    model_config = SettingsConfigDict(env_prefix="TRAINING_", extra="ignore", frozen=True)

    checkpoint_dir: Path = Field(Path("runtime/checkpoints"), validation_alias=AliasChoices("CHECKPOINT_DIR"),
                                 description="the shared volume (CHECKPOINT_DIR)")
    data_dir: Path = Field(Path("data"), validation_alias=AliasChoices("MICRO_DATA_DIR"),
                           description="where market.duckdb lives (MICRO_DATA_DIR)")
    instrument: str = "GBPJPY"
    granularity: str = "M1"
    host: str = "0.0.0.0"
    port: int = Field(8001, ge=1, le=65535)
    episodes_per_iteration: int = Field(64, ge=1, description="episodes played in lockstep")
    checkpoint_interval_episodes: int = Field(50, ge=1)
    keep_checkpoints: int = Field(5, ge=1)
    simulations: int = Field(5, ge=1, le=1000)
    root_selection: Literal["puct", "gumbel"] = Field(
        "gumbel", description="the search's root rule: Gumbel MuZero, or pUCT with Dirichlet noise (docs/learning.md)")
    epsilon: float = Field(0.05, ge=0, le=1, description="self-play's chance of a uniformly random action")
    reward: Literal["pnl", "amddp1"] = "pnl"
    action_space: Literal["hold_buy_sell_close", "sized_positions"] = Field(
        "hold_buy_sell_close", description="HOLD/BUY/SELL/CLOSE of one unit, or target positions of -3..+3 units")
    learner_steps_per_episode: float = Field(1.0, ge=0)
    seed: int = 0
    max_episodes: int = Field(0, ge=0, description="stop training after this many episodes (0: never)")
    stall_seconds: float = Field(900.0, gt=0, description="exit non-zero when the loop has not beaten for this long")
    device: str | None = Field(None, pattern=r"^(cpu|cuda(:\d+)?|mps)$",
                               description="cpu, cuda, cuda:N or mps; default cuda > mps > cpu")
    log_level: str = "INFO"

    @property
    def db_path(self) -> Path:
        return self.data_dir / "market.duckdb"
