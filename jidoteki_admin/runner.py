"""The job runner: every asynchronous piece of work runs here, one job of a kind at a time.

A job is a child program of the project. Its stdout and stderr are appended, line by line,
to the kind's log file; it reports progress and failures as JSON lines on file descriptor 3
({"percentage": 40}, {"error-code": "E1005", "error-message": "..."}). The runner alone
writes the kind's status files, atomically, in the old appliance's format, so appliance
scripts that read them keep working.
"""

from __future__ import annotations

import json

from dataclasses import dataclass
from pathlib import Path

from twisted.application.service import Service
from twisted.internet import defer
from twisted.logger import Logger

from .children import ChildResult, RunningChild, run_child
from .files import atomic_write, atomic_write_json, remove_quietly
from .layout import AdminTree

RUNNING, SUCCESS, FAILED = "running", "success", "failed"
LOG_ROTATE_BYTES = 4 * 1024 * 1024


class AlreadyRunning(Exception):
    pass


@dataclass(frozen=True)
class JobKind:
    """A kind of job and the files the old appliance kept for it."""

    name: str
    log_name: str  # in log/
    status_name: str  # etc/<status_name>.json and .txt
    error_message_name: str  # in etc/
    error_code_name: str  # in etc/
    label: str  # "[SYSTEM]"-style tag for the runner's own log lines
    unexpected_code: str | None = None  # the child died without saying why
    timeout_code: str | None = None
    interrupted_code: str | None = None  # the daemon stopped while it ran


@dataclass(frozen=True)
class JobStatus:
    status: str | None
    percentage: int | None = None
    error_message: str | None = None
    error_code: str | None = None


class JobFiles:
    """Where one kind keeps its log and status, and how they are read and written."""

    def __init__(self, tree: AdminTree, kind: JobKind):
        self.kind = kind
        self.log = tree.log / kind.log_name
        self.status_json = tree.etc / f"{kind.status_name}.json"
        self.status_txt = tree.etc / f"{kind.status_name}.txt"
        self.error_message = tree.etc / kind.error_message_name
        self.error_code = tree.etc / kind.error_code_name

    def read(self) -> JobStatus:
        try:
            with open(self.status_json, "rb") as f:
                value = json.loads(f.read(64 * 1024))
        except (FileNotFoundError, ValueError):
            return JobStatus(None)
        if not isinstance(value, dict):
            return JobStatus(None)
        status, percentage = value.get("status"), value.get("percentage")
        if status == FAILED:
            return JobStatus(status, percentage, _read_text(self.error_message), _read_text(self.error_code))
        return JobStatus(status, percentage)

    def write(self, status: JobStatus) -> None:
        if status.status == FAILED:
            atomic_write(self.error_message, (status.error_message or "").encode() + b"\n", 0o644)
            atomic_write(self.error_code, (status.error_code or "").encode() + b"\n", 0o644)
        else:
            remove_quietly(self.error_message)
            remove_quietly(self.error_code)
        atomic_write_json(self.status_json, {"status": status.status, "percentage": status.percentage})
        atomic_write(self.status_txt, (status.status or "").encode() + b"\n", 0o644)


class _Job:
    """One running child: appends its lines to the log and tracks what it reported."""

    def __init__(self, files: JobFiles, clock):
        self.files = files
        self.clock = clock
        self.percentage = 0
        self.error_code: str | None = None
        self.error_message: str | None = None
        self._log = None

    def open_log(self) -> None:
        log = self.files.log
        if log.exists() and log.stat().st_size > LOG_ROTATE_BYTES:
            log.replace(log.with_name(log.name + ".1"))
        self._log = open(log, "ab", buffering=0)

    def line(self, data: bytes) -> None:
        self._log.write(data.rstrip(b"\r") + b"\n")

    def say(self, message: str) -> None:
        """A line of the runner's own, in the appliance's log format."""
        self.line(f"[{int(self.clock.seconds())}][{self.files.kind.label}] {message}".encode())

    def message(self, data: bytes) -> None:
        try:
            report = json.loads(data)
        except ValueError:
            return
        if not isinstance(report, dict):
            return
        if isinstance(report.get("percentage"), int) and 0 <= report["percentage"] <= 100:
            self.percentage = report["percentage"]
            self.files.write(JobStatus(RUNNING, self.percentage))
        if "error-code" in report or "error-message" in report:
            self.error_code = _text_or_none(report.get("error-code"))
            self.error_message = _text_or_none(report.get("error-message"))

    def close(self) -> None:
        if self._log is not None:
            self._log.close()


