"""The access log: one line per request, formatted cheaply and written in batches.

Sending each line through twisted.logger costs a fifth of a small request: the event is
built, its format string parsed, its time formatted, and the line written and flushed on
its own. Under twistd, the daemon's log is a file (stdout, or --logfile), and the access
log writes its lines straight into that file, in twistd's own line format (time, then
``[jidoteki_admin.web.AdminSite#info]``), a batch at a time: at most every
``FLUSH_INTERVAL`` seconds, or sooner once ``MOST_LINES`` are waiting. Each line carries
the time its request ended. At a stop, before a log file is reopened, and on every later
line, the batch is written at once, so no line is lost at a clean stop.

Where no such file can be found (another observer, or the daemon run inside a test), each
line goes through twisted.logger as it comes, as before.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import IO, Any

from twisted.logger import FileLogObserver, Logger, formatTime, globalLogPublisher

# The namespace the lines carry, named here: the site's when it was web.py, kept since so
# that what reads the log (docs/operations.md) finds the lines where it always did.
NAMESPACE = "jidoteki_admin.web.AdminSite"
FLUSH_INTERVAL = 0.2
MOST_LINES = 500


class AccessLog:
    """Collects access log lines and hands them to ``output`` in batches (see the module
    docstring). With ``output`` None, each line is sent through twisted.logger at once."""

    log = Logger(namespace=NAMESPACE)

    def __init__(self, clock, output: Callable[[str], None] | None = None,
                 interval: float = FLUSH_INTERVAL, most_lines: int = MOST_LINES):
        self.clock = clock
        self.output = output
        self.interval = interval
        self.most_lines = most_lines
        self.batching = output is not None
        self._lines: list[str] = []
        self._call: Any = None
        self._second = -1
        self._prefix = ""

    def record(self, text: str) -> None:
        """Log one line (without its time and namespace, which are added here)."""
        if self.output is None:
            self.log.info("{line}", line=text)
            return
        self._lines.append(self._line_prefix() + text + "\n")
        if not self.batching or len(self._lines) >= self.most_lines:
            self.flush()
        elif self._call is None:
            self._call = self.clock.callLater(self.interval, self.flush)

    def _line_prefix(self) -> str:
        """twistd's "TIME [NAMESPACE#info] ", the time formatted once a second, not per line."""
        now = self.clock.seconds()
        second = int(now)
        if second != self._second:
            self._second = second
            self._prefix = f"{formatTime(second)} [{NAMESPACE}#info] "
        return self._prefix

    def flush(self) -> None:
        """Write the lines waiting, in one write."""
        if self._call is not None and self._call.active():
            self._call.cancel()
        self._call = None
        lines, self._lines = self._lines, []
        if lines and self.output is not None:
            try:
                self.output("".join(lines))
            except Exception:
                self.log.failure("Could not write {count} access log line(s)", count=len(lines))

    def stop(self) -> None:
        """Write what is waiting, and every later line at once (the daemon is stopping)."""
        self.batching = False
        self.flush()


def twistd_log_file(publisher=globalLogPublisher) -> IO[str] | None:
    """The file twistd's own observer writes the daemon's log to (stdout or its
    --logfile), or None. twisted.logger offers no public way to reach it: the lookup is
    tolerant, and finding nothing is normal (a test, syslog, another observer)."""
    for observer in list(getattr(publisher, "_observers", [])):
        if isinstance(observer, FileLogObserver):
            out = getattr(observer, "_outFile", None)
            if out is not None and hasattr(out, "write"):
                return out
    return None


def file_output(out: IO[str]) -> Callable[[str], None]:
    """Write a batch to ``out`` and flush it, as twistd's observer does for each event."""
    def write(text: str) -> None:
        out.write(text)
        out.flush()
    return write
