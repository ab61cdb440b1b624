"""bench.selection: selection rules replayed on bench.learning's per-session validation P&L, choosing
on half the sessions and scored on the other half."""

from __future__ import annotations

import json

import numpy as np
import pytest

from bench import selection
from shared.validation.statistics import paired_sign_flip_p


def test_the_vectorised_paired_test_is_the_gates_test():
    rng = np.random.default_rng(3)
    for sessions in (6, 12, 29):  # exact enumeration, and random patterns past EXACT_UP_TO
        pnl = rng.normal(0.0, 50.0, size=(4, sessions)) + np.arange(4)[:, None] * 15.0
        p = selection.paired_p_matrix(pnl, selection.sign_patterns(sessions))
        for i in range(4):
            for j in range(4):
                expected = 1.0 if i == j else paired_sign_flip_p(pnl[i], pnl[j])
                assert p[i, j] == pytest.approx(expected, abs=0.015), (sessions, i, j)


def _run(pnl: np.ndarray, oracle: np.ndarray, passes=None, test=None) -> dict:
    n = len(pnl)
    return {"bench": "learning", "market_seed": 1, "seed": 0, "validation_session_pnl": pnl.tolist(),
            "validation_passes": list(passes) if passes is not None else [True] * n,
            "validation_episodes": [320 * (k + 1) for k in range(n)],
            "oracle_validation_session_pnl": oracle.tolist(),
            "oracle_test_pips": 1000.0, **({"candidate_test_pips": list(test)} if test is not None else {})}


def test_each_rule_keeps_or_replaces_the_champion_the_way_it_says():
    rng = np.random.default_rng(0)
    sessions = 20
    oracle = np.full(sessions, 10.0)
    # candidate 0 is good, 1 slightly better (not significantly), 2 clearly better everywhere, 3 fails
    # the thresholds although best of all, 4 slightly worse than 2
    base = rng.normal(0.0, 3.0, size=sessions)
    pnl = np.stack([base + 5.0, base + 5.0 + rng.normal(0.3, 3.0, sessions), base + 9.0, base + 20.0,
                    base + 8.8 + rng.normal(0.0, 0.5, sessions)])
    passes = [True, True, True, False, True]
    out = selection.study_run(_run(pnl, oracle, passes, test=[100.0, 200.0, 300.0, 400.0, 500.0]),
                              splits=20, every=1, seed=0)
    assert out["newest"]["champion_episode"] == 1600  # the last that passes, whatever it made
    assert out["paired p<0.10 (default)"]["champion_episode"] == 960  # 2 beat 0 on every session; 4 not 2
    assert out["more P&L"]["champion_episode"] in (960, 1600)
    for name, row in out.items():
        if name != "hindsight":
            assert row["champion_episode"] != 1280  # never one that failed the thresholds
            assert row["test_fraction"] == pytest.approx(
                {320: 0.1, 640: 0.2, 960: 0.3, 1600: 0.5}[row["champion_episode"]])
    # held out: the rules that end on 2 or 4 take about 0.9 of the oracle on sessions they did not see
    assert out["paired p<0.10 (default)"]["held_out_fraction"] == pytest.approx(0.9, abs=0.1)  # named as the gate's
    assert out["hindsight"]["held_out_fraction"] >= max(r["held_out_fraction"] for r in out.values()) - 1e-9
    # along the run: newest holds 0, then 1, then 2 (3 fails), then 4: what each made on held-out sessions, averaged
    along = selection.champions_along(selection.RULES["newest"], np.asarray(passes), selection.evidence_on(
        pnl, np.arange(sessions), selection.sign_patterns(sessions)))
    assert along == [0, 1, 2, 2, 4]
    assert 0.5 < out["newest"]["held_out_fraction_along"] < out["newest"]["held_out_fraction"]
    # every K-th candidate: the 640-episode cadence of a 320-episode run
    slow = selection.study_run(_run(pnl, oracle, passes), splits=5, every=2, seed=0)
    assert slow["newest"]["champion_episode"] == 640 and "test_fraction" not in slow["newest"]  # 640, 1,280 (fails)


def test_no_candidate_that_passes_means_no_champion_and_nothing_taken():
    pnl = np.ones((3, 10))
    out = selection.study_run(_run(pnl, np.full(10, 5.0), passes=[False] * 3), splits=4, every=1, seed=0)
    for name in selection.RULES:
        assert out[name]["champion_episode"] is None and out[name]["held_out_fraction"] == 0.0


def test_the_command_reads_runs_and_refuses_files_without_them(tmp_path, capsys):
    rng = np.random.default_rng(1)
    runs = [_run(rng.normal(2.0, 5.0, size=(4, 12)), np.full(12, 4.0), test=[1.0, 2.0, 3.0, 4.0]) for _ in range(2)]
    path = tmp_path / "grid.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in runs) + '\n{"bench": "learning_grid"}\n')
    assert selection.main([str(path), "--splits", "10", "--choose-share", "0.67"]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["bench"] == "selection" and out["runs"] == 2 and out["splits"] == 10 and out["choose_share"] == 0.67
    assert set(out["rules"]) == {*selection.RULES, "hindsight"}
    assert out["rules"]["newest"]["test_fraction_mean"] == pytest.approx(0.004)  # 4 pips of the oracle's 1,000
    old = tmp_path / "old.jsonl"
    old.write_text(json.dumps({"bench": "learning", "validation_pips": [1.0]}) + "\n")
    with pytest.raises(SystemExit, match="validation_session_pnl"):
        selection.main([str(old)])
    with pytest.raises(SystemExit, match="choose-share"):
        selection.main([str(path), "--choose-share", "1"])
