"""What one training iteration reports: its counters, losses and trade statistics, and the
`iterations` table in training/metrics.duckdb that keeps every report."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import duckdb
import numpy as np

from shared.training.selfplay import EpisodeBatch
from shared.volume.snapshots import TableSnapshots


@dataclass
class IterationReport:
    episode: int
    learner_steps: int
    collect_seconds: float
    learn_seconds: float
    episodes: int
    trades: int                 # closed trades; each was one entry (episodes close what is open)
    expectancy_pips: float
    win_rate: float
    trade_ratio: float
    pnl_pips_mean: float
    action_share: list[float]
    losses: dict[str, float]
    checkpoint: str | None
    replay_episodes: int
    decisions: int = 0

    @property
    def entries(self) -> int:
        return self.trades

    @property
    def episodes_per_hour(self) -> float:
        seconds = self.collect_seconds + self.learn_seconds
        return self.episodes / seconds * 3600 if seconds > 0 else 0.0


def trade_statistics(batch: EpisodeBatch) -> tuple[int, float, float, float, list[float]]:
    """(trades, expectancy in pips, win rate, trade ratio, action shares)."""
    trades = [p for episode in batch.trades_pips for p in episode]
    counts = batch.action_counts.sum(axis=0).astype(float)
    share = (counts / counts.sum()).tolist() if counts.sum() else [0.0] * len(counts)
    expectancy = float(np.mean(trades)) if trades else 0.0
    win_rate = float(np.mean([p > 0 for p in trades])) if trades else 0.0
    changes = batch.position_changes.sum() if batch.position_changes is not None else 0
    trade_ratio = float(changes / counts.sum()) if counts.sum() else 0.0  # share of decisions that were orders
    return len(trades), expectancy, win_rate, trade_ratio, share


class IterationTable:
    """training/metrics.duckdb: one row per iteration."""

    def __init__(self, path: Path) -> None:
        self.db = duckdb.connect(str(path))
        self.snapshots = TableSnapshots(Path(path).parent / "export", ("iterations",))  # readable beside us
        self.db.execute(
            """CREATE TABLE IF NOT EXISTS iterations (
                   recorded_at TIMESTAMP, episode BIGINT, learner_steps BIGINT, episodes_per_hour DOUBLE,
                   expectancy_pips DOUBLE, win_rate DOUBLE, trade_ratio DOUBLE, pnl_pips_mean DOUBLE,
                   trades BIGINT, action_share VARCHAR, losses VARCHAR, checkpoint VARCHAR, replay_episodes BIGINT)"""
        )

    def insert(self, report: IterationReport) -> None:
        self.db.execute(
            "INSERT INTO iterations VALUES (now()::TIMESTAMP, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [report.episode, report.learner_steps, report.episodes_per_hour, report.expectancy_pips, report.win_rate,
             report.trade_ratio, report.pnl_pips_mean, report.trades, json.dumps(report.action_share),
             json.dumps(report.losses), report.checkpoint, report.replay_episodes],
        )
        self.snapshots.write(self.db)

    def close(self) -> None:
        self.db.close()
