"""Live decision latency: bar in -> features -> search -> order decision -> journal.

python -m bench.live [--decisions N] [--simulations S] [--under-load] [--instruments K]

The full default networks (a freshly written checkpoint loaded through the
same verified loader), 50 simulations, one torch thread, the paper broker and
the replay feed over the embedded synthetic market; N decisions after a
warm-up of 20, at normal priority as the live service runs. A JSON line:
{"bench": "live", "under_load": false, "sims": S, "p50_ms", "p99_ms"}.

--under-load then starts training and validation as `make up` runs them
(deploy.local's Stack: compose's commands and environment, nice 10, torch
threads capped to the CPUs) on the same market, waits until training has
written a candidate and validation is validating it, and measures again: a
second line with "under_load": true. Target: its p99 <= 2x the quiet p99.

--instruments K instead measures the desk (shared.live.desk: one trader per
instrument, one search call per bar time for all of them): K instruments of
the instrument table, FX pairs first, then crypto, a synthetic market each, one
model trained on all of them; a desk of the first instrument alone, then a desk
of all K, in the same run, N bar times each at which every instrument decided.
A line each: {"bench": "live", "instruments": 1 or K, "sims", "decisions",
"p50_ms", "p99_ms"}, the latency of one bar time's decisions for all K together
(bar in to the last order out). Target: p99 for K <= 2x p99 for 1.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import httpx
import numpy as np
import torch

from shared.cli.data import DEMO_MARKET
from shared.config import RiskConfig, SyntheticMarketConfig, TrainingConfig
from shared.core.instruments import INSTRUMENTS
from shared.data.store import BarStore
from shared.data.synthetic import generate_bars, synthetic_market_for
from shared.features.portfolio import load_market
from shared.features.store import build_feature_store, load_feature_set
from shared.live.brokers.paper import PaperBroker
from shared.live.desk import LiveDesk
from shared.live.feeds import DeskFeed, ReplayFeed
from shared.live.journal import Journal
from shared.live.provenance import TreeStore
from shared.live.trader import LiveTrader
from shared.service.runtime import tune_process
from shared.training.trainer import Trainer
from shared.volume.candidates import load_candidate

TREES_KEPT = 1000  # the service's default (LIVE_TREES_KEPT): trees are written as live writes them


def measure(trader: LiveTrader, feed: ReplayFeed, decisions: int) -> np.ndarray:
    """Latency in ms of `decisions` decisions after a warm-up of 20."""
    latencies = []
    while len(latencies) < decisions + 20:
        if feed.exhausted:
            raise SystemExit("the replay ran out of bars")
        decision = trader.on_bar(feed.next_bars(), datetime.fromtimestamp(feed.now_ns() / 1e9, timezone.utc))
        if decision.status != "skipped":
            latencies.append(decision.latency_seconds)
    return np.asarray(latencies[20:]) * 1000


def report(ms: np.ndarray, sims: int, under_load: bool, instruments: int | None = None) -> None:
    line = {"bench": "live"} | ({} if instruments is None else {"instruments": instruments})
    print(json.dumps(line | {"under_load": under_load, "sims": sims, "decisions": len(ms),
                             "p50_ms": round(float(np.percentile(ms, 50)), 2),
                             "p99_ms": round(float(np.percentile(ms, 99)), 2)}), flush=True)


def table_instruments(k: int) -> tuple[str, ...]:
    """The first `k` instruments of the table: FX pairs, then crypto."""
    names = [name for kind in ("fx", "crypto") for name, inst in INSTRUMENTS.items() if inst.kind == kind]
    if k > len(names):
        raise SystemExit(f"the instrument table has {len(names)} FX and crypto instruments, not {k}")
    return tuple(names[:k])


def measure_desk(desk: LiveDesk, feed: DeskFeed, decisions: int) -> np.ndarray:
    """Latency in ms of `decisions` bar times at which every instrument of the desk decided,
    after a warm-up of 20 (one search call each)."""
    latencies = []
    while len(latencies) < decisions + 20:
        if feed.exhausted:
            raise SystemExit("the replay ran out of bars")
        bars = feed.next_bars()
        now = datetime.fromtimestamp(feed.now_ns() / 1e9, timezone.utc)
        started = time.perf_counter()
        out = desk.on_bars(bars, now)
        elapsed = time.perf_counter() - started
        if len(out) == len(desk.traders) and all(d.status not in ("skipped", "duplicate") for d in out.values()):
            latencies.append(elapsed)
    return np.asarray(latencies[20:]) * 1000


def desk_run(root: Path, names: tuple[str, ...], candidate, features: dict, simulations: int,
             decisions: int) -> np.ndarray:
    """A desk of `names` on a fresh paper account and journal, replayed from the same bar time."""
    starts = {name: int(features[name].sessions["validation"][0]) for name in names}
    first_ns = max(int(features[name].bars.ts[start]) for name, start in starts.items())
    feed = DeskFeed({name: ReplayFeed(features[name].bars, int(np.searchsorted(features[name].bars.ts, first_ns)))
                     for name in names})
    here = root / f"desk-{len(names)}"
    broker = PaperBroker.account(here / "paper.json", {name: None for name in names},
                                 fixed_rates={c: 1.0 for c in ("JPY", "CAD", "CHF", "GBP", "USDT")})
    # the bench times decisions: no risk limit may stand the desk aside
    risk = RiskConfig(max_daily_loss_pips=1e9, max_spread_pips=1e9)
    desk = LiveDesk.build(candidate, broker, Journal(here / "journal.duckdb"),
                          {name: feed.history(name) for name in names}, simulations=simulations, risk=risk,
                          trees=TreeStore(here / "trees", TREES_KEPT))
    for trader in desk.traders.values():
        trader.reconcile()
    return measure_desk(desk, feed, decisions)


def bench_instruments(root: Path, k: int, simulations: int, decisions: int) -> None:
    names = table_instruments(k)
    db = root / "data" / "market.duckdb"
    db.parent.mkdir(parents=True, exist_ok=True)
    for i, name in enumerate(names):
        with BarStore(db) as store:
            store.upsert(name, "M1", generate_bars(synthetic_market_for(name, weeks=8, seed=7 + i)))
        build_feature_store(db, name, progress=False)
    features = {name: load_feature_set(db, name) for name in names}
    trainer = Trainer(load_market(db, names), root / "checkpoints", TrainingConfig())
    trainer.episode = 64
    candidate = load_candidate(root / "checkpoints" / "training" / trainer.write_checkpoint())
    trainer.close()
    for group in (names[:1], names):
        report(desk_run(root, group, candidate, features, simulations, decisions), simulations, False, len(group))


def start_training_and_validation(root: Path, data: Path):
    """Training and validation as `make up` runs them, on this market; returns the stack
    once training has written a candidate and validation has started on it."""
    from bench.chaos import free_port
    from deploy.compose_file import load_specs
    from deploy.local import ROOT, Stack

    specs = load_specs(ROOT / "docker-compose.yml", root / "runtime", data, {})
    for name in ("training", "validation"):
        specs[name].port = free_port()
        specs[name].environment[f"{name.upper()}_PORT"] = str(specs[name].port)
    stack = Stack(specs, root / "runtime" / "logs")
    stack.start_all(("training", "validation"))
    status = f"http://127.0.0.1:{specs['validation'].port}/status"
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        stack.supervise()
        try:
            if httpx.get(status, timeout=2.0).json().get("status") == "validating":
                return stack
        except (httpx.HTTPError, ValueError):
            pass
        time.sleep(1.0)
    stack.stop()
    raise SystemExit(f"validation never started on a candidate; see {stack.logs}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--decisions", type=int, default=1000)
    parser.add_argument("--simulations", type=int, default=50)
    parser.add_argument("--under-load", action="store_true", help="then again while training and validation run")
    parser.add_argument("--instruments", type=int, default=0,
                        help="the desk: 1 instrument, then this many, one search call per bar time")
    args = parser.parse_args()
    tune_process()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        if args.instruments:
            bench_instruments(root, args.instruments, args.simulations, args.decisions)
            return
        data = root / "data"
        data.mkdir()
        db = data / "market.duckdb"
        market = SyntheticMarketConfig(**{**DEMO_MARKET.to_dict(), "weeks": 16})
        with BarStore(db) as store:
            store.upsert(market.instrument, "M1", generate_bars(market))
        build_feature_store(db, market.instrument, progress=False)
        features = load_feature_set(db, market.instrument)
        trainer = Trainer(features, root / "checkpoints", TrainingConfig())
        trainer.episode = 64
        candidate = load_candidate(root / "checkpoints" / "training" / trainer.write_checkpoint())
        trainer.close()
        start = int(features.sessions["validation"][0])
        feed = ReplayFeed(features.bars, start)
        trader = LiveTrader(market.instrument, PaperBroker(root / "paper.json", spread_pips=4.0, pip_size=0.01),
                            Journal(root / "journal.duckdb"), candidate, feed.history(), simulations=args.simulations,
                            trees=TreeStore(root / "trees", TREES_KEPT))
        trader.reconcile()
        report(measure(trader, feed, args.decisions), args.simulations, under_load=False)
        if args.under_load:
            stack = start_training_and_validation(root, data)
            try:
                report(measure(trader, feed, args.decisions), args.simulations, under_load=True)
            finally:
                stack.stop()

if __name__ == "__main__":
    main()
