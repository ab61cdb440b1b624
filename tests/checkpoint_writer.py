"""A process that writes candidates, signals and latest.pt as fast as it can,
until it is killed (used by the kill -9 test)."""

from __future__ import annotations

import os
import sys
from datetime import datetime, timezone
from pathlib import Path

from shared.volume.checkpoints import CheckpointDir, atomic_write_bytes


def main(root: str) -> None:
    volume = CheckpointDir(Path(root))
    volume.prepare()
    episode = max((ep for ep, _ in volume.candidates()), default=0)
    while True:
        episode += 1
        data = os.urandom(256 * 1024) + str(episode).encode()
        volume.write_candidate(episode, data, created_at=datetime.now(timezone.utc).isoformat(),
                               feature_spec_version="micro-v1", config_hash="test")
        volume.prune(5)
        atomic_write_bytes(volume.latest, data)


if __name__ == "__main__":
    main(sys.argv[1])
