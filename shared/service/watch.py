"""Watching the volume: watchdog events as hints, plus a rescan on a timer.

inotify does not reach every volume (NFS, CIFS, some Docker Desktop mounts),
one write raises several events, and a full queue drops them silently: so a
watcher here only wakes its loop early; the loop always rescans the
directory itself, on every wake-up and at least every `rescan_seconds`.
Only files matching `suffixes` count, and only their creation or a rename
onto them (the atomic writers' `os.replace`), never `modified`.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer
from watchdog.observers.polling import PollingObserver


class _Hint(FileSystemEventHandler):
    def __init__(self, names: tuple[str, ...], wake: threading.Event) -> None:
        self.names = names
        self.wake = wake

    def _matches(self, path: str | bytes) -> bool:
        name = Path(str(path)).name
        return any(name.endswith(suffix) for suffix in self.names)

    def on_created(self, event: FileSystemEvent) -> None:
        if not event.is_directory and self._matches(event.src_path):
            self.wake.set()

    def on_moved(self, event: FileSystemEvent) -> None:
        if not event.is_directory and self._matches(getattr(event, "dest_path", "")):
            self.wake.set()


class VolumeWatcher:
    def __init__(self, directory: Path, suffixes: tuple[str, ...], *, polling: bool = False,
                 polling_interval_seconds: float = 1.0) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.wake = threading.Event()
        self.observer = PollingObserver(timeout=polling_interval_seconds) if polling else Observer()
        self.observer.schedule(_Hint(suffixes, self.wake), str(self.directory), recursive=False)
        self.kind = "polling" if polling else type(self.observer).__name__

    def start(self) -> "VolumeWatcher":
        self.observer.start()
        return self

    def wait(self, timeout: float, stop: threading.Event | None = None) -> bool:
        """Block until an event hints at a change, `timeout` passes or `stop` is
        set; True on a hint."""
        deadline = time.monotonic() + timeout
        while (remaining := deadline - time.monotonic()) > 0:
            if self.wake.wait(min(0.25, remaining)):
                self.wake.clear()
                return True
            if stop is not None and stop.is_set():
                return False
        return False

    def stop(self) -> None:
        self.observer.stop()
        self.observer.join(timeout=5)
