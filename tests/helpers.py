"""Small builders shared by tests."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from shared.config import SessionConfig
from shared.core.feature_spec import FEATURE_SPEC_VERSION, TEMPORAL_FEATURES
from shared.data.bars import NS_PER_MINUTE, Bars
from shared.features.micro import market_outcomes, temporal_features
from shared.features.store import FeatureSet


def feature_set_from_bars(bars: Bars, sessions: dict[str, np.ndarray] | None = None, instrument: str = "GBPJPY") -> FeatureSet:
    return FeatureSet(
        instrument=instrument,
        granularity="M1",
        feature_spec_version=FEATURE_SPEC_VERSION,
        feature_names=TEMPORAL_FEATURES,
        bars=bars,
        features=temporal_features(bars, 0.01),
        outcomes=market_outcomes(bars, 0.01),
        sessions=sessions or {},
        session_config=SessionConfig(),
    )


def bars_from_closes(closes: list[float], start: str = "2024-01-08 00:00") -> Bars:
    close = np.asarray(closes, dtype=np.float64)
    ts = pd.Timestamp(start).value + np.arange(len(close), dtype=np.int64) * NS_PER_MINUTE
    return Bars(ts, close, close + 0.005, close - 0.005, close, np.ones(len(close)))


@pytest.fixture(scope="module")
def one_torch_thread():
    """Tiny models: on a busy 2-core machine a second thread only contends (300 steps take ~10 s on
    one thread, minutes on two). A module uses it with `pytestmark = pytest.mark.usefixtures(...)`."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
