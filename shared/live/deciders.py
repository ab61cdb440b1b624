"""What decides a root in live, by the promoted model's family: the MuZero agent's search, a
forecaster's rule or the Strategist's return-conditioned action (issue 26) behind the same calls,
so the trader, the desk, the journal and the decision pages need no second path.

A Strategist's root (`strategist_root`): `temporal` the indicators-v1 rows of the last K bars
[1, K, F] (rebuilt from the journal's bars like a forecaster's window), `static` its episode so far
[1, 4K] (shared/model/dt_policy.py: the return still wanted, its actions, its positions, which
steps are real), which the trader keeps (its episode restarts at a restart, after a bar it did not
decide, and every episode_bars decisions, as validation's sessions do). Its "tree" is the return
it was asked for and its action probabilities.

A forecaster's root carries its own inputs in the trader's PendingRoot: `temporal` is the encoder
window of indicators-v1 rows [1, E, F] (the last E bars of the feature buffer: each row from bars
<= it), `static` the known-future time inputs of the D bars scheduled next, then the round trip's
cost in log-return units, then the units (pips or bps) one log-return unit is worth at the last
close. Its "tree" is the forecast it acted on: the quantiles at the rule's horizon in those units,
the cost and the position the rule wanted (no children: nothing was searched)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, replace

import numpy as np
import torch

from shared.config import TrainingConfig
from shared.core.instruments import Instrument
from shared.data.bars import Bars
from shared.env.actions import ACTION_SPACES
from shared.features.indicators import indicator_features
from shared.model.dt_policy import StrategistContext, decide, target_return_pips
from shared.model.tft_data import scheduled_times, time_features
from shared.model.tft_policy import spread_cost, target_position
from shared.search import NetworkSearch
from shared.volume.candidates import Candidate

__all__ = ["Decider", "ForecastDecider", "StrategistDecider", "StrategistEpisode", "forecast_root", "make_decider",
           "model_window_bars", "strategist_root"]


def model_window_bars(candidate: Candidate) -> int:
    """The bars of features the model reads at a decision."""
    config = candidate.config
    return {"tft": config.tft.encoder_bars, "dt": config.dt.context_steps}.get(candidate.family,
                                                                              config.network.window_bars)


def make_decider(candidate: Candidate, roots: int, simulations: int) -> "Decider":
    """What decides `roots` roots at once with `candidate`: its search, its forecast rule or its
    Strategist."""
    if candidate.family == "tft":
        return ForecastDecider(candidate.config, candidate.model)
    if candidate.family == "dt":
        return StrategistDecider(candidate.config, candidate.model)
    space = ACTION_SPACES[candidate.env_config.action_space]
    return NetworkSearch(candidate.model, roots, space, replace(candidate.search_config, simulations=simulations))


def forecast_root(bars: Bars, instrument: Instrument, config: TrainingConfig, bar_minutes: int,
                  spread_pips: float) -> tuple[np.ndarray, np.ndarray]:
    """(temporal [1, E, F], static [1, D * 4 + 2]) float32 for a forecaster at the last bar of `bars`."""
    c = config.tft
    observed = indicator_features(bars, instrument.calendar)[-c.encoder_bars:]
    future = scheduled_times(bars.ts[-1:], c.decoder_bars, bar_minutes=bar_minutes, calendar=instrument.calendar)
    close = float(bars.close[-1])
    cost = float(spread_cost(instrument.price_distance(spread_pips, close), close))
    units_per_log_return = close / instrument.price_distance(1.0, close)
    static = np.concatenate([time_features(future).ravel(), [cost, units_per_log_return]])
    return (np.ascontiguousarray(observed[None], np.float32), np.ascontiguousarray(static[None], np.float32))


def strategist_root(bars: Bars, instrument: Instrument, context: StrategistContext) -> tuple[np.ndarray, np.ndarray]:
    """(temporal [1, K, F], static [1, 4K]) float32 for a Strategist at the last bar of `bars`, its
    `context` advanced to this step."""
    k = context.config.context_steps
    window = indicator_features(bars, instrument.calendar)[-k:]
    if len(window) < k:  # fewer bars than K: the oldest repeated, never read (those steps are not real)
        window = np.concatenate([np.repeat(window[:1], k - len(window), axis=0), window])
    return np.ascontiguousarray(window[None], np.float32), context.packed()


class StrategistEpisode:
    """A live trader's Strategist episode: it goes on from the previous bar's decision; a bar not
    decided, a restart, a new model or a session's worth of decisions (as validation plays) begins
    a new one, flat in what it has earned."""

    def __init__(self, candidate: Candidate, max_units: int) -> None:
        self.context = StrategistContext(1, candidate.config.dt, target_return_pips(candidate.payload), max_units)
        self.decisions_per_episode = candidate.env_config.episode_bars - 1  # a validation session's decisions
        self.last_ts: int | None = None
        self.start_equity_pips = 0.0

    def root(self, bars: Bars, instrument: Instrument, equity_pips: float, position: int) -> tuple[np.ndarray, np.ndarray]:
        """The root at the last of `bars` (strategist_root), the episode advanced to it."""
        going_on = (self.last_ts is not None and len(bars) > 1 and int(bars.ts[-2]) == self.last_ts
                    and self.context.steps[0] < self.decisions_per_episode)
        if not going_on:
            self.context.restart()
            self.start_equity_pips = equity_pips
        self.context.advance(np.array([equity_pips - self.start_equity_pips]), np.array([position]))
        self.last_ts = int(bars.ts[-1])
        return strategist_root(bars, instrument, self.context)

    def chose(self, action: int) -> None:
        self.context.chose(np.array([action]))


@dataclass(frozen=True)
class ChallengerOutput:
    """A forecaster's or a Strategist's decisions with the fields live reads from a search's output."""

    chosen: np.ndarray          # [B] int64 actions
    visit_counts: np.ndarray    # [B, A] zeros: nothing was searched
    root_values: np.ndarray     # [B] the median forecast at the horizon, or the return still wanted: pips (or bps)
    prior: np.ndarray           # [B, A] the chosen action with probability 1, or the Strategist's probabilities
    network_value: np.ndarray   # [B] as root_values
    forecasts: list[dict]       # [B] what tree_json returns

    @property
    def search(self) -> "ChallengerOutput":
        return self

    def actions(self, temperature: float = 0.0) -> np.ndarray:
        return self.chosen

    def tree_json(self, row: int, depth: int = 0) -> str:
        return json.dumps(self.forecasts[row])


