"""Every stage's knobs, once, in the order data flows: market and sessions, the
environment and its action space, the network, the search, exploration, replay,
the learner, training as a whole, then validation's gate and live's risk limits.

Plain frozen dataclasses that import nothing heavy, so a service validates its
settings (shared/core/settings.py) before torch is loaded. Each checks its own ranges
in `__post_init__`; values that must agree across stages are derived in
TrainingConfig, not written twice."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from dataclasses import asdict, dataclass, field, replace
from typing import Literal, get_args, get_type_hints

from shared.config.challengers import DTConfig, ForecastPolicyConfig, GuardianConfig, TFTConfig
from shared.config.markets import (  # noqa: F401 (re-exported: one configuration, one import)
    SESSION_DEFAULTS_BY_BAR_SIZE,
    SessionConfig,
    SyntheticMarketConfig,
    session_config_for,
)
from shared.core.feature_spec import POSITION_FEATURES, TEMPORAL_FEATURES, WARMUP_BARS, WINDOW_BARS, MarketOutcome
from shared.core.settings import derived, flatten

DEVICE_PATTERN = r"^(cpu|cuda(:\d+)?|mps)$"

# the action spaces shared/env/actions.py defines and their sizes (it checks the two agree)
ACTION_SPACE_SIZES = {"hold_buy_sell_close": 4, "sized_positions": 7}
ActionSpaceName = Literal["hold_buy_sell_close", "sized_positions"]
assert get_args(ActionSpaceName) == tuple(ACTION_SPACE_SIZES)

Reward = Literal["pnl", "amddp1"]
REWARDS = get_args(Reward)


@dataclass(frozen=True)
class EnvConfig:
    reward: Reward = "pnl"
    action_space: ActionSpaceName = "hold_buy_sell_close"
    episode_bars: int = derived(360, "the feature store's session length (sessions.length_bars)")
    spread_pips: float | None = None   # None: the instrument's default (GBPJPY 4)
    window_bars: int = derived(WINDOW_BARS, "network.window_bars: the bars the network sees")

    def __post_init__(self) -> None:
        if self.reward not in REWARDS:
            raise ValueError(f"reward must be one of {REWARDS}, got {self.reward!r}")
        if self.action_space not in tuple(ACTION_SPACE_SIZES):
            raise ValueError(f"action_space must be one of {tuple(ACTION_SPACE_SIZES)}, got {self.action_space!r}")
        if self.episode_bars < 2:
            raise ValueError("episode_bars must be at least 2")
        if self.spread_pips is not None and self.spread_pips < 0:
            raise ValueError("spread_pips must be >= 0")
        if not 1 <= self.window_bars <= WARMUP_BARS:
            raise ValueError(f"window_bars must be in 1..{WARMUP_BARS} (the feature warm-up)")


@dataclass(frozen=True)
class NetworkConfig:
    temporal_features: int = derived(len(TEMPORAL_FEATURES), "the feature spec's temporal features")
    window_bars: int = WINDOW_BARS     # bars of features the network sees (32: half an hour at M1, 32 hours at H1)
    static_features: int = derived(len(POSITION_FEATURES), "the feature spec's position features")
    tcn_channels: int = 240
    tcn_kernel: int = 3
    tcn_dilations: tuple[int, ...] = (1, 2, 4)
    dropout: float = 0.1
    static_hidden: int = 16
    hidden: int = 256
    num_actions: int = derived(4, "the action space's size")
    # the chance outcomes (docs/learning.md): 0, the market's three (MarketOutcome: the next bar's move
    # against 0.33 sigma); K > 0, K codes learned by an encoder of the next bar (Stochastic MuZero's
    # VQ-VAE with a one-hot codebook), the chance head predicting the code; 1 is a deterministic model
    # (one code: the dynamics learns nothing of what the market did, the ablation of chance nodes)
    chance_codes: int = 0
    num_outcomes: int = derived(3, "network.chance_codes, or the market's 3 outcomes when 0")
    afterstate_blocks: int = 2
    dynamics_blocks: int = 3
    policy_blocks: int = 2
    value_blocks: int = 2
    value_atoms: int = 601
    value_max_pips: float = 300.0

    def __post_init__(self) -> None:
        if self.chance_codes < 0:
            raise ValueError(f"network config: chance_codes must be 0 (the market's outcomes) or a number of "
                             f"learned codes, got {self.chance_codes}")
        object.__setattr__(self, "num_outcomes", self.chance_codes or len(MarketOutcome))
        for name in ("temporal_features", "window_bars", "static_features", "tcn_channels", "hidden", "num_actions",
                     "num_outcomes", "value_atoms"):
            if getattr(self, name) < 1:
                raise ValueError(f"network config: {name} must be positive")
        if not 0 <= self.dropout < 1:
            raise ValueError("network config: dropout must be in [0, 1)")
        if self.window_bars > WARMUP_BARS:
            raise ValueError(f"network config: window_bars must be at most {WARMUP_BARS} (the feature warm-up)")

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class SearchConfig:
    simulations: int = 5
    discount: float = derived(0.997, "replay.discount: one discount for search and targets")
    dirichlet_alpha: float = 1.0
    dirichlet_fraction: float = 0.5
    pb_c_init: float = 1.25
    pb_c_base: float = 19652.0
    sample_outcomes: bool = False
    root_selection: Literal["puct", "gumbel"] = "gumbel"  # docs/learning.md: the lever that made it learn
    max_considered_actions: int = 16   # gumbel: k of Gumbel top-k
    gumbel_scale: float = 1.0          # gumbel: scale of the root noise when noise is on
    gumbel_value_scale: float = 0.1    # gumbel: c_scale of sigma(q) = (maxvisit_init + max N) * c_scale * q
    gumbel_maxvisit_init: float = 50.0 # gumbel: c_visit of the same transform (Danihelka et al. 2022)

    def __post_init__(self) -> None:
        if not 1 <= self.simulations <= 1000:
            raise ValueError("simulations must be in 1..1000")
        if self.root_selection not in ("puct", "gumbel"):
            raise ValueError(f"root_selection must be 'puct' or 'gumbel', got {self.root_selection!r}")
        if self.max_considered_actions < 1:
            raise ValueError("max_considered_actions must be at least 1")
        if self.gumbel_scale < 0 or self.gumbel_value_scale <= 0 or self.gumbel_maxvisit_init < 0:
            raise ValueError("gumbel_scale and gumbel_maxvisit_init must be >= 0, gumbel_value_scale > 0")

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class ExplorationConfig:
    epsilon: float = 0.05                # chance of a uniformly random legal action
    temperature_start: float = 1.0
    temperature_end: float = 0.5
    temperature_decay_episodes: int = 20_000
    add_noise: bool = True               # Dirichlet noise at the roots

    def __post_init__(self) -> None:
        if not 0 <= self.epsilon <= 1:
            raise ValueError("epsilon must be in [0, 1]")
        if self.temperature_start < 0 or self.temperature_end < 0:
            raise ValueError("temperatures must be >= 0")
        if self.temperature_decay_episodes < 1:
            raise ValueError("temperature_decay_episodes must be at least 1")

    def temperature(self, episode: int) -> float:
        """Linear from start to end over the decay episodes, then constant."""
        frac = min(1.0, episode / self.temperature_decay_episodes)
        return self.temperature_start + frac * (self.temperature_end - self.temperature_start)

    def to_dict(self) -> dict:
        return asdict(self)


GREEDY = ExplorationConfig(epsilon=0.0, temperature_start=0.0, temperature_end=0.0, add_noise=False)


@dataclass(frozen=True)
class ReplayConfig:
    capacity_episodes: int = 2_000
    unroll_steps: int = 5
    td_steps: int = 10
    discount: float = 0.997

    def __post_init__(self) -> None:
        if self.capacity_episodes < 1 or self.unroll_steps < 1 or self.td_steps < 1:
            raise ValueError("capacity_episodes, unroll_steps and td_steps must be at least 1")
        if not 0 < self.discount <= 1:
            raise ValueError("discount must be in (0, 1]")

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class LearnerConfig:
    learning_rate: float = 2e-3
    weight_decay: float = 1e-5
    grad_clip: float = 1.0
    batch_size: int = 64
    policy_weight: float = 1.0
    value_weight: float = 0.25
    reward_weight: float = 1.0
    outcome_weight: float = 1.0
    afterstate_value_weight: float = 0.25
    commitment_weight: float = 0.25  # network.chance_codes > 0: the encoder's pull towards its chosen code
    # a schedule: None keeps learning_rate; a value decays the rate to it along a half cosine over
    # learning_rate_decay_steps learner steps, then holds it (docs/learning.md: a lever under measurement)
    learning_rate_final: float | None = None
    learning_rate_decay_steps: int = 4_000
    # 0: a candidate carries the learner's weights; d in (0, 1): an exponential moving average of
    # them, decay min(d, (1 + n) / (10 + n)) at learner step n (shared/training/averaging.py);
    # self-play always plays the learner's own weights (docs/learning.md: a lever under measurement)
    weight_average_decay: float = 0.0

    def __post_init__(self) -> None:
        if self.learning_rate <= 0 or self.batch_size < 1 or self.grad_clip <= 0:
            raise ValueError("learning_rate, batch_size and grad_clip must be positive")
        if not 0 <= self.weight_average_decay < 1:
            raise ValueError("weight_average_decay must be in [0, 1) (0: candidates carry the learner's own weights)")
        if self.learning_rate_final is not None and not 0 < self.learning_rate_final <= self.learning_rate:
            raise ValueError("learning_rate_final must be in (0, learning_rate], or unset (a constant rate)")
        if self.learning_rate_decay_steps < 1:
            raise ValueError("learning_rate_decay_steps must be at least 1")

    def learning_rate_at(self, step: int) -> float:
        """The rate of learner step `step` (0-based)."""
        if self.learning_rate_final is None:
            return self.learning_rate
        progress = min(1.0, step / self.learning_rate_decay_steps)
        return self.learning_rate_final + (self.learning_rate - self.learning_rate_final) * 0.5 * (
            1.0 + math.cos(math.pi * progress))

    def to_dict(self) -> dict:
        return asdict(self)


def unknown_keys(cls: type, data: dict, prefix: str = "") -> list[str]:
    """Dotted names in `data` that no field of dataclass `cls` (or of its nested dataclasses) has."""
    types = get_type_hints(cls)   # the annotations are strings here (postponed evaluation)
    unknown = []
    for key, value in data.items():
        if key not in types:
            unknown.append(prefix + key)
        elif isinstance(value, dict) and dataclasses.is_dataclass(types[key]):
            unknown += unknown_keys(types[key], value, f"{prefix}{key}.")
    return unknown


@dataclass(frozen=True)
class TrainingConfig:
    # the family trained (issue 26): muzero (self-play and search), tft (the Oracle forecaster,
    # shared/training/forecaster.py) or dt (the Strategist, shared/training/strategist.py); its
    # candidates go through the same signal, validation and gate
    model: Literal["muzero", "tft", "dt"] = "muzero"
    episodes_per_iteration: int = 64        # E episodes in lockstep
    checkpoint_interval_episodes: int = 50  # a candidate once this many episodes passed since the last
    keep_checkpoints: int = 5
    # learner steps (of learner.batch_size positions) per episode collected: 2 since issue 23's lever
    # (docs/learning.md: better champions on validation in 4 of 5 runs, 30-45% more wall time an episode)
    learner_steps_per_episode: float = 2.0
    min_replay_episodes: int = 0            # learning starts once the buffer holds this many (0: one iteration's)
    seed: int = 0
    # how training runs, not what it learns (docs/scale.md): validation and live never read these
    backend: Literal["local", "ray"] = "local"  # ray: self-play on Ray actors (RAY_ADDRESS joins a cluster)
    actors: int = 2                    # Ray self-play actors
    actor_episodes: int = 0            # each actor's lockstep batch; 0: E / actors, so one round of all
    #                                    actors plays E episodes and the weights lag one learn round (docs/scale.md)
    actor_cpus: int = 1                # CPUs (torch threads) per actor
    max_policy_lag: int = 512          # learner steps an ingested episode's weights may be behind; older ones are dropped
    actor_timeout_seconds: float = 900.0  # an actor's batch taking longer is abandoned and the actor restarted
    learners: int = 1                  # data-parallel learners (torch.distributed); 1: one learner in this process
    env: EnvConfig = field(default_factory=EnvConfig)
    network: NetworkConfig = field(default_factory=NetworkConfig)
    search: SearchConfig = field(default_factory=SearchConfig)
    exploration: ExplorationConfig = field(default_factory=ExplorationConfig)
    replay: ReplayConfig = field(default_factory=ReplayConfig)
    learner: LearnerConfig = field(default_factory=LearnerConfig)
    tft: TFTConfig = field(default_factory=TFTConfig)                             # model = tft
    forecast_policy: ForecastPolicyConfig = field(default_factory=ForecastPolicyConfig)  # its forecast -> position
    dt: DTConfig = field(default_factory=DTConfig)                                 # model = dt
    guardian: GuardianConfig = field(default_factory=GuardianConfig)  # beside any family (train_steps > 0)

    def __post_init__(self) -> None:
        if self.forecast_policy.horizon_bars > self.tft.decoder_bars:
            raise ValueError(f"forecast_policy.horizon_bars {self.forecast_policy.horizon_bars} is beyond the "
                             f"forecast's tft.decoder_bars {self.tft.decoder_bars}")
        if not {self.forecast_policy.lower_quantile, self.forecast_policy.upper_quantile} <= set(self.tft.quantiles):
            raise ValueError(f"forecast_policy reads quantiles {self.forecast_policy.lower_quantile} and "
                             f"{self.forecast_policy.upper_quantile}; the forecaster has {self.tft.quantiles}")
        if self.episodes_per_iteration < 1 or self.checkpoint_interval_episodes < 1 or self.keep_checkpoints < 1:
            raise ValueError("episodes_per_iteration, checkpoint_interval_episodes and keep_checkpoints must be >= 1")
        if self.learner_steps_per_episode < 0 or self.min_replay_episodes < 0:
            raise ValueError("learner_steps_per_episode and min_replay_episodes must be >= 0")
        if self.actors < 1 or self.actor_cpus < 1 or self.learners < 1 or self.max_policy_lag < 0:
            raise ValueError("actors, actor_cpus and learners must be >= 1, max_policy_lag >= 0")
        if self.actor_episodes < 0:
            raise ValueError("actor_episodes must be >= 0 (0: episodes_per_iteration / actors)")
        if self.actor_timeout_seconds <= 0:
            raise ValueError("actor_timeout_seconds must be positive")
        if self.learner.batch_size % self.learners:
            raise ValueError(f"learner.batch_size {self.learner.batch_size} does not divide among {self.learners} "
                             "learners: each takes an equal share of every batch")
        # derived, not duplicated: the network's action head from the action space, one discount
        object.__setattr__(self, "network", replace(self.network, num_actions=ACTION_SPACE_SIZES[self.env.action_space]))
        object.__setattr__(self, "dt", replace(self.dt, num_actions=ACTION_SPACE_SIZES[self.env.action_space]))
        object.__setattr__(self, "search", replace(self.search, discount=self.replay.discount))
        object.__setattr__(self, "env", replace(self.env, window_bars=self.network.window_bars))

    @property
    def actor_batch_episodes(self) -> int:
        """Episodes in one Ray actor's lockstep batch."""
        return self.actor_episodes or max(1, self.episodes_per_iteration // self.actors)

    @property
    def replay_warmup_episodes(self) -> int:
        return min(self.min_replay_episodes or self.episodes_per_iteration, self.replay.capacity_episodes)

    def to_dict(self) -> dict:
        """JSON-ready (tuples as lists): what a checkpoint stores and from_dict reads back."""
        from pydantic import TypeAdapter

        return TypeAdapter(TrainingConfig).dump_python(self, mode="json")

    @classmethod
    def from_dict(cls, data: dict) -> "TrainingConfig":
        """Refuses a key no field has: a stored setting this code would silently drop changes what was trained."""
        from pydantic import TypeAdapter

        unknown = unknown_keys(cls, data)
        if unknown:
            raise ValueError(f"unknown setting(s) {', '.join(unknown)}")
        return TypeAdapter(cls).validate_python(data)

    def config_hash(self) -> str:
        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()[:16]


Score = Literal["quality", "sqn_100", "expectancy_pips", "total_pips"]
SCORES = get_args(Score)


Selection = Literal["paired_test", "score"]
SELECTIONS = get_args(Selection)


@dataclass(frozen=True)
class GateConfig:
    min_trades: int = 20
    min_expectancy_pips: float = 0.0          # strictly above
    min_mc_p5_final_pips: float = 0.0         # Monte Carlo 5th-percentile final P&L, strictly above
    max_drawdown_pips: float = 1000.0
    # the champion is beaten on this when no paired test is possible
    score: Score = "quality"
    # how a candidate must beat the champion: a paired test on validation sessions, or the score
    selection: Selection = "paired_test"
    # the paired test: one-sided p below this (0.50: more than the champion on the same sessions, level
    # with 0.10 on held-out sessions at the 320-episode cadence over seven runs: bench.selection, docs/learning.md)
    max_p_value: float = 0.10
    # the deflated Sharpe ratio (the probability that the session Sharpe is above 0, deflated for the
    # candidates tried) at least this; None: not checked (issue 23: not yet measured as a default)
    min_deflated_sharpe: float | None = None

    def __post_init__(self) -> None:
        if self.score not in SCORES:
            raise ValueError(f"score must be one of {SCORES}, got {self.score!r}")
        if self.selection not in SELECTIONS:
            raise ValueError(f"selection must be one of {SELECTIONS}, got {self.selection!r}")
        if not 0 < self.max_p_value <= 1:
            raise ValueError("max_p_value must be in (0, 1]")
        if self.min_deflated_sharpe is not None and not 0 <= self.min_deflated_sharpe <= 1:
            raise ValueError("min_deflated_sharpe must be in [0, 1] (a probability), or unset")
        if self.min_trades < 0 or self.max_drawdown_pips <= 0:
            raise ValueError("min_trades must be >= 0 and max_drawdown_pips > 0")


@dataclass(frozen=True)
class ValidationConfig:
    simulations: int = 50           # as the live service searches
    mc_runs: int = 1000
    seed: int = 0
    max_sessions: int = 0           # 0: every validation session
    timeout_seconds: float = 1800.0
    gate: GateConfig = flatten(GateConfig)

    def __post_init__(self) -> None:
        if not 1 <= self.simulations <= 1000 or self.mc_runs < 1 or self.max_sessions < 0 or self.timeout_seconds <= 0:
            raise ValueError("need 1 <= simulations <= 1000, mc_runs >= 1, max_sessions >= 0, timeout_seconds > 0")


@dataclass(frozen=True)
class RiskConfig:
    max_units: int = 1
    max_daily_loss_pips: float = 100.0
    max_spread_pips: float = 8.0
    stale_bars: int = 2
    # a position open while the market is open and no bar has come for this long is flattened
    flatten_stale_seconds: float = 600.0
    # a flatten the broker did not fill is tried again after this, doubling up to the cap
    flatten_retry_seconds: float = 1.0
    flatten_retry_max_seconds: float = 30.0
    # across the instruments of one account (LIVE_INSTRUMENTS): the sum of |units| over them, and the net
    # units per currency (long 1 EURUSD = +1 EUR and -1 USD, in units, not valued: see shared/live/account.py);
    # None: no cap beyond each instrument's max_units. A target beyond either is clipped, journaled
    max_total_units: int | None = None
    max_currency_exposure_units: int | None = None
    # LIVE_REGIME_GUARD: no new or larger position while the market is in a regime where the champion
    # lost on its validation sessions (its report's `regimes`); closing and reducing stay allowed.
    # LIVE_REGIME_GUARD_UNITS: a reduced size instead: a position there may open or grow to this many units
    regime_guard: bool = False
    regime_guard_units: int = 0

    def __post_init__(self) -> None:
        if self.regime_guard_units < 0:
            raise ValueError("regime_guard_units must be >= 0 (0: no new position in a losing regime)")
        if self.max_units < 1 or self.max_daily_loss_pips <= 0 or self.stale_bars < 1:
            raise ValueError("max_units and stale_bars must be >= 1, max_daily_loss_pips > 0")
        if any(cap is not None and cap < 0 for cap in (self.max_total_units, self.max_currency_exposure_units)):
            raise ValueError("max_total_units and max_currency_exposure_units must be >= 0 (unset: no cap)")
        if self.flatten_stale_seconds <= 0 or not 0 < self.flatten_retry_seconds <= self.flatten_retry_max_seconds:
            raise ValueError("flatten_stale_seconds must be > 0 and 0 < flatten_retry_seconds <= "
                             "flatten_retry_max_seconds")

