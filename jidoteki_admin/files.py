"""Whole-file writes that never leave a half-written file behind."""

from __future__ import annotations

import errno
import json
import os
import tempfile
from pathlib import Path


def atomic_write(path: Path, data: bytes, mode: int = 0o600, group: int | None = None) -> None:
    """Replace the file at ``path`` with ``data``: a crash leaves either the old or the new one.

    On appliances, persisted files are symbolic links into a persistent mount: renaming over
    the link would replace it with a file that is lost at the next reboot. So the file the
    link points to is replaced, never the link; the temporary file lives beside that file so
    the rename stays on one filesystem. ``group``, when given, becomes the file's group.
    """
    target = _final_target(Path(path))
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    try:
        if group is not None:
            os.fchown(fd, -1, group)
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, target)
    except BaseException:
        remove_quietly(Path(tmp))
        raise
    fsync_directory(target.parent)


def _final_target(path: Path) -> Path:
    """Where ``path`` leads once every symbolic link is followed (itself if it is none).

    A dangling link leads to where its target would be; a loop is an error, not a reason
    to replace the link.
    """
    target = Path(os.path.realpath(path))
    if target.is_symlink():
        raise OSError(errno.ELOOP, os.strerror(errno.ELOOP), str(path))
    return target


def atomic_write_json(path: Path, value: object, mode: int = 0o644) -> None:
    atomic_write(path, json.dumps(value).encode() + b"\n", mode)


def fsync_directory(directory: Path) -> None:
    """Make a rename in ``directory`` durable."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def read_first_line(path: Path) -> str | None:
    """The first line of a small text file without its line ending, or None if absent."""
    try:
        with open(path, "rb") as f:
            line = f.readline(64 * 1024)
    except FileNotFoundError:
        return None
    return line.rstrip(b"\r\n").decode("utf-8", "replace")


def tail_lines(path: Path, count: int, block: int = 8192) -> list[str] | None:
    """The last ``count`` lines of a possibly large log file, reading from its end."""
    try:
        f = open(path, "rb")
    except FileNotFoundError:
        return None
    with f:
        position = f.seek(0, os.SEEK_END)
        data = b""
        while position > 0 and data.count(b"\n") <= count:
            step = min(block, position)
            position -= step
            f.seek(position)
            data = f.read(step) + data
    lines = data.decode("utf-8", "replace").splitlines()
    return lines[-count:]


def remove_quietly(path: Path) -> None:
    try:
        Path(path).unlink()
    except FileNotFoundError:
        pass
