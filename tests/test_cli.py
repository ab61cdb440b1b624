"""micro, the one command line: every verb listed and helped, config show and schema, one
validation report without the service."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from micro.cli import BENCHMARKS, main
from tests.service_helpers import ROOT

VERBS = ("run", "up", "down", "data", "train", "validate", "live", "status", "promote", "rollback", "export", "explain", "bench",
         "config")


def test_micro_help_lists_every_verb():
    done = subprocess.run([sys.executable, "-m", "micro", "--help"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0
    listed = done.stdout.split("positional arguments:")[1]
    for verb in VERBS:
        assert f"\n    {verb} " in listed, verb


@pytest.mark.parametrize("verb", VERBS)
def test_each_verb_has_help(verb, capsys):
    with pytest.raises(SystemExit) as stop:
        main([verb, "--help"])
    assert stop.value.code == 0
    assert "usage:" in capsys.readouterr().out


def test_bench_names_every_benchmark():
    # not benchmarks of their own: chaos_v20 is bench.chaos --broker v20, learning_measures is bench.learning's
    # measures, mcts_mctx is bench.mcts --against-mctx, selection replays bench.learning's output
    helpers = {"__init__", "chaos_v20", "learning_measures", "mcts_mctx", "selection"}
    assert set(BENCHMARKS) == {p.stem for p in (ROOT / "bench").glob("*.py")} - helpers


def test_config_show_gives_values_and_sources(monkeypatch, capsys):
    monkeypatch.setenv("TRAINING_LEARNER__BATCH_SIZE", "16")
    assert main(["config", "show", "training", "--json", "--set", "seed=4"]) == 0
    shown = json.loads(capsys.readouterr().out)["training"]
    assert shown["learner.batch_size"] == {"value": 16, "source": "env"}
    assert shown["seed"] == {"value": 4, "source": "cli"}
    assert main(["config", "show", "live"]) == 0
    text = capsys.readouterr().out
    assert "[live]" in text and "max_daily_loss_pips = 100.0    # default, LIVE_MAX_DAILY_LOSS_PIPS" in text


def test_config_errors_exit_2_with_the_name(monkeypatch, capsys):
    monkeypatch.setenv("LIVE_MAX_DAILY_LOSS", "20")
    assert main(["config", "show", "live"]) == 2
    assert "LIVE_MAX_DAILY_LOSS_PIPS" in capsys.readouterr().err
    monkeypatch.delenv("LIVE_MAX_DAILY_LOSS")
    assert main(["config", "show", "training", "--set", "learner.learnig_rate=1"]) == 2
    assert "learner.learning_rate" in capsys.readouterr().err


def test_config_schema_describes_the_toml(capsys):
    assert main(["config", "schema"]) == 0
    schema = json.loads(capsys.readouterr().out)
    learner = schema["properties"]["training"]["properties"]["learner"]
    assert learner["properties"]["learning_rate"]["type"] == "number" and learner["additionalProperties"] is False
    assert schema["properties"]["validation"]["properties"]["selection"]["enum"] == ["paired_test", "score"]


def test_validate_one_checkpoint_prints_a_report(features, data_dir, tmp_path, monkeypatch, capsys):
    from tests.test_validation import write_candidate

    signal = write_candidate(features, tmp_path, 64)
    monkeypatch.setenv("MICRO_DATA_DIR", str(data_dir))
    monkeypatch.setenv("CHECKPOINT_DIR", str(tmp_path))
    code = main(["validate", str(tmp_path / "training" / signal.checkpoint), "--set", "simulations=2",
                 "--set", "max_sessions=2", "--set", "mc_runs=50"])
    assert code == 0
    report = json.loads(capsys.readouterr().out)
    assert report["sessions"] == 2 and report["versus"] == "no champion yet" and isinstance(report["passes_gate"], bool)
    assert not (tmp_path / "promoted").exists(), "one report, nothing promoted"
    assert main(["validate", str(tmp_path / "training" / "ckpt-ep00000999.pt")]) == 2
    assert "missing" in capsys.readouterr().err
