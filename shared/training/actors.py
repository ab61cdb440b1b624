"""Self-play on Ray actors (`TRAINING_BACKEND=ray`): collection in N processes, anywhere in a
Ray cluster, while this process learns.

The learner's process owns the replay and the weights; nothing mutable is shared:

* **Weights** are published as immutable snapshots in Ray's object store, tagged with their
  version (the learner step they were taken at). An actor loads a snapshot only between batches,
  so every episode was played by one known version, recorded with it in the replay.
* **Tasks**: each actor has at most one batch in flight (E episodes in lockstep, its own
  `mcts_rs` search and CPU copy of the networks). The task names its episode ids, sessions and
  seed; a finished actor is handed its next batch at once, with the newest snapshot, so it plays
  while the learner learns on what it brought. One task in flight per actor is the backpressure:
  when the learner falls behind, actors wait for it rather than pile up episodes.
* **Order and staleness**: batches reach the replay in the order of their versions (a batch
  waits while an older one is still in flight), so the versions in the replay never go back; a
  batch more than `max_policy_lag` learner steps behind the learner is counted and dropped.
* **Failures**: actors are created with restarts on (Ray's default is none) and no task retries:
  a dead actor's task fails, its episodes were never returned so none of them is used, the death
  is counted and the replaced actor gets a fresh batch under new ids. A task past
  `actor_timeout_seconds` is treated the same (its actor is killed and restarted): the learner
  never waits forever on one actor. The replay ingests by episode id, so a batch delivered twice
  is stored once.

`RAY_ADDRESS` joins an existing cluster (a head node, KubeRay); unset, Ray starts here with the
CPUs this process may use.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch

from shared.config import ExplorationConfig, TrainingConfig
from shared.core.cpus import usable_cpus
from shared.features.store import FeatureSet
from shared.training.selfplay import EpisodeBatch

log = logging.getLogger(__name__)

# glibc keeps tensor-sized blocks on the heap (see shared.service.runtime.tune_allocator: a
# fresh mmap per call made the representation 10x slower); set for the actors' processes
ALLOCATOR_ENV = {"MALLOC_MMAP_THRESHOLD_": str(32 * 1024 * 1024), "MALLOC_TRIM_THRESHOLD_": str(64 * 1024 * 1024)}


class SelfPlayActor:
    """One collector: a lockstep batch of episodes at a time with its own environment, networks
    and search. Wrapped by `ray.remote` in `RayCollector`; a plain class so tests can run it here."""

    def __init__(self, features: FeatureSet, config: TrainingConfig, threads: int) -> None:
        from shared.env import TradingEnv
        from shared.model import MuZeroNetworks
        from shared.search import NetworkSearch

        torch.set_num_threads(threads)
        torch.set_flush_denormal(True)  # trained weights push activations into slow denormals
        self.env = TradingEnv(features, config.env)
        self.model = MuZeroNetworks(config.network)
        self.model.eval()
        self.search = NetworkSearch(self.model, config.actor_batch_episodes, self.env.space, config.search,
                                    torch.device("cpu"))
        self.version = -1
        self.pid = os.getpid()

    def play(self, snapshot: list, version: int, starts: np.ndarray, seed: int, first_episode_id: int,
             episode: int, exploration: ExplorationConfig) -> EpisodeBatch:
        """Play one episode from each start with the weights of `version` (`snapshot` holds the
        object reference in a list, so Ray fetches it only when the version is new here)."""
        from shared.training.selfplay import play_episodes

        if version != self.version:
            import ray

            state = ray.get(snapshot[0])
            self.model.load_state_dict({name: torch.tensor(array) for name, array in state.items()})
            self.search.refresh()
            self.version = version
        batch = play_episodes(self.env, self.search, starts, np.random.default_rng(seed), exploration=exploration,
                              episode=episode, first_episode_id=first_episode_id)
        batch.weights_version = version
        return batch

    def process_id(self) -> int:
        return self.pid


def weights_snapshot(model: torch.nn.Module) -> dict[str, np.ndarray]:
    """The model's weights as numpy arrays (Ray keeps them zero-copy in shared memory)."""
    return {name: tensor.detach().cpu().numpy().copy() for name, tensor in model.state_dict().items()}


@dataclass
class _Task:
    actor: int
    first_episode_id: int
    version: int
    deadline: float


@dataclass
class ActorStats:
    episodes: int = 0
    restarts: int = 0
    alive: bool = True
    started: float = field(default_factory=time.monotonic)

    def episodes_per_hour(self, now: float) -> float:
        return self.episodes / max(now - self.started, 1e-9) * 3600


