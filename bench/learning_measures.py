"""What bench.learning measures and reports (bench/learning.py runs it): a champion on the test
split with live's search and as its raw network, whether the networks see the edge at all, the
training settings a lever run changes (--set), the figures a lever is chosen by and the grid's
summary over runs."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import torch

from shared.config import TrainingConfig
from shared.env import ACTION_SPACES, TradingEnv
from shared.env.rollout import evaluate
from shared.features.position import NUM_POSITION
from shared.model import ValueSupport
from shared.model.inference import InferencePlan
from shared.search import NetworkSearch, raw_network_policy, search_policy
from shared.validation.statistics import paired_sign_flip_p
from shared.volume.candidates import Candidate

LIVE_SIMULATIONS = 50


def value_drift_corr(candidate: Candidate, features, drift: np.ndarray, bars: np.ndarray) -> float:
    """corr(V_after(BUY) - V_after(SELL) from flat, expected drift) over `bars`."""
    space = ACTION_SPACES[candidate.env_config.action_space]
    buy = space.actions.index("BUY" if "BUY" in space.actions else "LONG_1")
    sell = space.actions.index("SELL" if "SELL" in space.actions else "SHORT_1")
    model = candidate.model.eval()
    support = ValueSupport(model.config.value_atoms, model.config.value_max_pips).support
    plan = InferencePlan(model, support)
    advantages = []
    with torch.inference_mode():
        for chunk in np.array_split(bars, max(1, len(bars) // 512)):
            window = candidate.config.network.window_bars
            temporal = torch.from_numpy(features.features[chunk[:, None] + np.arange(-window + 1, 1)])
            static = torch.zeros(len(chunk), NUM_POSITION)
            state = plan.representation(temporal, static)
            values = [plan.afterstates(state, torch.full((len(chunk),), a, dtype=torch.long))[2] for a in (buy, sell)]
            advantages.append((values[0] - values[1]).numpy())
    advantage = np.concatenate(advantages)
    if np.std(advantage) == 0 or np.std(drift[bars]) == 0:
        return 0.0
    return float(np.corrcoef(advantage, drift[bars])[0, 1])


def live_search(candidate: Candidate, env: TradingEnv, sessions: np.ndarray, quick: bool) -> NetworkSearch:
    return NetworkSearch(candidate.model, min(64, len(sessions)), env.space,
                         replace(candidate.search_config, simulations=4 if quick else LIVE_SIMULATIONS))


def pips_on_test(candidate: Candidate, env: TradingEnv, test: np.ndarray, quick: bool) -> float:
    """A candidate's P&L on `test` with live's search: reported for every candidate (--test-every-candidate)
    so that any selection rule's champion can be read on test afterwards, never to choose one."""
    return round(evaluate(env, search_policy(live_search(candidate, env, test, quick)), test).total_pips, 1)


def on_test(champion: Candidate | None, env: TradingEnv, test: np.ndarray, features, drift: np.ndarray,
            quick: bool) -> dict:
    """The champion with live's search, and its raw network, on `test` (the test split or a walk-forward block)."""
    if champion is None:  # nothing passed the gate: live would not trade
        return {"promoted": False, "champion_episode": None, "agent_test_pips": 0.0, "agent_test_trades": 0,
                "raw_test_pips": 0.0, "search_vs_raw_p": 1.0, "value_drift_corr": 0.0}
    search = live_search(champion, env, test, quick)
    agent = evaluate(env, search_policy(search), test)
    raw = evaluate(env, raw_network_policy(search), test)
    test_bars = np.concatenate([np.arange(s, s + env.steps_per_episode) for s in test])
    return {"promoted": True, "champion_episode": champion.episode,
            "agent_test_pips": round(agent.total_pips, 1), "agent_test_trades": len(agent.trades_pips),
            "raw_test_pips": round(raw.total_pips, 1),
            "search_vs_raw_p": round(paired_sign_flip_p(agent.episode_pnl_pips, raw.episode_pnl_pips), 4),
            "value_drift_corr": round(value_drift_corr(champion, features, drift, test_bars[:: 1 if quick else 4]), 3)}


def _mean(values: list[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return round(float(np.mean(known)), 3) if known else None


def fraction_of(pips: float | None, oracle_pips: float) -> float | None:
    return round(pips / oracle_pips, 3) if pips is not None and oracle_pips > 0 else None


def with_settings(config: TrainingConfig, settings: list[str]) -> tuple[TrainingConfig, dict]:
    """`config` with each dotted `key=value` of --set applied (`learner.learning_rate=1e-3`), checked the
    way a stored config is (an unknown key is refused); the value is read as JSON where it parses."""
    data, applied = config.to_dict(), {}
    for item in settings:
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise SystemExit(f"--set {item!r}: expected key=value, e.g. learner.learning_rate=1e-3")
        try:
            value = json.loads(text)
        except json.JSONDecodeError:
            value = text
        *parents, leaf = key.split(".")
        node = data
        for part in parents:
            if not isinstance(node.get(part), dict):
                raise SystemExit(f"--set {item!r}: {part!r} is not a section of the training config")
            node = node[part]
        node[leaf] = value
        applied[key] = value
    try:
        return TrainingConfig.from_dict(data), applied
    except ValueError as error:
        raise SystemExit(f"--set: {error}") from None


def grid_summary(runs: list[dict]) -> dict:
    """Mean, spread and worst of the grid's runs, as research stacks publish several seeds."""
    fractions = [r["fraction_of_oracle"] for r in runs if r["fraction_of_oracle"] is not None]
    minutes = [r["minutes_to_0.9_oracle"] for r in runs if r["minutes_to_0.9_oracle"] is not None]
    return {"bench": "learning_grid", "runs": len(runs),
            "market_seeds": sorted({r["market_seed"] for r in runs}), "seeds": sorted({r["seed"] for r in runs}),
            "fraction_of_oracle_mean": round(float(np.mean(fractions)), 3) if fractions else None,
            "fraction_of_oracle_std": round(float(np.std(fractions, ddof=1)), 3) if len(fractions) > 1 else None,
            "fraction_of_oracle_min": round(float(np.min(fractions)), 3) if fractions else None,
            "search_ahead_runs": sum(r["agent_test_pips"] > r["raw_test_pips"] and r["search_vs_raw_p"] < 0.05
                                     for r in runs),
            "minutes_to_0.9_oracle_median": round(float(np.median(minutes)), 2) if minutes else None,
            "runs_reaching_0.9_oracle": len(minutes),
            "champion_validation_fraction_mean": _mean([r["champion_validation_fraction"] for r in runs]),
            "best_validation_fraction_mean": _mean([r["best_validation_fraction"] for r in runs]),
            "promoted_trading": sum(r["promoted_trading"] for r in runs), "validated": sum(r["validated"] for r in runs),
            "champions_losing_more_than_costs": sum(r["agent_test_pips"] < -r["champion_test_costs_pips"] for r in runs),
            "wall_seconds": round(sum(r["wall_seconds"] for r in runs), 1)}
