"""Which rule should choose the champion? Replayed on the validation split alone.

python -m bench.selection RUNS.jsonl [RUNS2.jsonl ...] [--splits 200] [--every K] [--choose-share F] [--seed S]

Reads bench.learning's run lines (those with `validation_session_pnl`: each validated candidate's
P&L by validation session, in training order, and whether it passed the gate's thresholds). For
each run and each of --splits random halvings of its validation sessions, every rule walks the
candidates in training order the way the validation service does (a candidate must pass the
thresholds, then beat the champion by the rule), **choosing on one half only** (`--choose-share`:
another share); the champion it ends with is scored on the other sessions, as a fraction of the
tuned oracle's P&L on them. So
a rule is judged by how well what it chooses holds on sessions it did not see, and nothing is
read from the test split to choose it. `--every K` keeps every K-th candidate (a run validated
every 320 episodes replays the 640-episode cadence with `--every 2`).

The rules: the gate's paired sign-flip test against the champion at several p thresholds (0.10 is
the service's default, `VALIDATION_MAX_P_VALUE`), more P&L than
the champion on the chosen half, the newest candidate that passes, and the newest unless the
champion is better by the paired test (p < 0.10 the other way; a rule the gate does not offer).
`hindsight` is no rule: the best candidate on the scoring half, the ceiling any rule is read against.
`held_out_fraction_along` is the same score for the champion held after each candidate, averaged
over the run: what live would have traded on the way (a rule that passes through a worse champion
before its last pays for it there). Limits, said where the numbers are read: the thresholds' flag
comes from the full validation report (the same for every rule), and on half the sessions a
paired test has less power than on all of them, so a threshold's effect here is its effect at
half the evidence (a larger --choose-share gives it more, and scores on fewer).

Each rule is also applied to the whole validation split, as the service would, and its champion's
test P&L (`candidate_test_pips`, when the run had --test-every-candidate) is reported beside, as a
fraction of the tuned oracle's: reported, never used to choose.

Last line is JSON: {"bench": "selection", "runs", "splits", "every", "choose_share", "rules": {name:
{"held_out_fraction_mean", "held_out_fraction_min_run", "held_out_fraction_along_mean", "test_fraction_mean",
"test_fraction_min"}}}.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from shared.config import GateConfig

P_THRESHOLDS = (0.05, 0.10, 0.25, 0.50)
EXACT_UP_TO = 16  # sessions: up to this many the sign-flip test enumerates every sign pattern


def sign_patterns(sessions: int, seed: int = 0) -> np.ndarray:
    """Every +-1 pattern over `sessions` (exact), or 20,000 random ones past EXACT_UP_TO (as the gate)."""
    if sessions <= EXACT_UP_TO:
        return np.array(list(itertools.product((-1.0, 1.0), repeat=sessions)))
    return np.random.default_rng(seed).choice([-1.0, 1.0], size=(20_000, sessions))


def paired_p_matrix(pnl: np.ndarray, patterns: np.ndarray) -> np.ndarray:
    """p[i, j]: one-sided sign-flip p-value that candidate i beats candidate j on these sessions
    (`pnl` [candidates, sessions]); the gate's test (shared.validation.statistics), vectorised."""
    n = len(pnl)
    p = np.ones((n, n))
    exact = len(patterns) == 2 ** pnl.shape[1]
    for i in range(n):
        diff = pnl[i] - pnl  # [n, sessions]: i against every j
        null = diff @ patterns.T  # [n, patterns], sums rather than means: the same ordering
        observed = diff.sum(axis=1, keepdims=True)
        counts = (null >= observed - 1e-9).sum(axis=1)
        p[i] = counts / len(patterns) if exact else (counts + 1) / (len(patterns) + 1)
        p[i, np.all(diff == 0, axis=1)] = 1.0
    return p


@dataclass(frozen=True)
class Evidence:
    """What a rule may read about candidates on the sessions it chooses on."""
    total: np.ndarray   # [candidates] P&L
    p: np.ndarray       # [candidates, candidates] p that the first beats the second


Rule = Callable[[int, int, Evidence], bool]  # (candidate, champion, evidence) -> replaces the champion


def _paired(threshold: float) -> Rule:
    return lambda cand, champ, e: e.p[cand, champ] < threshold


RULES: dict[str, Rule] = {
    **{f"paired p<{t:.2f}" + (" (default)" if t == GateConfig().max_p_value else ""): _paired(t) for t in P_THRESHOLDS},
    "more P&L": lambda cand, champ, e: e.total[cand] > e.total[champ],
    "newest": lambda cand, champ, e: True,
    "not worse (p<0.10)": lambda cand, champ, e: not e.p[champ, cand] < 0.10,
}


def champions_along(rule: Rule, passes: np.ndarray, evidence: Evidence) -> list[int | None]:
    """The champion a rule holds after each candidate, walking them in training order as the
    validation service does (None until one passes)."""
    champion, held = None, []
    for candidate in range(len(passes)):
        if passes[candidate] and (champion is None or rule(candidate, champion, evidence)):
            champion = candidate
        held.append(champion)
    return held


def champion_of(rule: Rule, passes: np.ndarray, evidence: Evidence) -> int | None:
    """The candidate a rule ends with."""
    return champions_along(rule, passes, evidence)[-1] if len(passes) else None


def evidence_on(pnl: np.ndarray, sessions: np.ndarray, patterns: np.ndarray) -> Evidence:
    part = pnl[:, sessions]
    return Evidence(total=part.sum(axis=1), p=paired_p_matrix(part, patterns))


