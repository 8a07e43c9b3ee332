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

from twisted.internet import defer, error, protocol

# Starts the real program in a new session; exec keeps the pid, so the group id is the pid.
_NEW_SESSION = "import os, sys; os.setsid(); os.execvp(sys.argv[1], sys.argv[1:])"


@dataclass(frozen=True)
class ChildResult:
    exit_code: int | None  # None when killed by a signal
    timed_out: bool = False


class _ChildProtocol(protocol.ProcessProtocol):
    def __init__(self, on_line: Callable[[bytes], None], on_message: Callable[[bytes], None] | None):
        self.on_line = on_line
        self.on_message = on_message
        self.done = defer.Deferred()
        self.timed_out = False
        self._partial: dict[int, bytes] = {}

    def childDataReceived(self, fd: int, data: bytes) -> None:
        lines = (self._partial.pop(fd, b"") + data).split(b"\n")
        self._partial[fd] = lines.pop()
        for line in lines:
            self._deliver(fd, line)

    def _deliver(self, fd: int, line: bytes) -> None:
        if fd == 3 and self.on_message is not None:
            self.on_message(line)
        elif fd in (1, 2):
            self.on_line(line)

    def processEnded(self, reason) -> None:
        for fd, rest in sorted(self._partial.items()):
            if rest:
                self._deliver(fd, rest)
        self._partial.clear()
        code = reason.value.exitCode if isinstance(reason.value, error.ProcessTerminated) else 0
        self.done.callback(ChildResult(code, self.timed_out))

    def kill_group(self) -> None:
        self.timed_out = True
        try:
            os.killpg(self.transport.pid, signal.SIGKILL)
        except (ProcessLookupError, TypeError, PermissionError):
            pass


def run_child(
    reactor,
    argv: Sequence[str],
    *,
    env: dict[str, str] | None = None,
    cwd: str | None = None,
    timeout: float | None = None,
    on_line: Callable[[bytes], None] = lambda line: None,
    on_message: Callable[[bytes], None] | None = None,
) -> defer.Deferred:
    """Run ``argv``; fires with a ChildResult. Lines of stdout/stderr go to ``on_line``,
    lines the child writes to file descriptor 3 go to ``on_message``."""
    proto = _ChildProtocol(on_line, on_message)
    fds = {0: "w", 1: "r", 2: "r"}
    if on_message is not None:
        fds[3] = "r"
    command = [sys.executable, "-c", _NEW_SESSION, *argv]
    reactor.spawnProcess(
        proto,
        sys.executable,
        command,
        env=env if env is not None else _default_env(),
        path=cwd,
        childFDs=fds,
    )
    proto.transport.closeStdin()
    if timeout is not None:
        killer = reactor.callLater(timeout, proto.kill_group)
        proto.done.addBoth(lambda result: (killer.active() and killer.cancel(), result)[1])
    return proto.done


def _default_env() -> dict[str, str]:
    keep = ("PATH", "LANG", "LC_ALL", "HOME", "PYTHONPATH", "JIDO_ADMIN_PATH")
    return {name: os.environ[name] for name in keep if name in os.environ}
