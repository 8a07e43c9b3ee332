"""SIGHUP: the operator's "reload", delivered to the reactor, never acted on in the handler.

A process killed by a signal it does not handle is what SIGHUP did to the daemon before
(with no log line, and a systemd unit that restarts only on failure left it down). Now
the handler only schedules the daemon's reload on the reactor; see AdminService.reload.
"""

from __future__ import annotations

import signal
from collections.abc import Callable

from twisted.logger import globalLogPublisher
from twisted.python.logfile import BaseLogFile


class HangupHandler:
    """Runs ``action`` on the reactor each time the process gets SIGHUP."""

    def __init__(self, reactor, action: Callable[[], None]):
        self.reactor = reactor
        self.action = action
        self._previous = None
        self._installed = False

    def install(self) -> None:
        """Take over SIGHUP (in the main thread, once the reactor runs: twistd sets up its
        own signal handlers as the reactor starts)."""
        if not self._installed:
            self._previous = signal.signal(signal.SIGHUP, self._received)
            self._installed = True

    def uninstall(self) -> None:
        if self._installed:
            signal.signal(signal.SIGHUP, self._previous if self._previous is not None else signal.SIG_DFL)
            self._installed = False

    def _received(self, signum, frame) -> None:
        # A signal handler runs between two bytecodes of whatever was running: it only
        # hands the work to the reactor, as twistd's own SIGUSR1 handler does.
        self.reactor.callFromThread(self.action)


def reopen_log_files() -> list[str]:
    """Reopen the files twistd logs to (--logfile), after logrotate moved them away; the
    paths reopened. twistd keeps its LogFile inside the observer it registered, which
    twisted.logger offers no public way to reach: the lookup is tolerant, and finding
    nothing (logging to stdout, as under systemd) is normal."""
    reopened = []
    for observer in list(getattr(globalLogPublisher, "_observers", [])):
        out = getattr(observer, "_outFile", None)
        if isinstance(out, BaseLogFile):
            out.reopen()
            reopened.append(out.path)
    return reopened
