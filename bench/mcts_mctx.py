"""DeepMind mctx's `stochastic_muzero_policy` on JAX (CPU) with bench.mcts's trivial network: the
side-by-side row of `python -m bench.mcts --against-mctx`. mctx and jax are the optional extra
`mctx` (`pip install -e .[mctx]`); nothing else imports this module.

The network is the same weights and the same arithmetic as bench.mcts.TrivialNetwork, written in
jax.numpy, and the whole search (network included) is one jitted function, the way mctx is meant to
run. One XLA CPU thread, as bench.mcts pins one BLAS thread: the same cores for both.
"""

from __future__ import annotations

import os
import statistics
import time

# before jax is imported: XLA reads its flags once
os.environ.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1")
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import numpy as np  # noqa: E402

try:
    import jax  # noqa: E402
    import jax.numpy as jnp  # noqa: E402
    import mctx  # noqa: E402
except ImportError as error:  # pragma: no cover - the message is the point
    raise SystemExit("bench.mcts --against-mctx needs the optional extra: pip install -e '.[mctx]' "
                     f"({error})") from None


def mctx_search(net, batch: int, simulations: int, config):
    """A jitted function (root embeddings, prior logits, values, key) -> the chosen actions, running
    mctx's Stochastic MuZero search (pUCT at decision nodes) with `net`'s weights."""
    weights = {name: jnp.asarray(getattr(net, name)) for name in ("w_as", "e_a", "h_as", "w_dyn", "e_c", "h_s")}
    actions, outcomes = net.e_a.shape[0], net.e_c.shape[0]
    discount = jnp.full((batch,), config.discount, jnp.float32)

    def decision_fn(params, rng_key, action, embedding):
        after = jnp.tanh(embedding @ params["w_as"] + params["e_a"][action])
        out = after @ params["h_as"]
        return mctx.DecisionRecurrentFnOutput(chance_logits=out[:, :outcomes], afterstate_value=out[:, outcomes]), after

    def chance_fn(params, rng_key, outcome, afterstate):
        state = jnp.tanh(afterstate @ params["w_dyn"] + params["e_c"][outcome])
        out = state @ params["h_s"]
        return mctx.ChanceRecurrentFnOutput(action_logits=out[:, :actions], value=out[:, actions],
                                            reward=out[:, actions + 1], discount=discount), state

    @jax.jit
    def run(embedding, logits, value, key):
        root = mctx.RootFnOutput(prior_logits=logits, value=value, embedding=embedding)
        output = mctx.stochastic_muzero_policy(
            weights, key, root, decision_fn, chance_fn, num_simulations=simulations,
            dirichlet_fraction=config.dirichlet_fraction, dirichlet_alpha=config.dirichlet_alpha,
            pb_c_init=config.pb_c_init, pb_c_base=config.pb_c_base)
        return output.action

    return run


def mctx_sims_per_s(net, batch: int, simulations: int, config, repeats: int) -> float:
    """Searches per second x batch x simulations, median over `repeats` after one compiling call."""
    emb, priors, values, _ = net.roots(batch, seed=batch)
    run = mctx_search(net, batch, simulations, config)
    args = (jnp.asarray(emb), jnp.asarray(np.log(priors)), jnp.asarray(values))
    run(*args, jax.random.PRNGKey(0)).block_until_ready()  # compile
    walls = []
    for i in range(repeats):
        key = jax.random.PRNGKey(i + 1)
        t0 = time.perf_counter()
        run(*args, key).block_until_ready()
        walls.append(time.perf_counter() - t0)
    return batch * simulations / statistics.median(walls)
