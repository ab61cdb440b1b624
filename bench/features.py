"""Feature throughput: the numba kernels vs the plain pandas reference.

python -m bench.features [--bars N] [--repeats R] [--spec micro-v1|indicators-v1]

Features (9 temporal) and market outcomes for N synthetic GBPJPY M1 bars
(default 1,333,912: the size of the GBPJPY 2022-2025 set of the product
notes). Both sides are warmed up once (numba compiles, caches fill), then
timed R times; the medians are reported. Last line:
{"bench": "features", "bars": N, "seconds": S, "pandas_seconds": P, "speedup": P/S}

--spec indicators-v1 times the 40 product-notes indicators (shared/features/indicators.py)
instead; they have no pandas reference here, so the last line is
{"bench": "features", "spec": "indicators-v1", "bars": N, "seconds": S}
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

from shared.config import SyntheticMarketConfig
from shared.core.feature_spec import FEATURE_SPEC_VERSION, FEATURE_SPECS, INDICATORS_SPEC_VERSION
from shared.core.instruments import get_instrument
from shared.data.synthetic import generate_bars
from shared.features.indicators import indicator_features
from shared.features.micro import market_outcomes, temporal_features
from tests.reference_features import reference_features

PRODUCT_NOTES_BARS = 1_333_912


def _median_seconds(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bars", type=int, default=PRODUCT_NOTES_BARS)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--spec", choices=sorted(FEATURE_SPECS), default=FEATURE_SPEC_VERSION)
    args = parser.parse_args()
    pip = get_instrument("GBPJPY").pip_size
    weeks = args.bars // 7_000 + 2
    bars = generate_bars(SyntheticMarketConfig(weeks=weeks, seed=1), max_bars=args.bars)
    if len(bars) < args.bars:
        raise SystemExit(f"generated only {len(bars)} bars")

    if args.spec == INDICATORS_SPEC_VERSION:
        calendar = get_instrument("GBPJPY").calendar
        seconds = _median_seconds(lambda: indicator_features(bars, calendar), args.repeats)
        print(json.dumps({"bench": "features", "spec": args.spec, "bars": len(bars), "seconds": round(seconds, 4)}))
        return

    def ours() -> None:
        temporal_features(bars, pip)
        market_outcomes(bars, pip)

    seconds = _median_seconds(ours, args.repeats)
    pandas_seconds = _median_seconds(lambda: reference_features(bars, pip), max(3, args.repeats // 2))
    print(json.dumps({"bench": "features", "bars": len(bars), "seconds": round(seconds, 4),
                      "pandas_seconds": round(pandas_seconds, 4), "speedup": round(pandas_seconds / seconds, 1)}))


if __name__ == "__main__":
    main()
