"""Promotion (design section 6, a contract):

    promoted/model-ep00000050.pt            a copy of a candidate that passed the gate; never overwritten
    promoted/model-ep00000050.metrics.json  the metrics it was promoted on (for a rollback)
    promoted/CURRENT                        JSON pointer to the live model, the one champion record:
                                            {"model", "sha256", "episode", "promoted_at", "feature_spec_version",
                                             "metrics"}
    validation/best_metrics.json            a copy of CURRENT's metrics for people and dashboards
    validation/promotion-decision.json      a promotion decided but not yet finished

The champion is CURRENT: its metrics travel in the same atomic write as the
pointer, so the model live trades and the metrics the next candidate must beat
can never disagree; `best_metrics.json` is derived from it (and repaired from
it at start). The copy is made from the bytes that were validated (training
prunes candidates within about a minute, so the file may be gone) and checked
against the signal's sha256 before CURRENT is replaced; a reader polling
CURRENT always sees a whole pointer to a whole, matching file.

A promotion is decided durably before it is acted on: the decision (with the
validated bytes' sha256 and the result to record) is written first, so a kill
anywhere in between is finished by `finish_decided_promotion` at the next
start instead of the candidate being lost.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from shared.core.errors import StopError
from shared.core.feature_spec import FEATURE_SPEC_VERSION
from shared.volume.checkpoints import atomic_write_bytes, atomic_write_json, sha256_bytes, sha256_file

DECISION = Path("validation") / "promotion-decision.json"


class PromotionError(StopError, ValueError):
    """A promotion that must not happen (bytes that do not match, a different file under the name)."""


@dataclass(frozen=True)
class CurrentPointer:
    model: str
    sha256: str
    episode: int
    promoted_at: str
    feature_spec_version: str
    metrics: dict

    @property
    def path_in(self) -> str:
        return f"promoted/{self.model}"


def promoted_name(episode: int) -> str:
    return f"model-ep{episode:08d}.pt"


def metrics_name(model_name: str) -> str:
    return model_name.removesuffix(".pt") + ".metrics.json"


def read_current(root: Path) -> CurrentPointer | None:
    """The live pointer, or None when nothing has been promoted; raises on a malformed one."""
    path = Path(root) / "promoted" / "CURRENT"
    if not path.exists():
        return None
    payload = json.loads(path.read_text())
    return CurrentPointer(**{k: payload[k] for k in CurrentPointer.__dataclass_fields__})


def champion_metrics(root: Path) -> dict | None:
    """What a candidate must beat: the metrics in CURRENT (None before the first promotion)."""
    current = read_current(root)
    return None if current is None else {"episode": current.episode, "model": current.model, **current.metrics}


def _point(root: Path, model_name: str, sha256: str, episode: int, metrics: dict) -> CurrentPointer:
    pointer = CurrentPointer(model=model_name, sha256=sha256, episode=episode,
                             promoted_at=datetime.now(timezone.utc).isoformat(),
                             feature_spec_version=FEATURE_SPEC_VERSION, metrics=metrics)
    atomic_write_json(root / "promoted" / "CURRENT", pointer.__dict__)
    sync_best_metrics(root)
    return pointer


def sync_best_metrics(root: Path) -> None:
    """best_metrics.json follows CURRENT (a copy for people; CURRENT is the record)."""
    root = Path(root)
    metrics = champion_metrics(root)
    path = root / "validation" / "best_metrics.json"
    if metrics is None:
        return
    if not path.exists() or json.loads(path.read_text()) != metrics:
        atomic_write_json(path, metrics)


def store_copy(root: Path, data: bytes, sha256: str, episode: int, metrics: dict) -> Path:
    """promoted/model-epN.pt from `data`, checked against `sha256` before and after writing."""
    root = Path(root)
    if sha256_bytes(data) != sha256:
        raise PromotionError(f"the bytes to promote for episode {episode} do not match the signal's sha256")
    target = root / "promoted" / promoted_name(episode)
    if target.exists():
        if sha256_file(target) != sha256:
            raise FileExistsError(f"{target} exists with other content: promoted models are never overwritten")
    else:
        atomic_write_bytes(target, data)
        if sha256_file(target) != sha256:  # what landed on the volume is what was validated
            target.unlink(missing_ok=True)
            raise PromotionError(f"the copy {target.name} does not match the signal's sha256")
    atomic_write_json(target.with_name(metrics_name(target.name)), metrics)
    return target


def promote(root: Path, data: bytes, sha256: str, episode: int, metrics: dict) -> CurrentPointer:
    """Copy the validated bytes into promoted/, then point CURRENT (with its metrics) at them."""
    target = store_copy(root, data, sha256, episode, metrics)
    return _point(Path(root), target.name, sha256, episode, metrics)


def point_current_to(root: Path, model_name: str) -> CurrentPointer:
    """Roll back (or forward) to a model already in promoted/ (an ops action), with the
    metrics it was promoted on, so the gate compares candidates with that champion."""
    root = Path(root)
    target = root / "promoted" / model_name
    if not target.is_file():
        raise FileNotFoundError(f"{target} does not exist")
    episode = int(model_name.removeprefix("model-ep").removesuffix(".pt"))
    sidecar = target.with_name(metrics_name(model_name))
    metrics = json.loads(sidecar.read_text()) if sidecar.exists() else {"manual": True}
    return _point(root, model_name, sha256_file(target), episode, metrics)


# --- decided, not yet finished ---------------------------------------------------------


def write_decision(root: Path, episode: int, sha256: str, metrics: dict, result: dict) -> None:
    """Make a promotion durable before acting on it; `result` is what the validator records."""
    atomic_write_json(Path(root) / DECISION, {"episode": episode, "sha256": sha256, "metrics": metrics,
                                              "result": result})


def read_decision(root: Path) -> dict | None:
    path = Path(root) / DECISION
    return json.loads(path.read_text()) if path.exists() else None


def clear_decision(root: Path) -> None:
    (Path(root) / DECISION).unlink(missing_ok=True)


def bytes_for_decision(root: Path, decision: dict, candidate_path: Path) -> bytes | None:
    """After a restart: the decided model's bytes, from the copy already in promoted/ or from
    the candidate still in training/, whichever matches the decided sha256; None if neither."""
    for path in (Path(root) / "promoted" / promoted_name(decision["episode"]), Path(candidate_path)):
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            continue
        if sha256_bytes(data) == decision["sha256"]:
            return data
    return None


def main(argv: list[str] | None = None) -> int:
    """python -m shared.volume.promotion {status,promote,rollback}: ops by hand."""
    import argparse
    import sys

    from shared.volume.candidates import CandidateError, load_candidate
    from shared.volume.checkpoints import CANDIDATE_RE, ReadySignal, default_checkpoint_dir, signal_name

    parser = argparse.ArgumentParser(prog="python -m shared.volume.promotion", description=main.__doc__)
    parser.add_argument("--root", type=Path, default=default_checkpoint_dir(), help="the checkpoint volume")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("status", help="what CURRENT points to, and every promoted model")
    manual = sub.add_parser("promote", help="promote a candidate by hand, bypassing the gate")
    manual.add_argument("checkpoint", type=Path, help="a training/ckpt-ep*.pt file")
    back = sub.add_parser("rollback", help="point CURRENT at a model already in promoted/")
    back.add_argument("model", help="e.g. model-ep00000064.pt")
    args = parser.parse_args(argv)
    try:
        if args.command == "status":
            current = read_current(args.root)
            print(f"CURRENT: {current.model if current else 'nothing promoted yet'}")
            for path in sorted((args.root / "promoted").glob("model-ep*.pt")):
                print(f"  {path.name}{'  <- live' if current and path.name == current.model else ''}")
        elif args.command == "promote":
            match = CANDIDATE_RE.match(args.checkpoint.name)
            if not match:
                raise ValueError(f"{args.checkpoint} is not a training/ckpt-epNNNNNNNN.pt file")
            # by hand bypasses only the gate: the file must load as validation and live load it
            ready = args.checkpoint.with_name(signal_name(int(match.group(1))))
            expected = ReadySignal.read(ready).sha256 if ready.exists() else None
            candidate = load_candidate(args.checkpoint, expected)
            pointer = promote(args.root, candidate.data, candidate.sha256, int(match.group(1)), {"manual": True})
            print(f"promoted {pointer.model}; CURRENT points to it")
        else:
            load_candidate(args.root / "promoted" / args.model)  # a rollback target must load too
            pointer = point_current_to(args.root, args.model)
            print(f"CURRENT points to {pointer.model}")
    except (FileNotFoundError, FileExistsError, ValueError, CandidateError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
