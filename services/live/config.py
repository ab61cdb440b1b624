"""The live service's settings, from the environment, validated at start.

OANDA credentials are read by shared.core.oanda (OANDA_TOKEN or OANDA_TOKEN_FILE,
OANDA_ACCOUNT or OANDA_ACCOUNT_FILE, OANDA_ENV) and never kept here, so they
can never reach /status. They are checked here, at start, when the broker or
the feed is OANDA: compose cannot require them (it interpolates the inactive
`oanda` profile too), so this check is what stops a live-oanda without them."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar, Literal

from pydantic import Field, model_validator

from shared.config import RiskConfig
from shared.core.settings import Settings


class LiveSettings(Settings):
    """The risk limits (`risk`) keep their names: LIVE_MAX_DAILY_LOSS_PIPS, LIVE_MAX_UNITS."""

    section: ClassVar[str] = "live"

    checkpoint_dir: Path = Field(Path("runtime/checkpoints"), description="the shared volume")
    data_dir: Path = Field(Path("data"), description="where market.duckdb lives")
    instrument: str = "GBPJPY"
    instruments: tuple[str, ...] = Field((), description="several instruments, one model (EURUSD,BTCUSD); "
                                         "empty: the one instrument")
    demo_instruments: tuple[str, ...] = Field((), description="the synthetic demo market on these "
                                              "instruments (GBPJPY,BTCUSD); empty: GBPJPY")
    granularity: str = Field("M1", description="the bar size live decides on; a model trained on another is refused")
    host: str = "0.0.0.0"
    port: int = Field(8003, ge=1, le=65535)
    broker: Literal["paper", "oanda"] = "paper"
    feed: Literal["replay", "oanda"] = "replay"
    replay_bars_per_second: float = Field(2.0, ge=0, description="replay speed; 0 = as fast as possible")
    replay_split: Literal["validation", "test"] = "test"
    simulations: int = Field(50, ge=1, le=1000)
    risk: RiskConfig = Field(default_factory=RiskConfig, json_schema_extra={"flatten": True})
    stop_loss_pips: float | None = Field(None, gt=0, description="OANDA: a stopLossOnFill this far from each "
                                         "opening fill, so a loss is capped while the service is down; off by default")
    price_bound_pips: float | None = Field(None, gt=0, description="OANDA: opening orders fill no worse than this "
                                           "beyond the quote (closes are never bounded); off by default")
    allow_oanda_with_replay_feed: bool = Field(False, description="tests and benchmarks only: an OANDA broker "
                                               "(never OANDA_ENV=live) fed replayed bars")
    spread_pips: float | None = Field(None, ge=0, description="paper fills; default the instrument's")
    account_currency: Literal["USD", "EUR", "GBP", "JPY", "CHF", "CAD", "AUD", "NZD", "SGD", "HKD"] = Field(
        "USD", description="the currency account P&L is shown in (one OANDA opens accounts in); each instrument's "
        "quote currency is converted by a traded instrument's mid (USDJPY's for JPY)")
    poll_seconds: float = Field(5.0, gt=0, description="OANDA candle poll interval")
    reconcile_seconds: float = Field(300.0, gt=0)
    request_timeout_seconds: float = Field(10.0, gt=0)
    model_wait_seconds: float = Field(5.0, gt=0, description="how often to look for a first promoted model")
    stall_seconds: float = Field(300.0, gt=0)
    decision_retention_days: float = Field(30.0, gt=0, description="what explains a decision (its inputs, bars "
                                           "and search tree) is dropped after this; the decisions stay")
    trees_kept: int = Field(1000, ge=0, description="search trees kept of decisions without an order (the "
                            "newest); those that sent an order are kept for the retention")
    log_level: str = "INFO"

    @model_validator(mode="after")
    def _oanda_credentials_present(self) -> "LiveSettings":
        if self.broker == "oanda" or self.feed == "oanda":
            from shared.core.oanda import load_credentials

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
        return self

    @model_validator(mode="after")
    def _account_currency_reachable(self) -> "LiveSettings":
        # instruments of your own market add up in the account currency: each one's P&L must convert
        # into it. One instrument needs no sum, and the synthetic demo is no money: where they do
        # not convert, their P&L stays in pips (shown as null in the account currency)
        if len(self.instruments) > 1:
            from shared.live.account import AccountCurrency

            AccountCurrency(self.account_currency, self.instruments)
        return self

    def currency(self):
        """The account currency's converter for the traded instruments, or None where one of them
        does not convert (one instrument, the demo)."""
        from shared.live.account import AccountCurrency, ConversionError

        try:
            return AccountCurrency(self.account_currency, self.traded_instruments)
        except ConversionError:
            return None

    @property
    def db_path(self) -> Path:
        return self.data_dir / "market.duckdb"

    @property
    def live_dir(self) -> Path:
        return self.checkpoint_dir / "live"
