"""Does the agent learn the planted edge? Measured on a test split nothing selects on.

python -m bench.learning [--episodes N] [--validate-every K] [--seed S] [--quick] [--walk-forward W]
                         [--instrument X] [--granularity G] [--weeks W] [--edge E]
                         [--market-seeds A,B,C --seeds X,Y] [--test-every-candidate]

The default market (`micro data demo`: 12 weeks, edge 0.3, GBPJPY
4-pip spread) and the default networks and training settings of the service.
`--instrument` carries that market to another instrument of the table on its
calendar (BTCUSD: 24/7, 20-pip spread, `synthetic_market_for`), `--granularity`
to another bar size (its session defaults; volatility per bar grows with the
square root of its minutes), `--weeks` sets its length (H1 needs about 40 weeks:
its 1,500-bar warm-up alone is 12.5).
Training runs from scratch for N episodes (seeded). Every K episodes the
newest candidate is validated the way the validation service does it
(validation split, `VALIDATION_SIMULATIONS` of the demo (10), the service's
default gate against the champion); the last champion is then played on the
**test split**, which nothing ever selects on, with live's 50 simulations, and
so is its raw network (no search). Baselines on the same test sessions, through
the same environment and costs (`shared/env/baselines.py`, thresholds tuned on the
train split only): the oracle (the generator's expected drift) and momentum
(past prices only).

--edge sets the planted edge (default the demo's 0.3); `--edge 0` is a null market, nothing to
find: then what counts is that nothing that trades is promoted (`promoted_trading`, over
`validated`), or a champion that loses no more than its costs on test. `--min-trades N` sets the
gate's minimum trades (default the service's 20): `--edge 0 --min-trades 0` asks whether the
gate's other tests alone refuse noise.

--market-seeds / --seeds run the grid: one run per (market seed, training seed), each from
scratch on the demo market drawn with that generator seed; a JSON line per run, then
{"bench": "learning_grid", "runs", "fraction_of_oracle_mean", "fraction_of_oracle_std",
"fraction_of_oracle_min", "search_ahead_runs", "minutes_to_0.9_oracle_median", ...}.
`--set KEY=VALUE` (repeatable) sets any training setting, dotted as the stored config
(`--set learner_steps_per_episode=2 --set learner.learning_rate=1e-3`): a lever under measurement,
recorded in the JSON's `levers`. A lever is chosen on the validation split, never the test split:
`champion_validation_fraction` (the champion's validation P&L over the tuned oracle's there) and
`best_validation_fraction` (the best validated candidate's) are the figures to choose by.
`validation_pips` lists each validated candidate's P&L there, in training order, and
`validation_session_pnl` its P&L per validation session (beside `oracle_validation_session_pnl`,
`validation_episodes` and `validation_passes`: whether it passed the gate's thresholds alone), what
`python -m bench.selection` replays selection rules on. `--test-every-candidate` plays every validated
candidate on test too (`candidate_test_pips`): reported, so a rule chosen on validation can be read there.
`minutes_to_0.9_oracle` is the wall time from the start of training until a promoted champion
takes 0.9 of the tuned oracle's P&L on the validation sessions (None: never).

Last line is JSON: {"bench": "learning", "episodes", "wall_seconds",
"agent_test_pips", "oracle_test_pips", "momentum_test_pips", "raw_test_pips",
"fraction_of_oracle", "search_vs_raw_p", "value_drift_corr", ...}.
`search_vs_raw_p` is a one-sided paired sign-flip permutation test over test
sessions (search's session P&L against the raw network's; small = search
ahead). `value_drift_corr` is the correlation, over test bars, between the
network's afterstate value of BUY minus SELL from flat and the oracle's
expected drift: whether the networks see the edge at all. --quick is a
CI-sized run (a few hundred episodes, few sessions) that checks the plumbing,
not the learning.

--walk-forward W: W trainings from scratch, one per walk-forward window
(`SessionConfig.walk_forward_windows`: the span before test in W + 1 blocks;
window k trains on blocks 0..k and selects on block k + 1). Each window's
champion is then played on the block after the one it was selected on (the
next window's validation block; the test split after the last), with the
baselines tuned on that window's train sessions: a walk-forward record that
nothing was trained or selected on. The JSON adds `walk_forward` (one row per
window) and `walk_forward_fraction_of_oracle` (agent over oracle, summed over
the blocks); its test-split fields are the last window's champion.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from bench.learning_measures import fraction_of, grid_summary, on_test, pips_on_test, value_drift_corr, with_settings
from shared.cli.data import DEMO_MARKET
from shared.config import (
    SELECTIONS,
    EnvConfig,
    GateConfig,
    SessionConfig,
    TrainingConfig,
    ValidationConfig,
    session_config_for,
)
from shared.core.bar_sizes import check_granularity, parse_granularity
from shared.core.calendar import calendar_named
from shared.core.instruments import get_instrument
from shared.data.store import BarStore
from shared.data.synthetic import generate_market, synthetic_market_for
from shared.env import TradingEnv
from shared.env.baselines import disjoint_train_sessions, momentum_signal, play, tune
from shared.features.micro import on_instrument_scale
from shared.features.sessions import split_sessions, valid_session_starts
from shared.features.store import FeatureSet, build_feature_store, load_feature_set
from shared.service.runtime import tune_process
from shared.training.trainer import Trainer
from shared.validation.gate import gate
from shared.validation.statistics import probability_of_backtest_overfitting
from shared.validation.validator import validate
from shared.volume.candidates import Candidate, load_candidate

DEFAULT_SELECTION = "paired_test"  # the validation service's default (VALIDATION_SELECTION)
DEMO_VALIDATION_SIMULATIONS = 10


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def train_and_select(args, features: FeatureSet, config: TrainingConfig, root: Path, started: float,
                     tag: str = "", oracle_validation_pips: float | None = None
                     ) -> tuple[dict, int, int, Candidate | None, dict]:
    """Train from scratch for args.episodes; validate the newest candidate every
    args.validate_every episodes on the validation split and keep each selection
    rule's champion. Returns (champions by rule, episodes, validated, last candidate, record:
    what the grid and the null market report)."""
    checkpoints = root / f"checkpoints-{tag}" if tag else root / "checkpoints"
    trainer = Trainer(features, checkpoints, config)
    validation = ValidationConfig(simulations=2 if args.quick else DEMO_VALIDATION_SIMULATIONS,
                                  mc_runs=200, max_sessions=4 if args.quick else 0)
    # the service's default gate; --quick lets anything through so the test-split half runs too.
    # Both selection rules watch the same candidates (one training run): an honest ablation.
    base = GateConfig(min_trades=0, min_expectancy_pips=-1e9, min_mc_p5_final_pips=-1e9,
                      max_drawdown_pips=1e9) if args.quick else GateConfig()
    if args.min_trades is not None:  # e.g. 0 on a null market: do the other tests alone refuse noise?
        base = replace(base, min_trades=args.min_trades)
    gates = {name: GateConfig(**{**base.__dict__, "selection": name}) for name in SELECTIONS}
    champions: dict[str, tuple[Candidate, dict] | None] = {name: None for name in SELECTIONS}
    validated, next_validation, last_candidate = 0, args.validate_every, None
    record = {"minutes_to_0.9_oracle": None, "promotions": 0, "promoted_trading": 0, "session_pnl": [],
              "validation_pips": [], "validation_episodes": [], "validation_passes": [], "candidates": [],
              "champion_validation_pips": None}
    training_started = time.monotonic()
    while trainer.episode < args.episodes:
        report = trainer.run_iteration()
        if trainer.episode < next_validation:
            continue
        # a validation point passed: the newest weights are validated, as a candidate written now if
        # this iteration wrote none (Ray batches can cross a point between two checkpoints)
        checkpoint = report.checkpoint or trainer.write_checkpoint()
        next_validation += args.validate_every * ((trainer.episode - next_validation) // args.validate_every + 1)
        candidate = load_candidate(checkpoints / "training" / checkpoint)
        result = validate(candidate, features, validation, trials=validated + 1)
        validated += 1
        last_candidate = candidate
        promoted = []
        record["session_pnl"].append(result.session_pnl)
        record["validation_pips"].append(round(result.stats.total_pips, 1))
        record["validation_episodes"].append(candidate.episode)
        # the gate's own thresholds alone (no champion): what any rule of choosing among candidates starts from
        record["validation_passes"].append(not gate(result, None, base))
        if args.test_every_candidate:
            record["candidates"].append(candidate)
        for name, gate_config in gates.items():
            held = champions[name]
            if not gate(result, held[1] if held else None, gate_config):
                # the champion record as the service keeps it: stats and session P&L
                champions[name] = (candidate, {**result.stats.to_dict(), "session_pnl": result.session_pnl})
                promoted.append(name)
        if DEFAULT_SELECTION in promoted:
            record["promotions"] += 1
            record["promoted_trading"] += int(result.stats.trades > 0)
            record["champion_validation_pips"] = round(result.stats.total_pips, 1)
            if (record["minutes_to_0.9_oracle"] is None and oracle_validation_pips is not None
                    and oracle_validation_pips > 0 and result.stats.total_pips >= 0.9 * oracle_validation_pips):
                record["minutes_to_0.9_oracle"] = round((time.monotonic() - training_started) / 60, 2)
        log(f"episode {trainer.episode}: validation {result.stats.total_pips:+.0f} pips in {result.stats.trades} "
            f"trades, quality {result.stats.quality:.2f}, deflated Sharpe {result.deflated_sharpe}: promoted by "
            f"{promoted or 'neither rule'} ({time.monotonic() - started:.0f}s)")
    trainer.close()
    return champions, trainer.episode, validated, last_candidate, record


def window_features(features: FeatureSet, windows: int, window: int) -> FeatureSet:
    """The feature set with walk-forward window `window` of `windows` as its split."""
    cfg = replace(features.session_config, walk_forward_windows=windows, walk_forward_window=window)
    instrument = get_instrument(features.instrument)
    bars, point = on_instrument_scale(features.bars, instrument)
    valid = valid_session_starts(bars.ts, bars.high, bars.low, point, cfg,
                                 check_granularity(features.granularity), calendar_named(instrument.calendar))
    return replace(features, sessions=split_sessions(bars.ts, valid, cfg))


def walk_forward(args, features: FeatureSet, drift: np.ndarray, config: TrainingConfig, root: Path,
                 test: np.ndarray, started: float) -> dict:
    """One training per window; each window's champion on the block after its validation block."""
    env = TradingEnv(features, EnvConfig(episode_bars=features.session_config.length_bars))
    momentum = momentum_signal(env.mid, env.pip_by_bar)
    rows, last = [], None
    for k in range(args.walk_forward):
        fs = window_features(features, args.walk_forward, k)
        after = (window_features(features, args.walk_forward, k + 1).sessions["validation"]
                 if k + 1 < args.walk_forward else test)
        if args.quick:
            after = after[:6]
        log(f"walk-forward window {k + 1}/{args.walk_forward}: train {len(fs.sessions['train'])} sessions, "
            f"select on {len(fs.sessions['validation'])}, then play the next {len(after)}")
        last = train_and_select(args, fs, config, root, started, tag=f"w{k}")
        held = last[0][DEFAULT_SELECTION]
        train = disjoint_train_sessions(fs)
        if args.quick:
            train = train[:24]
        baseline = {name: play(env, signal, tune(env, signal, train, name), after).total_pips
                    for name, signal in (("oracle", drift), ("momentum", momentum))}
        agent = on_test(held[0] if held else None, env, after, features, drift, args.quick)["agent_test_pips"]
        rows.append({"window": k, "train_sessions": int(len(fs.sessions["train"])),
                     "validation_sessions": int(len(fs.sessions["validation"])), "next_block_sessions": int(len(after)),
                     "champion_episode": held[0].episode if held else None, "agent_pips": round(agent, 1),
                     "oracle_pips": round(baseline["oracle"], 1), "momentum_pips": round(baseline["momentum"], 1)})
        log(f"  window {k + 1}: {rows[-1]}")
    oracle_total = sum(r["oracle_pips"] for r in rows)
    return {"windows": rows, "last": last,
            "fraction_of_oracle": round(sum(r["agent_pips"] for r in rows) / oracle_total, 3) if oracle_total > 0 else None}


