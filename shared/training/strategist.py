"""TRAINING_MODEL=dt: the Strategist (a Decision Transformer, shared/model/dt.py) trained offline on
the experts' trajectories over the train sessions; its candidates go to the checkpoint volume as
every family's do (shared/training/offline.py).

The experts are the rule baselines tuned on the train split (shared/env/baselines.py): momentum
always, the oracle too where the market has a known drift (the synthetic ones). Each is played
as tuned and, for `expert_epsilons` > 0, with that share of its decisions replaced by a random
legal action: episodes that earn less, so the return the model is conditioned on means something
(a model shown only its best trajectories cannot learn what a lower return looks like). A step
records the state (indicators-v1 row at the decision bar, the position), the action and the
pips it earned after costs. The episodes of the newest `holdout_share` of train sessions are held
out (their action cross-entropy decides early stopping). The target return a candidate is
conditioned on at a decision is the `target_return_quantile` of the learning episodes'
discounted returns at their first step.

A MuZero model is one more expert where `muzero_expert` names its file (TRAINING_DT__MUZERO_EXPERT:
a candidate, or a promoted model-epN.pt): its greedy search (validation's, on the model's own
search settings) plays the same sessions with the same epsilons. It must trade this market, bar
size and action space; the candidates record which experts taught them (`experts`).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from shared.config import TrainingConfig
from shared.env import TradingEnv
from shared.env.baselines import disjoint_train_sessions, momentum_signal, threshold_policy, tune
from shared.env.rollout import Policy
from shared.features.store import FeatureSet
from shared.model.dt import DecisionTransformer
from shared.model.dt_data import Trajectories, fit_state_scaling, returns_to_go, windows
from shared.model.dt_policy import strategist_state
from shared.search import NetworkSearch, search_policy
from shared.training.offline import HOLDOUT_WINDOWS, OfflineTrainer
from shared.volume.candidates import check_market, load_candidate

RESUME_KIND = "micro-muzero-strategist-resume"


def with_random_actions(policy: Policy, epsilon: float, rng: np.random.Generator) -> Policy:
    """`policy` with a share `epsilon` of its decisions replaced by a random legal action."""
    def choose(obs):
        chosen = policy(obs)
        if epsilon <= 0:
            return chosen
        random = np.where(obs.legal, rng.random(obs.legal.shape), -1.0).argmax(axis=1)
        return np.where(rng.random(len(chosen)) < epsilon, random, chosen)
    return choose


def record(env: TradingEnv, policy: Policy, starts: np.ndarray, indicators: np.ndarray,
           batch: int = 256) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """One (states [N, S], actions [N], pips [N]) per session in `starts`: `policy` played on `env`."""
    episodes = []
    for i in range(0, len(starts), batch):
        group = starts[i : i + batch]
        obs = env.reset(group)
        states, actions, pips = [], [], []
        for _ in range(env.steps_per_episode):
            states.append(strategist_state(indicators[obs.bar_index], obs.position, env.space.max_units))
            chosen = policy(obs)
            step = env.step(chosen)
            actions.append(chosen)
            pips.append(step.pnl_pips)
            if step.done:
                break
            obs = env.observe()
        s, a, r = np.stack(states, 1), np.stack(actions, 1), np.stack(pips, 1)  # [G, N, ...]
        episodes += [(s[e], a[e], r[e]) for e in range(len(group))]
    return episodes


class StrategistTrainer(OfflineTrainer):
    RESUME_KIND = RESUME_KIND
    LOSS_NAME = "action"
    PAYLOAD_KEY = "strategist"

    def __init__(self, features: FeatureSet, checkpoint_root: Path, config: TrainingConfig,
                 device: torch.device | None = None, config_sources: dict[str, str] | None = None) -> None:
        super().__init__(features, checkpoint_root, config, device, config_sources)
        c = self.family_config = config.dt
        starts = self.starts = np.sort(features.require_sessions("train"))[-c.expert_sessions:]  # [-0:]: every one
        held = max(1, int(len(starts) * c.holdout_share))
        if len(starts) - held < 1:
            raise ValueError(f"the train split has {len(starts)} sessions: too few to hold {held} out")
        learn, holdout = self._experts(starts[:-held], starts[-held:])
        # rewards in the model's units (x reward_scale) once, for every window drawn from them
        self.learn, self.holdout_trajectories = (Trajectories.from_episodes((s, a, r * c.reward_scale) for s, a, r in e)
                                                 for e in (learn, holdout))
        first_returns = [returns_to_go(r * c.reward_scale, c.discount)[0] / c.reward_scale for _, _, r in learn]  # pips
        self.target_return_pips = float(np.quantile(first_returns, c.target_return_quantile))
        self.expert_returns = {"mean": float(np.mean(first_returns)), "max": float(np.max(first_returns))}
        scored = np.linspace(0, len(self.holdout_trajectories.actions) - 1,
                             min(len(self.holdout_trajectories.actions), HOLDOUT_WINDOWS)).astype(np.int64)
        self.holdout = self._windows(self.holdout_trajectories, scored)
        torch.manual_seed(config.seed)
        self.model = DecisionTransformer(c).to(self.device)
        self.model.set_scaling(*fit_state_scaling(self.learn.states))
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=c.learning_rate)
        self.open_volume(checkpoint_root)

    def _experts(self, *session_sets: np.ndarray) -> list[list]:
        """The experts' episodes on each set of session starts (module docstring), each rule tuned
        once on the train split."""
        env, c = self.env, self.config.dt
        # a MuZero expert that cannot teach is refused before the rules are tuned (a minute on the demo)
        muzero = [self._muzero_expert(c.muzero_expert)] if c.muzero_expert is not None else []
        train = disjoint_train_sessions(self.features)
        signals = {"momentum": momentum_signal(env.mid, env.pip_by_bar)}
        if self.features.expected_drift is not None:
            signals["oracle"] = self.features.expected_drift
        experts = []  # (name, the environment it plays, its policy)
        for name, signal in signals.items():
            rule = tune(env, signal, train, name)
            experts.append((name, env, threshold_policy(signal, env.space, rule.enter, rule.exit)))
        experts += muzero
        self.experts = [name for name, _, _ in experts]
        episodes: list[list] = [[] for _ in session_sets]
        for _, expert_env, policy in experts:
            for epsilon in c.expert_epsilons:
                for starts, out in zip(session_sets, episodes):
                    rng = np.random.default_rng([self.config.seed, len(out), len(starts)])
                    out += record(expert_env, with_random_actions(policy, epsilon, rng), starts, self.indicators)
        return episodes

    def _muzero_expert(self, path: Path) -> tuple[str, TradingEnv, Policy]:
        """A MuZero model's greedy search as an expert, on an environment with its window and this
        action space; refused with the reason where it cannot teach this Strategist."""
        candidate = load_candidate(path)
        what = f"TRAINING_DT__MUZERO_EXPERT {path}"
        if candidate.family != "muzero":
            raise ValueError(f"{what} is a {candidate.family} model: the expert must be a muzero one")
        if candidate.env_config.action_space != self.env.config.action_space:
            raise ValueError(f"{what} acts in the {candidate.env_config.action_space} action space, this Strategist in "
                             f"{self.env.config.action_space} (TRAINING_ENV__ACTION_SPACE)")
        check_market(candidate, self.features.instrument_names[0], self.features.granularity)
        env = TradingEnv(self.features, replace(candidate.env_config, episode_bars=self.env.config.episode_bars))
        search = NetworkSearch(candidate.model, 256, env.space, candidate.search_config)
        return f"muzero {candidate.version}", env, search_policy(search, seed=self.config.seed)

    @property
    def steps_per_epoch(self) -> int:
        return max(1, len(self.learn.actions) // self.config.dt.batch_size)

    def describe(self) -> str:
        params = sum(p.numel() for p in self.model.parameters())
        return (f"dt strategist: {params:,} parameters, {len(self.learn.episode_start):,} expert episodes "
                f"({', '.join(self.experts)}) "
                f"({len(self.learn.actions):,} steps), {len(self.holdout_trajectories.episode_start):,} held out, "
                f"target return {self.target_return_pips:+.1f} pips (experts' mean {self.expert_returns['mean']:+.1f}, "
                f"best {self.expert_returns['max']:+.1f}), {self.steps_per_epoch:,} steps an epoch")

    # --- learning ------------------------------------------------------------------

    def _windows(self, trajectories: Trajectories, ends: np.ndarray) -> list[torch.Tensor]:
        c = self.config.dt
        w = windows(trajectories, ends, c.context_steps, c.discount, c.return_scale)
        return [torch.from_numpy(a).to(self.device) for a in (w.returns_to_go, w.states, w.actions, w.mask)]

    def step(self) -> float:
        c = self.config.dt
        rtg, states, actions, mask = self._windows(self.learn, self.rng.integers(0, len(self.learn.actions),
                                                                                 c.batch_size))
        self.model.train()
        loss = DecisionTransformer.loss(self.model(rtg, states, actions, mask), actions, mask)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), c.gradient_clip)
        self.optimizer.step()
        self.learner.steps += 1
        return float(loss.detach())

    def score_holdout(self) -> dict:
        """The held-out windows' action cross-entropy at their newest step, and how often the model's
        action there is the expert's."""
        rtg, states, actions, mask = self.holdout
        self.model.eval()
        with torch.no_grad():
            logits = torch.cat([self.model(rtg[i : i + 256], states[i : i + 256], actions[i : i + 256],
                                           mask[i : i + 256])[:, -1] for i in range(0, len(actions), 256)])
        loss = float(torch.nn.functional.cross_entropy(logits, actions[:, -1]))
        agreement = float((logits.argmax(dim=-1) == actions[:, -1]).float().mean())
        return {"holdout_loss": loss, "expert_agreement": round(agreement, 4),
                "target_return_pips": self.target_return_pips}

    def model_payload(self) -> dict:
        payload = super().model_payload()
        payload[self.PAYLOAD_KEY] = {**payload[self.PAYLOAD_KEY], "target_return_pips": self.target_return_pips,
                                     "experts": list(self.experts)}
        return payload
