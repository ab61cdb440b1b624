"""Promotion (design section 6, a contract):

    promoted/model-ep00000050.pt   a copy of a candidate that passed the gate; never overwritten
    promoted/CURRENT               JSON pointer to the live model:
                                   {"model", "sha256", "episode", "promoted_at", "feature_spec_version", "metrics"}
    validation/best_metrics.json   the champion's metrics

The copy is written (atomically) before CURRENT is replaced (atomically), so a
reader polling CURRENT always sees a whole pointer to a whole file.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from shared.checkpoints import atomic_write_bytes, atomic_write_json, sha256_file
from shared.features.spec import FEATURE_SPEC_VERSION


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


def read_current(root: Path) -> CurrentPointer | None:
    """The live pointer, or None when nothing has been promoted; raises on a malformed one."""
    path = Path(root) / "promoted" / "CURRENT"
    if not path.exists():
        return None
    payload = json.loads(path.read_text())
    return CurrentPointer(**{k: payload[k] for k in CurrentPointer.__dataclass_fields__})


def promote(root: Path, candidate: Path, sha256: str, episode: int, metrics: dict) -> CurrentPointer:
    root = Path(root)
    promoted = root / "promoted"
    promoted.mkdir(parents=True, exist_ok=True)
    target = promoted / promoted_name(episode)
    if target.exists():
        if sha256_file(target) != sha256:
            raise FileExistsError(f"{target} exists with other content: promoted models are never overwritten")
    else:
        staged = Path(candidate).read_bytes()
        if len(staged) == 0:
            raise ValueError(f"{candidate} is empty")
        atomic_write_bytes(target, staged)
    pointer = CurrentPointer(model=target.name, sha256=sha256, episode=episode,
                             promoted_at=datetime.now(timezone.utc).isoformat(),
                             feature_spec_version=FEATURE_SPEC_VERSION, metrics=metrics)
    atomic_write_json(promoted / "CURRENT", pointer.__dict__)
    atomic_write_json(root / "validation" / "best_metrics.json", {"episode": episode, "model": target.name, **metrics})
    return pointer


def point_current_to(root: Path, model_name: str) -> CurrentPointer:
    """Roll back (or forward) to a model already in promoted/ (an ops action)."""
    root = Path(root)
    target = root / "promoted" / model_name
    if not target.is_file():
        raise FileNotFoundError(f"{target} does not exist")
    episode = int(model_name.removeprefix("model-ep").removesuffix(".pt"))
    pointer = CurrentPointer(model=model_name, sha256=sha256_file(target), episode=episode,
                             promoted_at=datetime.now(timezone.utc).isoformat(),
                             feature_spec_version=FEATURE_SPEC_VERSION, metrics={"manual": True})
    atomic_write_json(root / "promoted" / "CURRENT", pointer.__dict__)
    return pointer




def main(argv: list[str] | None = None) -> int:
    """python -m shared.promotion {status,promote,rollback}: ops by hand."""
    import argparse
    import sys

    from shared.checkpoints import CANDIDATE_RE, default_checkpoint_dir

    parser = argparse.ArgumentParser(prog="python -m shared.promotion", description=main.__doc__)
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
            pointer = promote(args.root, args.checkpoint, sha256_file(args.checkpoint), int(match.group(1)), {"manual": True})
            print(f"promoted {pointer.model}; CURRENT points to it")
        else:
            pointer = point_current_to(args.root, args.model)
            print(f"CURRENT points to {pointer.model}")
    except (FileNotFoundError, FileExistsError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
