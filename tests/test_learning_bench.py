"""`bench.learning` and `bench.arena` end to end, in their CI-sized mode: the planted-edge market through training,
the gate and the test split, and the grid on a null market. Subprocesses of a few minutes each;
in a file of their own so that `make test`'s two workers take them side by side with the rest."""

from __future__ import annotations


def test_the_learning_benchmark_runs_end_to_end_in_quick_mode():
    """bench.learning --quick: every part (baselines, training, validation, the champion on
    the test split, the paired test, the value-drift correlation) runs and reports."""
    import json
    import subprocess
    import sys

    import pytest

    from tests.service_helpers import ROOT

    result = subprocess.run([sys.executable, "-m", "bench.learning", "--quick", "--set", "learner.batch_size=32",
                             "--test-every-candidate"], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out["bench"] == "learning" and out["episodes"] == 128 and out["promoted"]
    assert out["levers"] == {"learner.batch_size": 32}  # a lever run says what it changed
    # what a lever is chosen by: validation figures (the oracle makes money on this market's validation split)
    assert out["best_validation_fraction"] is not None and out["champion_validation_fraction"] is not None
    assert out["best_validation_fraction"] >= out["champion_validation_fraction"]
    assert len(out["validation_pips"]) == out["validated"]
    # (each figure rounded: pips to 0.1, fractions to 0.001)
    assert max(out["validation_pips"]) == pytest.approx(
        out["best_validation_fraction"] * out["oracle_validation_pips"], rel=0.01, abs=0.2)
    # what bench.selection replays: each candidate's P&L by validation session beside the oracle's
    sessions = len(out["oracle_validation_session_pnl"])
    assert len(out["validation_session_pnl"]) == len(out["validation_passes"]) == out["validated"] == 2
    assert all(len(pnl) == sessions for pnl in out["validation_session_pnl"]) and sessions == 4
    assert [round(sum(pnl), 1) for pnl in out["validation_session_pnl"]] == pytest.approx(out["validation_pips"], abs=0.3)
    assert sum(out["oracle_validation_session_pnl"]) == pytest.approx(out["oracle_validation_pips"], abs=0.3)
    assert out["validation_episodes"] == [64, 128] and len(out["candidate_test_pips"]) == 2
    assert out["candidate_test_pips"][out["validation_episodes"].index(out["champion_episode"])] == \
        pytest.approx(out["agent_test_pips"], abs=0.1)  # the champion played on test twice, the same
    for key in ("wall_seconds", "agent_test_pips", "oracle_test_pips", "momentum_test_pips", "raw_test_pips",
                "fraction_of_oracle", "search_vs_raw_p", "value_drift_corr"):
        assert out[key] is not None, key
    assert out["oracle_test_pips"] > 0 and out["momentum_test_pips"] > 0  # the edge is there to take
    assert 0.0 < out["search_vs_raw_p"] <= 1.0 and -1.0 <= out["value_drift_corr"] <= 1.0
    assert -1.0 <= out["last_candidate_value_drift_corr"] <= 1.0


def test_a_lever_is_any_training_setting_and_a_misspelt_one_is_refused():
    import pytest

    from bench.learning_measures import with_settings
    from shared.config import TrainingConfig

    config, applied = with_settings(TrainingConfig(), ["learner_steps_per_episode=3", "network.chance_codes=8",
                                                       "search.root_selection=puct"])
    assert config.learner_steps_per_episode == 3.0 and config.network.num_outcomes == 8
    assert config.search.root_selection == "puct" and applied["network.chance_codes"] == 8
    with pytest.raises(SystemExit, match="unknown setting.*learner.learnig_rate"):
        with_settings(TrainingConfig(), ["learner.learnig_rate=1e-3"])
    with pytest.raises(SystemExit, match="learning_rate"):
        with_settings(TrainingConfig(), ["learner.learning_rate=-1"])
    with pytest.raises(SystemExit, match="key=value"):
        with_settings(TrainingConfig(), ["learner.learning_rate"])


def test_the_learning_grid_runs_a_null_market_and_summarises_its_runs():
    """bench.learning --market-seeds/--seeds: a line per run and the grid's summary; --edge 0 is a
    market with nothing to find (the oracle never trades) and still runs through the gate."""
    import json
    import subprocess
    import sys

    from bench.learning import grid_summary
    from tests.service_helpers import ROOT

    result = subprocess.run([sys.executable, "-m", "bench.learning", "--quick", "--edge", "0", "--market-seeds", "3",
                             "--seeds", "0"], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    run, summary = (json.loads(line) for line in result.stdout.strip().splitlines()[-2:])
    assert run["bench"] == "learning" and run["market_seed"] == 3 and run["edge"] == 0.0
    assert run["oracle_test_pips"] == 0.0 and run["oracle_test_trades"] == 0 and run["fraction_of_oracle"] is None
    assert run["validated"] == 2 and 0 <= run["promoted_trading"] <= run["promotions"] <= 2
    assert run["pbo"] is None or 0.0 <= run["pbo"] <= 1.0
    assert summary["bench"] == "learning_grid" and summary["runs"] == 1 and summary["market_seeds"] == [3]
    # the summary's arithmetic, on runs made up for it
    made_up = [{**run, "market_seed": m, "seed": s, "fraction_of_oracle": f, "agent_test_pips": a, "raw_test_pips": 0.0,
                "search_vs_raw_p": p, "minutes_to_0.9_oracle": t, "champion_test_costs_pips": 10.0}
               for m, s, f, a, p, t in ((1, 0, 0.8, 100.0, 0.01, 4.0), (1, 1, 1.0, 120.0, 0.2, None),
                                        (2, 0, 1.2, -20.0, 0.01, 6.0))]
    summary = grid_summary(made_up)
    assert summary["fraction_of_oracle_mean"] == 1.0 and summary["fraction_of_oracle_std"] == 0.2
    assert summary["fraction_of_oracle_min"] == 0.8 and summary["search_ahead_runs"] == 1
    assert summary["minutes_to_0.9_oracle_median"] == 5.0 and summary["runs_reaching_0.9_oracle"] == 2
    assert summary["champions_losing_more_than_costs"] == 1 and summary["market_seeds"] == [1, 2]


def test_the_arena_benchmark_trains_chooses_and_tests_every_family_in_quick_mode():
    """bench.arena --quick: each family trained from scratch, its candidates validated and gated,
    the champion played on test; one JSON line per family in the documented shape."""
    import json
    import subprocess
    import sys

    from tests.service_helpers import ROOT

    result = subprocess.run([sys.executable, "-m", "bench.arena", "--quick", "--minutes", "0.05", "--guardian-steps",
                             "3"], cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    lines = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    guardian = lines.pop(0)  # the Guardian's line first: how its clusters' names agree with the rules
    assert guardian["family"] == "guardian" and guardian["steps"] == 3 and len(guardian["clusters"]) == 8
    assert all(0 <= guardian[key] <= 1 for key in ("train_accuracy", "validation_agreement", "test_agreement"))
    assert [line["family"] for line in lines] == ["muzero", "tft", "dt"]
    for line in lines:
        assert {"bench", "family", "market", "test_pips", "fraction_of_oracle", "train_seconds"} <= set(line)
        assert line["bench"] == "arena" and line["market"] == "fx" and line["validated"] >= 1
        assert line["champion_episode"] is not None and line["test_pips"] is not None  # the quick gate lets it in
