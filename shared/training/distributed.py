"""Data-parallel learners on torch.distributed (TRAINING_LEARNERS=k): k processes, one
DistributedDataParallel replica of the loss each, fitting one batch together.

Rank 0 is the calling process: it owns replay, sampling and checkpoints, and hands the whole
batch of B positions to `DistributedLearner.step`. The k-1 worker ranks are started (spawn)
lazily at the first step, so that a resume (restore() writing `.model`, `.optimizer` and
`.steps`) is what they start from: rank 0 then broadcasts the parameters, the buffers, the
optimiser state and the step counter, and every rank starts identical. Each step rank 0 sends
every worker a command and its shard of the batch (B/k disjoint rows, over a pipe, so that an
idle worker waits on the pipe, not inside a collective that would time out while rank 0 plays
episodes); every rank computes the loss of its shard through the DDP-wrapped LossModule,
backward (DDP averages the gradients), clips and takes the optimiser step. The losses returned
are the mean over ranks of each rank's shard losses, that is the full batch's losses.

Why k ranks give the same update as one learner on the whole batch:

* every loss is a mean over the batch, so with equal shards the mean of the per-rank mean
  gradients (what DDP's all-reduce gives) is the full batch's gradient; hence B % k == 0;
* no per-rank batch statistics: the representation's causal conv blocks use BatchNorm1d
  (the rest is LayerNorm, per sample), which in training normalises with the batch's mean
  and variance. Per-rank statistics would make k ranks a different model, so while a rank
  computes its loss every BatchNorm normalises with the statistics of all ranks' rows
  together (sums all-reduced with autograd's all_reduce, whose backward sums the gradients
  of every rank's loss; what SyncBatchNorm does, which torch offers on GPUs only). The
  running statistics are updated from the same global mean and variance, identical on every
  rank (DDP's buffer broadcast from rank 0 keeps them so regardless);
* identical initial parameters, buffers and optimiser state (the broadcast at start, and
  again when `.steps` was changed from outside, e.g. a restore after the first step);
* clipping after the all-reduce, so every rank clips the same gradient by the same norm,
  and identical optimiser steps (same hyper-parameters, same state, same gradient);
* dropout: each rank draws its own masks (a worker seeds from rank 0's generator plus its
  rank), so with dropout > 0 the update is a different draw, not the same numbers; with
  dropout 0 it is the same up to floating-point summation order.

Backends: gloo on CPU; on CUDA, nccl when every rank gets its own GPU (worker r takes the r-th
of the other GPUs), otherwise gloo with every rank on rank 0's GPU (nccl refuses two ranks on
one device). Rendezvous: a TCPStore that rank 0 hosts on 127.0.0.1 on a port the OS picks.

A worker that dies, or a collective that fails or passes `timeout_seconds`, makes `.step`
raise a RuntimeError naming the worker and its error; the learner is then closed for good.
`.close()` stops the workers (stop command, join with a timeout, terminate if needed) and
destroys the process group. Workers are daemonic, and exit when rank 0's end of their pipe
closes, so none outlives the trainer.
"""

from __future__ import annotations

import logging
import traceback
from contextlib import contextmanager
from datetime import timedelta
from multiprocessing.connection import Connection
from typing import Any, Iterator

import numpy as np
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch.nn.parallel import DistributedDataParallel

from shared.config import LearnerConfig, NetworkConfig
from shared.model import MuZeroNetworks
from shared.training.learner import BATCH_FIELDS, LOSS_NAMES, Learner, weighted_total
from shared.training.replay import TrainingBatch
from shared.training.sync_batch_norm import batch_norm_across_ranks

log = logging.getLogger(__name__)

Shard = tuple[np.ndarray, ...]  # a TrainingBatch's arrays in BATCH_FIELDS order, rows of one rank


def make_learner(model: MuZeroNetworks, config: LearnerConfig, device: torch.device, learners: int = 1,
                 timeout_seconds: float = 300.0) -> Learner:
    """TRAINING_LEARNERS=1: the one in-process Learner; more: a DistributedLearner over that many ranks."""
    if learners < 1:
        raise ValueError(f"TRAINING_LEARNERS must be at least 1, got {learners}")
    if learners == 1:
        return Learner(model, config, device)
    return DistributedLearner(model, config, device, learners, timeout_seconds)


