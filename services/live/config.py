"""The live service's settings, from the environment, validated at start.

OANDA credentials are read by shared.oanda (OANDA_TOKEN or OANDA_TOKEN_FILE,
OANDA_ACCOUNT or OANDA_ACCOUNT_FILE, OANDA_ENV) and never kept here, so they
can never reach /status. They are checked here, at start, when the broker or
the feed is OANDA: compose cannot require them (it interpolates the inactive
`oanda` profile too), so this check is what stops a live-oanda without them."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class LiveSettings(BaseSettings):
    """Every variable is LIVE_<NAME> unless noted."""

    model_config = SettingsConfigDict(env_prefix="LIVE_", extra="ignore", frozen=True)

    checkpoint_dir: Path = Field(Path("runtime/checkpoints"), validation_alias=AliasChoices("CHECKPOINT_DIR"))
    data_dir: Path = Field(Path("data"), validation_alias=AliasChoices("MICRO_DATA_DIR"))
    instrument: str = "GBPJPY"
    host: str = "0.0.0.0"
    port: int = Field(8003, ge=1, le=65535)
    broker: Literal["paper", "oanda"] = "paper"
    feed: Literal["replay", "oanda"] = "replay"
    replay_bars_per_second: float = Field(2.0, ge=0, description="replay speed; 0 = as fast as possible")
    replay_split: Literal["validation", "test"] = "test"
    simulations: int = Field(50, ge=1, le=1000)
    max_units: int = Field(1, ge=1)
    max_daily_loss_pips: float = Field(100.0, gt=0)
    max_spread_pips: float = Field(8.0, gt=0)
    stale_bars: int = Field(2, ge=1)
    spread_pips: float | None = Field(None, ge=0, description="paper fills; default the instrument's")
    poll_seconds: float = Field(5.0, gt=0, description="OANDA candle poll interval")
    reconcile_seconds: float = Field(300.0, gt=0)
    request_timeout_seconds: float = Field(10.0, gt=0)
    model_wait_seconds: float = Field(5.0, gt=0, description="how often to look for a first promoted model")
    stall_seconds: float = Field(300.0, gt=0)
    log_level: str = "INFO"

    @model_validator(mode="after")
    def _oanda_credentials_present(self) -> "LiveSettings":
        if self.broker == "oanda" or self.feed == "oanda":
            from shared.oanda import load_credentials

            # Raises OandaConfigError (a ValueError) naming the variable to set; the
            # credentials themselves are dropped here and read again by the service.
            load_credentials(require_account=self.broker == "oanda")
        return self

    @property
    def db_path(self) -> Path:
        return self.data_dir / "market.duckdb"

    @property
    def live_dir(self) -> Path:
        return self.checkpoint_dir / "live"
