"""The validation service's settings: its own values and the whole ValidationConfig
(`run`, gate included, under the names they always had: VALIDATION_SIMULATIONS,
VALIDATION_MIN_TRADES, VALIDATION_SELECTION). shared/core/settings.py says where each is read from."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from pydantic import Field

from shared.config import DEVICE_PATTERN, ValidationConfig
from shared.core.settings import Settings


class ValidationSettings(Settings):
    section: ClassVar[str] = "validation"

    run: ValidationConfig = Field(default_factory=ValidationConfig, json_schema_extra={"flatten": True})
    checkpoint_dir: Path = Field(Path("runtime/checkpoints"), description="the shared volume")
    data_dir: Path = Field(Path("data"), description="where market.duckdb lives")
    instrument: str = "GBPJPY"
    instruments: tuple[str, ...] = Field((), description="several instruments, one model (EURUSD,BTCUSD); "
                                         "empty: the one instrument")
    demo_instruments: tuple[str, ...] = Field((), description="the synthetic demo market on these "
                                              "instruments (GBPJPY,BTCUSD); empty: GBPJPY")
    granularity: str = "M1"
    host: str = "0.0.0.0"
    port: int = Field(8002, ge=1, le=65535)
    rescan_seconds: float = Field(10.0, gt=0, description="rescan the volume this often, events or not")
    polling: bool = Field(False, description="use watchdog's PollingObserver (volumes without inotify)")
    report_test_split: bool = Field(True, description="play a new champion on the test split too (reported, "
                                                      "never used to choose)")
    stall_seconds: float = Field(3600.0, gt=0)
    device: str | None = Field(None, pattern=DEVICE_PATTERN, description="cpu, cuda, cuda:N or mps; default cuda > mps > cpu")
    log_level: str = "INFO"

    @property
    def db_path(self) -> Path:
        return self.data_dir / "market.duckdb"
