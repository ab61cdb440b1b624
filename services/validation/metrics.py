"""Prometheus metrics of the validation service (micro_validation_*)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics

disable_created_metrics()

RESULTS = ("promoted", "failed_gate", "rejected", "skipped", "timeout", "error")


class ValidationMetrics:
    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self.validations = Counter("micro_validation_validations", "Candidates handled, by result", ["result"], registry=r)
        for result in RESULTS:
            self.validations.labels(result=result)
        self.duration = Histogram("micro_validation_duration_seconds", "Wall time of one validation",
                                  buckets=(10, 30, 60, 120, 300, 600, 1200, 1800, 3600), registry=r)
        self.fraction_of_oracle = Gauge("micro_validation_fraction_of_oracle",
                                        "The last candidate's validation P&L over the oracle baseline's", registry=r)
        self.fraction_of_momentum = Gauge("micro_validation_fraction_of_momentum",
                                          "The last candidate's validation P&L over the momentum baseline's", registry=r)
        self.pbo = Gauge("micro_validation_pbo_ratio",
                         "Probability of backtest overfitting (CSCV) over the judged candidates' session P&L",
                         registry=r)
        self.arena_pips = Gauge("micro_validation_arena_pips",
                                "Validation P&L of each family's best candidate and of each rule baseline, same sessions",
                                ["entrant"], registry=r)
        self.queue_depth = Gauge("micro_validation_queue_depth", "Candidates waiting", registry=r)
        self.progress = Gauge("micro_validation_progress_ratio", "Progress of the current validation", registry=r)
        self.last = Gauge("micro_validation_last", "Key statistics of the last validated candidate", ["stat"], registry=r)
        self.last_expectancy = Gauge("micro_validation_last_expectancy_pips", "Expectancy of the last candidate", registry=r)
        self.last_win_rate = Gauge("micro_validation_last_win_rate_ratio", "Win rate of the last candidate", registry=r)
        self.last_trade_ratio = Gauge("micro_validation_last_trade_ratio", "Non-HOLD share of the last candidate", registry=r)
        self.last_drawdown = Gauge("micro_validation_last_max_drawdown_pips", "Max drawdown of the last candidate", registry=r)
        self.promotions = Counter("micro_validation_promotions", "Candidates promoted", registry=r)
        self.champion_episode = Gauge("micro_validation_champion_episode", "Episode of the promoted model", registry=r)
        self.heartbeat = Gauge("micro_validation_loop_heartbeat_timestamp_seconds", "When the loop last ran", registry=r)
