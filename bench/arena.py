"""python -m bench.arena: every model family trained for the same wall-clock budget on the
planted-edge market, chosen by the service's gate on validation, then played once on test.

For each market (the demo FX market, and the same carried to a 24/7 crypto instrument with
`--markets fx,crypto`) and each family (`--families muzero,tft,dt`): train from scratch with the
service's defaults for `--minutes` (its data preparation included: the Strategist's experts;
at least until its first candidate is judged), validate each candidate as it comes (the family's
own cadence: every `--validate-every` episodes for the agent, every candidate for the others),
keep the champion the default gate (a paired test against the previous champion) promotes, and
play that champion on the test split. The yardstick is the oracle rule tuned on train
(shared.env.baselines), played on the same test sessions. One JSON line per family and
market:

    {"bench": "arena", "family": F, "market": M, "test_pips": P, "fraction_of_oracle": X,
     "train_seconds": S, ...}

`--guardian-steps N` also trains the Guardian (the contrastive VAE that trains beside any family,
shared/training/guardian.py) for N steps at its defaults on each market's train split and prints
its line: the share of training windows whose cluster's name is their rule label
(`train_accuracy`) and the same on the windows ending at the validation and test sessions' first
bars (`validation_agreement`, `test_agreement`), each beside the share of the commonest rule label
there (`*_majority_share`: what always naming that regime would score):

    {"bench": "arena", "family": "guardian", "market": M, "train_accuracy": A, "test_agreement": T,
     "train_seconds": S, "clusters": [...], ...}

`--quick` is the smoke run of the tests (two short budgets, few sessions, a gate that lets any
candidate through)."""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from shared.cli.data import DEMO_MARKET
from shared.config import (
    DTConfig,
    EnvConfig,
    GateConfig,
    GuardianConfig,
    SessionConfig,
    TFTConfig,
    TrainingConfig,
    ValidationConfig,
    session_config_for,
)
from shared.core.instruments import get_instrument
from shared.data.store import BarStore
from shared.data.synthetic import generate_market, synthetic_market_for
from shared.env import TradingEnv
from shared.env.baselines import disjoint_train_sessions, play, tune
from shared.features.indicators import indicator_features
from shared.features.store import build_feature_store, load_feature_set
from shared.model.guardian import TrainedGuardian
from shared.model.regimes import label, majority_share
from shared.service.runtime import tune_process
from shared.training.families import TRAINERS
from shared.training.guardian import train_guardian
from shared.validation.gate import gate
from shared.validation.regimes import regime_rules
from shared.validation.validator import validate
from shared.volume.candidates import load_candidate

MARKETS = {"fx": "GBPJPY", "crypto": "BTCUSD"}


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def run_family(args, family: str, features, root: Path) -> tuple[object | None, dict]:
    """Train `family` for the budget, validating as it goes; (the gate's champion or None, record)."""
    quick = args.quick
    config = TrainingConfig(model=family, seed=args.seed)
    if quick:  # tiny models, a candidate every iteration: one fits any budget
        config = replace(config, episodes_per_iteration=8, checkpoint_interval_episodes=8, tft=TFTConfig(
            hidden=16, variable_hidden=8, heads=2, lstm_layers=1, batch_size=16, steps_per_iteration=5,
            checkpoint_interval_steps=5), dt=DTConfig(
            context_steps=8, hidden=16, layers=1, heads=2, batch_size=16, steps_per_iteration=5,
            checkpoint_interval_steps=5, expert_sessions=40, expert_epsilons=(0.0, 0.3)))
    validation = ValidationConfig(simulations=2 if quick else 50, mc_runs=200, max_sessions=4 if quick else 0)
    gate_config = GateConfig(min_trades=0, min_expectancy_pips=-1e9, min_mc_p5_final_pips=-1e9,
                             max_drawdown_pips=1e9) if quick else GateConfig()
    started = time.monotonic()
    trainer = TRAINERS[family](features, root / family, config)
    champion, held, validated, next_validation = None, None, 0, args.validate_every
    # training alone, its data preparation included (the Strategist's experts): the validations are
    # not the family's budget
    seconds = time.monotonic() - started
    # at least one candidate judged, however long its family takes to reach one (train_seconds says)
    while (seconds < args.minutes * 60 or not validated) and not trainer.finished:
        started = time.monotonic()
        report = trainer.run_iteration()
        seconds += time.monotonic() - started
        if report.checkpoint is None or (family == "muzero" and trainer.episode < next_validation):
            continue
        next_validation += args.validate_every
        candidate = load_candidate(root / family / "training" / report.checkpoint)
        result = validate(candidate, features, validation, trials=validated + 1)
        validated += 1
        if not gate(result, held, gate_config):
            champion, held = candidate, {**result.stats.to_dict(), "session_pnl": result.session_pnl}
        log(f"  {family} {report.checkpoint}: validation {result.stats.total_pips:+.0f} pips in "
            f"{result.stats.trades} trades{' -> champion' if champion is candidate else ''}")
    trainer.close()
    return champion, {"train_seconds": round(seconds, 1), "validated": validated,
                      "champion_episode": champion.episode if champion else None}