class JobRunner(Service):
    log = Logger()

    def __init__(self, tree: AdminTree, reactor, clock=None, timeout: float = 3600):
        self.tree = tree
        self.reactor = reactor
        self.clock = clock or reactor
        self.timeout = timeout
        self.kinds: dict[str, JobKind] = {}
        self._running: dict[str, RunningChild] = {}
        self._stopping = False

    def register(self, kind: JobKind) -> JobFiles:
        self.kinds[kind.name] = kind
        return self.files(kind)

    def files(self, kind: JobKind) -> JobFiles:
        return JobFiles(self.tree, kind)

    def startService(self) -> None:
        super().startService()
        for kind in self.kinds.values():
            self._recover(kind)

    def stopService(self):
        """Stop running jobs with the daemon, so none is left half-done and unwatched."""
        super().stopService()
        self._stopping = True
        children = list(self._running.values())
        for child in children:
            child.stop()
        return defer.DeferredList([child.done for child in children])

    def _recover(self, kind: JobKind) -> None:
        """A job marked running at start-up died with the previous daemon: mark it failed."""
        files = self.files(kind)
        status = files.read()
        if status.status != RUNNING:
            return
        job = _Job(files, self.clock)
        job.open_log()
        job.say("The daemon stopped while this job was running; marking it failed")
        job.close()
        files.write(
            JobStatus(
                FAILED,
                status.percentage,
                "Interrupted: the daemon stopped while the job was running",
                kind.interrupted_code,
            )
        )
        self.log.warn("Marked the interrupted {kind} job failed", kind=kind.name)

    def stop(self, kind: JobKind) -> None:
        """Stop a running job of this kind (it is then marked failed)."""
        if kind.name in self._running:
            self._running[kind.name].stop()

    def is_running(self, kind: JobKind) -> bool:
        return kind.name in self._running

    def status(self, kind: JobKind) -> JobStatus:
        return self.files(kind).read()

    def start(self, kind: JobKind, argv: list[str]) -> defer.Deferred:
        """Start a job; fires with its final JobStatus. Raises AlreadyRunning."""
        if self.is_running(kind):
            raise AlreadyRunning(kind.name)
        files = self.files(kind)
        job = _Job(files, self.clock)
        job.open_log()
        files.write(JobStatus(RUNNING, 0))
        try:
            child = run_child(
                self.reactor,
                argv,
                cwd=str(self.tree.tmp),
                timeout=self.timeout,
                clock=self.clock,
                on_line=job.line,
                on_message=job.message,
            )
        except Exception:
            # Spawning failed (no memory for a fork, say): the job must not stay "running".
            return defer.fail().addBoth(self._finished, kind, job)
        self._running[kind.name] = child
        return child.done.addBoth(self._finished, kind, job)

    def _finished(self, result, kind: JobKind, job: _Job) -> JobStatus:
        self._running.pop(kind.name, None)
        status = self._outcome(result, kind, job)
        if status.status == FAILED and status.error_message != job.error_message:
            job.say(f"Failed: {status.error_message}")  # a reason the job could not give itself
        job.close()
        job.files.write(status)
        return status

    def _outcome(self, result, kind: JobKind, job: _Job) -> JobStatus:
        if not isinstance(result, ChildResult):
            self.log.failure("Could not run the {kind} job", result, kind=kind.name)
            return JobStatus(FAILED, job.percentage, "The job could not be started", kind.unexpected_code)
        if result.timed_out:
            message = f"Stopped after running longer than {int(self.timeout)} seconds"
            return JobStatus(FAILED, job.percentage, message, kind.timeout_code)
        if result.exit_code == 0:
            return JobStatus(SUCCESS, 100)
        if self._stopping:
            return JobStatus(FAILED, job.percentage, "Stopped with the daemon", kind.interrupted_code)
        message = job.error_message or f"The job ended with exit status {result.exit_code}"
        return JobStatus(FAILED, job.percentage, message, job.error_code or kind.unexpected_code)


def _text_or_none(value) -> str | None:
    return str(value) if value else None


def _read_text(path: Path) -> str | None:
    try:
        text = path.read_text(errors="replace").strip()
    except FileNotFoundError:
        return None
    return text or None


