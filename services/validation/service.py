"""The validation loop in a thread, and the FastAPI app around it."""

from __future__ import annotations

import hashlib
import logging
import os
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
from fastapi import FastAPI

from services.validation.config import ValidationSettings
from services.validation.metrics import ValidationMetrics
from services.validation.records import ValidationRecords, result_name
from shared.config import ValidationConfig
from shared.env.baselines import Reference, reference_for_store, reference_on
from shared.features.store import FeatureSet
from shared.model import select_device
from shared.service.app import Heartbeat, service_app
from shared.service.watch import VolumeWatcher
from shared.validation.arena import Entrant, arena, best_of_each_family
from shared.validation.gate import gate
from shared.validation.report import plain, write_plot, write_result
from shared.validation.statistics import probability_of_backtest_overfitting
from shared.validation.validator import ValidationTimeout, validate
from shared.volume.candidates import CandidateError, check_market, load_candidate
from shared.volume.checkpoints import CANDIDATE_RE, ReadySignal, clean_orphans
from shared.volume.promotion import (
    PromotionError,
    bytes_for_decision,
    champion_metrics,
    clear_decision,
    promote,
    read_current,
    read_decision,
    sync_best_metrics,
    write_decision,
)

log = logging.getLogger("validation")

# The PBO looks at the last PBO_CANDIDATES judged candidates on the same sessions, cut into
# PBO_BLOCKS blocks (C(8, 4) = 70 splits: cheap, and each half still holds several sessions).
PBO_CANDIDATES = 100
PBO_BLOCKS = 8


class _Interrupted(Exception):
    pass


