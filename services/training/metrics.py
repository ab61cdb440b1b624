"""Prometheus metrics of the training service (micro_training_*)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, disable_created_metrics

disable_created_metrics()  # no *_created series: they only add noise to every counter

LOSSES = ("policy", "value", "reward", "outcome", "afterstate_value", "commitment", "total",
          "quantile", "action", "holdout")  # the challengers': the tft's pinball loss, the dt's action
#                                           cross-entropy, either's on held-out windows


class TrainingMetrics:
    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self.episodes = Counter("micro_training_episodes", "Self-play episodes collected", registry=r)
        self.learner_steps = Counter("micro_training_learner_steps", "Learner updates", registry=r)
        self.loss = Gauge("micro_training_loss", "Mean loss of the last iteration", ["component"], registry=r)
        self.episodes_per_hour = Gauge("micro_training_episodes_per_hour", "Throughput of the last iteration", registry=r)
        self.replay_episodes = Gauge("micro_training_replay_episodes", "Episodes in the replay buffer", registry=r)
        self.expectancy = Gauge("micro_training_expectancy_pips", "Mean pips per closed trade, last iteration", registry=r)
        self.win_rate = Gauge("micro_training_win_rate_ratio", "Share of winning trades, last iteration", registry=r)
        self.decisions = Counter("micro_training_decisions", "Self-play decisions", registry=r)
        self.entries = Counter("micro_training_entries", "Positions opened in self-play", registry=r)
        self.trade_ratio = Gauge("micro_training_trade_ratio", "Share of decisions that changed the position", registry=r)
        self.action_share = Gauge("micro_training_action_share_ratio", "Share of decisions per action", ["action"], registry=r)
        self.checkpoints = Counter("micro_training_checkpoints_written", "Candidates written", registry=r)
        self.last_checkpoint = Gauge("micro_training_last_checkpoint_timestamp_seconds", "When the last candidate was written",
                                     registry=r)
        self.heartbeat = Gauge("micro_training_loop_heartbeat_timestamp_seconds", "When the loop last ran", registry=r)
        self.paused = Gauge("micro_training_paused", "1 while control/training.pause exists", registry=r)
        self.iteration_seconds = Gauge("micro_training_iteration_seconds", "Duration of the last iteration", ["phase"],
                                       registry=r)
        # self-play on Ray actors (TRAINING_BACKEND=ray); the local loop reports no actors
        self.actors_alive = Gauge("micro_training_actors_alive", "Self-play actors whose last batch did not fail",
                                  registry=r)
        self.actor_episodes_per_hour = Gauge("micro_training_actor_episodes_per_hour",
                                             "Episodes an actor delivered per hour since it started", ["actor"],
                                             registry=r)
        self.weight_lag = Gauge("micro_training_weight_lag_steps",
                                "Learner steps between the weights that played the ingested batches and the learner",
                                ["stat"], registry=r)
        self.stale_dropped = Counter("micro_training_stale_episodes_dropped",
                                     "Episodes dropped as older than TRAINING_MAX_POLICY_LAG", registry=r)
        self.actor_restarts = Counter("micro_training_actor_restarts", "Self-play actors that died and were replaced",
                                      registry=r)