def run_once(args, market_seed: int, seed: int) -> dict:
    """One training from scratch on the demo market drawn with `market_seed`; its JSON record."""
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="learning-") as tmp:
        root = Path(tmp)
        db = root / "market.duckdb"
        granularity = parse_granularity(args.granularity)
        market = synthetic_market_for(args.instrument, weeks=args.weeks, seed=market_seed,
                                      edge_strength=args.edge, granularity=granularity)
        bars, drift = generate_market(market)
        with BarStore(db) as store:
            store.upsert(market.instrument, granularity, bars)
        build_feature_store(db, market.instrument, granularity, session_config=session_config_for(
            granularity, SessionConfig()), progress=False)
        features = load_feature_set(db, market.instrument, granularity)
        if not np.array_equal(features.bars.ts, bars.ts):
            raise SystemExit("the feature store's bars are not the generated ones")
        test = features.require_sessions("test")
        validation = features.require_sessions("validation")
        train = disjoint_train_sessions(features)  # each train bar once
        if args.quick:
            test, train, validation = test[:6], train[:24], validation[:4]
        env = TradingEnv(features, EnvConfig(episode_bars=features.session_config.length_bars))

        log(f"market seed {market_seed}, training seed {seed}: tuning the oracle and momentum rules on the train split ...")
        momentum = momentum_signal(env.mid, env.pip_by_bar)
        baselines = {}
        for name, signal in (("oracle", drift), ("momentum", momentum)):
            rule = tune(env, signal, train, name)
            baselines[name] = (rule, play(env, signal, rule, test), play(env, signal, rule, validation))
            log(f"  {name}: enter {rule.enter:.2f} exit {rule.exit:.2f} pips (quantile {rule.enter_quantile:.3f}, "
                f"exit ratio {rule.exit_ratio:.3f}, {rule.evaluations} rules tried, last refinement "
                f"+{rule.last_refinement_gain:.2%}), train {rule.train_pips:+.0f}, "
                f"test {baselines[name][1].total_pips:+.0f} pips")

        config = TrainingConfig(seed=seed)  # the service's defaults: 64 episodes, 5 simulations
        levers = {}
        if args.min_trades is not None:
            levers["gate_min_trades"] = args.min_trades
        if args.td_steps is not None:
            levers["td_steps"] = args.td_steps
            config = replace(config, replay=replace(config.replay, td_steps=args.td_steps))
        if args.epsilon is not None:
            levers["epsilon"] = args.epsilon
            config = replace(config, exploration=replace(config.exploration, epsilon=args.epsilon))
        search_levers = {"root_selection": args.root_selection, "simulations": args.simulations}
        search_levers = {k: v for k, v in search_levers.items() if v is not None}
        if search_levers:
            levers.update(search_levers)
            config = replace(config, search=replace(config.search, **search_levers))
        if args.backend != "local":
            config = replace(config, backend=args.backend, actors=args.actors, actor_episodes=args.actor_episodes)
        if args.episodes_per_iteration is not None:
            levers["episodes_per_iteration"] = args.episodes_per_iteration
            config = replace(config, episodes_per_iteration=args.episodes_per_iteration)
        if args.backend != "local":
            levers.update(backend=args.backend, actors=args.actors, actor_episodes=config.actor_batch_episodes)
        if args.set:
            config, applied = with_settings(config, args.set)
            levers.update(applied)
        oracle_validation = baselines["oracle"][2].total_pips
        if args.walk_forward:
            walk = walk_forward(args, features, drift, config, root, test, started)
            champions, episodes, validated, last_candidate, record = walk["last"]
        else:
            champions, episodes, validated, last_candidate, record = train_and_select(
                args, features, config, root, started, oracle_validation_pips=oracle_validation)
            walk = None

        oracle, momentum_eval = baselines["oracle"][1], baselines["momentum"][1]
        ablation = {}
        for name in SELECTIONS:
            held = champions[name]
            ablation[name] = on_test(held[0] if held else None, env, test, features, drift, args.quick)
            log(f"{name} champion on the test split: {ablation[name]}")
        chosen = ablation[DEFAULT_SELECTION]
        agent_pips = chosen["agent_test_pips"]
        candidates_pnl = [pnl for pnl in record["session_pnl"] if len(pnl) == len(record["session_pnl"][0])]
        spread = env.spread_pips if np.isscalar(env.spread_pips) else get_instrument(market.instrument).spread_pips
        out = {"bench": "learning", "instrument": market.instrument, "granularity": granularity, "weeks": args.weeks,
               "market_seed": market_seed, "seed": seed, "edge": args.edge,
               "episodes": episodes, "validated": validated,
               "selection": DEFAULT_SELECTION, "levers": levers, "wall_seconds": round(time.monotonic() - started, 1),
               **chosen,
               "oracle_test_pips": round(oracle.total_pips, 1), "oracle_test_trades": len(oracle.trades_pips),
               "oracle_validation_pips": round(oracle_validation, 1),
               "momentum_test_pips": round(momentum_eval.total_pips, 1),
               "fraction_of_oracle": round(agent_pips / oracle.total_pips, 3) if oracle.total_pips > 0 else None,
               "fraction_of_momentum": round(agent_pips / momentum_eval.total_pips, 3)
               if momentum_eval.total_pips > 0 else None,
               "minutes_to_0.9_oracle": record["minutes_to_0.9_oracle"],
               # what a lever may be chosen by: the validation split (the test split is only reported)
               "champion_validation_fraction": fraction_of(record["champion_validation_pips"], oracle_validation),
               "best_validation_fraction": fraction_of(max(record["validation_pips"], default=None), oracle_validation),
               "validation_pips": record["validation_pips"],  # each validated candidate's, in training order
               # what a study of selection rules needs (bench.selection): each candidate's P&L by
               # validation session, the oracle's on the same sessions, and which passed the thresholds
               "validation_episodes": record["validation_episodes"],
               "validation_passes": record["validation_passes"],
               "validation_session_pnl": [[round(x, 1) for x in pnl] for pnl in record["session_pnl"]],
               "oracle_validation_session_pnl": [round(float(x), 1)
                                                 for x in baselines["oracle"][2].episode_pnl_pips],
               "promotions": record["promotions"], "promoted_trading": record["promoted_trading"],
               # a champion on a market with nothing to find may lose its costs, not more
               "champion_test_costs_pips": round(chosen["agent_test_trades"] * float(spread), 1),
               "pbo": probability_of_backtest_overfitting(np.asarray(candidates_pnl), blocks=8)
               if len(candidates_pnl) >= 2 else None,
               "test_sessions": len(test),
               # whether the networks see the edge even when no candidate trades well enough to be promoted
               "last_candidate_value_drift_corr": round(value_drift_corr(
                   last_candidate, features, drift,
                   np.concatenate([np.arange(s, s + env.steps_per_episode) for s in test])[:: 1 if args.quick else 4]
               ), 3) if last_candidate is not None else None,
               "ablation": {name: {**a, "fraction_of_oracle": round(a["agent_test_pips"] / oracle.total_pips, 3)
                                   if oracle.total_pips > 0 else None} for name, a in ablation.items()}}
        if args.test_every_candidate:  # reported only: a rule is chosen on validation (bench.selection)
            out["candidate_test_pips"] = [pips_on_test(c, env, test, args.quick) for c in record["candidates"]]
        if walk is not None:
            out["walk_forward"] = walk["windows"]
            out["walk_forward_fraction_of_oracle"] = walk["fraction_of_oracle"]
    return out


