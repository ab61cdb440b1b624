from __future__ import annotations

import pytest

from shared.data.synthetic import SyntheticMarketConfig, generate_bars


@pytest.fixture(scope="session")
def market_bars():
    """Six weeks of the synthetic market (about 43k M1 bars)."""
    return generate_bars(SyntheticMarketConfig(weeks=6, seed=11))
