"""The validation service: bad candidates are rejected with a reason, the gate,
promotion is atomic, and signals written while the service was down are
validated after a restart (newest first, the backlog skipped)."""

from __future__ import annotations

import json
import threading
import time

import duckdb
import httpx
import numpy as np
import pytest
import torch

from services.validation.config import ValidationSettings
from services.validation.service import ValidationService
from shared.config import GateConfig, NetworkConfig, TrainingConfig, ValidationConfig
from shared.training.trainer import Trainer
from shared.validation.gate import gate
from shared.validation.report import ValidationReport
from shared.validation.statistics import monte_carlo, trade_stats
from shared.volume.checkpoints import CheckpointDir, ReadySignal, atomic_write_json, sha256_file
from shared.volume.promotion import (
    PromotionError,
    champion_metrics,
    point_current_to,
    promote,
    read_current,
    read_decision,
    store_copy,
    write_decision,
)
from tests.service_helpers import free_port, start, wait_for

SMALL = NetworkConfig(tcn_channels=16, hidden=32, dropout=0.0)


def write_candidate(features, root, episode: int) -> ReadySignal:
    trainer = Trainer(features, root, TrainingConfig(network=SMALL, episodes_per_iteration=2))
    trainer.episode = episode
    trainer.write_checkpoint()
    trainer.close()
    return ReadySignal.read(root / "training" / f"ckpt-ep{episode:08d}.ready")


def service_for(features, root, **overrides) -> ValidationService:
    settings = ValidationSettings(checkpoint_dir=root, **overrides)
    config = ValidationConfig(simulations=2, mc_runs=50, max_sessions=2, timeout_seconds=120)
    return ValidationService(settings, features, config)


def result(root, episode: int) -> dict:
    return json.loads((root / "validation" / "results" / f"ep{episode:08d}.json").read_text())


def _resave(path, change) -> None:
    payload = torch.load(path, weights_only=True)
    change(payload)
    torch.save(payload, path)


