"""The live service's settings, from the environment, validated at start.

OANDA credentials are read by shared.oanda (OANDA_TOKEN or OANDA_TOKEN_FILE,
OANDA_ACCOUNT or OANDA_ACCOUNT_FILE, OANDA_ENV) and never kept here, so they
can never reach /status. They are checked here, at start, when the broker or
the feed is OANDA: compose cannot require them (it interpolates the inactive
`oanda` profile too), so this check is what stops a live-oanda without them."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class LiveSettings(BaseSettings):
    """Every variable is LIVE_<NAME> unless noted."""

    # extra="forbid": a keyword the class does not know (a test's LIVE_POLL_SECONDS=... instead of
    # poll_seconds=...) is an error, not silently ignored; environment variables are read by field
    model_config = SettingsConfigDict(env_prefix="LIVE_", extra="forbid", frozen=True)

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
    flatten_stale_seconds: float = Field(600.0, gt=0, description="flatten an open position when no bar came "
                                         "for this long while the market is open")
    flatten_retry_seconds: float = Field(1.0, gt=0, description="first wait before a flatten is tried again")
    flatten_retry_max_seconds: float = Field(30.0, gt=0, description="the cap on that wait (it doubles)")
    stop_loss_pips: float | None = Field(None, gt=0, description="OANDA: a stopLossOnFill this far from each "
                                         "opening fill, so a loss is capped while the service is down; off by default")
    price_bound_pips: float | None = Field(None, gt=0, description="OANDA: opening orders fill no worse than this "
                                           "beyond the quote (closes are never bounded); off by default")
    allow_oanda_with_replay_feed: bool = Field(False, description="tests and benchmarks only: an OANDA broker "
                                               "(never OANDA_ENV=live) fed replayed bars")
    spread_pips: float | None = Field(None, ge=0, description="paper fills; default the instrument's")
    poll_seconds: float = Field(5.0, gt=0, description="OANDA candle poll interval")
    reconcile_seconds: float = Field(300.0, gt=0)
    request_timeout_seconds: float = Field(10.0, gt=0)
    model_wait_seconds: float = Field(5.0, gt=0, description="how often to look for a first promoted model")
    stall_seconds: float = Field(300.0, gt=0)
    log_level: str = "INFO"

    @field_validator("stop_loss_pips", "price_bound_pips", mode="before")
    @classmethod
    def _empty_is_off(cls, value):
        return None if value == "" else value  # compose passes an unset ${VAR:-} as ""

    @model_validator(mode="after")
    def _oanda_credentials_present(self) -> "LiveSettings":
        if self.broker == "oanda" or self.feed == "oanda":
            from shared.oanda import load_credentials

            # Raises OandaConfigError (a ValueError) naming the variable to set; the
            # credentials themselves are dropped here and read again by the service.
            credentials = load_credentials(require_account=self.broker == "oanda")
            if self.broker == "oanda" and self.feed == "replay":
                # replayed bars would trade a real account at replay speed, with the market-hours
                # and staleness guards judged on the replay's clock
                if credentials.environment == "live":
                    raise ValueError("LIVE_BROKER=oanda with LIVE_FEED=replay is refused with OANDA_ENV=live: "
                                     "set LIVE_FEED=oanda")
                if not self.allow_oanda_with_replay_feed:
                    raise ValueError("LIVE_BROKER=oanda needs LIVE_FEED=oanda: a replay feed would trade the account "
                                     "from old bars (tests only: LIVE_ALLOW_OANDA_WITH_REPLAY_FEED=true)")
        if self.flatten_retry_seconds > self.flatten_retry_max_seconds:
            raise ValueError("LIVE_FLATTEN_RETRY_SECONDS must not exceed LIVE_FLATTEN_RETRY_MAX_SECONDS")
        return self

    @property
    def db_path(self) -> Path:
        return self.data_dir / "market.duckdb"

    @property
    def live_dir(self) -> Path:
        return self.checkpoint_dir / "live"
