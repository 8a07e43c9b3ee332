"""Whole-file writes that never leave a half-written file behind, and logs that rotate."""

from __future__ import annotations

import errno
import grp
import json
import os
import pwd
import re
import stat
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Protocol

if TYPE_CHECKING:
    from .config import LogRotate


def atomic_write(path: Path, data: bytes, mode: int = 0o600, group: int | None = None,
                 owner: int | None = None) -> None:
    """Replace the file at ``path`` with ``data``: a crash leaves either the old or the new one.

    On appliances, persisted files are symbolic links into a persistent mount: renaming over
    the link would replace it with a file that is lost at the next reboot. So the file the
    link points to is replaced, never the link; the temporary file lives beside that file so
    the rename stays on one filesystem. ``group`` and ``owner``, when given, become the
    file's group and owner before it takes the old one's place.
    """
    tmp, target = staged_write(path, data, mode, group, owner)
    try:
        os.replace(tmp, target)
    except BaseException:
        remove_quietly(tmp)
        raise
    fsync_directory(target.parent)


def staged_write(path: Path, data: bytes, mode: int = 0o600, group: int | None = None,
                 owner: int | None = None) -> tuple[Path, Path]:
    """Write ``data`` to a temporary file beside the file ``path`` leads to (as atomic_write
    does), and return (temporary, target) without renaming: several files replaced
    together are all written before the first is renamed. ``owner``, when given, becomes
    the file's owner (root only)."""
    target = resolved_target(Path(path))
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as out:
            if group is not None or owner is not None:
                os.fchown(fd, -1 if owner is None else owner, -1 if group is None else group)
            os.fchmod(fd, mode)
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
    except BaseException:
        remove_quietly(Path(tmp))
        raise
    return Path(tmp), target


def resolved_target(path: Path) -> Path:
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


WRITE_PIECE = 64 * 1024


def write_all(fd: int, data: bytes | bytearray | memoryview) -> None:
    """Write all of ``data`` to ``fd``, at most WRITE_PIECE bytes per call.

    Larger writes let the kernel fill the page cache in large folios: on a virtual machine
    whose free memory goes back to its host, writing a GiB in 1 MiB calls took 2.4 s of
    system time, against 0.3-0.4 s in 64 KiB calls, warm or cold (docs/performance.md).
    """
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view[:WRITE_PIECE]):]


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


class Clock(Protocol):
    """What CachedFirstLine needs of a reactor (IReactorTime.seconds)."""

    def seconds(self) -> float: ...


class CachedFirstLine:
    """The first line of a small file (read_first_line), kept between requests.

    Opening and reading the file for every request costs more than the rest of a small
    answer. The file is looked at (one stat) at most once every ``max_age`` seconds of
    ``clock``, and read again only when its inode, size or modification time changed, so
    a change made outside the daemon is served within ``max_age`` seconds. A change the
    daemon makes itself calls ``invalidate``, and the next read sees it at once.
    ``max_age`` 0 looks at every read.
    """

    def __init__(self, path: Path, clock: Clock | None = None, max_age: float = 1.0):
        self.path = path
        self.clock = clock
        self.max_age = max_age if clock is not None else 0.0
        self._checked: float | None = None
        self._stamp: tuple[int, int, int] | None = None
        self._value: str | None = None

    def read(self) -> str | None:
        """The first line, or None when the file is missing."""
        now = self.clock.seconds() if self.clock is not None else 0.0
        last = self._checked
        if last is not None and 0 <= now - last < self.max_age:
            return self._value
        self._checked = now
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            self._stamp = self._value = None
            return None
        stamp = (st.st_ino, st.st_size, st.st_mtime_ns)
        if stamp != self._stamp:
            # Read after the stat: a file replaced in between is read new and read again
            # at the next look, since its stamp differs from the one kept.
            self._value = read_first_line(self.path)
            self._stamp = stamp
        return self._value

    def invalidate(self) -> None:
        """Look at the file again on the next read (the daemon just changed it)."""
        self._checked = None


def tail_text(path: Path, count: int, block: int = 8192, start: int = 0) -> str | None:
    """The last ``count`` lines of a possibly large log file as ``tail -n COUNT`` prints
    them (a last line without a newline stays without one), reading from its end, and
    nothing before byte ``start`` (where the current run's lines begin)."""
    try:
        f = open(path, "rb")
    except FileNotFoundError:
        return None
    with f:
        end = f.seek(0, os.SEEK_END)
        start = start if 0 <= start <= end else 0  # a log replaced since: all of it is this run's
        position = end
        data = b""
        while position > start and data.rstrip(b"\n").count(b"\n") < count:
            step = min(block, position - start)
            position -= step
            f.seek(position)
            data = f.read(step) + data
    ends = data.endswith(b"\n")
    lines = data.split(b"\n")
    if ends:
        lines.pop()
    text = b"\n".join(lines[-count:]) + (b"\n" if ends and lines else b"")
    return text.decode("utf-8", "replace")