class ForecastDecider:
    """`run` as NetworkSearch.run, for a forecaster's roots (forecast_root)."""

    def __init__(self, config: TrainingConfig, model: torch.nn.Module) -> None:
        self.model = model.eval()
        self.tft = config.tft
        self.policy = config.forecast_policy
        self.space = ACTION_SPACES[config.env.action_space]

    @property
    def config(self):  # what the journal records as the decision's settings
        return _Settings(self.policy)

    def run(self, temporal: np.ndarray, static: np.ndarray, legal: np.ndarray, position: np.ndarray,
            seeds: np.ndarray | None = None, add_noise: bool = False) -> ChallengerOutput:
        d, quantiles = self.tft.decoder_bars, self.tft.quantiles
        known = static[:, : 4 * d].reshape(len(static), d, 4)
        cost, units = static[:, 4 * d].astype(np.float64), static[:, 4 * d + 1].astype(np.float64)
        with torch.no_grad():
            forecast = self.model(torch.from_numpy(np.ascontiguousarray(temporal)),
                                  torch.from_numpy(np.ascontiguousarray(known))).quantiles.numpy()
        held = np.sign(position).astype(np.int64)
        want = target_position(forecast, quantiles, cost, current=held, config=self.policy)
        chosen = self.space.toward(position, legal, want)
        at_horizon = forecast[:, self.policy.horizon_bars - 1, :].astype(np.float64) * units[:, None]
        median = at_horizon[:, int(np.argmin(np.abs(np.asarray(quantiles) - 0.5)))]
        prior = np.zeros((len(chosen), self.space.num_actions), np.float32)
        prior[np.arange(len(chosen)), chosen] = 1.0
        forecasts = [{"family": "tft", "horizon_bars": self.policy.horizon_bars,
                      "quantiles": {str(q): round(float(v), 4) for q, v in zip(quantiles, at_horizon[row])},
                      "cost": round(float(cost[row] * units[row]), 4), "target_position": int(want[row]),
                      "children": []} for row in range(len(chosen))]
        return ChallengerOutput(chosen, np.zeros((len(chosen), self.space.num_actions), np.int32),
                              median.astype(np.float32), prior, median.astype(np.float32), forecasts)


@dataclass(frozen=True)
class _Settings:
    policy: object

    def to_dict(self) -> dict:
        return {"family": "tft", **asdict(self.policy)}


class StrategistDecider:
    """`run` as NetworkSearch.run, for a Strategist's roots (strategist_root)."""

    def __init__(self, config: TrainingConfig, model: torch.nn.Module) -> None:
        self.model = model.eval()
        self.dt = config.dt
        self.space = ACTION_SPACES[config.env.action_space]

    @property
    def config(self):  # what the journal records as the decision's settings
        return _StrategistSettings(self.dt.context_steps, self.dt.return_scale, self.dt.reward_scale)

    def run(self, temporal: np.ndarray, static: np.ndarray, legal: np.ndarray, position: np.ndarray,
            seeds: np.ndarray | None = None, add_noise: bool = False) -> ChallengerOutput:
        chosen, probabilities = decide(self.model, temporal, static, legal, self.space.max_units)
        k = self.dt.context_steps
        wanted_pips = static[:, k - 1].astype(np.float64) * self.dt.return_scale / self.dt.reward_scale
        trees = [{"family": "dt", "return_wanted_pips": round(float(wanted_pips[row]), 2),
                  "probabilities": {name: round(float(p), 4) for name, p in zip(self.space.actions, probabilities[row])},
                  "steps_in_context": int((static[row, 3 * k:] > 0.5).sum()), "children": []}
                 for row in range(len(chosen))]
        return ChallengerOutput(chosen, np.zeros((len(chosen), self.space.num_actions), np.int32),
                                wanted_pips.astype(np.float32), probabilities.astype(np.float32),
                                wanted_pips.astype(np.float32), trees)


@dataclass(frozen=True)
class _StrategistSettings:
    context_steps: int
    return_scale: float
    reward_scale: float

    def to_dict(self) -> dict:
        return {"family": "dt", **asdict(self)}


Decider = NetworkSearch | ForecastDecider | StrategistDecider