@pytest.mark.parametrize(
    "damage, reason",
    [
        (lambda p, s: p.write_bytes(b"not a checkpoint at all"), "corrupt"),
        (lambda p, s: p.write_bytes(p.read_bytes()[: len(p.read_bytes()) // 2]), "corrupt"),
        (lambda p, s: _resave(p, lambda d: d.update(feature_spec_version="micro-v0")), "feature_spec_mismatch"),
        (lambda p, s: _resave(p, lambda d: d["config"]["training"]["network"].update(hidden=48)), "architecture_mismatch"),
        # declared shapes that do not fit this system's feature spec or the action space it names
        (lambda p, s: _resave(p, lambda d: d["config"]["training"]["network"].update(temporal_features=12)),
         "architecture_mismatch"),
        (lambda p, s: _resave(p, lambda d: d["config"]["training"]["env"].update(action_space="sized_positions")),
         "architecture_mismatch"),
        (lambda p, s: _resave(p, lambda d: d["config"].update(version=2)), "config_mismatch"),
        (lambda p, s: _resave(p, lambda d: d["config"]["training"]["learner"].update(momentum=0.9)), "config_mismatch"),
        (lambda p, s: p.unlink(), "missing"),
    ],
)
def test_bad_candidates_are_rejected_with_the_reason(features, tmp_path, damage, reason):
    signal = write_candidate(features, tmp_path, 64)
    path = tmp_path / "training" / signal.checkpoint
    damage(path, signal)
    if path.exists():  # keep the signal honest about the damaged bytes, so the reason is the damage itself
        atomic_write_json(tmp_path / "training" / "ckpt-ep00000064.ready", {**signal.to_dict(), "sha256": sha256_file(path)})
    service = service_for(features, tmp_path)
    service.handle(64, tmp_path / "training" / "ckpt-ep00000064.ready")
    outcome = result(tmp_path, 64)
    assert outcome["result"] == "rejected" and outcome["reason"].startswith(reason), outcome
    assert read_current(tmp_path) is None, "nothing promoted"
    assert service.metrics.validations.labels(result="rejected")._value.get() == 1


def test_a_model_keeps_the_search_it_was_trained_with(features, tmp_path):
    from shared.volume.candidates import load_candidate

    signal = write_candidate(features, tmp_path, 64)
    path = tmp_path / "training" / signal.checkpoint
    assert load_candidate(path).search_config.root_selection == "gumbel"  # today's default

    def as_version_0(payload: dict) -> None:
        """The layout before one config object: three dicts, num_simulations, no root_selection
        (saved before Gumbel search existed)."""
        training = payload.pop("config")["training"]
        search = {**training["search"], "num_simulations": training["search"]["simulations"]}
        del search["simulations"], search["root_selection"]
        payload.update(network_config=training["network"], search_config=search, env_config=training["env"])

    _resave(path, as_version_0)
    old = load_candidate(path)
    assert old.search_config.root_selection == "puct" and old.search_config.simulations == 5
    assert old.config.network == load_candidate_config_of(features, tmp_path).network


def load_candidate_config_of(features, root):
    from shared.volume.candidates import load_candidate

    signal = write_candidate(features, root / "again", 64)
    return load_candidate(root / "again" / "training" / signal.checkpoint).config


def test_a_candidate_stores_its_whole_config_and_where_each_value_came_from(features, tmp_path):
    from shared.volume.candidates import load_candidate

    signal = write_candidate(features, tmp_path, 64)
    payload = torch.load(tmp_path / "training" / signal.checkpoint, weights_only=True)
    assert payload["config"]["version"] == 1 and set(payload["config"]) == {"version", "training", "sources"}
    candidate = load_candidate(tmp_path / "training" / signal.checkpoint)
    assert candidate.config.to_dict() == payload["config"]["training"]  # one round trip
    assert candidate.config.env.episode_bars == features.session_config.length_bars  # derived from the store


def test_sha_mismatch_is_rejected(features, tmp_path):
    signal = write_candidate(features, tmp_path, 64)
    path = tmp_path / "training" / signal.checkpoint
    data = bytearray(path.read_bytes())
    data[-10] ^= 0xFF
    path.write_bytes(bytes(data))
    service = service_for(features, tmp_path)
    service.handle(64, tmp_path / "training" / "ckpt-ep00000064.ready")
    assert result(tmp_path, 64)["reason"].startswith("sha_mismatch")


def test_a_valid_candidate_is_replayed_scored_and_reported(features, tmp_path):
    write_candidate(features, tmp_path, 64)
    service = service_for(features, tmp_path)
    service.tune_reference()  # the loop does this once at start
    service.handle(64, tmp_path / "training" / "ckpt-ep00000064.ready")
    outcome = result(tmp_path, 64)
    # what fraction of the oracle (the demo market's known drift) and momentum baselines it earned
    # (on these two sessions; a fraction exists where the baseline made money)
    baselines = outcome["baselines"]
    assert baselines["oracle_pips"] is not None and np.isfinite(baselines["momentum_pips"])
    for name in ("oracle", "momentum"):
        if baselines[f"{name}_pips"] > 0:
            assert baselines[f"fraction_of_{name}"] == pytest.approx(
                outcome["report"]["stats"]["total_pips"] / baselines[f"{name}_pips"], abs=1e-4)
        else:
            assert baselines[f"fraction_of_{name}"] is None
    if baselines["fraction_of_oracle"] is not None:
        assert service.metrics.fraction_of_oracle._value.get() == pytest.approx(baselines["fraction_of_oracle"])
    assert service.status_page()["baselines_on_validation"]["oracle_pips"] == baselines["oracle_pips"]
    assert outcome["result"] == "failed_gate"  # an untrained model does not pass
    report = outcome["report"]
    assert report["sessions"] == 2
    assert set(report["baselines"]) == {"raw_network", "random", "flat"}
    assert report["baselines"]["flat"]["trades"] == 0
    assert "search_beats_raw" in report
    raw = report["baselines"]["raw_network"]["total_pips"]
    want = "tie" if raw == report["stats"]["total_pips"] else ("ahead" if report["stats"]["total_pips"] > raw else "behind")
    assert report["search_vs_raw"] == want  # a tie is a tie, not "search did not beat raw"
    assert (tmp_path / "validation" / "results" / "ep00000064.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    rows = service.records.db.execute("SELECT episode, result FROM validations").fetchall()
    assert rows == [(64, "failed_gate")]


def _report(trades: np.ndarray) -> ValidationReport:
    stats = trade_stats(trades, np.array([trades.sum()]), np.array([10, 5, 5, 5]), position_changes=2 * len(trades))
    return ValidationReport(episode=1, sha256="x", sessions=10, seconds=1.0, stats=stats,
                            monte_carlo=monte_carlo(trades, runs=200) if len(trades) else None, baselines={},
                            search_beats_raw=True, equity_curve=[])


def test_a_tie_between_search_and_raw_is_reported_as_a_tie():
    report = _report(np.tile([12.0, -4.0], 30))
    report.baselines = {"raw_network": report.stats}
    assert report.search_vs_raw == "tie" and report.to_dict()["search_vs_raw"] == "tie"
    report.baselines = {"raw_network": _report(np.array([1.0, 2.0])).stats}
    assert report.search_vs_raw == "ahead"


def test_the_gate_compares_with_the_champion_session_by_session():
    """A point score picked as the best of many candidates is mostly luck: with the champion's
    session P&L on the same sessions, the candidate must win a paired test."""
    rng = np.random.default_rng(1)
    champion_sessions = rng.normal(10, 60, 30)
    report = _report(np.tile([12.0, -4.0], 30))
    champion = {"quality": -1e9, "session_pnl": champion_sessions.tolist()}
    report.session_pnl = (champion_sessions + np.tile([-6.0, 4.5], 15)).tolist()   # a little behind
    assert any("paired validation sessions" in r for r in gate(report, champion, GateConfig()))
    report.session_pnl = (champion_sessions + np.tile([6.0, -4.5], 15)).tolist()   # a little ahead, not significantly
    assert any("sign-flip p" in r for r in gate(report, champion, GateConfig()))  # the default: not significantly
    assert gate(report, champion, GateConfig(max_p_value=0.50)) == []  # p < 0.50: more on the same sessions
    report.session_pnl = (champion_sessions + 40 + rng.normal(0, 5, 30)).tolist()  # clearly better
    assert gate(report, champion, GateConfig()) == []
    # by score when asked, or when the champion has no session P&L (promoted by hand)
    assert gate(report, {"quality": 1e9, "session_pnl": champion_sessions.tolist()}, GateConfig()) == []
    assert gate(report, {"quality": 1e9, "session_pnl": champion_sessions.tolist()}, GateConfig(selection="score")) != []
    assert gate(report, {"quality": 1e9}, GateConfig()) != []


def test_gate():
    good = _report(np.tile([12.0, -4.0], 30))
    assert gate(good, None, GateConfig()) == []
    assert gate(good, {"quality": 1e9}, GateConfig()) != []  # does not beat a better champion
    assert gate(good, {"quality": 1.0}, GateConfig()) == []
    few = gate(_report(np.array([5.0, 6.0])), None, GateConfig(min_trades=20))
    assert any("trades" in r for r in few)
    losing = gate(_report(np.tile([4.0, -12.0], 30)), None, GateConfig())
    assert any("expectancy" in r for r in losing) and any("Monte Carlo" in r for r in losing)
    deep = gate(good, None, GateConfig(max_drawdown_pips=1.0))
    assert any("drawdown" in r for r in deep)
    assert any("trades" in r for r in gate(_report(np.array([])), None, GateConfig()))
    # the deflated Sharpe, where asked for: below the bar, or none to read (no evidence), is refused
    good.deflated_sharpe = 0.97
    assert gate(good, None, GateConfig(min_deflated_sharpe=0.95)) == []
    good.deflated_sharpe = 0.6
    assert gate(good, None, GateConfig(min_deflated_sharpe=0.95)) == ["deflated Sharpe 0.600 < 0.95"]
    good.deflated_sharpe = None
    assert gate(good, None, GateConfig(min_deflated_sharpe=0.95)) != [] and gate(good, None, GateConfig()) == []


def test_promotion_is_atomic_for_a_polling_reader(tmp_path):
    candidates = []
    for episode in range(1, 31):
        path = tmp_path / f"c{episode}.pt"
        path.write_bytes(np.random.default_rng(episode).bytes(200_000))
        candidates.append((episode, path, sha256_file(path)))
    stop = threading.Event()
    problems: list[str] = []
    seen: set[int] = set()

    def reader() -> None:
        while not stop.is_set():
            try:
                pointer = read_current(tmp_path)
            except (json.JSONDecodeError, KeyError) as error:
                problems.append(f"partial pointer: {error}")
                continue
            if pointer is None:
                continue
            target = tmp_path / "promoted" / pointer.model
            if not target.exists() or sha256_file(target) != pointer.sha256:
                problems.append(f"dangling or mismatching pointer to {pointer.model}")
            seen.add(pointer.episode)

    thread = threading.Thread(target=reader)
    thread.start()
    for episode, path, sha in candidates:
        promote(tmp_path, path.read_bytes(), sha, episode, {"quality": float(episode)})
    time.sleep(0.05)
    stop.set()
    thread.join()
    assert problems == []
    assert len(seen) > 1 and read_current(tmp_path).episode == 30
    assert json.loads((tmp_path / "validation" / "best_metrics.json").read_text())["episode"] == 30
    # promoted models are never overwritten, and a roll-back re-points CURRENT
    with pytest.raises(FileExistsError):
        promote(tmp_path, candidates[1][1].read_bytes(), candidates[1][2], 1, {})
    assert point_current_to(tmp_path, "model-ep00000007.pt").episode == 7
    assert read_current(tmp_path).sha256 == candidates[6][2]
    # a rollback restores the champion's metrics too: the gate now compares with episode 7's
    assert champion_metrics(tmp_path)["quality"] == 7.0
    assert json.loads((tmp_path / "validation" / "best_metrics.json").read_text())["quality"] == 7.0
    # bytes that are not what the signal says are never promoted
    with pytest.raises(PromotionError):
        promote(tmp_path, b"other bytes", candidates[2][2], 99, {})
    assert not (tmp_path / "promoted" / "model-ep00000099.pt").exists()


def _passing_gate(features, root) -> ValidationService:
    """A service whose gate any candidate passes (an untrained model holds: 0 trades)."""
    service = service_for(features, root)
    service.config = ValidationConfig(simulations=2, mc_runs=50, max_sessions=2, timeout_seconds=120,
                                      gate=GateConfig(min_trades=0, min_expectancy_pips=-1e9,
                                                      min_mc_p5_final_pips=-1e9, max_drawdown_pips=1e9))
    return service


def test_promotion_uses_the_validated_bytes_when_training_pruned_the_file(features, tmp_path, monkeypatch):
    """Regression: promotion re-read the candidate from disk after validating it; training
    prunes within about a minute, so FileNotFoundError ended the validation process."""
    import services.validation.service as module

    signal = write_candidate(features, tmp_path, 64)
    real_validate = module.validate

    def validate_while_training_prunes(candidate, *args, **kwargs):
        (tmp_path / "training" / signal.checkpoint).unlink(missing_ok=True)
        (tmp_path / "training" / "ckpt-ep00000064.ready").unlink(missing_ok=True)
        return real_validate(candidate, *args, **kwargs)

    monkeypatch.setattr(module, "validate", validate_while_training_prunes)
    service = _passing_gate(features, tmp_path)
    service.handle(64, tmp_path / "training" / "ckpt-ep00000064.ready")
    assert result(tmp_path, 64)["result"] == "promoted"
    current = read_current(tmp_path)
    assert current.episode == 64 and current.sha256 == signal.sha256
    assert sha256_file(tmp_path / "promoted" / current.model) == signal.sha256
    assert champion_metrics(tmp_path)["trades"] == result(tmp_path, 64)["report"]["stats"]["trades"]
    assert read_decision(tmp_path) is None
    # the champion record carries its sessions for the next paired test, and its test split is reported
    assert len(champion_metrics(tmp_path)["session_pnl"]) == result(tmp_path, 64)["report"]["sessions"]
    test_report = json.loads((tmp_path / "validation" / "results" / "ep00000064.test.json").read_text())
    assert test_report["report"]["split"] == "test" and service.status_page()["champion_test_split"]["episode"] == 64


@pytest.mark.parametrize("left", ["copy_made", "only_candidate", "nothing"])
def test_a_promotion_decided_before_a_kill_is_finished_at_start(features, tmp_path, left):
    """Regression (issue 15): a kill between the gate and CURRENT lost a candidate that passed."""
    signal = write_candidate(features, tmp_path, 64)
    data = (tmp_path / "training" / signal.checkpoint).read_bytes()
    metrics = {**_report(np.tile([12.0, -4.0], 30)).stats.to_dict(), "quality": 3.0}
    decided = {"episode": 64, "result": "promoted", "reason": "passed the gate and beat the champion",
               "validated_at": "2026-01-01T00:00:00+00:00", "seconds": 1.0, "report": None}
    write_decision(tmp_path, 64, signal.sha256, metrics, decided)
    if left == "copy_made":
        store_copy(tmp_path, data, signal.sha256, 64, metrics)
        (tmp_path / "training" / signal.checkpoint).unlink()
    elif left == "nothing":
        (tmp_path / "training" / signal.checkpoint).unlink()
    write_candidate(features, tmp_path, 128)  # a newer candidate waits: 64 must not become "skipped"
    service = service_for(features, tmp_path)  # the restart
    assert read_decision(tmp_path) is None
    if left == "nothing":
        assert result(tmp_path, 64)["result"] == "error" and "vanished" in result(tmp_path, 64)["reason"]
        assert read_current(tmp_path) is None
    else:
        assert result(tmp_path, 64)["result"] == "promoted"
        assert read_current(tmp_path).episode == 64 and champion_metrics(tmp_path)["quality"] == 3.0
        assert service.metrics.promotions._value.get() == 1
    assert [episode for episode, _ in service.pending()] == [128]


def test_signals_written_while_down_are_validated_after_restart(features, data_dir, tmp_path):
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {"MICRO_DATA_DIR": str(data_dir), "CHECKPOINT_DIR": str(tmp_path), "VALIDATION_PORT": str(port),
           "VALIDATION_SIMULATIONS": "2", "VALIDATION_MAX_SESSIONS": "2", "VALIDATION_MC_RUNS": "50",
           "VALIDATION_RESCAN_SECONDS": "30", "VALIDATION_POLLING": "true"}
    service = start("services.validation", env, tmp_path / "validation.log")
    try:
        wait_for(f"{url}/ready", process=service)
        # while it runs: a new signal is picked up by the (polling) observer before the 30s rescan
        write_candidate(features, tmp_path, 10)
        wait_for(f"{url}/status", lambda r: (r.json()["last_result"] or {}).get("episode") == 10, timeout=25,
                 process=service)
    finally:
        service.terminate()
        service.wait(timeout=30)
    for episode in (20, 30, 40):  # written while the service is down
        write_candidate(features, tmp_path, episode)
    service = start("services.validation", env, tmp_path / "validation.log")
    try:
        wait_for(f"{url}/status", lambda r: (r.json()["last_result"] or {}).get("episode") == 40, process=service)
        assert result(tmp_path, 40)["result"] in ("failed_gate", "promoted")
        assert result(tmp_path, 30)["result"] == result(tmp_path, 20)["result"] == "skipped"
        metrics = httpx.get(f"{url}/metrics").text
        assert 'micro_validation_validations_total{result="skipped"} 2.0' in metrics
        assert "micro_validation_duration_seconds_bucket" in metrics
        assert httpx.get(f"{url}/health").status_code == 200
    finally:
        service.kill()
        service.wait()
    assert CheckpointDir(tmp_path).candidates()[-1][0] == 40


def test_promotion_cli_by_hand_and_rollback(features, tmp_path, capsys):
    from shared.volume.promotion import main as promotion_cli

    for episode in (10, 20):
        write_candidate(features, tmp_path, episode)
    root = ["--root", str(tmp_path)]
    assert promotion_cli(root + ["status"]) == 0 and "nothing promoted yet" in capsys.readouterr().out
    for episode in (10, 20):
        assert promotion_cli(root + ["promote", str(tmp_path / "training" / f"ckpt-ep{episode:08d}.pt")]) == 0
    assert read_current(tmp_path).episode == 20
    assert promotion_cli(root + ["rollback", "model-ep00000010.pt"]) == 0
    assert read_current(tmp_path).episode == 10
    assert promotion_cli(root + ["status"]) == 0
    assert "model-ep00000010.pt  <- live" in capsys.readouterr().out
    assert promotion_cli(root + ["rollback", "model-ep00000099.pt"]) == 2


def test_a_hand_promotion_still_checks_the_file(features, tmp_path, capsys):
    """promote by hand bypasses only the gate: 1,000 random bytes named like a checkpoint are refused."""
    from shared.volume.promotion import main as promotion_main

    junk = tmp_path / "training" / "ckpt-ep00000032.pt"
    junk.parent.mkdir(parents=True)
    junk.write_bytes(np.random.default_rng(0).bytes(1000))
    assert promotion_main(["--root", str(tmp_path), "promote", str(junk)]) == 2
    assert "corrupt" in capsys.readouterr().err and read_current(tmp_path) is None
    signal = write_candidate(features, tmp_path, 64)
    good = tmp_path / "training" / signal.checkpoint
    assert promotion_main(["--root", str(tmp_path), "promote", str(good)]) == 0
    assert read_current(tmp_path).sha256 == signal.sha256
    # a file changed after its .ready was written no longer matches the signal's sha256
    (tmp_path / "training" / "ckpt-ep00000096.pt").write_bytes(good.read_bytes())
    atomic_write_json(tmp_path / "training" / "ckpt-ep00000096.ready", {**signal.to_dict(), "sha256": "0" * 64})
    assert promotion_main(["--root", str(tmp_path), "promote", str(tmp_path / "training" / "ckpt-ep00000096.pt")]) == 2
    assert "sha_mismatch" in capsys.readouterr().err


def test_baselines_are_tuned_in_a_process_of_their_own_that_answers_raises_and_stops():
    import math

    from services.validation.service import in_own_process

    stop = threading.Event()
    assert in_own_process(math.sqrt, 16.0, stop=stop) == 4.0
    with pytest.raises(ValueError, match="math domain error"):
        in_own_process(math.sqrt, -1.0, stop=stop)
    threading.Timer(1.0, stop.set).start()
    started = time.monotonic()
    assert in_own_process(time.sleep, 60, stop=stop) is None  # the service stops: the tuning does not hold it
    assert time.monotonic() - started < 15


def test_the_report_carries_the_pbo_over_the_candidates_judged_on_the_same_sessions(features, tmp_path):
    """The probability of backtest overfitting (CSCV) over every judged candidate's session P&L:
    in each result file, the gauge and /status; only candidates of the same sessions enter it,
    across a restart too."""
    from services.validation.service import PBO_BLOCKS
    from shared.validation.statistics import probability_of_backtest_overfitting

    settings = ValidationSettings(checkpoint_dir=tmp_path)
    config = ValidationConfig(simulations=2, mc_runs=50, max_sessions=8, timeout_seconds=120)
    assert len(features.sessions["validation"]) >= 8
    for episode in (64, 128):
        write_candidate(features, tmp_path, episode)
    service = ValidationService(settings, features, config)
    service.handle(64, tmp_path / "training" / "ckpt-ep00000064.ready")
    assert result(tmp_path, 64)["pbo"] is None  # one candidate: nothing to choose among
    service.records.db.close()

    service = ValidationService(settings, features, config)  # a restart keeps what was judged
    # a candidate judged on other sessions (another data set) never enters the matrix
    service.records.write({"episode": 1, "result": "failed_gate", "reason": "x", "seconds": 0.0,
                           "report": {"session_pnl": [5.0] * 8}}, None, sessions_key="other")
    service.handle(128, tmp_path / "training" / "ckpt-ep00000128.ready")
    outcome = result(tmp_path, 128)
    pnl = [result(tmp_path, e)["report"]["session_pnl"] for e in (64, 128)]
    assert outcome["pbo"] == probability_of_backtest_overfitting(np.asarray(pnl), blocks=PBO_BLOCKS)
    assert 0.0 <= outcome["pbo"] <= 1.0
    assert service.metrics.pbo._value.get() == outcome["pbo"]
    assert service.status_page()["last_result"]["pbo"] == outcome["pbo"]
    # a copy of the table anyone can read while the service holds validations.duckdb
    copy = tmp_path / "validation" / "export" / "validations.parquet"
    assert duckdb.sql(f"SELECT count(*) FROM '{copy}'").fetchall()[0][0] == 3
    # the formula over a matrix a person can check: one candidate ahead on every session is never overfit
    rng = np.random.default_rng(3)
    for episode in range(2, 7):
        service.records.write({"episode": episode, "result": "failed_gate", "reason": "x", "seconds": 0.0,
                               "report": {"session_pnl": rng.normal(0, 1, 8).tolist()}}, None,
                              sessions_key=service.sessions_key)
    assert service.pbo_with([100.0] * 8) == 0.0
    assert len(service.records.judged_session_pnl(service.sessions_key, 100)) == 7
