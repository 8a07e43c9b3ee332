"""Running child programs without blocking the reactor: the one place that spawns.

Each child runs in its own session (process group) so a timeout can kill it together
with anything it started.
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any
from pathlib import Path

from twisted.internet import defer, error, protocol
from twisted.python.failure import Failure


# Starts the real program in a new session and working directory; exec keeps the pid, so
# the group id is the pid. The directory is changed here rather than with spawnProcess's
# path=, because any path makes Twisted fork instead of posix_spawn, and a forked child
# keeps the daemon's Python signal handlers until it execs: a SIGTERM sent in that window
# is swallowed, and stopping the job then waits out the whole grace period.
_BOOTSTRAP = "import os, sys; os.setsid(); sys.argv[1] and os.chdir(sys.argv[1]); os.execvp(sys.argv[2], sys.argv[2:])"
KILL_GRACE_SECONDS = 10.0
MAX_LINE = 64 * 1024


@dataclass(frozen=True)
class ChildResult:
    exit_code: int | None  # None when killed by a signal
    timed_out: bool = False
    signal: int | None = None  # the signal that killed it, if one did


@dataclass(frozen=True)
class RunningChild:
    done: defer.Deferred[ChildResult]
    pid: int | None  # also its process group: the bootstrap starts a session
    stop: Callable[[], None]  # stops the child and everything it started


class _ChildProtocol(protocol.ProcessProtocol):
    def __init__(self, on_line: Callable[[bytes], None], clock: Any):  # IReactorTime (zope interfaces are not mypy types)
        self.on_line = on_line
        self.clock = clock
        self.done: defer.Deferred[ChildResult] = defer.Deferred()
        self.timed_out = False
        self._partial: dict[int, bytes] = {}

    def childDataReceived(self, fd: int, data: bytes) -> None:
        lines = (self._partial.pop(fd, b"") + data).split(b"\n")
        rest = lines.pop()
        # Output without newlines (a binary dumped to stdout) is cut into long lines
        # rather than held in memory.
        while len(rest) > MAX_LINE:
            lines.append(rest[:MAX_LINE])
            rest = rest[MAX_LINE:]
        self._partial[fd] = rest
        for line in lines:
            self._deliver(fd, line)

    def _deliver(self, fd: int, line: bytes) -> None:
        if fd in (1, 2):
            self.on_line(line)

    def processEnded(self, reason: Failure) -> None:
        for fd, rest in sorted(self._partial.items()):
            if rest:
                self._deliver(fd, rest)
        self._partial.clear()
        ended = reason.value
        if isinstance(ended, error.ProcessTerminated):
            self.done.callback(ChildResult(ended.exitCode, self.timed_out, ended.signal))
        else:
            self.done.callback(ChildResult(0, self.timed_out))

    def time_out(self) -> None:
        self.timed_out = True
        self.stop()

    def stop(self) -> None:
        """SIGTERM the child's group so it can clean up; SIGKILL it if it is still there
        after a grace period."""
        if self.current_pid() is None:
            return
        self._signal_group(signal.SIGTERM)
        _cancel_when_done(self.done, self.clock.callLater(KILL_GRACE_SECONDS, self._signal_group, signal.SIGKILL))

    def current_pid(self) -> int | None:
        return self.transport.pid if self.transport is not None else None

    def _signal_group(self, signum: int) -> None:
        pid = self.current_pid()
        if pid is None:
            return
        signal_group(pid, signum)


def signal_group(pid: int, signum: int) -> None:
    """Signal a child's process group, and the child itself: just after spawning it may
    not have made its own group yet."""
    for send, target in ((os.killpg, pid), (os.kill, pid)):
        try:
            send(target, signum)
        except (ProcessLookupError, PermissionError):
            pass


def run_child(
    reactor: Any,  # IReactorProcess
    argv: Sequence[str],
    *,
    env: dict[str, str] | None = None,
    cwd: str | None = None,
    timeout: float | None = None,
    clock: Any = None,  # IReactorTime; the reactor by default
    on_line: Callable[[bytes], None] = lambda line: None,
    output_fd: int | None = None,
    inherit_output: bool = False,
) -> RunningChild:
    """Start ``argv``; its ``done`` fires with a ChildResult. Lines of stdout/stderr go to
    ``on_line``; with ``output_fd`` (a file open for appending), the child writes them
    there itself instead, and with ``inherit_output`` to this process's own stdout and
    stderr: either way none is lost whatever happens to this process."""
    clock = clock or reactor
    proto = _ChildProtocol(on_line, clock)
    fds: dict[int, str | int] = {0: "w", 1: "r", 2: "r"}
    if output_fd is not None:
        fds = {0: "w", 1: output_fd, 2: output_fd}
    elif inherit_output:
        fds = {0: "w", 1: 1, 2: 2}
    command = [sys.executable, "-c", _BOOTSTRAP, cwd or "", *argv]
    reactor.spawnProcess(
        proto,
        sys.executable,
        command,
        env=env if env is not None else default_env(),
        childFDs=fds,
    )
    proto.transport.closeStdin()  # type: ignore[union-attr,misc]  # zope interface attribute
    if timeout is not None:
        _cancel_when_done(proto.done, clock.callLater(timeout, proto.time_out))
    return RunningChild(proto.done, proto.current_pid(), proto.stop)


def _cancel_when_done(done: defer.Deferred[ChildResult], call: Any) -> None:
    def cancel(result: object) -> object:
        if call.active():
            call.cancel()
        return result

    done.addBoth(cancel)


# Child programs of the project import the very code the daemon runs, installed or not:
# the folder that holds the jidoteki_admin package (this is jidoteki_admin/jobs/children.py).
_PACKAGE_ROOT = str(Path(__file__).resolve().parents[2])


def default_env() -> dict[str, str]:
    """What every child gets: a few variables of the daemon's, and the package on its path."""
    keep = ("PATH", "LANG", "LC_ALL", "HOME", "JIDO_ADMIN_PATH", "JIDO_JOB_CHECKPOINTS")
    env = {name: os.environ[name] for name in keep if name in os.environ}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [_PACKAGE_ROOT, os.environ.get("PYTHONPATH")]))
    return env