@dataclass
class CollectorCounters:
    delivered_episodes: int = 0
    stale_episodes_dropped: int = 0
    actor_restarts: int = 0
    lags: list[int] = field(default_factory=list)  # learner steps behind, per batch of the last collect


def _actor_lost() -> tuple[type[BaseException], ...]:
    import ray.exceptions as e

    # an actor's death (a crash, a kill, the node gone), the memory monitor's kill, a lost result
    return e.RayActorError, e.OutOfMemoryError, e.WorkerCrashedError, e.ObjectLostError


@contextmanager
def _own_signal_handlers() -> Iterator[None]:
    """ray.init replaces the driver's SIGTERM handler with its own exit; the service's graceful
    stop (finish the iteration, close the actors) must stay the one that runs."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    saved = {number: signal.getsignal(number) for number in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for number, handler in saved.items():
            signal.signal(number, handler)


def connect(local_cpus: int, wait_seconds: float = 120.0) -> str:
    """Ray for this process: the cluster at RAY_ADDRESS, or a local one with `local_cpus`.

    A driver must run on a Ray node: given a head's `host:port`, this machine joins the cluster
    first as a node with no CPUs of its own (so no actor lands beside the learner), as
    `ray start` would on a bare-metal worker; a machine already in the cluster keeps its node.
    The head may still be starting (compose starts both at once): wait for it."""
    import ray

    if ray.is_initialized():
        return "(connected before)"
    address = os.environ.get("RAY_ADDRESS", "").strip()
    if not address:
        with _own_signal_handlers():
            ray.init(num_cpus=local_cpus, include_dashboard=False, log_to_driver=True)
        return "local"
    deadline = time.monotonic() + wait_seconds
    while True:
        if "://" not in address and address != "auto":
            ray_cli = str(Path(sys.executable).parent / "ray")
            joined = subprocess.run([ray_cli, "start", f"--address={address}", "--num-cpus=0", "--disable-usage-stats"],
                                    capture_output=True, text=True)
            if joined.returncode != 0 and "already" not in (joined.stdout + joined.stderr).lower():
                if time.monotonic() > deadline:
                    raise RuntimeError(f"could not join the Ray cluster at RAY_ADDRESS={address}: "
                                       f"{(joined.stderr or joined.stdout).strip()[-500:]}")
                log.info("waiting for the Ray head at %s", address)
                time.sleep(5)
                continue
        with _own_signal_handlers():
            ray.init(address=address, log_to_driver=True)
        return address


class RayCollector:
    def __init__(self, features: FeatureSet, config: TrainingConfig, draw_starts: Callable[[int], np.ndarray],
                 rng: np.random.Generator, next_episode_id: int) -> None:
        import ray

        self.ray = ray
        self.config = config
        self.draw_starts = draw_starts
        self.rng = rng
        self.next_episode_id = next_episode_id
        self.address = connect(max(usable_cpus(), config.actors * config.actor_cpus))
        remote = ray.remote(SelfPlayActor).options(
            max_restarts=-1, max_task_retries=0, num_cpus=config.actor_cpus,
            runtime_env={"env_vars": {**ALLOCATOR_ENV, "OMP_NUM_THREADS": str(config.actor_cpus)}})
        # kept referenced here: a restarted actor is built again from it
        self.features_ref = ray.put(features)
        self.handles = [remote.remote(self.features_ref, config, config.actor_cpus) for _ in range(config.actors)]
        self.stats = [ActorStats() for _ in self.handles]
        self.counters = CollectorCounters()
        self.inflight: dict = {}          # ObjectRef -> _Task
        self.finished: list[EpisodeBatch] = []  # returned, waiting for older versions still in flight
        self.snapshot = None
        self.version = -1

    # --- weights -----------------------------------------------------------------------

    def publish(self, model: torch.nn.Module, version: int) -> None:
        """A new immutable snapshot for the actors' next batches (none if the version is unchanged)."""
        if version != self.version:
            self.snapshot = self.ray.put(weights_snapshot(model))
            self.version = version

    # --- tasks -------------------------------------------------------------------------

    def _submit(self, actor: int, episode: int) -> None:
        e = self.config.actor_batch_episodes
        first = self.next_episode_id
        self.next_episode_id += e
        seed = int(self.rng.integers(0, 2**63))
        ref = self.handles[actor].play.remote([self.snapshot], self.version, self.draw_starts(e), seed, first,
                                              episode, self.config.exploration)
        self.inflight[ref] = _Task(actor, first, self.version, time.monotonic() + self.config.actor_timeout_seconds)

    def _finish(self, ref, episode: int) -> None:
        task = self.inflight.pop(ref)
        stats = self.stats[task.actor]
        try:
            batch = self.ray.get(ref)
        except _actor_lost() as error:
            # the actor died mid-batch (or was killed past its deadline): Ray restarts it; the
            # episodes it played were never returned, so none is used. Batches handed to it while
            # it restarts fail too (ActorUnavailableError): one death, counted once.
            if stats.alive:
                stats.restarts += 1
                self.counters.actor_restarts += 1
                log.warning("self-play actor %d died (%s); replaced, its batch from episode id %d dropped",
                            task.actor, type(error).__name__, task.first_episode_id)
            stats.alive = False
        else:
            stats.alive = True
            stats.episodes += batch.episodes
            self.counters.delivered_episodes += batch.episodes
            self.finished.append(batch)
        self._submit(task.actor, episode)

    def _kill_overdue(self) -> None:
        now = time.monotonic()
        for task in self.inflight.values():
            if now > task.deadline:
                log.warning("self-play actor %d passed its %.0f s deadline: restarting it", task.actor,
                            self.config.actor_timeout_seconds)
                task.deadline = float("inf")  # once: its failure comes back through ray.wait
                self.ray.kill(self.handles[task.actor], no_restart=False)

    def collect(self, learner_version: int, episode: int, wait_seconds: float = 1.0) -> list[EpisodeBatch]:
        """Batches ready for the replay, oldest version first, waiting for at least one; each
        returning actor is handed its next batch at once. `learner_version`: the learner's step
        now (for the lag), `episode`: episodes learned from (the exploration schedule)."""
        if not self.inflight:
            if self.snapshot is None:
                raise RuntimeError("publish the weights before collecting")
            for actor in range(len(self.handles)):
                self._submit(actor, episode)
        lags: list[int] = []
        while True:
            ready, _ = self.ray.wait(list(self.inflight), num_returns=1, timeout=wait_seconds)
            if ready:
                ready, _ = self.ray.wait(list(self.inflight), num_returns=len(self.inflight), timeout=0)
            for ref in ready:
                self._finish(ref, episode)
            self._kill_overdue()
            released = self._release(learner_version, lags)
            if released:
                self.counters.lags = lags  # what /status shows: the lags of this collect's batches
                return released

    def _release(self, learner_version: int, lags: list[int]) -> list[EpisodeBatch]:
        oldest_in_flight = min((t.version for t in self.inflight.values()), default=None)
        self.finished.sort(key=lambda b: b.weights_version)
        released = []
        while self.finished and (oldest_in_flight is None or self.finished[0].weights_version <= oldest_in_flight):
            batch = self.finished.pop(0)
            lag = learner_version - batch.weights_version
            lags.append(lag)
            if lag > self.config.max_policy_lag:
                self.counters.stale_episodes_dropped += batch.episodes
                log.warning("dropped %d episodes played %d learner steps ago (TRAINING_MAX_POLICY_LAG=%d)",
                            batch.episodes, lag, self.config.max_policy_lag)
                continue
            released.append(batch)
        return released

    # --- reporting -----------------------------------------------------------------------

    def status(self) -> dict:
        now = time.monotonic()
        lags = self.counters.lags
        return {
            "backend": "ray",
            "address": self.address,
            "actors": len(self.handles),
            "actors_alive": sum(s.alive for s in self.stats),
            "actor_episodes_per_hour": [round(s.episodes_per_hour(now)) for s in self.stats],
            "actor_restarts": self.counters.actor_restarts,
            "weights_version": self.version,
            "weight_lag_steps_mean": float(np.mean(lags)) if lags else 0.0,
            "weight_lag_steps_max": int(max(lags)) if lags else 0,
            "stale_episodes_dropped": self.counters.stale_episodes_dropped,
            "episodes_in_flight": len(self.inflight) * self.config.actor_batch_episodes,
        }

    def close(self) -> None:
        for handle in self.handles:
            self.ray.kill(handle, no_restart=True)
        self.inflight.clear()
        if self.address == "local":
            # the Ray this service started goes with it: its raylet follows the driver out, its
            # dashboard and runtime-env agents do not (they outlived a stopped service)
            self.ray.shutdown()
