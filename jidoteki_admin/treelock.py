"""One daemon per admin tree: an exclusive lock on a file in the tree, held while it runs.

Two daemons on one tree would each mark the other's running job failed at start-up and
start jobs of the same kind side by side. The lock is an flock(2) on an open file, so it
goes away with the process, however the process ends: a stale lock file never blocks a
restart.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path


class TreeLocked(Exception):
    """Another process holds the lock; ``holder`` is its pid as it wrote it, or None."""

    def __init__(self, path: Path, holder: int | None):
        super().__init__(str(path))
        self.path = path
        self.holder = holder


class TreeLock:
    def __init__(self, path: Path):
        self.path = path
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> None:
        """Take the lock without waiting and write our pid into the file for the next one
        to name; raises TreeLocked when another process has it."""
        if self.held:
            return
        # Python's os.open is close-on-exec: job children never inherit the lock.
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_pid(fd)
            os.close(fd)
            raise TreeLocked(self.path, holder) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.ftruncate(fd, 0)  # the file stays: removing it would race with a new holder
            os.close(fd)


def _read_pid(fd: int) -> int | None:
    try:
        return int(os.pread(fd, 32, 0).decode("ascii").strip())
    except (OSError, ValueError):
        return None