def study_run(run: dict, splits: int, every: int, seed: int, choose_share: float = 0.5) -> dict:
    """Each rule's held-out fraction of the oracle (mean over the halvings) and, on the whole
    validation split, its champion's episode and test fraction (reported)."""
    kept = slice(every - 1, None, every)  # every K-th, ending on the K-th: 640, 1,280, ... of a 320 cadence
    pnl = np.asarray(run["validation_session_pnl"], dtype=np.float64)[kept]
    passes = np.asarray(run["validation_passes"], dtype=bool)[kept]
    episodes = list(run["validation_episodes"])[kept]
    oracle = np.asarray(run["oracle_validation_session_pnl"], dtype=np.float64)
    if pnl.ndim != 2 or pnl.shape[1] != len(oracle) or len(passes) != len(pnl):
        raise SystemExit(f"run (market seed {run.get('market_seed')}, seed {run.get('seed')}): its validation "
                         "session P&L, thresholds flags and oracle do not line up")
    sessions = len(oracle)
    rng = np.random.default_rng(seed)
    half = min(sessions - 1, max(1, round(sessions * choose_share)))  # sessions chosen on
    patterns = sign_patterns(half, seed)
    held_out = {name: [] for name in [*RULES, "hindsight"]}
    along = {name: [] for name in RULES}  # what live would have traded, on average over the run
    for _ in range(splits):
        order = rng.permutation(sessions)
        chosen_on, scored_on = np.sort(order[:half]), np.sort(order[half:])
        oracle_pips = oracle[scored_on].sum()
        if oracle_pips <= 0:
            continue  # a half where the oracle made nothing scores nothing
        evidence = evidence_on(pnl, chosen_on, patterns)
        scored = pnl[:, scored_on].sum(axis=1)
        for name, rule in RULES.items():
            held = [0.0 if c is None else scored[c] / oracle_pips for c in champions_along(rule, passes, evidence)]
            held_out[name].append(held[-1])
            along[name].append(float(np.mean(held)))
        held_out["hindsight"].append(max(0.0, scored[passes].max(initial=0.0)) / oracle_pips)
    whole = evidence_on(pnl, np.arange(sessions), sign_patterns(sessions, seed))
    test = run.get("candidate_test_pips")
    test = np.asarray(test)[kept] if test is not None else None
    out = {}
    for name in held_out:
        row = {"held_out_fraction": round(float(np.mean(held_out[name])), 3) if held_out[name] else None}
        if name in RULES:
            row["held_out_fraction_along"] = round(float(np.mean(along[name])), 3) if along[name] else None
            champion = champion_of(RULES[name], passes, whole)
            row["champion_episode"] = episodes[champion] if champion is not None else None
            if test is not None and run["oracle_test_pips"] > 0:
                row["test_fraction"] = round((test[champion] if champion is not None else 0.0)
                                             / run["oracle_test_pips"], 3)
        out[name] = row
    return out


def summarise(per_run: list[dict]) -> dict:
    rules = {}
    for name in per_run[0]:
        held = [r[name]["held_out_fraction"] for r in per_run if r[name]["held_out_fraction"] is not None]
        tests = [r[name]["test_fraction"] for r in per_run if "test_fraction" in r[name]]
        along = [r[name]["held_out_fraction_along"] for r in per_run if r[name].get("held_out_fraction_along") is not None]
        rules[name] = {"held_out_fraction_mean": round(float(np.mean(held)), 3) if held else None,
                       "held_out_fraction_min_run": round(float(np.min(held)), 3) if held else None,
                       "held_out_fraction_along_mean": round(float(np.mean(along)), 3) if along else None,
                       "test_fraction_mean": round(float(np.mean(tests)), 3) if tests else None,
                       "test_fraction_min": round(float(np.min(tests)), 3) if tests else None}
    return rules


def read_runs(paths: list[Path]) -> list[dict]:
    runs = []
    for path in paths:
        for line in path.read_text().splitlines():
            line = line.strip()
            if line.startswith("{"):
                record = json.loads(line)
                if record.get("bench") == "learning" and record.get("validation_session_pnl"):
                    runs.append(record)
    return runs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", type=Path, help="bench.learning output (JSON lines)")
    parser.add_argument("--splits", type=int, default=200, help="random halvings of the validation sessions")
    parser.add_argument("--every", type=int, default=1, help="keep every K-th candidate (a slower cadence)")
    parser.add_argument("--choose-share", type=float, default=0.5, help="the share of sessions chosen on")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.splits < 1 or args.every < 1:
        raise SystemExit("--splits and --every must be at least 1")
    if not 0 < args.choose_share < 1:
        raise SystemExit("--choose-share must be between 0 and 1")
    runs = read_runs(args.runs)
    if not runs:
        raise SystemExit("no bench.learning run with validation_session_pnl in "
                         f"{', '.join(map(str, args.runs))} (runs from before the field was added cannot be replayed)")
    per_run = [study_run(run, args.splits, args.every, args.seed, args.choose_share) for run in runs]
    for run, result in zip(runs, per_run):
        print(f"market seed {run['market_seed']}, training seed {run['seed']}:", file=sys.stderr)
        for name, row in result.items():
            print(f"  {name:32s} {json.dumps(row)}", file=sys.stderr)
    print(json.dumps({"bench": "selection", "runs": len(runs), "splits": args.splits, "every": args.every,
                      "choose_share": args.choose_share, "rules": summarise(per_run)}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
