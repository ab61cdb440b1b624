"""A Strategist candidate (family dt) played as a policy: in every lockstep session its Decision
Transformer reads the episode so far (states, the return still wanted, its own actions) and takes
its most likely legal action (shared/model/dt_policy.py), so validation, its Monte Carlo and the
gate judge it on the same sessions as the other families and the baselines. A session starts
flat with the candidate's whole target return wanted, as in live."""

from __future__ import annotations

import numpy as np

from shared.core.instruments import get_instrument
from shared.env import TradingEnv
from shared.env.rollout import Policy
from shared.env.trading import Observation
from shared.features.indicators import indicator_features
from shared.features.store import FeatureSet
from shared.model.dt_policy import StrategistContext, decide, target_return_pips
from shared.model.tft_data import single_instrument
from shared.volume.candidates import Candidate


def strategist_policy(candidate: Candidate, features: FeatureSet, env: TradingEnv) -> Policy:
    """The candidate's greedy return-conditioned actions on `env`'s sessions."""
    indicators = indicator_features(features.bars, get_instrument(single_instrument(features)).calendar)
    model = candidate.model.eval()
    back = np.arange(1 - candidate.config.dt.context_steps, 1)  # the last K bars, the newest last
    max_units = env.space.max_units
    context: StrategistContext | None = None

    def choose(obs: Observation) -> np.ndarray:
        nonlocal context
        if context is None or env.k == 0 or len(context.steps) != len(obs.position):  # a new lockstep batch
            context = StrategistContext(len(obs.position), candidate.config.dt, target_return_pips(candidate.payload),
                                        max_units)
        context.advance(env.episode_pnl_pips, obs.position)
        window = indicators[np.maximum(obs.bar_index[:, None] + back, 0)]
        chosen, _ = decide(model, window, context.packed(), obs.legal, max_units)
        context.chose(chosen)
        return chosen

    return choose