def _seeds(text: str | None, default: int) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()] if text else [default]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--episodes", type=int, default=20_000, help="training budget")
    parser.add_argument("--validate-every", type=int, default=640, help="validate the newest candidate this often")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="CI-sized: checks the plumbing, not the learning")
    # levers under measurement (docs/learning.md); the defaults are the service's
    parser.add_argument("--td-steps", type=int, default=None, help="n of the n-step value targets")
    parser.add_argument("--epsilon", type=float, default=None, help="self-play's chance of a random action")
    parser.add_argument("--root-selection", choices=("puct", "gumbel"), default=None, help="the search's root rule")
    parser.add_argument("--simulations", type=int, default=None, help="self-play simulations per decision")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="any training setting, dotted as the stored config (learner.learning_rate=1e-3, "
                             "learner_steps_per_episode=2); repeatable")
    parser.add_argument("--backend", choices=("local", "ray"), default="local",
                        help="self-play in this process or on Ray actors (docs/scale.md)")
    parser.add_argument("--actors", type=int, default=2, help="Ray self-play actors (--backend ray)")
    parser.add_argument("--episodes-per-iteration", type=int, default=None,
                        help="episodes in lockstep per batch (the local loop's learn round)")
    parser.add_argument("--actor-episodes", type=int, default=0,
                        help="each Ray actor's lockstep batch (0: episodes per iteration / actors)")
    parser.add_argument("--instrument", default=DEMO_MARKET.instrument, help="the demo market carried to this instrument")
    parser.add_argument("--granularity", default="M1", help="the bar size of the market (M1, M5, H1, ...)")
    parser.add_argument("--weeks", type=int, default=DEMO_MARKET.weeks, help="weeks of market generated")
    parser.add_argument("--edge", type=float, default=DEMO_MARKET.edge_strength, help="planted edge (0: a null market)")
    parser.add_argument("--min-trades", type=int, default=None,
                        help="the gate's minimum trades on validation (default: the service's)")
    parser.add_argument("--walk-forward", type=int, default=0, metavar="W",
                        help="W walk-forward windows, one training each (0: the plain split)")
    parser.add_argument("--test-every-candidate", action="store_true",
                        help="play every validated candidate on test too (candidate_test_pips; reported, never chosen on)")
    parser.add_argument("--market-seeds", default=None, metavar="A,B,C", help="the grid's market draws (generator seeds)")
    parser.add_argument("--seeds", default=None, metavar="X,Y", help="the grid's training seeds")
    args = parser.parse_args(argv)
    if args.quick:
        args.episodes, args.validate_every = min(args.episodes, 128), 64
    tune_process()
    grid = args.market_seeds is not None or args.seeds is not None
    runs = []
    for market_seed in _seeds(args.market_seeds, DEMO_MARKET.seed):
        for seed in _seeds(args.seeds, args.seed):
            runs.append(run_once(args, market_seed, seed))
            print(json.dumps(runs[-1]), flush=True)
    if grid:
        print(json.dumps(grid_summary(runs)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
