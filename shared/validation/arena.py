"""One arena: every model family's best validated candidate and the rule baselines, on the same
validation sessions, ranked by P&L, with the paired test between each pair (issue 26).

An entrant is a name and its P&L per session, in session order, on sessions every entrant played
(the validation service keys them: sessions_key). A family's entrant is its candidate with the
most validation pips; the baselines are the tuned momentum and oracle rules and always-flat. The
paired test is the gate's (a one-sided sign-flip test on the session differences): p[a][b] small
says a beats b on these sessions, not by luck of a few."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from shared.validation.statistics import paired_sign_flip_p


@dataclass(frozen=True)
class Entrant:
    name: str             # "muzero ep00003200", "tft ep00000400", "momentum", "oracle", "flat"
    kind: str             # the model family, or "rule"
    session_pnl: tuple[float, ...]
    episode: int | None = None

    @property
    def total_pips(self) -> float:
        return float(np.sum(self.session_pnl))


def best_of_each_family(rows: list[tuple[str, int, list[float]]]) -> list[Entrant]:
    """(family, episode, session P&L) of validated candidates -> each family's best by total pips
    (the earlier candidate on a tie)."""
    best: dict[str, Entrant] = {}
    for family, episode, pnl in rows:
        entrant = Entrant(f"{family} ep{episode:08d}", family, tuple(float(x) for x in pnl), episode)
        if family not in best or entrant.total_pips > best[family].total_pips:
            best[family] = entrant
    return [best[family] for family in sorted(best)]


def arena(entrants: list[Entrant]) -> dict:
    """The ranking (most pips first) and the paired p-value of each entrant beating each other one.
    Entrants whose session count differs from the first's are left out (they played other sessions)."""
    if not entrants:
        return {"sessions": 0, "ranking": [], "paired_p": {}}
    sessions = len(entrants[0].session_pnl)
    kept = sorted((e for e in entrants if len(e.session_pnl) == sessions), key=lambda e: -e.total_pips)
    ranking = [{"rank": i + 1, "name": e.name, "kind": e.kind, "episode": e.episode,
                "total_pips": round(e.total_pips, 2),
                "mean_session_pips": round(e.total_pips / sessions, 4) if sessions else 0.0} for i, e in enumerate(kept)]
    paired = {a.name: {b.name: round(paired_sign_flip_p(np.asarray(a.session_pnl), np.asarray(b.session_pnl)), 4)
                       for b in kept if b is not a} for a in kept}
    return {"sessions": sessions, "ranking": ranking, "paired_p": paired}
