"""Live decides as validation did: the same model, bars and seeds, the same decision at every bar.

python -m bench.parity [--sessions N] [--split validation|test|train] [--simulations S] [--driver trader|desk]
                       [--lockstep] [--validation-threads T] [--network small|default] [--iterations I] [--seed K]

A model whose decisions depend on the features (`seeded_candidate`: by default the small
networks, seeded, untrained; they trade and hold) plays the first N sessions of the demo market's
split (0: all) twice:
* validation: `shared.env.rollout.evaluate` over the environment with `search_policy`
  (greedy search, no noise, seed 0), the search configured as `validate` configures it;
* live: a fresh `LiveTrader` (`--driver trader`: `on_bar`) or a desk of one instrument (`desk`:
  `LiveDesk.on_bars`, what the service runs) on a fresh paper broker and journal, fed the
  session's bars one at a time by the replay feed, its history the bars before the session,
  `now` each bar's close, the environment's spread, S simulations, one torch thread (as its
  service), no loss cap.
Decision k is at bar start + k (k < L - 1, L the session's bars). At each, the action, the
position after it and the session's P&L marked at the bar's close before deciding must be equal;
the searches' inputs (market and position features) and policies are recorded on both sides, so a
mismatch says why (`cause`).

How a session ends: the environment closes what is open at the close of its last bar (bid/ask,
no decision there). Live has no session: the bench turns the kill switch on (control/live.flatten)
before the last bar, so the trader flattens reduce-only at that bar's close through the paper
broker, at the same price, and decides nothing. The session's P&L is then compared three ways on
the live side (the trader's book, the paper broker's realised pips, the journal's realised sum).

P&L tolerance: 1e-9 pips. Both sides book through the same numba accounting
(shared.core.accounting) at prices computed by the same arithmetic, so they are equal to the
bit unless the prices differ; the smallest real difference is a price tick (0.1 pip at GBPJPY).

By default validation plays one session at a time on one thread: its network calls then have
live's shapes, so the float arithmetic is the same and any mismatch is a real difference. With
`--lockstep` (and `--validation-threads`) it runs as the validation service does: up to 64
sessions per network call, on OMP_NUM_THREADS threads. CPU BLAS sums in another order for another
batch size or thread count (a matmul's rows differ in the last bits between batch 64 and 1; the
latent state by up to 2e-6), the search's min-max normalisation of Q values amplifies that, and
where the root is a near tie (measured: an improved policy of 0.4994 / 0.5006 for HOLD / CLOSE)
the greedy choice flips; the session then goes its own way. Measured with the default networks
(seed 6), 6 sessions, 50 simulations, lockstep on 2 threads: one flip in 2,154 decisions.

Last line is JSON: {"bench": "parity", "split", "driver", "instruments", "network", "simulations",
"lockstep", "validation_threads", "sessions", "bars", "decisions", "mismatches", "mismatched_sessions",
"trades_validation", "trades_live", "pnl_validation_pips", "pnl_live_pips", "max_temporal_diff",
"max_static_diff", "actions_validation", "first_mismatch", "seconds"}.
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
import time
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import torch

from shared.cli.data import DEMO_MARKET
from shared.config import NetworkConfig, RiskConfig, TrainingConfig
from shared.core.instruments import get_instrument
from shared.data.bars import Bars
from shared.data.store import BarStore
from shared.data.synthetic import generate_bars
from shared.env import TradingEnv
from shared.env.rollout import evaluate
from shared.features.store import FeatureSet, build_feature_store, load_feature_set
from shared.live.brokers.paper import PaperBroker
from shared.live.desk import LiveDesk
from shared.live.feeds import ReplayFeed
from shared.live.journal import Journal
from shared.live.trader import Decision, LiveTrader
from shared.search import NetworkSearch, search_policy
from shared.training.trainer import Trainer
from shared.volume.candidates import Candidate, load_candidate

SEED = 0                  # validation's (ValidationConfig.seed) and live's (SEARCH_SEED) search seed
PNL_TOLERANCE_PIPS = 1e-9
NO_CAPS = RiskConfig(max_daily_loss_pips=1e9, max_spread_pips=1e9)  # no loss cap or spread guard stands live aside
SMALL = NetworkConfig(tcn_channels=16, hidden=32, dropout=0.0)      # fast, and its choices follow the features


@dataclass
class SearchCall:
    """What one search call was given, and what it said."""
    temporal: np.ndarray     # [B, W, F] float32 the market features of each root
    static: np.ndarray       # [B, 6] float32 their position features
    pnl_pips: np.ndarray     # [B] float64 each account's P&L at that moment (marked at the bar's close, before deciding)
    improved: np.ndarray     # [B, A] float32 the search's policy (gumbel: the improved policy): how near a tie it was


class SearchSpy:
    """A search that records every call (`pnl_pips`: the accounts' P&L, read as it is called)."""

    def __init__(self, search: NetworkSearch, pnl_pips: Callable[[], np.ndarray]) -> None:
        self.search, self.pnl_pips = search, pnl_pips
        self.calls: list[SearchCall] = []

    def __getattr__(self, name: str):
        return getattr(self.search, name)

    def run(self, temporal, static, legal, positions, seeds, *, add_noise):
        pnl = np.array(self.pnl_pips(), np.float64)
        result = self.search.run(temporal, static, legal, positions, seeds, add_noise=add_noise)
        self.calls.append(SearchCall(temporal.copy(), static.copy(), pnl, result.policy_target.copy()))
        return result


@dataclass
class Played:
    """One side's play of one session: decision k at bar start + k, k < D = episode_bars - 1."""
    actions: np.ndarray      # [D] int64 action index (live: HOLD where it did not decide)
    positions: np.ndarray    # [D] int64 units after the decision
    pnl_pips: np.ndarray     # [D] float64 the session's P&L so far, marked at the bar's close, before deciding
    temporal: np.ndarray     # [D, W, F] float32 what the search was given (NaN where live did not search)
    static: np.ndarray       # [D, 6] float32 its position features
    improved: np.ndarray     # [D, A] float32 what the search said
    final_pnl_pips: float    # after the close at the session's last bar
    trades: int              # closed trades
    skipped: list[str] = field(default_factory=list)  # live: [D] why a bar was not decided ("" where it was)
    final_position: int = 0
    other_pnl_pips: dict[str, float] = field(default_factory=dict)  # live: the broker's and the journal's


def seeded_candidate(features: FeatureSet, root: Path, *, iterations: int = 0, seed: int = 1,
                     network: NetworkConfig = SMALL) -> Candidate:
    """`network`, initialised with `seed`, after `iterations` training iterations of 8 episodes.
    The defaults (the small networks, seed 1, untrained) both trade and hold on the demo market's
    validation sessions, on what they see: 2 to 40 trades a session at 10 or 50 simulations
    (one training iteration mostly collapses them to always HOLD or to churning)."""
    trainer = Trainer(features, root, TrainingConfig(seed=seed, network=network, episodes_per_iteration=8))
    for _ in range(iterations):
        trainer.run_iteration()
    trainer.episode = max(trainer.episode, 1)
    name = trainer.write_checkpoint()
    trainer.close()
    return load_candidate(root / "training" / name)


def play_validation(candidate: Candidate, features: FeatureSet, starts: np.ndarray, simulations: int, *,
                    lockstep: bool = False) -> list[Played]:
    """Validation's evaluation of `starts`, recording every decision: one session at a time (the
    shapes live searches with), or `lockstep` as `validate` runs them (a search sized for up to 64
    roots, the sessions in lockstep groups of 64)."""
    env = TradingEnv(features, candidate.env_config)
    batch = min(64, len(starts)) if lockstep else 1
    search = SearchSpy(NetworkSearch(candidate.model, batch, env.space,
                                     replace(candidate.search_config, simulations=simulations)),
                       lambda: env.book.equity_pips())
    choose = search_policy(search, SEED)
    chosen = []  # per step: (positions before [B], actions [B])

    def recording(obs):
        actions = choose(obs)
        chosen.append((obs.position.astype(np.int64), actions))
        return actions

    evaluation = evaluate(env, recording, starts, batch=batch)
    decisions = env.steps_per_episode
    played = []
    for i in range(len(starts)):
        group, row = divmod(i, batch)
        steps = slice(group * decisions, (group + 1) * decisions)
        calls, picks = search.calls[steps], chosen[steps]
        actions = np.array([p[1][row] for p in picks], np.int64)
        before = np.array([p[0][row] for p in picks], np.int64)
        after = np.append(before[1:], env.space.next_position(before[-1:].astype(np.int8), actions[-1:]))
        played.append(Played(actions, after.astype(np.int64), np.array([c.pnl_pips[row] for c in calls]),
                             np.stack([c.temporal[row] for c in calls]), np.stack([c.static[row] for c in calls]),
                             np.stack([c.improved[row] for c in calls]), float(evaluation.episode_pnl_pips[i]),
                             int((evaluation.trade_session == i).sum())))
    return played


def session_spread_pips(candidate: Candidate, features: FeatureSet, start: int) -> float:
    """The spread the environment fills this session at (EnvConfig.spread_pips or the instrument's)."""
    env = TradingEnv(features, candidate.env_config)
    env.reset(np.array([start]))
    return float(env.spread_pips[0])


def play_live(candidate: Candidate, features: FeatureSet, start: int, simulations: int, workdir: Path, *,
              bars: Bars | None = None, driver: str = "trader") -> Played:
    """The live trader on a fresh paper account and journal over the session at `start` (the
    replay feed of `bars`, default the feature set's), closed by the kill switch at its last bar."""
    name = features.instrument_names[0]
    instrument = get_instrument(name)
    spread = session_spread_pips(candidate, features, start)
    feed = ReplayFeed(features.bars if bars is None else bars, start, granularity=features.granularity)
    control = workdir / "control"
    control.mkdir(parents=True)
    broker = PaperBroker(workdir / "paper.json", spread_pips=spread, pip_size=instrument.pip_size, unit=instrument.unit)
    journal = Journal(workdir / "journal.duckdb")
    common = dict(simulations=simulations, risk=NO_CAPS, control_dir=control, granularity=features.granularity)
    if driver == "desk":  # what the service runs: a desk, here of one instrument
        desk = LiveDesk.build(candidate, broker, journal, {name: feed.history()}, spreads={name: spread}, **common)
        trader = desk.traders[name]
        spy = desk.search = SearchSpy(desk.search, lambda: trader.book.equity_pips())

        def decide(bar, now):
            return desk.on_bars({name: bar}, now, {name: feed.last_spread_pips})[name]
    else:
        trader = LiveTrader(name, broker, journal, candidate, feed.history(), spread_pips=spread, **common)
        spy = trader.search = SearchSpy(trader.search, lambda: trader.book.equity_pips())

        def decide(bar, now):
            return trader.on_bar(bar, now, feed.last_spread_pips)
    trader.reconcile()
    space = trader.space
    steps = candidate.env_config.episode_bars - 1
    window, width = trader.window_bars, features.features.shape[1]
    actions, positions = np.zeros(steps, np.int64), np.zeros(steps, np.int64)
    pnl, temporal = np.full(steps, np.nan), np.full((steps, window, width), np.nan, np.float32)
    static, improved = np.full((steps, 6), np.nan, np.float32), np.full((steps, space.num_actions), np.nan, np.float32)
    skipped = [""] * steps

    def next_bar() -> Decision:  # now: the bar's close, as the replay feed's clock says
        bar = feed.next_bars()
        return decide(bar, datetime.fromtimestamp(feed.now_ns() / 1e9, timezone.utc))

    for k in range(steps):
        searched = len(spy.calls)
        decision = next_bar()
        actions[k], positions[k] = space.actions.index(decision.action), trader.position
        if len(spy.calls) > searched:
            call = spy.calls[-1]
            temporal[k], static[k], pnl[k], improved[k] = call.temporal[0], call.static[0], call.pnl_pips[0], call.improved[0]
        else:
            skipped[k] = f"{decision.status}: {decision.reason}"
    (control / "live.flatten").touch()  # the session's last bar: the environment closes what is open at its close
    next_bar()
    others = {"broker": broker.realized_pips, "journal": journal.realized_since(pd.Timestamp(0))}
    played = Played(actions, positions, pnl, temporal, static, improved, float(trader.book.equity_pips()[0]),
                    int(trader.book.trades[0]), skipped, trader.position, others)
    journal.close()
    return played


@dataclass
class ParityReport:
    sessions: int
    bars: int                 # every bar of every session: its decisions and the bar it closes at
    decisions: int
    mismatches: int           # bars where the action, the position or the P&L differ
    mismatched_sessions: int  # sessions with one (after a first one a session goes its own way)
    trades_validation: int
    trades_live: int
    pnl_validation_pips: float
    pnl_live_pips: float
    max_temporal_diff: float  # the largest difference in the searches' market features
    max_static_diff: float    # ... and in their position features
    actions_validation: dict[str, int]  # how often validation chose each action: that the model trades and holds
    first_mismatch: dict | None = None

    def to_dict(self) -> dict:
        return {**self.__dict__, "pnl_validation_pips": round(self.pnl_validation_pips, 6),
                "pnl_live_pips": round(self.pnl_live_pips, 6)}


def _cause(v: Played, live: Played, k: int) -> str:
    """Why decision k differs, from what the two searches were given."""
    if live.skipped[k]:
        return f"live did not decide ({live.skipped[k]})"
    if np.any(v.temporal[k] != live.temporal[k]):
        return "the market features differ"
    if np.any(v.static[k] != live.static[k]) or not abs(v.pnl_pips[k] - live.pnl_pips[k]) <= PNL_TOLERANCE_PIPS:
        return "the position or its P&L differ (an earlier decision or fill)"
    if v.actions[k] != live.actions[k]:
        return "equal inputs, another choice: the search (its settings, or its float arithmetic at a near tie)"
    return "the same action, another position: live's order or its fill"


def session_mismatches(v: Played, live: Played, start: int, features: FeatureSet, action_names) -> list[dict]:
    """Every bar of one session where the two differ ([validation, live] in each pair): its
    decisions, then its closing bar."""
    out = []
    for k in np.flatnonzero((v.actions != live.actions) | (v.positions != live.positions)
                            | ~(np.abs(v.pnl_pips - live.pnl_pips) <= PNL_TOLERANCE_PIPS)):
        out.append({
            "start": int(start), "step": int(k), "bar_time": str(pd.Timestamp(int(features.bars.ts[start + k]))),
            "cause": _cause(v, live, k),
            "action": [action_names[v.actions[k]], action_names[live.actions[k]]],
            "position": [int(v.positions[k]), int(live.positions[k])],
            "pnl_pips": [float(v.pnl_pips[k]), float(live.pnl_pips[k])],
            "search_policy": [np.round(v.improved[k], 6).tolist(), np.round(live.improved[k], 6).tolist()],
            "temporal_diff": float(np.max(np.abs(v.temporal[k] - live.temporal[k]))),
            "static_diff": float(np.max(np.abs(v.static[k] - live.static[k])))})
    finals = [live.final_pnl_pips, *live.other_pnl_pips.values()]
    if live.final_position != 0 or any(not abs(v.final_pnl_pips - p) <= PNL_TOLERANCE_PIPS for p in finals):
        out.append({"start": int(start), "step": len(v.actions), "bar_time": "session close",
                    "cause": "the session's P&L differs, or live is not flat",
                    "final_pnl_pips": [v.final_pnl_pips, live.final_pnl_pips], "live_other_pnl": live.other_pnl_pips,
                    "live_final_position": live.final_position})
    return out


def input_diff(v: Played, live: Played, inputs: str) -> float:
    """The largest difference between the searches' `inputs` ("temporal": the market's features,
    "static": the position's, which differ once the positions do), bars live did not search left out."""
    searched = ~np.isnan(live.static).any(axis=1)
    if not searched.any():
        return 0.0
    return float(np.abs(getattr(v, inputs)[searched] - getattr(live, inputs)[searched]).max())


def compare(candidate: Candidate, features: FeatureSet, starts: np.ndarray, workdir: Path, *, simulations: int,
            driver: str = "trader", lockstep: bool = False, validation_threads: int | None = None,
            live_simulations: int | None = None, live_bars: Bars | None = None) -> ParityReport:
    """Play `starts` in validation and live and compare them bar by bar. Live decides on one torch
    thread, as its service does; validation one session at a time on the same thread (the same
    float arithmetic), or `lockstep` and on `validation_threads` as its service runs (module
    docstring). `live_simulations` and `live_bars` (default: the same) show that the comparison
    can fail."""
    starts = np.asarray(starts, np.int64)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(validation_threads or 1)
        validation = play_validation(candidate, features, starts, simulations, lockstep=lockstep)
        torch.set_num_threads(1)
        live_runs = [play_live(candidate, features, int(start), live_simulations or simulations,
                               workdir / f"session-{i}", bars=live_bars, driver=driver) for i, start in enumerate(starts)]
    finally:
        torch.set_num_threads(threads)
    names = TradingEnv(features, candidate.env_config).space.actions
    found = [session_mismatches(v, lv, int(start), features, names) for v, lv, start in zip(validation, live_runs, starts)]
    mismatches = [m for session in found for m in session]
    runs = list(zip(validation, live_runs))
    return ParityReport(
        sessions=len(starts), bars=len(starts) * candidate.env_config.episode_bars,
        decisions=sum(len(v.actions) for v in validation), mismatches=len(mismatches),
        mismatched_sessions=sum(bool(session) for session in found),
        trades_validation=sum(v.trades for v in validation), trades_live=sum(lv.trades for lv in live_runs),
        pnl_validation_pips=sum(v.final_pnl_pips for v in validation),
        pnl_live_pips=sum(lv.final_pnl_pips for lv in live_runs),
        max_temporal_diff=max(input_diff(v, lv, "temporal") for v, lv in runs),
        max_static_diff=max(input_diff(v, lv, "static") for v, lv in runs),
        actions_validation={name: int(sum((v.actions == a).sum() for v in validation)) for a, name in enumerate(names)},
        first_mismatch=mismatches[0] if mismatches else None)


def demo_features(root: Path) -> FeatureSet:
    """The demo market (`micro data demo`) in a store under `root`, its feature set."""
    db = root / "market.duckdb"
    with BarStore(db) as store:
        store.upsert(DEMO_MARKET.instrument, "M1", generate_bars(DEMO_MARKET))
    build_feature_store(db, DEMO_MARKET.instrument, progress=False)
    return load_feature_set(db, DEMO_MARKET.instrument)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sessions", type=int, default=4, help="the first N sessions of the split (0: all)")
    parser.add_argument("--split", choices=("validation", "test", "train"), default="validation")
    parser.add_argument("--simulations", type=int, default=50, help="validation's and live's (the services' default)")
    parser.add_argument("--driver", choices=("trader", "desk"), default="trader")
    parser.add_argument("--iterations", type=int, default=0, help="training iterations of the small model")
    parser.add_argument("--seed", type=int, default=1, help="the small model's initialisation and training seed")
    parser.add_argument("--network", choices=("small", "default"), default="small",
                        help="the small networks, or the services' default ones (NetworkConfig())")
    parser.add_argument("--lockstep", action="store_true",
                        help="validation as validate runs it: up to 64 sessions per search call (module docstring)")
    parser.add_argument("--validation-threads", type=int, default=1, help="torch threads validation searches on")
    args = parser.parse_args()
    torch.set_num_threads(1)  # as the live service decides
    logging.getLogger("live").setLevel(logging.ERROR)  # each session's closing flatten logs a warning
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="parity-") as tmp:
        root = Path(tmp)
        features = demo_features(root)
        network = SMALL if args.network == "small" else NetworkConfig()
        candidate = seeded_candidate(features, root / "checkpoints", iterations=args.iterations, seed=args.seed,
                                    network=network)
        starts = features.require_sessions(args.split)[: args.sessions or None]
        report = compare(candidate, features, starts, root / "live", simulations=args.simulations, driver=args.driver,
                         lockstep=args.lockstep, validation_threads=args.validation_threads)
    line = {"bench": "parity", "split": args.split, "driver": args.driver, "instruments": list(features.instrument_names),
            "network": args.network, "simulations": args.simulations, "lockstep": args.lockstep,
            "validation_threads": args.validation_threads,
            **report.to_dict(), "seconds": round(time.monotonic() - started, 1)}
    print(json.dumps(line), flush=True)


if __name__ == "__main__":
    main()
