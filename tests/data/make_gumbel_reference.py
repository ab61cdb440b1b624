"""Writes tests/data/gumbel_mctx_reference.json: DeepMind mctx's
`gumbel_muzero_policy` on random one-step problems, the reference that
tests/test_gumbel_search.py holds mcts_rs's Gumbel search to.

Run with mctx and jax installed (they are not project dependencies):
    python -m venv /tmp/mctx && /tmp/mctx/bin/pip install jax mctx
    /tmp/mctx/bin/python tests/data/make_gumbel_reference.py

The problem: root action a earns reward r[a] and discount 0, so every visit
of a backs up exactly r[a] and the root's statistics depend on root
selection alone, which is what is compared (the chosen action, the visit
counts and the improved policy), with invalid actions, varied action counts,
simulation budgets and considered-action limits.
"""

import json
from pathlib import Path

import jax
import jax.numpy as jnp
import mctx
import numpy as np

CASES_PER_CONFIG = 24
CONFIGS = [  # (num_actions, num_simulations, max_num_considered_actions)
    (3, 5, 16), (4, 5, 16), (4, 2, 16), (4, 8, 16), (5, 16, 16), (8, 16, 4), (8, 32, 16), (6, 7, 2), (4, 3, 1),
]


def one_config(seed: int, num_actions: int, num_simulations: int, considered: int) -> list[dict]:
    rng = np.random.default_rng(seed)
    b = CASES_PER_CONFIG
    logits = rng.normal(0, 1.5, (b, num_actions)).astype(np.float32)
    rewards = rng.normal(0, 2.0, (b, num_actions)).astype(np.float32)
    values = rng.normal(0, 2.0, b).astype(np.float32)
    invalid = rng.random((b, num_actions)) < 0.25
    invalid[np.arange(b), rng.integers(0, num_actions, b)] = False  # at least one valid action
    reward_table = jnp.asarray(rewards)

    def recurrent_fn(params, key, action, embedding):
        del params, key, embedding
        reward = reward_table[jnp.arange(b), action]
        out = mctx.RecurrentFnOutput(reward=reward, discount=jnp.zeros(b), prior_logits=jnp.zeros((b, num_actions)),
                                     value=jnp.zeros(b))
        return out, jnp.zeros((b, 1))

    root = mctx.RootFnOutput(prior_logits=jnp.asarray(logits), value=jnp.asarray(values), embedding=jnp.zeros((b, 1)))
    out = mctx.gumbel_muzero_policy(params=(), rng_key=jax.random.PRNGKey(seed), root=root, recurrent_fn=recurrent_fn,
                                    num_simulations=num_simulations, invalid_actions=jnp.asarray(invalid, jnp.float32),
                                    max_num_considered_actions=considered, gumbel_scale=1.0)
    summary = out.search_tree.summary()
    gumbel = np.asarray(out.search_tree.extra_data.root_gumbel)
    return [{
        "num_actions": num_actions, "num_simulations": num_simulations, "max_considered_actions": considered,
        "logits": logits[i].tolist(), "rewards": rewards[i].tolist(), "root_value": float(values[i]),
        "legal": (~invalid[i]).tolist(), "gumbel": gumbel[i].tolist(),
        "action": int(out.action[i]), "action_weights": np.asarray(out.action_weights[i]).tolist(),
        "visit_counts": np.asarray(summary.visit_counts[i]).tolist(),
    } for i in range(b)]


def main() -> None:
    cases = [case for seed, config in enumerate(CONFIGS) for case in one_config(seed, *config)]
    path = Path(__file__).with_name("gumbel_mctx_reference.json")
    path.write_text(json.dumps({"mctx": mctx.__version__, "jax": jax.__version__, "cases": cases}))
    print(f"{len(cases)} cases -> {path}")


if __name__ == "__main__":
    main()
