"""Search throughput: the Rust tree with a trivial numpy network vs the Python reference.

python -m bench.mcts [--repeats N] [--against-mctx] [--batches 1,16,64]

Both searches run pUCT (the reference implements nothing else) with
shared.config.SearchConfig's other defaults and 50 simulations.
The network is the same for every row: float32, 256-d,
  afterstate: after = tanh(emb @ W_as + E_a[action]); (chance_logits[3], afterstate_value) = after @ H_as
  dynamics:   next = tanh(after @ W_dyn + E_c[outcome]); (policy_logits[4], value, reward) = next @ H_s
sims_per_s = B * 50 / median wall time of a full search (network included);
network_fraction = share of that time inside the two network functions.
Prints one JSON line per batch size.

--against-mctx adds DeepMind mctx's `stochastic_muzero_policy` (JAX on the CPU, jitted, one XLA
thread; bench/mcts_mctx.py) with the same weights and arithmetic and mctx's pUCT with the same
constants: `mctx_sims_per_s` and `speedup_over_mctx` per batch size, then a summary line
{"bench": "mcts_against_mctx", "speedup_over_mctx": [...], "speedup_min": ..}. Needs the optional
extra: pip install -e '.[mctx]'.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

# One BLAS thread: the rows are too few for a second thread to pay, and the
# search should be measured the same way on every machine.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
from mcts_rs.reference import ReferenceSearch  # noqa: E402

from mcts_rs import BatchedSearch, run_search  # noqa: E402
from shared.config import SearchConfig  # noqa: E402

DIM, ACTIONS, OUTCOMES, SIMS = 256, 4, 3, 50
CONFIG = SearchConfig(simulations=SIMS, root_selection="puct")


class TrivialNetwork:
    """The benchmark's shared network, timing its own calls."""

    def __init__(self, seed: int = 0) -> None:
        rng = np.random.default_rng(seed)
        scale = np.float32(1.0 / np.sqrt(DIM))
        self.w_as = (rng.standard_normal((DIM, DIM)) * scale).astype(np.float32)
        self.e_a = rng.standard_normal((ACTIONS, DIM)).astype(np.float32)
        self.h_as = (rng.standard_normal((DIM, OUTCOMES + 1)) * scale).astype(np.float32)
        self.w_dyn = (rng.standard_normal((DIM, DIM)) * scale).astype(np.float32)
        self.e_c = rng.standard_normal((OUTCOMES, DIM)).astype(np.float32)
        self.h_s = (rng.standard_normal((DIM, ACTIONS + 2)) * scale).astype(np.float32)
        self.seconds = 0.0

    def afterstate(self, emb: np.ndarray, actions: np.ndarray):
        t0 = time.perf_counter()
        after = np.tanh(emb @ self.w_as + self.e_a[actions])
        out = after @ self.h_as
        self.seconds += time.perf_counter() - t0
        return after, out[:, :OUTCOMES], out[:, OUTCOMES]

    def dynamics(self, after: np.ndarray, outcomes: np.ndarray):
        t0 = time.perf_counter()
        nxt = np.tanh(after @ self.w_dyn + self.e_c[outcomes])
        out = nxt @ self.h_s
        self.seconds += time.perf_counter() - t0
        return nxt, out[:, :ACTIONS], out[:, ACTIONS], out[:, ACTIONS + 1]

    def roots(self, batch: int, seed: int):
        rng = np.random.default_rng(seed)
        emb = np.tanh(rng.standard_normal((batch, DIM))).astype(np.float32)
        out = emb @ self.h_s
        logits = out[:, :ACTIONS]
        priors = np.exp(logits - logits.max(axis=1, keepdims=True))
        priors = (priors / priors.sum(axis=1, keepdims=True)).astype(np.float32)
        return emb, priors, np.ascontiguousarray(out[:, ACTIONS]), np.ones((batch, ACTIONS), dtype=bool)


def bench_batch(net: TrivialNetwork, batch: int, repeats: int, reference_repeats: int) -> dict:
    search = BatchedSearch(batch, CONFIG, num_actions=ACTIONS, num_outcomes=OUTCOMES, embedding_dim=DIM)
    emb, priors, values, legal = net.roots(batch, seed=batch)
    seeds = np.arange(batch, dtype=np.uint64)
    walls, nets = [], []
    for _ in range(repeats + 1):  # the first run warms caches and is dropped
        net.seconds = 0.0
        t0 = time.perf_counter()
        search.reset(emb, priors, values, legal, seeds)
        run_search(search, net.afterstate, net.dynamics)
        search.choose_actions(0.0)
        walls.append(time.perf_counter() - t0)
        nets.append(net.seconds)
    walls, nets = walls[1:], nets[1:]
    wall = statistics.median(walls)
    network_fraction = sum(nets) / sum(walls)

    reference = ReferenceSearch(CONFIG, num_actions=ACTIONS, num_outcomes=OUTCOMES)
    ref_walls = []
    for _ in range(reference_repeats):
        t0 = time.perf_counter()
        for b in range(batch):
            reference.run(emb[b], priors[b], float(values[b]), legal[b], net.afterstate, net.dynamics)
        ref_walls.append(time.perf_counter() - t0)
    return {
        "bench": "mcts",
        "batch": batch,
        "sims": SIMS,
        "sims_per_s": round(batch * SIMS / wall, 1),
        "network_fraction": round(network_fraction, 3),
        "reference_sims_per_s": round(batch * SIMS / statistics.median(ref_walls), 1),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=200, help="timed searches per batch size (B=1; fewer for larger B)")
    parser.add_argument("--against-mctx", action="store_true",
                        help="also DeepMind mctx's stochastic_muzero_policy on JAX with the same network "
                             "(the optional extra mctx)")
    parser.add_argument("--batches", default="1,16,64", help="the batch sizes measured")
    args = parser.parse_args(argv)
    if args.against_mctx:
        from bench.mcts_mctx import mctx_sims_per_s
    net = TrivialNetwork()
    rows = []
    for batch in (int(b) for b in args.batches.split(",")):
        repeats = max(5, args.repeats // batch)
        row = bench_batch(net, batch, repeats, reference_repeats=max(3, repeats // 10))
        if args.against_mctx:
            row["mctx_sims_per_s"] = round(mctx_sims_per_s(net, batch, SIMS, CONFIG, repeats), 1)
            row["speedup_over_mctx"] = round(row["sims_per_s"] / row["mctx_sims_per_s"], 2)
        rows.append(row)
        print(json.dumps(row), flush=True)
    if args.against_mctx:
        print(json.dumps({"bench": "mcts_against_mctx", "batches": [r["batch"] for r in rows],
                          "speedup_over_mctx": [r["speedup_over_mctx"] for r in rows],
                          "speedup_min": min(r["speedup_over_mctx"] for r in rows)}), flush=True)


if __name__ == "__main__":
    main()
