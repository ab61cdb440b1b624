"""Process-level tuning every torch-running process applies at start."""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os

from shared.core.cpus import usable_cpus

log = logging.getLogger(__name__)

M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
_MMAP_THRESHOLD_BYTES = 32 * 1024 * 1024  # glibc's ceiling on 64-bit
_tuned = False


def tune_process() -> bool:
    """Everything a torch-running process sets at start: the allocator (below)
    and flushing denormal floats to zero. Trained weights push activations into
    denormals, which the CPU handles ~50x slower: the live decision took twice
    as long with a trained model as with a fresh one until this was set."""
    import torch

    torch.set_flush_denormal(True)
    torch.set_num_threads(torch_threads())
    return tune_allocator()


def torch_threads() -> int:
    """Torch's threads follow the CPUs the service is given: OMP_NUM_THREADS (compose sets
    it per service) but never more than the CPUs usable here, so six training threads on a
    two-core host do not fight the live decision for the cores."""
    wanted = os.environ.get("OMP_NUM_THREADS", "")
    usable = usable_cpus()
    return min(int(wanted), usable) if wanted.isdigit() and int(wanted) > 0 else usable


def tune_allocator() -> bool:
    """Keep tensor-sized blocks (up to 32 MB) on the heap.

    glibc serves large allocations with a fresh mmap and returns them on free,
    so every network call page-faults its intermediate tensors in again; with
    the batched networks here that made the representation call 10x slower
    (19 ms vs 2 ms for 64 rows). Returns whether the setting took.
    """
    global _tuned
    if _tuned:
        return True
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        libc = ctypes.CDLL(name)
        ok = libc.mallopt(M_MMAP_THRESHOLD, _MMAP_THRESHOLD_BYTES) == 1
        ok &= libc.mallopt(M_TRIM_THRESHOLD, 2 * _MMAP_THRESHOLD_BYTES) == 1
    except (OSError, AttributeError):  # not glibc (macOS): nothing to tune
        return False
    _tuned = ok
    if not ok:
        log.warning("mallopt refused the allocator settings; network calls will be slower")
    return ok
