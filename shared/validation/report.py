"""A validation report and its writers: the JSON result file (numpy types made plain) and the
equity-curve-and-Monte-Carlo PNG beside it."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from shared.validation.statistics import MonteCarlo, TradeStats
from shared.volume.checkpoints import atomic_write_bytes, atomic_write_json


@dataclass
class ValidationReport:
    episode: int
    sha256: str
    sessions: int
    seconds: float
    stats: TradeStats
    monte_carlo: MonteCarlo | None
    baselines: dict[str, TradeStats]
    search_beats_raw: bool | None  # strictly ahead; None: a family without search (tft)
    equity_curve: list[float]
    session_pnl: list[float] = field(default_factory=list)  # [sessions] pips, in session order
    deflated_sharpe: float | None = None                     # over session P&L, given the candidates tried
    split: str = "validation"
    # {instrument: sessions, pip_weight, stats in its own pips, raw_network_pips, search_vs_raw}; the
    # fields above are the portfolio's (in the first instrument's pips; one instrument: its own)
    instruments: dict[str, dict] = field(default_factory=dict)
    family: str = "muzero"  # the candidate's model family (TrainingConfig.model)
    calibration: dict[str, float] | None = None  # a forecaster's: {quantile: share of outcomes below it}
    # {"rules": the labelling rules, "by_regime": {regime: {"sessions": n, "candidate": pips, baseline: pips}}}:
    # shared/validation/regimes.py
    regimes: dict[str, dict] = field(default_factory=dict)

    @property
    def search_vs_raw(self) -> str | None:
        """ahead, tie or behind: the search's total pips against the raw network's (None: no search)."""
        if "raw_network" not in self.baselines:
            return None
        search, raw = self.stats.total_pips, self.baselines["raw_network"].total_pips
        return "tie" if abs(search - raw) < 1e-9 else ("ahead" if search > raw else "behind")

    def to_dict(self) -> dict:
        return {
            "episode": self.episode, "sha256": self.sha256, "sessions": self.sessions, "seconds": self.seconds,
            "stats": self.stats.to_dict(),
            "monte_carlo": self.monte_carlo.to_dict() if self.monte_carlo else None,
            "baselines": {name: s.to_dict() for name, s in self.baselines.items()},
            "search_beats_raw": self.search_beats_raw,
            "search_vs_raw": self.search_vs_raw,
            "session_pnl": self.session_pnl, "deflated_sharpe": self.deflated_sharpe, "split": self.split,
            "instruments": self.instruments, "family": self.family, "calibration": self.calibration,
            "regimes": self.regimes,
        }



def plain(value: dict) -> dict:
    """The same dict with numpy scalars and arrays as JSON's own types."""
    return json.loads(json.dumps(value, default=_json_default))


def write_result(path: Path, result: dict) -> None:
    atomic_write_json(path, plain(result))


def _json_default(value: object) -> object:
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def write_plot(path: Path, report: ValidationReport) -> None:
    """Equity curve plus Monte Carlo fan, as a PNG a person can open."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
    trades = np.diff(np.asarray(report.equity_curve))
    if len(trades) > 1:
        # the fan: percentile bands of 500 bootstrap equity paths, trade by trade
        rng = np.random.default_rng(0)
        paths = np.cumsum(rng.choice(trades, size=(500, len(trades))), axis=1)
        paths = np.concatenate([np.zeros((500, 1)), paths], axis=1)
        lo, q1, q3, hi = np.percentile(paths, [5, 25, 75, 95], axis=0)
        x = np.arange(len(report.equity_curve))
        left.fill_between(x, lo, hi, color="tab:orange", alpha=0.2, label="Monte Carlo 5-95%")
        left.fill_between(x, q1, q3, color="tab:orange", alpha=0.35, label="Monte Carlo 25-75%")
    left.plot(report.equity_curve, color="tab:blue", lw=1.5, label="validation equity")
    left.legend(loc="upper left")
    left.axhline(0, color="grey", lw=0.8)
    left.set(title=f"ep {report.episode}: equity over {report.stats.trades} trades", xlabel="trade", ylabel="pips")
    mc = report.monte_carlo
    if mc is not None:
        right.hist(mc.final_pips_runs, bins=40, color="tab:green", alpha=0.8)
        for p, style in (("5", ":"), ("50", "-"), ("95", ":")):
            right.axvline(mc.final_pips[p], color="black", ls=style, lw=1, label=f"p{p} {mc.final_pips[p]:.0f}")
        right.legend()
        right.set(title=f"Monte Carlo final P&L ({mc.runs} runs); safe-f {mc.safe_f:.2f}, CAR25 {mc.car25:.1%}",
                  xlabel="pips", ylabel="runs")
    else:
        right.text(0.5, 0.5, "no trades: no Monte Carlo", ha="center", va="center")
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90)
    plt.close(fig)
    atomic_write_bytes(path, buffer.getvalue())