class ValidationService:
    def __init__(self, settings: ValidationSettings, features: FeatureSet, config: ValidationConfig) -> None:
        self.settings = settings
        self.features = features
        self.config = config
        self.root = settings.checkpoint_dir
        self.training = self.root / "training"
        self.results = self.root / "validation" / "results"
        self.results.mkdir(parents=True, exist_ok=True)
        self.training.mkdir(parents=True, exist_ok=True)
        clean_orphans(self.results)
        clean_orphans(self.root / "promoted")
        self.device = select_device(settings.device)
        self.metrics = ValidationMetrics()
        self.records = ValidationRecords(self.root / "validation" / "validations.duckdb", self.results, self.metrics)
        self.sessions_key = sessions_key(features, config)
        self.status = "starting"
        self.heartbeat = Heartbeat(self.metrics.heartbeat, settings.stall_seconds, log)
        self.current: dict | None = None
        self.queue: list[int] = []
        self.last_result: dict | None = None
        self.champion_test: dict | None = None
        self.arena: dict | None = None  # validation/arena.json: the families and the baselines ranked
        self.reference: Reference | None = None
        self.baselines_status = "not tuned"
        self.stop = threading.Event()
        self.finish_decided_promotion()
        sync_best_metrics(self.root)  # a copy of CURRENT's metrics; repaired if a kill left it behind
        current = read_current(self.root)
        if current is not None:
            self.metrics.champion_episode.set(current.episode)
        self.update_arena()  # from the candidates judged before a restart (the baselines join once tuned)

    # --- scheduling ------------------------------------------------------------------

    def pending(self) -> list[tuple[int, Path]]:
        """Signals without a result yet, newest first."""
        found = []
        for signal in self.training.glob("ckpt-ep*.ready"):
            match = CANDIDATE_RE.match(signal.name.removesuffix(".ready") + ".pt")
            if match and not (self.results / result_name(int(match.group(1)))).exists():
                found.append((int(match.group(1)), signal))
        return sorted(found, reverse=True)

    def tune_reference(self, in_a_process: bool = False) -> None:
        """The oracle (synthetic markets) and momentum baselines on the validation sessions,
        tuned on the train split once: every report from then on says what fraction of them it
        earned. The service runs it beside the loop, in a process of its own (a fine grid takes
        a while, and in a thread it would hold the GIL the loop needs): candidates are validated
        meanwhile, their reports without the fractions."""
        self.baselines_status = "tuning"
        starts = self.features.require_sessions("validation")
        starts = starts[: self.config.max_sessions] if self.config.max_sessions else starts
        try:
            if in_a_process:
                self.reference = in_own_process(reference_for_store, self.settings.db_path, self.features.instrument_names,
                                                self.features.granularity, self.config.max_sessions, stop=self.stop)
                if self.reference is None:  # stopped first
                    return
            else:
                self.reference = reference_on(self.features, starts)
        except Exception as error:  # noqa: BLE001 - a report, not a decision: validation goes on without it
            log.warning("baselines not available: %s", error)
            self.baselines_status = f"not available: {error}"[:200]
            return
        self.baselines_status = "tuned"
        log.info("baselines on the validation sessions", extra={"fields": {
            "oracle_pips": self.reference.oracle_pips, "momentum_pips": self.reference.momentum_pips}})

    def loop(self) -> None:
        watcher = VolumeWatcher(self.training, (".ready",), polling=self.settings.polling).start()
        log.info("watching %s (%s observer, rescan every %.0fs)", self.training, watcher.kind, self.settings.rescan_seconds)
        try:
            while not self.stop.is_set():
                self.heartbeat.beat()
                pending = self.pending()
                self.queue = [episode for episode, _ in pending]
                self.metrics.queue_depth.set(len(pending))
                if not pending:
                    self.status = "idle"
                    watcher.wait(self.settings.rescan_seconds, self.stop)
                    continue
                (episode, signal), older = pending[0], pending[1:]
                for old_episode, _ in older:  # a backlog: only the newest is worth the time
                    self.record(old_episode, "skipped", f"a newer candidate (episode {episode}) was waiting", None)
                self.status = "validating"
                self.handle(episode, signal)
        except BaseException:  # noqa: BLE001 - a crashed loop takes the process down (restart: unless-stopped)
            log.exception("validation loop failed")
            os._exit(1)
        finally:
            watcher.stop()

    def handle(self, episode: int, signal_path: Path) -> None:
        started = time.monotonic()
        self.current = {"episode": episode, "started_at": datetime.now(timezone.utc).isoformat(), "progress": 0.0}
        self.metrics.progress.set(0.0)
        try:
            signal = ReadySignal.read(signal_path)
            candidate = load_candidate(self.training / signal.checkpoint, signal.sha256, self.device)
            for instrument in self.features.instrument_names:  # a model of several trades every one of them
                check_market(candidate, instrument, self.features.granularity)
        except FileNotFoundError:
            return self.record(episode, "rejected", "signal vanished before it was read (pruned by training)", None)
        except (CandidateError, ValueError) as error:
            reason = error.reason if isinstance(error, CandidateError) else "bad_signal"
            detail = str(error) if isinstance(error, CandidateError) else f"{reason}: {error}"
            return self.record(episode, "rejected", detail, None)

        def progress(fraction: float) -> None:
            if self.stop.is_set():  # shutting down: leave it unrecorded, it is validated again after the restart
                raise _Interrupted()
            self.heartbeat.beat()
            self.current["progress"] = round(fraction, 4)
            self.metrics.progress.set(fraction)

        tried = self.records.judged() + 1
        try:
            reference = self.reference
            rules = {"momentum": reference.momentum_sessions, "oracle": reference.oracle_sessions} if reference else None
            report = validate(candidate, self.features, self.config, progress=progress, trials=tried, rules=rules)
        except _Interrupted:
            self.current = None
            return None
        except ValidationTimeout as error:
            return self.record(episode, "timeout", str(error), None, seconds=time.monotonic() - started)
        except Exception as error:  # noqa: BLE001 - one bad candidate must not stop the queue
            log.exception("validation of episode %d failed", episode)
            return self.record(episode, "error", f"{type(error).__name__}: {error}", None,
                               seconds=time.monotonic() - started)
        reasons = gate(report, champion_metrics(self.root), self.config.gate)
        write_plot(self.results / f"ep{episode:08d}.png", report)
        if reasons:
            return self.record(episode, "failed_gate", "; ".join(reasons), report, seconds=report.seconds)
        # Decide durably, then act: a kill from here on is finished at the next start.
        result = plain(self.result_payload(episode, "promoted", "passed the gate and beat the champion", report,
                                           report.seconds))
        # the champion record carries its session P&L: the next candidate is compared session by session
        # and its results per regime: live's LIVE_REGIME_GUARD reads them
        metrics = plain({**report.stats.to_dict(), "session_pnl": report.session_pnl,
                         "deflated_sharpe": report.deflated_sharpe, "candidates_tried": tried,
                         "regimes": report.regimes})
        write_decision(self.root, episode, candidate.sha256, metrics, result)
        self.carry_out(episode, candidate.data, candidate.sha256, metrics, result)
        if self.settings.report_test_split and len(self.features.sessions.get("test", [])):
            self.report_test_split(candidate, episode)

    def report_test_split(self, candidate, episode: int) -> None:
        """The new champion on the test split: reported (results/epN.test.json, /status), never
        used to choose anything."""
        try:
            test = validate(candidate, self.features, self.config, split="test")
        except Exception as error:  # noqa: BLE001 - a report, not a decision: never stop the loop for it
            log.warning("test-split report of episode %d failed: %s", episode, error)
            return
        self.champion_test = {"episode": episode, "total_pips": test.stats.total_pips, "trades": test.stats.trades,
                              "expectancy_pips": test.stats.expectancy_pips, "sessions": test.sessions,
                              "search_vs_raw": test.search_vs_raw}
        write_result(self.results / f"ep{episode:08d}.test.json", {**self.champion_test, "report": test.to_dict()})

    def carry_out(self, episode: int, data: bytes, sha256: str, metrics: dict, result: dict) -> None:
        """Promote the validated bytes, record the result, then drop the decision."""
        try:
            pointer = promote(self.root, data, sha256, episode, metrics)
        except (PromotionError, FileExistsError, OSError) as error:
            log.error("promotion of episode %d failed: %s", episode, error)
            result = {**result, "result": "error", "reason": f"promotion failed: {error}"}
        else:
            self.metrics.promotions.inc()
            self.metrics.champion_episode.set(episode)
            log.info("promoted episode %d -> promoted/%s", episode, pointer.model)
        self.write_record(result, metrics if result["result"] == "promoted" else None)
        clear_decision(self.root)

    def finish_decided_promotion(self) -> None:
        """A promotion decided before a kill: finish it from the bytes that were validated."""
        decision = read_decision(self.root)
        if decision is None:
            return
        episode = int(decision["episode"])
        data = bytes_for_decision(self.root, decision, self.training / f"ckpt-ep{episode:08d}.pt")
        log.warning("finishing the promotion of episode %d decided before the last stop", episode)
        if data is None:
            result = {**decision["result"], "result": "error",
                      "reason": "passed the gate, but its file vanished before the promotion was finished"}
            self.write_record(result, None)
            clear_decision(self.root)
            return
        self.carry_out(episode, data, decision["sha256"], decision["metrics"], decision["result"])

    def result_payload(self, episode: int, result: str, reason: str, report, seconds: float) -> dict:
        payload = {"episode": episode, "result": result, "reason": reason,
                   "validated_at": datetime.now(timezone.utc).isoformat(), "seconds": seconds,
                   "report": report.to_dict() if report is not None else None}
        if report is not None and self.reference is not None:
            payload["baselines"] = self.reference.fractions(report.stats.total_pips)
        if report is not None and result in ("promoted", "failed_gate"):
            payload["pbo"] = self.pbo_with(report.session_pnl)
        return payload

    def pbo_with(self, session_pnl: list[float]) -> float | None:
        """The probability of backtest overfitting of choosing the best of the candidates judged on
        these sessions so far, this one included (None: fewer than two, or too few sessions). Near
        0: the in-sample best stays above the median out of sample; near 0.5 or above: choosing
        among these candidates is choosing noise."""
        earlier = self.records.judged_session_pnl(self.sessions_key, PBO_CANDIDATES - 1)
        if not len(session_pnl) or (len(earlier) and earlier.shape[1] != len(session_pnl)):
            return None
        pnl = np.vstack([earlier.reshape(-1, len(session_pnl)), np.asarray(session_pnl, dtype=np.float64)])
        return probability_of_backtest_overfitting(pnl, blocks=PBO_BLOCKS)

    def record(self, episode: int, result: str, reason: str, report, seconds: float = 0.0) -> None:
        payload = self.result_payload(episode, result, reason, report, seconds)
        self.write_record(payload, report.stats.to_dict() if report is not None else None)

    def write_record(self, payload: dict, stats: dict | None) -> None:
        """The result file, a row in validations.duckdb, the metrics; `stats` is TradeStats.to_dict()."""
        self.records.write(payload, stats, self.sessions_key)
        if payload["result"] in ("promoted", "failed_gate"):
            self.update_arena()
        self.last_result = {k: v for k, v in payload.items() if k != "report"}
        self.current = None
        log.info("candidate", extra={"fields": {"episode": payload["episode"], "result": payload["result"],
                                                "reason": payload["reason"], "seconds": round(payload["seconds"], 1)}})

    def update_arena(self) -> None:
        """validation/arena.json and the arena gauges: each family's best candidate and the rule
        baselines on these sessions, ranked, with the paired test between each pair."""
        entrants = best_of_each_family(self.records.validated_by_family(self.sessions_key))
        if not entrants:
            return
        sessions = len(entrants[0].session_pnl)
        reference = self.reference
        for name, pnl in ((("momentum", reference.momentum_sessions), ("oracle", reference.oracle_sessions))
                          if reference else ()):
            if len(pnl) == sessions:
                entrants.append(Entrant(name, "rule", tuple(pnl)))
        entrants.append(Entrant("flat", "rule", (0.0,) * sessions))
        self.arena = {"sessions_key": self.sessions_key, **arena(entrants),
                      "updated_at": datetime.now(timezone.utc).isoformat()}
        write_result(self.root / "validation" / "arena.json", self.arena)
        for entrant in self.arena["ranking"]:
            self.metrics.arena_pips.labels(entrant=entrant["kind"] if entrant["kind"] != "rule" else entrant["name"]
                                           ).set(entrant["total_pips"])

    def health(self) -> tuple[bool, dict]:
        age = self.heartbeat.age_seconds
        ok = age <= self.settings.stall_seconds
        return ok, {"status": "ok" if ok else "stalled", "loop": self.status, "heartbeat_age_seconds": round(age, 3)}

    def ready(self) -> tuple[bool, dict]:
        # the validation split is loaded before the service exists; ready once the loop runs
        return self.status != "starting", {"status": self.status}

    def status_page(self) -> dict:
        current = read_current(self.root)
        return {"service": "validation", "status": self.status, "queue": self.queue, "current": self.current,
                "last_result": self.last_result, "champion": current.__dict__ if current else None,
                "champion_test_split": self.champion_test,
                "arena": self.arena,
                "baselines": self.baselines_status,
                "baselines_on_validation": ({"oracle_pips": self.reference.oracle_pips,
                                             "momentum_pips": self.reference.momentum_pips} if self.reference else None),
                "validation_sessions": int(len(self.features.sessions.get("validation", []))),
                "instruments": list(self.features.instrument_names),
                "pip_weights": list(self.features.pip_weights) or [1.0],
                "simulations": self.config.simulations, "mc_runs": self.config.mc_runs,
                "config": self.settings.effective()}