def guardian_line(args, market_name: str, features) -> dict:
    """Train the Guardian on `features`' train split; how its clusters' names agree with the rules."""
    config = GuardianConfig(train_steps=args.guardian_steps)
    indicators = indicator_features(features.bars, get_instrument(features.instrument).calendar)
    record = train_guardian(features, indicators, config, seed=args.seed)
    guardian, rules = TrainedGuardian(record), regime_rules(features, config)

    def agreement(split: str) -> tuple[float, float]:
        """(the Guardian's agreement with the rules at the split's session starts, the commonest label's share)"""
        starts = features.require_sessions(split)
        by_rules = label(features.bars.close, starts, rules)
        named = guardian.regimes(indicators, starts)[0]
        return round(float(np.mean(named == by_rules)), 3), round(majority_share(by_rules), 3)

    (validation, validation_majority), (test, test_majority) = agreement("validation"), agreement("test")
    line = {"bench": "arena", "family": "guardian", "market": market_name, "instrument": features.instrument,
            "train_accuracy": record["accuracy"], "train_majority_share": record["majority_share"],
            "validation_agreement": validation, "validation_majority_share": validation_majority,
            "test_agreement": test, "test_majority_share": test_majority,
            "train_seconds": record["train_seconds"], "steps": record["steps"],
            "train_windows": record["train_windows"], "clusters": record["names"], "risk": record["risk"]}
    print(json.dumps(line), flush=True)
    return line


def run_market(args, market_name: str) -> list[dict]:
    with tempfile.TemporaryDirectory(prefix="arena-") as tmp:
        root = Path(tmp)
        db = root / "market.duckdb"
        market = synthetic_market_for(MARKETS[market_name], weeks=4 if args.quick else DEMO_MARKET.weeks,
                                      seed=args.market_seed, edge_strength=DEMO_MARKET.edge_strength)
        bars, drift = generate_market(market)
        with BarStore(db) as store:
            store.upsert(market.instrument, "M1", bars)
        build_feature_store(db, market.instrument, "M1", session_config=session_config_for("M1", SessionConfig()),
                            progress=False)
        features = load_feature_set(db, market.instrument, "M1")
        test = features.require_sessions("test")
        if args.quick:
            test = test[:6]
        env = TradingEnv(features, EnvConfig(episode_bars=features.session_config.length_bars))
        train = disjoint_train_sessions(features)[: 24 if args.quick else None]
        rule = tune(env, drift, train, "oracle")
        oracle_test = play(env, drift, rule, test).total_pips
        log(f"{market_name} ({market.instrument}): tuned oracle on test {oracle_test:+.0f} pips")
        lines = [guardian_line(args, market_name, features)] if args.guardian_steps else []
        for family in args.families:
            champion, record = run_family(args, family, features, root)
            test_pips = test_trades = None
            if champion is not None:
                played = validate(champion, features, ValidationConfig(simulations=2 if args.quick else 50,
                                                                       mc_runs=200, max_sessions=len(test)),
                                  split="test")
                test_pips, test_trades = round(played.stats.total_pips, 1), played.stats.trades
            fraction = round(test_pips / oracle_test, 3) if test_pips is not None and oracle_test > 0 else None
            line = {"bench": "arena", "family": family, "market": market_name, "instrument": market.instrument,
                    "test_pips": test_pips, "test_trades": test_trades, "fraction_of_oracle": fraction,
                    "oracle_test_pips": round(oracle_test, 1), **record, "minutes_budget": args.minutes}
            print(json.dumps(line), flush=True)
            lines.append(line)
        return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--families", default="muzero,tft,dt", help="comma-separated: muzero, tft, dt")
    parser.add_argument("--markets", default="fx", help="comma-separated: fx (GBPJPY), crypto (BTCUSD, 24/7)")
    parser.add_argument("--minutes", type=float, default=10.0, help="training budget per family and market")
    parser.add_argument("--validate-every", type=int, default=640, help="the agent's episodes between validations")
    parser.add_argument("--market-seed", type=int, default=7, help="the demo market's generator seed")
    parser.add_argument("--seed", type=int, default=0, help="the training seed")
    parser.add_argument("--guardian-steps", type=int, default=0, help="also train the Guardian this many steps")
    parser.add_argument("--quick", action="store_true", help="a smoke run (tests)")
    args = parser.parse_args(argv)
    if args.quick:
        args.validate_every = 8  # every candidate of the short run
    args.families = [f.strip() for f in args.families.split(",") if f.strip()]
    markets = [m.strip() for m in args.markets.split(",") if m.strip()]
    unknown = [f for f in args.families if f not in TRAINERS] + [m for m in markets if m not in MARKETS]
    if unknown:
        parser.error(f"unknown family or market: {', '.join(unknown)} (families {list(TRAINERS)}, markets {list(MARKETS)})")
    tune_process()
    for market in markets:
        run_market(args, market)
    return 0


if __name__ == "__main__":
    sys.exit(main())