# What atomic_write's mkstemp names its temporary file: "." + the target's name + "." + 8
# characters.
_TEMPORARY = re.compile(r"\.(?P<target>.+)\.[a-z0-9_]{8}")


STALE_SECONDS = 60.0  # a temporary file older than this is a leftover: a write takes milliseconds


def remove_stale_temporaries(directory: Path, owned: Callable[[str], bool], now: float | None = None) -> list[str]:
    """Remove the temporary files atomic_write leaves when its process dies between creating
    one and renaming it (kill -9, power loss), for the targets ``owned`` says only the
    daemon and its jobs write; returns the names removed. Called at start; a job the
    previous daemon left may still be writing, so only a temporary file untouched for a
    minute is taken for a leftover."""
    removed: list[str] = []
    try:
        names = os.listdir(directory)
    except FileNotFoundError:
        return removed
    now = time.time() if now is None else now
    for name in names:
        match = _TEMPORARY.fullmatch(name)
        if not match or not owned(match["target"]):
            continue
        try:
            info = os.lstat(directory / name)
        except FileNotFoundError:
            continue
        if stat.S_ISREG(info.st_mode) and now - info.st_mtime > STALE_SECONDS:
            remove_quietly(directory / name)
            removed.append(name)
    return sorted(removed)


def remove_quietly(path: Path) -> None:
    try:
        Path(path).unlink()
    except (FileNotFoundError, NotADirectoryError):  # not there, one way or another
        pass


def rotate(path: Path, keep: int) -> None:
    """Move ``path`` to ``path.1``, ``path.1`` to ``path.2`` and so on, keeping ``keep``
    old generations; the oldest is overwritten."""
    path = Path(path)
    for n in range(keep - 1, 0, -1):
        older = path.with_name(f"{path.name}.{n}")
        if older.exists():
            os.replace(older, path.with_name(f"{path.name}.{n + 1}"))
    if path.exists():
        os.replace(path, path.with_name(f"{path.name}.1"))


class RotatingLog:
    """A log file that is appended to and rotated by size.

    It is opened with O_APPEND, so after logrotate's copytruncate the next line lands at
    the new end of the file instead of leaving a hole; ``reopen`` (on SIGHUP) follows a
    logrotate that moved the file away. ``limits`` has ``bytes`` and ``keep``, and may be
    replaced while the file is open.
    """

    def __init__(self, path: Path, limits: LogRotate, mode: int = 0o644):
        self.path = Path(path)
        self.limits = limits
        self.mode = mode
        self._fd: int | None = None

    def write(self, data: bytes) -> None:
        if self._fd is None:
            self._fd = self._open()
        size = os.fstat(self._fd).st_size
        if size and size + len(data) > self.limits.bytes:
            self.close()
            rotate(self.path, self.limits.keep)
            self._fd = self._open()
        os.write(self._fd, data)

    def reopen(self) -> None:
        """Write to whatever file is at the path now (the next write opens it)."""
        self.close()

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def _open(self) -> int:
        return os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, self.mode)


def secret_owner(owned_like: Path) -> tuple[int | None, int | None]:
    """(owner, group) for a file that holds a secret, mode 0600: whoever owns ``owned_like``
    (the admin tree's etc/, the daemon's user), so that a job running as root leaves a
    file the daemon can still read and nobody else can; (None, None) keeps the writer's."""
    info = os.stat(owned_like)
    if os.geteuid() == info.st_uid:
        return None, None
    return info.st_uid, info.st_gid


def permission_problem(error: OSError) -> str:
    """A permission error as the operator needs it: which file, which user, where the fix is."""
    try:
        user = pwd.getpwuid(os.geteuid()).pw_name
    except KeyError:
        user = str(os.geteuid())
    groups = []
    for gid in sorted(set(os.getgroups()) | {os.getegid()}):
        try:
            groups.append(grp.getgrgid(gid).gr_name)
        except KeyError:
            groups.append(str(gid))
    what = error.filename or "a file"
    if error.filename2:
        what = f"{error.filename} or {error.filename2}"
    return (f"The daemon may not use {what}: {error.strerror or 'permission denied'} (it runs as {user}, in the "
            f"groups {', '.join(groups)}). docs/migration.md lists the owners, groups and modes an appliance needs")