# --- what every rank runs ------------------------------------------------------------------------

def _to_cpu(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.detach().cpu()
    if isinstance(value, dict):
        return {k: _to_cpu(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_to_cpu(v) for v in value]
    return value


class _Replica:
    """One rank's part: its Learner (model, optimiser, loss module) wrapped in DDP."""

    def __init__(self, learner: Learner, rank: int, world: int, backend: str) -> None:
        self.learner = learner
        self.rank = rank
        self.world = world
        self.device = learner.device
        self.object_device = self.device if backend == "nccl" else torch.device("cpu")
        # every parameter takes part in every step (unroll_steps >= 1), so no unused-parameter search
        self.ddp = DistributedDataParallel(learner.loss_module,
                                           device_ids=[self.device] if self.device.type == "cuda" else None)

    def sync(self, seed: int = 0) -> None:
        """Rank 0's parameters, buffers, optimiser state and step counter to every rank."""
        model, optimizer = self.learner.model, self.learner.optimizer
        with torch.no_grad():
            for tensor in [*model.parameters(), *model.buffers()]:
                dist.broadcast(tensor, src=0)
        objects: list[Any] = ([_to_cpu(optimizer.state_dict()), self.learner.steps, seed] if self.rank == 0
                              else [None, None, None])
        dist.broadcast_object_list(objects, src=0, device=self.object_device)
        if self.rank != 0:
            optimizer.load_state_dict(objects[0])
            self.learner.steps = int(objects[1])
            torch.manual_seed(int(objects[2]) + self.rank)  # dropout masks differ between ranks

    def step(self, shard: Shard) -> dict[str, float]:
        learner, c = self.learner, self.learner.config
        learner.model.train()
        tensors = [torch.from_numpy(np.ascontiguousarray(a)).to(self.device) for a in shard]
        with batch_norm_across_ranks(learner.model):
            loss = self.ddp(*tensors)
        total = weighted_total(loss, c)
        learner.optimizer.zero_grad(set_to_none=True)
        total.backward()  # DDP's all-reduce: every rank now holds the mean gradient
        grad_norm = torch.nn.utils.clip_grad_norm_(learner.model.parameters(), c.grad_clip)
        learner.set_learning_rate()
        learner.optimizer.step()
        learner.steps += 1
        values = torch.stack([loss[name].detach() for name in LOSS_NAMES] + [total.detach()])
        dist.all_reduce(values)
        values = (values / self.world).cpu()
        out = {name: float(v) for name, v in zip((*LOSS_NAMES, "total"), values)}
        out["grad_norm"] = float(grad_norm)
        return out


def _worker_main(rank: int, world: int, port: int, backend: str, device_name: str, network: NetworkConfig,
                 config: LearnerConfig, threads: int, timeout_seconds: float, conn: Connection) -> None:
    """A worker rank: build a replica, take rank 0's state, then step on the shards rank 0 sends
    until it says stop (or its end of the pipe closes: rank 0 is gone)."""
    try:
        torch.set_num_threads(threads)
        device = torch.device(device_name)
        if device.type == "cuda":
            torch.cuda.set_device(device)
        learner = Learner(MuZeroNetworks(network).to(device), config, device)
        conn.send(("ready", None))
        timeout = timedelta(seconds=timeout_seconds)
        store = dist.TCPStore("127.0.0.1", port, world, False, timeout=timeout)
        dist.init_process_group(backend, store=store, rank=rank, world_size=world, timeout=timeout,
                                device_id=device if backend == "nccl" else None)
        replica = _Replica(learner, rank, world, backend)
        replica.sync()
        while True:
            command, payload = conn.recv()
            if command == "stop":
                break
            if command == "sync":
                replica.sync()
            elif command == "step":
                replica.step(payload)
    except EOFError:
        pass  # rank 0 went away
    except BaseException:
        try:
            conn.send(("error", traceback.format_exc()))
        except (OSError, ValueError):
            pass
        raise
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


# --- rank 0 --------------------------------------------------------------------------------------

class DistributedLearner(Learner):
    """A Learner whose step is shared by `learners` ranks (see the module's docstring). Same surface
    as Learner: step(), steps, optimizer, model, config, device; plus close()."""

    def __init__(self, model: MuZeroNetworks, config: LearnerConfig, device: torch.device, learners: int,
                 timeout_seconds: float = 300.0) -> None:
        if learners < 2:
            raise ValueError(f"DistributedLearner needs TRAINING_LEARNERS >= 2, got {learners} (1: make_learner's Learner)")
        if config.batch_size % learners:
            raise ValueError(f"TRAINING_LEARNER__BATCH_SIZE={config.batch_size} does not divide into "
                             f"TRAINING_LEARNERS={learners} equal shards: make the batch size a multiple of the learners")
        if device.type not in ("cpu", "cuda"):
            raise ValueError(f"TRAINING_LEARNERS={learners} runs on cpu or cuda, not {device.type}")
        if not dist.is_available():
            raise ValueError(f"TRAINING_LEARNERS={learners} needs torch.distributed, which this torch lacks")
        super().__init__(model, config, device)
        self.learners = learners
        self.timeout_seconds = timeout_seconds
        devices, self.backend = self._placement(device, learners)
        self.worker_devices = devices[1:]
        self._workers: list[Any] = []          # spawn-context Processes, rank r at index r - 1
        self._conns: list[Connection] = []
        self._store: Any = None
        self._replica: _Replica | None = None
        self._synced_steps = -1
        self._owns_group = False
        self._threads = 1
        self._failure: str | None = None

    @staticmethod
    def _placement(device: torch.device, k: int) -> tuple[list[torch.device], str]:
        """Each rank's device and the backend: nccl only when every rank has a GPU of its own."""
        if device.type == "cuda":
            first = device.index if device.index is not None else torch.cuda.current_device()
            count = torch.cuda.device_count()
            if count >= k:
                others = [i for i in range(count) if i != first][: k - 1]
                return [torch.device("cuda", first)] + [torch.device("cuda", i) for i in others], "nccl"
            return [torch.device("cuda", first)] * k, "gloo"
        return [device] * k, "gloo"

    # --- life cycle ---

    def _start(self) -> None:
        if dist.is_initialized():
            raise RuntimeError("TRAINING_LEARNERS > 1 needs this process's default torch.distributed group, "
                               "and one exists already")
        k = self.learners
        # k ranks on one machine share its cores: each takes an equal part of this process's torch
        # threads (rank 0 only while it steps: self-play between steps keeps them all)
        self._threads = max(1, torch.get_num_threads() // k)
        timeout = timedelta(seconds=self.timeout_seconds)
        self._store = dist.TCPStore("127.0.0.1", 0, k, True, timeout=timeout,  # the OS picks a free port
                                     wait_for_workers=False)
        ctx = mp.get_context("spawn")
        for rank, worker_device in enumerate(self.worker_devices, start=1):
            parent, child = ctx.Pipe()
            process = ctx.Process(
                target=_worker_main, name=f"learner-rank-{rank}", daemon=True,
                args=(rank, k, self._store.port, self.backend, str(worker_device), self.model.config, self.config,
                      self._threads, self.timeout_seconds, child))
            process.start()
            child.close()
            self._workers.append(process)
            self._conns.append(parent)
        for rank, (process, conn) in enumerate(zip(self._workers, self._conns), start=1):
            self._await_ready(rank, process, conn)
        dist.init_process_group(self.backend, store=self._store, rank=0, world_size=k, timeout=timeout,
                                device_id=self.device if self.backend == "nccl" else None)
        self._owns_group = True
        self._replica = _Replica(self, 0, k, self.backend)
        self._sync()
        log.info("started %d learner ranks (%s on %s)", k, self.backend,
                 ", ".join(str(d) for d in [self.device, *self.worker_devices]))

    def _sync(self) -> None:
        assert self._replica is not None
        # the workers' dropout seeds, from rank 0's generator (so a resumed run draws the same ones)
        self._replica.sync(seed=int(torch.randint(0, 2**62, (1,))))
        self._synced_steps = self.steps

    def _await_ready(self, rank: int, process: Any, conn: Connection) -> None:
        waited = 0.0
        while not conn.poll(0.5):
            waited += 0.5
            if not process.is_alive() or waited > self.timeout_seconds:
                raise RuntimeError(f"learner rank {rank} did not start: {self._worker_state(rank - 1)}")
        try:
            message, _ = conn.recv()
        except EOFError:
            message = "eof"
        if message != "ready":
            raise RuntimeError(f"learner rank {rank} did not start: {self._worker_state(rank - 1)}")

    def _worker_state(self, index: int) -> str:
        """What is known of worker `index`: its error if it reported one, else whether it runs."""
        conn, process = self._conns[index], self._workers[index]
        try:
            while conn.poll(0):
                message, detail = conn.recv()
                if message == "error":
                    return f"it failed with\n{detail}"
        except (EOFError, OSError):
            process.join(timeout=2)  # its end of the pipe closed: it is exiting
        if process.is_alive():
            return "it is running"
        return f"its process (pid {process.pid}) exited with code {process.exitcode}"

    def _check_workers(self) -> None:
        dead = [rank for rank, p in enumerate(self._workers, start=1) if not p.is_alive()]
        if dead:
            raise RuntimeError(f"learner rank {dead[0]} is gone")

    def _fail(self, error: BaseException) -> RuntimeError:
        states = "; ".join(f"rank {i + 1}: {self._worker_state(i)}" for i in range(len(self._workers)))
        self._failure = (f"the distributed learner ({self.learners} ranks) failed and is closed: {error} "
                         f"[{states or 'no workers started'}]")
        self._shutdown(graceful=False)
        return RuntimeError(self._failure)

    def _shutdown(self, graceful: bool) -> None:
        for conn in self._conns:
            if graceful:
                try:
                    conn.send(("stop", None))
                except (OSError, ValueError):
                    pass
        for process in self._workers:
            process.join(timeout=10 if graceful else 1)
            if process.is_alive():
                process.terminate()
                process.join(timeout=5)
            if process.is_alive():
                process.kill()
                process.join()
        for conn in self._conns:
            conn.close()
        self._workers, self._conns = [], []
        self._replica = None
        if self._owns_group and dist.is_initialized():
            dist.destroy_process_group()
        self._owns_group = False
        self._store = None

    def close(self) -> None:
        """Stop the workers and destroy the process group; a later step starts afresh from rank 0's state."""
        if self._workers or self._replica is not None:
            self._shutdown(graceful=True)

    @contextmanager
    def _rank_threads(self) -> Iterator[None]:
        before = torch.get_num_threads()
        torch.set_num_threads(self._threads)
        try:
            yield
        finally:
            torch.set_num_threads(before)

    # --- the step ---

    def step(self, batch: TrainingBatch) -> dict[str, float]:
        if self._failure is not None:
            raise RuntimeError(self._failure)
        rows = len(batch.temporal)
        if rows % self.learners:
            raise ValueError(f"a batch of {rows} does not divide into TRAINING_LEARNERS={self.learners} equal shards "
                             "(TRAINING_LEARNER__BATCH_SIZE)")
        size = rows // self.learners
        shards = [tuple(getattr(batch, name)[r * size:(r + 1) * size] for name in BATCH_FIELDS)
                  for r in range(self.learners)]
        try:
            if self._replica is None:
                self._start()
            else:
                self._check_workers()
                if self.steps != self._synced_steps:  # restored from outside after the start
                    for conn in self._conns:
                        conn.send(("sync", None))
                    self._sync()
            assert self._replica is not None
            for conn, shard in zip(self._conns, shards[1:]):
                conn.send(("step", shard))
            with self._rank_threads():
                out = self._replica.step(shards[0])
        except Exception as error:
            raise self._fail(error) from error
        self._synced_steps = self.steps
        return out
