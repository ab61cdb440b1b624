"""What validation keeps of every candidate: its result file (results/epN.json), a row in
validation/validations.duckdb (with its session P&L, for the probability of backtest
overfitting across candidates), and the Prometheus figures of the last result."""

from __future__ import annotations

from pathlib import Path

import duckdb
import numpy as np

from services.validation.metrics import ValidationMetrics
from shared.validation.report import write_result
from shared.volume.snapshots import TableSnapshots


def result_name(episode: int) -> str:
    return f"ep{episode:08d}.json"


class ValidationRecords:
    def __init__(self, db_path: Path, results: Path, metrics: ValidationMetrics) -> None:
        self.results = results
        self.metrics = metrics
        self.db = duckdb.connect(str(db_path))
        self.snapshots = TableSnapshots(Path(db_path).parent / "export", ("validations",))  # readable beside us
        self.db.execute(
            """CREATE TABLE IF NOT EXISTS validations (
                   recorded_at TIMESTAMP, episode BIGINT, result VARCHAR, reason VARCHAR, sha256 VARCHAR,
                   seconds DOUBLE, trades BIGINT, total_pips DOUBLE, expectancy_pips DOUBLE, win_rate DOUBLE,
                   profit_factor DOUBLE, max_drawdown_pips DOUBLE, sqn DOUBLE, sqn_100 DOUBLE, sharpe_daily DOUBLE,
                   trade_ratio DOUBLE, quality DOUBLE, mc_p5_final_pips DOUBLE, car25 DOUBLE, safe_f DOUBLE,
                   search_beats_raw BOOLEAN)"""
        )
        # added after the first release: an older database gains the columns, its rows stay NULL
        self.db.execute("ALTER TABLE validations ADD COLUMN IF NOT EXISTS sessions_key VARCHAR")
        self.db.execute("ALTER TABLE validations ADD COLUMN IF NOT EXISTS session_pnl DOUBLE[]")
        self.db.execute("ALTER TABLE validations ADD COLUMN IF NOT EXISTS family VARCHAR")

    def judged(self) -> int:
        """Candidates the gate has judged (promoted or failed): the trials of the deflated Sharpe."""
        return self.db.execute("SELECT count(*) FROM validations WHERE result IN ('promoted', 'failed_gate')"
                               ).fetchall()[0][0]

    def judged_session_pnl(self, sessions_key: str, limit: int) -> np.ndarray:
        """[candidates, sessions] P&L of the last `limit` judged candidates validated on the
        sessions named by `sessions_key`, oldest first: the matrix of the PBO."""
        rows = self.db.execute(
            "SELECT session_pnl FROM (SELECT recorded_at, session_pnl FROM validations WHERE sessions_key = ? "
            "AND result IN ('promoted', 'failed_gate') AND session_pnl IS NOT NULL ORDER BY recorded_at DESC "
            "LIMIT ?) ORDER BY recorded_at", [sessions_key, limit]).fetchall()
        return np.asarray([row[0] for row in rows], dtype=np.float64)

    def validated_by_family(self, sessions_key: str) -> list[tuple[str, int, list[float]]]:
        """(family, episode, session P&L) of every judged candidate validated on these sessions: the
        arena's entrants (rows from before families count as muzero)."""
        return [(family or "muzero", int(episode), list(pnl)) for family, episode, pnl in self.db.execute(
            "SELECT family, episode, session_pnl FROM validations WHERE sessions_key = ? AND result IN "
            "('promoted', 'failed_gate') AND session_pnl IS NOT NULL ORDER BY recorded_at", [sessions_key]).fetchall()]

    def write(self, payload: dict, stats: dict | None, sessions_key: str | None = None) -> None:
        """The result file, a row in validations.duckdb, the metrics; `stats` is TradeStats.to_dict()."""
        episode, result, reason, seconds = payload["episode"], payload["result"], payload["reason"], payload["seconds"]
        write_result(self.results / result_name(episode), payload)
        report = payload.get("report") or {}
        s = stats or report.get("stats")
        mc = report.get("monte_carlo")
        self.db.execute(
            "INSERT INTO validations VALUES (now()::TIMESTAMP, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, "
            "?, ?, ?)",
            [episode, result, reason, report.get("sha256"), seconds]
            + [s.get(k) if s else None for k in ("trades", "total_pips", "expectancy_pips", "win_rate", "profit_factor",
                                                 "max_drawdown_pips", "sqn", "sqn_100", "sharpe_daily", "trade_ratio",
                                                 "quality")]
            + [mc["final_pips"]["5"] if mc else None, mc.get("car25") if mc else None, mc.get("safe_f") if mc else None,
               report.get("search_beats_raw")]
            + [sessions_key if report.get("session_pnl") else None, report.get("session_pnl") or None]
            + [report.get("family")],
        )
        self.snapshots.write(self.db)
        m = self.metrics
        m.validations.labels(result=result).inc()
        if result in ("promoted", "failed_gate", "timeout", "error"):
            m.duration.observe(seconds)
        fractions = payload.get("baselines") or {}
        if fractions.get("fraction_of_oracle") is not None:
            m.fraction_of_oracle.set(fractions["fraction_of_oracle"])
        if fractions.get("fraction_of_momentum") is not None:
            m.fraction_of_momentum.set(fractions["fraction_of_momentum"])
        if payload.get("pbo") is not None:
            m.pbo.set(payload["pbo"])
        if s is not None:
            m.last_expectancy.set(s["expectancy_pips"])
            m.last_win_rate.set(s["win_rate"])
            m.last_trade_ratio.set(s["trade_ratio"])
            m.last_drawdown.set(s["max_drawdown_pips"])
            for stat in ("trades", "total_pips", "quality"):
                m.last.labels(stat=stat).set(s[stat])
            m.last.labels(stat="sqn_100").set(s["sqn_100"] or 0.0)
