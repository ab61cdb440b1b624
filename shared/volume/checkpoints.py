"""The checkpoint volume (design section 6, a contract).

    $CHECKPOINT_DIR/training/latest.pt               resume state
    $CHECKPOINT_DIR/training/ckpt-ep00000050.pt      candidate, last K kept
    $CHECKPOINT_DIR/training/ckpt-ep00000050.ready   JSON signal written after the .pt is durable
    $CHECKPOINT_DIR/control/                         ops signals (training.pause, live.flatten)

Every file is written tmp -> fsync -> os.replace -> fsync(dir): the temp file
sits in the target's own directory (os.replace is atomic only within one
filesystem) under a name no watcher reacts to, so a reader sees the old file
or the new one, never half of one. A killed writer leaves only temp files,
which `clean_orphans` removes at start.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

TMP_PREFIX = ".tmp-"
CANDIDATE_RE = re.compile(r"^ckpt-ep(\d{8})\.pt$")


def default_checkpoint_dir() -> Path:
    return Path(os.environ.get("CHECKPOINT_DIR", "runtime/checkpoints"))


def fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=TMP_PREFIX + path.name + ".", dir=path.parent)
    try:
        os.fchmod(fd, 0o644)  # readable by the other services (mkstemp makes it 0600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def atomic_write_json(path: Path, payload: dict) -> None:
    atomic_write_bytes(path, (json.dumps(payload, indent=2, sort_keys=True) + "\n").encode())


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def clean_orphans(directory: Path) -> list[Path]:
    """Remove temp files a killed writer left behind; returns what was removed."""
    directory = Path(directory)
    if not directory.exists():
        return []
    removed = []
    for path in directory.iterdir():
        if path.name.startswith(TMP_PREFIX) and path.is_file():
            path.unlink(missing_ok=True)
            removed.append(path)
    return removed


@dataclass(frozen=True)
class ReadySignal:
    """The JSON a `.ready` file holds (a contract with validation)."""

    checkpoint: str            # file name of the candidate, in the same directory
    sha256: str
    episode: int
    created_at: str            # ISO 8601 UTC
    feature_spec_version: str
    config_hash: str

    @classmethod
    def read(cls, path: Path) -> "ReadySignal":
        payload = json.loads(Path(path).read_text())
        missing = {f for f in cls.__dataclass_fields__} - set(payload)
        if missing:
            raise ValueError(f"signal {path} lacks {sorted(missing)}")
        return cls(**{k: payload[k] for k in cls.__dataclass_fields__})

    def to_dict(self) -> dict:
        return asdict(self)


def candidate_name(episode: int) -> str:
    return f"ckpt-ep{episode:08d}.pt"


def signal_name(episode: int) -> str:
    return f"ckpt-ep{episode:08d}.ready"


class CheckpointDir:
    """The training side of the volume."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.training = self.root / "training"
        self.control = self.root / "control"
        self.latest = self.training / "latest.pt"

    def prepare(self) -> list[Path]:
        self.training.mkdir(parents=True, exist_ok=True)
        self.control.mkdir(parents=True, exist_ok=True)
        return clean_orphans(self.training)

    def candidates(self) -> list[tuple[int, Path]]:
        found = []
        for path in self.training.glob("ckpt-ep*.pt"):
            match = CANDIDATE_RE.match(path.name)
            if match:
                found.append((int(match.group(1)), path))
        return sorted(found)

    def write_candidate(self, episode: int, data: bytes, *, created_at: str, feature_spec_version: str,
                        config_hash: str) -> ReadySignal:
        """The .pt first (durable), then its .ready: a signal never points to a missing file."""
        path = self.training / candidate_name(episode)
        atomic_write_bytes(path, data)
        signal = ReadySignal(path.name, sha256_bytes(data), episode, created_at, feature_spec_version, config_hash)
        atomic_write_json(self.training / signal_name(episode), signal.to_dict())
        return signal

    def repair_signals(self, read: Callable[[bytes], dict | None]) -> tuple[list[Path], list[Path]]:
        """After a kill between a candidate and its signal: signal every candidate that has
        none and loads (`read` returns its payload, or None when it does not load), remove
        the ones that do not. Returns (signalled, removed)."""
        signalled, removed = [], []
        for episode, path in self.candidates():
            if (self.training / signal_name(episode)).exists():
                continue
            data = path.read_bytes()
            payload = read(data)
            if payload is None or int(payload.get("episode", -1)) != episode:
                path.unlink(missing_ok=True)
                removed.append(path)
                continue
            created = datetime.fromtimestamp(path.stat().st_mtime, timezone.utc).isoformat()
            signal = ReadySignal(path.name, sha256_bytes(data), episode, created,
                                 str(payload.get("feature_spec_version")), str(payload.get("config_hash")))
            atomic_write_json(self.training / signal_name(episode), signal.to_dict())
            signalled.append(path)
        if removed:
            fsync_dir(self.training)
        return signalled, removed

    def prune(self, keep: int) -> list[Path]:
        """Keep the newest `keep` candidates; remove older ones, signal first, and any
        signal whose candidate is gone (it would count for nothing and point nowhere)."""
        removed = []
        for episode, path in self.candidates()[:-keep] if keep > 0 else []:
            signal = self.training / signal_name(episode)
            signal.unlink(missing_ok=True)
            path.unlink(missing_ok=True)
            removed.append(path)
        for signal in self.training.glob("ckpt-ep*.ready"):
            if not (self.training / (signal.name.removesuffix(".ready") + ".pt")).exists():
                signal.unlink(missing_ok=True)
                removed.append(signal)
        if removed:
            fsync_dir(self.training)
        return removed

    def paused(self) -> bool:
        return (self.control / "training.pause").exists()