def sessions_key(features: FeatureSet, config: ValidationConfig) -> str:
    """Names the validation sessions (their first bars' times, the instruments, the bar size and the
    simulations they are played with): only candidates judged alike enter one PBO, across restarts
    too."""
    starts = features.sessions.get("validation", np.zeros(0, dtype=np.int64))
    starts = starts[: config.max_sessions] if config.max_sessions else starts
    digest = hashlib.sha256(np.asarray(features.bars.ts)[starts].tobytes())
    # and how they are played: candidates replayed otherwise are not comparable session by session
    digest.update(f"{','.join(features.instrument_names)}|{features.granularity}|{config.simulations}".encode())
    return digest.hexdigest()[:16]


def in_own_process(function, *args, stop: threading.Event):
    """function(*args) in a fresh (spawned, daemonic: it dies with the service) process at a lower
    priority; its result, or its exception raised here; None once `stop` is set (the process is
    ended)."""
    import multiprocessing

    context = multiprocessing.get_context("spawn")
    receive, send = context.Pipe(duplex=False)
    process = context.Process(target=_call_and_send, args=(send, function, args), daemon=True,
                              name=f"validation-{function.__name__}")
    process.start()
    send.close()
    try:
        while not receive.poll(0.5):
            if stop.is_set():
                process.terminate()
                process.join(5)
                return None
            if not process.is_alive() and not receive.poll(0):
                break  # it died without an answer: recv says so
        ok, value = receive.recv()
    except EOFError:
        raise RuntimeError(f"{function.__name__} died in its process (exit {process.join(5) or process.exitcode})") from None
    finally:
        receive.close()
    process.join(5)
    if not ok:
        raise value
    return value


def _call_and_send(send, function, args) -> None:
    try:
        os.nice(5)  # a report's work: the validation it runs beside comes first
    except OSError:
        pass
    try:
        send.send((True, function(*args)))
    except Exception as error:  # noqa: BLE001 - handed to the caller
        send.send((False, error))


def build_app(service: ValidationService) -> FastAPI:
    return service_app("validation", threads=[service.loop, lambda: service.tune_reference(in_a_process=True),
                                              lambda: service.heartbeat.watchdog(service.stop)],
                       stop=service.stop, health=service.health, ready=service.ready,
                       registry=service.metrics.registry, status=service.status_page)
