"""The job runner: every asynchronous piece of work runs here, one job of a group at a time.

A job is a child program (jobs/protocol.py is the contract). Its stdout and stderr are
appended, line by line, to the kind's log file; it reports progress and failures as JSON
lines on file descriptor 3. The runner alone writes the kind's status files, atomically,
in the old appliance's format, so appliance scripts that read them keep working. It knows
no section: sections register their JobKinds and start them.

How a kind's job is started is a Launcher's business: the built-in Python program by
default; an appliance's own scripts through one privileged entry point can take its place
without any section noticing, since both report through the same files.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from dataclasses import dataclass, field
from pathlib import Path
from collections.abc import Sequence
from typing import Any, Protocol

import psutil
from twisted.application.service import Service
from twisted.internet import defer
from twisted.logger import Logger
from twisted.python.failure import Failure

from .children import (KILL_GRACE_SECONDS, ChildResult, RunningChild, default_env, group_alive, run_child,
                       signal_group)
from .config import LogRotate
from .files import RotatingLog, atomic_write, atomic_write_json, remove_quietly, rotate, tail_lines
from .jobs.protocol import ERROR_CODE, ERROR_MESSAGE, FAILED, PERCENTAGE, RUNNING, SUCCESS, JobKind
from .layout import AdminTree

__all__ = ["AlreadyRunning", "JobKind", "JobRunner", "JobStatus", "RUNNING", "SUCCESS", "FAILED"]


REPORT_LOG_LINES = 10  # the log lines a job's status report shows (GET /update, /certs, /cluster)
ORPHAN_POLL_SECONDS = 0.1  # how often a left-over job is looked for until it is gone


class AlreadyRunning(Exception):
    """A job of the same group is running; the message names it (the API answers 400)."""

    def __init__(self, kind: JobKind, running: JobKind):
        if kind == running:
            message = f"{running.title[0].upper()}{running.title[1:]} is already running"
        else:
            message = f"Cannot start {kind.title} while {running.title} is running"
        if kind.busy_code:
            message = f"{kind.busy_code}: {message}"
        super().__init__(message)
        self.kind = kind
        self.running = running
        self.message = message


@dataclass(frozen=True)
class Command:
    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)  # added to the children's environment


class Launcher(Protocol):
    # True when the job's own scripts write the status files and the log (an appliance's
    # scripts); the runner then only watches the child, and settles what they leave unsaid.
    reports_through_files: bool

    def command(self, kind: JobKind, args: list[str], script_args: Sequence[str]) -> Command:
        """How to run a job of this kind: ``args`` are for the built-in program,
        ``script_args`` for the appliance's wrapper (the original's arguments)."""

    def busy(self, kind: JobKind) -> bool:
        """Whether a job of this kind runs outside the daemon (an appliance script's lock)."""


class BuiltinPrograms:
    """Runs each kind's own program (``python -m <kind.program>``) with this Python.

    With a privileged entry point configured, a kind that needs root runs through it as
    ``PREFIX <program> [args]``: jidoteki-admin-privileged then runs that program of the
    project, and only that, as root, on the admin tree its sudoers line pins.
    """

    reports_through_files = False

    def __init__(self, tree: AdminTree, privileged: tuple[str, ...] = ()):
        self.tree = tree
        self.privileged = privileged

    def command(self, kind: JobKind, args: list[str], script_args: Sequence[str] = ()) -> Command:
        if self.privileged and kind.privileged:
            return Command([*self.privileged, kind.program, *args])
        return Command([sys.executable, "-m", kind.program, "--admin-path", str(self.tree.root), *args])

    def busy(self, kind: JobKind) -> bool:
        return False


class ApplianceScripts:
    """Hands each job to the appliance's own bin/wrapper.sh, as the original daemon did.

    The job's command goes in SSH_ORIGINAL_COMMAND, followed by its arguments as the
    original sent them over ssh ("settings static"); the wrapper (through the privileged
    entry point when one is configured, else run as it is, doing its own sudo) runs the
    appliance's update_<command>.sh, which takes the lock <lock_dir>/update_<command>.sh.task
    and writes the status files and the log itself. A kind the appliance has no script for
    (appliance_command None) runs the built-in program.
    """

    reports_through_files = True

    def __init__(self, tree: AdminTree, privileged: tuple[str, ...] = (), lock_dir: Path = Path("/tmp")):
        self.tree = tree
        self.privileged = privileged
        self.lock_dir = lock_dir
        self.builtin = BuiltinPrograms(tree, privileged=())

    def command(self, kind: JobKind, args: list[str], script_args: Sequence[str] = ()) -> Command:
        if kind.appliance_command is None:
            return self.builtin.command(kind, args)
        argv = list(self.privileged) or [str(self.tree.wrapper)]
        command = " ".join([kind.appliance_command, *script_args])
        return Command([*argv, *script_args], {"SSH_ORIGINAL_COMMAND": command})

    def busy(self, kind: JobKind) -> bool:
        return kind.appliance_command is not None and self.lock(kind).exists()

    def lock(self, kind: JobKind) -> Path:
        return self.lock_dir / f"update_{kind.appliance_command}.sh.task"


@dataclass(frozen=True)
class JobStatus:
    status: str | None
    percentage: int | None = None
    error_message: str | None = None
    error_code: str | None = None


@dataclass(frozen=True)
class StatusPaths:
    """The old appliance's status files of one kind, in etc/."""

    json: Path
    txt: Path
    error_message: Path
    error_code: Path

    @classmethod
    def of(cls, tree: AdminTree, kind: JobKind) -> StatusPaths | None:
        name = kind.status_name
        if name is None:
            return None
        return cls(tree.status_file(f"{name}.json"), tree.status_file(f"{name}.txt"),
                   tree.status_file(kind.error_message_name or f"{name}_error_message.txt"),
                   tree.status_file(kind.error_code_name or f"{name}_error_code.txt"))


class JobFiles:
    """Where one kind keeps its log and status, and how they are read and written.

    A kind without status files (a download built by a job) keeps its last status in
    memory only, as the old appliance kept none.
    """

    def __init__(self, tree: AdminTree, kind: JobKind):
        self.kind = kind
        self.log = tree.log_file(kind.log_name)
        self.paths = StatusPaths.of(tree, kind)
        self._last = JobStatus(None)

    def read(self) -> JobStatus:
        paths = self.paths
        if paths is None:
            return self._last
        try:
            with open(paths.json, "rb") as f:
                value = json.loads(f.read(64 * 1024))
        except FileNotFoundError:
            value = self._read_txt(paths)  # older appliances' scripts write only the status word
        except ValueError:
            return JobStatus(None)
        if not isinstance(value, dict):
            return JobStatus(None)
        status, percentage = value.get("status"), value.get(PERCENTAGE)
        if status == FAILED:
            return JobStatus(status, percentage, _read_text(paths.error_message), _read_text(paths.error_code))
        return JobStatus(status, percentage)

    @staticmethod
    def _read_txt(paths: StatusPaths) -> dict[str, str] | None:
        word = _read_text(paths.txt)
        return {"status": word} if word in (RUNNING, SUCCESS, FAILED) else None

    def stamp(self) -> tuple[int | None, ...]:
        """Changes whenever a status file is written, by the runner or by a script."""
        if self.paths is None:
            return ()
        return tuple(_mtime(path) for path in (self.paths.json, self.paths.txt, self.paths.error_code))

    def write(self, status: JobStatus) -> None:
        self._last = status
        paths = self.paths
        if paths is None:
            return
        if status.status == FAILED:
            atomic_write(paths.error_message, (status.error_message or "").encode() + b"\n", 0o644)
            atomic_write(paths.error_code, (status.error_code or "").encode() + b"\n", 0o644)
        else:
            remove_quietly(paths.error_message)
            remove_quietly(paths.error_code)
        atomic_write_json(paths.json, {"status": status.status, PERCENTAGE: status.percentage})
        atomic_write(paths.txt, (status.status or "").encode() + b"\n", 0o644)


class _Job:
    """One running child: appends its lines to the log and tracks what it reported.

    A scripted job (an appliance's script writes the log and the status itself) has its
    stray output go to the daemon's log instead, so the two never interleave in one file.
    """

    daemon_log = Logger(namespace="jidoteki_admin.jobs")

    def __init__(self, files: JobFiles, clock: Any, timeout: float, limits: LogRotate, scripted: bool = False):
        self.files = files
        self.clock = clock
        self.timeout = timeout
        self.scripted = scripted
        self.stamp = files.stamp()
        self.percentage = 0
        self.error_code: str | None = None
        self.error_message: str | None = None
        self.log: RotatingLog | None = None if scripted else RotatingLog(files.log, limits)

    def open_log(self) -> None:
        if self.log is None:
            return
        path = self.files.log
        if path.exists() and path.stat().st_size > self.log.limits.bytes:
            rotate(path, self.log.limits.keep)

    def line(self, data: bytes) -> None:
        if self.log is None:
            self.daemon_log.info("{kind}: {line}", kind=self.files.kind.name,
                                 line=data.decode("utf-8", "replace").rstrip("\r"))
            return
        self.log.write(data.rstrip(b"\r") + b"\n")

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
        percentage = report.get(PERCENTAGE)
        if isinstance(percentage, int) and 0 <= percentage <= 100:
            self.percentage = percentage
            self.files.write(JobStatus(RUNNING, self.percentage))
        if ERROR_CODE in report or ERROR_MESSAGE in report:
            self.error_code = _text_or_none(report.get(ERROR_CODE))
            self.error_message = _text_or_none(report.get(ERROR_MESSAGE))

    def close(self) -> None:
        if self.log is not None:
            self.log.close()


class JobRunner(Service):
    log = Logger()

    def __init__(self, tree: AdminTree, reactor: Any, clock: Any = None, timeout: float = 3600,
                 launcher: Launcher | None = None, log_rotate: LogRotate = LogRotate()):
        self.tree = tree
        self.reactor = reactor
        self.clock = clock or reactor
        self.timeout = timeout  # for kinds that do not set their own; replaced on SIGHUP
        self.launcher = launcher or BuiltinPrograms(tree)
        self.kinds: dict[str, JobKind] = {}
        self._files: dict[str, JobFiles] = {}
        self._running: dict[str, tuple[JobKind, RunningChild]] = {}
        self._again: set[str] = set()  # kinds requested again while running
        self._jobs: dict[str, _Job] = {}
        self._orphans: dict[str, defer.Deferred[None]] = {}  # jobs a killed daemon left running
        self._stopping = False
        self.log_rotate = log_rotate

    @property
    def log_rotate(self) -> LogRotate:
        return self._log_rotate

    @log_rotate.setter
    def log_rotate(self, limits: LogRotate) -> None:
        """New limits apply to the logs of running jobs too."""
        self._log_rotate = limits
        for job in self._jobs.values():
            if job.log is not None:
                job.log.limits = limits

    def reopen_logs(self) -> None:
        """After an outside rotation (SIGHUP): running jobs write to a new file at the path."""
        for job in self._jobs.values():
            if job.log is not None:
                job.log.reopen()

    def register(self, kind: JobKind) -> JobFiles:
        """Make a kind known (its interrupted jobs are recovered at start-up)."""
        self.kinds[kind.name] = kind
        return self.files(kind)

    def files(self, kind: JobKind) -> JobFiles:
        if kind.name not in self._files:
            self._files[kind.name] = JobFiles(self.tree, kind)
        return self._files[kind.name]

    def startService(self) -> None:
        super().startService()
        self._stopping = False
        for kind in self.kinds.values():
            self._recover(kind)

    def stopService(self) -> defer.Deferred[Any]:
        """Stop running jobs with the daemon, so none is left half-done and unwatched."""
        super().stopService()
        self._stopping = True
        children = [child for _, child in self._running.values()]
        for child in children:
            child.stop()
        return defer.DeferredList([child.done for child in children])

    def _recover(self, kind: JobKind) -> None:
        """A job marked running at start-up ended with the previous daemon: settle it as
        the kind says an interruption ends (failed; a reboot job succeeded)."""
        self._stop_orphan(kind)
        files = self.files(kind)
        status = files.read()
        if status.status != RUNNING or self.launcher.busy(kind):
            return  # a script holding its lock is still at work
        job = _Job(files, self.clock, self.timeout, self.log_rotate)
        job.open_log()
        if kind.interrupted_outcome == SUCCESS:
            job.say("The daemon stopped while this job was running, as the job meant it to")
            files.write(JobStatus(SUCCESS, 100))
        else:
            job.say("The daemon stopped while this job was running; marking it failed")
            files.write(JobStatus(FAILED, status.percentage,
                                  "Interrupted: the daemon stopped while the job was running",
                                  kind.interrupted_code))
            self.log.warn("Marked the interrupted {kind} job failed", kind=kind.name)
        job.close()

    def _pid_file(self, kind: JobKind) -> Path:
        return self.tree.tmp / f".job-{kind.name}.pid"

    def _remember(self, kind: JobKind, child: RunningChild) -> None:
        """Note the child's process, so a daemon killed under it (kill -9) does not leave
        it finishing unwatched while its status says it failed, or beside a new one."""
        if child.pid is None:
            return
        try:
            started = psutil.Process(child.pid).create_time()
        except psutil.Error:
            return
        atomic_write_json(self._pid_file(kind), {"pid": child.pid, "started": started})

    def _stop_orphan(self, kind: JobKind) -> None:
        """Stop the process group of a job the previous daemon left running, if it still
        runs: SIGTERM so it can clean up, SIGKILL after the grace period."""
        pid_file = self._pid_file(kind)
        try:
            noted = json.loads(pid_file.read_bytes())
            pid, started = int(noted["pid"]), float(noted["started"])
        except (OSError, ValueError, KeyError, TypeError):
            return
        finally:
            remove_quietly(pid_file)
        try:
            if abs(psutil.Process(pid).create_time() - started) > 0.01:
                return  # the pid is another process's now
        except psutil.Error:
            return
        self.log.warn("Stopping the {kind} job (process group {pid}) the previous daemon left running",
                      kind=kind.name, pid=pid)
        signal_group(pid, signal.SIGTERM)
        self.clock.callLater(KILL_GRACE_SECONDS, signal_group, pid, signal.SIGKILL)
        gone: defer.Deferred[None] = defer.Deferred()
        self._orphans[kind.name] = gone
        self._when_gone(pid, gone)

    def _when_gone(self, pid: int, gone: defer.Deferred[None]) -> None:
        if group_alive(pid):
            self.clock.callLater(ORPHAN_POLL_SECONDS, self._when_gone, pid, gone)
        else:
            gone.callback(None)

    def orphan_stopped(self, kind: JobKind) -> defer.Deferred[bool]:
        """Fires once the job of this kind that the previous daemon left running is gone
        (and with it whatever it undid on its way out): True if there was one. A section
        whose job changes what the daemon itself has loaded (the TLS certificate) loads it
        again then."""
        gone = self._orphans.get(kind.name)
        if gone is None:
            return defer.succeed(False)
        waiting: defer.Deferred[bool] = defer.Deferred()

        def settled(result: None) -> None:
            waiting.callback(True)

        gone.addCallback(settled)
        return waiting

    def stop(self, kind: JobKind) -> None:
        """Stop a running job of this kind (it is then marked failed)."""
        if kind.name in self._running:
            self._running[kind.name][1].stop()

    def is_running(self, kind: JobKind) -> bool:
        return kind.name in self._running

    def running_in_group(self, group: str) -> JobKind | None:
        for kind, _ in self._running.values():
            if kind.group == group:
                return kind
        return None

    def check_free(self, kind: JobKind) -> None:
        """Raise AlreadyRunning when a job of this kind's group runs, here or (an
        appliance script holding its lock) outside the daemon."""
        running = self.running_in_group(kind.group)
        if running is not None:
            raise AlreadyRunning(kind, running)
        if self.launcher.busy(kind):
            raise AlreadyRunning(kind, kind)

    def status(self, kind: JobKind) -> JobStatus:
        return self.files(kind).read()

    def report(self, kind: JobKind) -> tuple[JobStatus, dict[str, object]]:
        """The status of the last job of a kind, and the start of every status answer the
        original gave for it: ``{"status": ..., "log": <its last lines>}``, both null
        before any job ran. A section adds what its kind reports beyond that."""
        status = self.status(kind)
        log = None
        if status.status is not None:
            lines = tail_lines(self.files(kind).log, REPORT_LOG_LINES)
            log = "\n".join(lines) if lines is not None else None
        return status, {"status": status.status, "log": log}

    def start(self, kind: JobKind, args: list[str] | tuple[str, ...] = (),
              script_args: list[str] | tuple[str, ...] = ()) -> defer.Deferred[JobStatus]:
        """Start a job; fires with its final JobStatus.

        Raises AlreadyRunning when a job of the same group runs: no restore during an
        update, no reboot during a backup.
        """
        self.check_free(kind)
        command = self.launcher.command(kind, list(args), list(script_args))
        scripted = self.launcher.reports_through_files and kind.appliance_command is not None
        job = _Job(self.files(kind), self.clock, kind.timeout or self.timeout, self.log_rotate, scripted)
        job.open_log()
        if not scripted:
            job.files.write(JobStatus(RUNNING, 0))
        env = {**default_env(), **command.env}
        try:
            child = run_child(self.reactor, command.argv, env=env, cwd=str(self.tree.tmp),
                              timeout=job.timeout, clock=self.clock, on_line=job.line,
                              on_message=job.message)
        except Exception:
            # Spawning failed (no memory for a fork, say): the job must not stay "running".
            return defer.fail().addBoth(self._finished, kind, job)
        self._running[kind.name] = (kind, child)
        self._jobs[kind.name] = job
        self._remember(kind, child)
        return child.done.addBoth(self._finished, kind, job)

    def request(self, kind: JobKind) -> None:
        """Run a job of this kind soon, without waiting for it: now, or once more when the
        one running ends (so a change made while it runs is covered too)."""
        if kind.name in self._running:
            self._again.add(kind.name)
            return
        try:
            self.start(kind)
        except AlreadyRunning as busy:
            self.log.warn("Not running {kind}: {why}", kind=kind.name, why=busy.message)

    def _finished(self, result: object, kind: JobKind, job: _Job) -> JobStatus:
        if self._running.pop(kind.name, None) is not None:
            remove_quietly(self._pid_file(kind))
        self._jobs.pop(kind.name, None)
        if kind.name in self._again and not self._stopping:
            self._again.discard(kind.name)
            self.reactor.callLater(0, self.request, kind)
        status = self._outcome(result, kind, job)
        if job.scripted:
            return self._settle_scripted(status, job)
        if status.status == FAILED and status.error_message != job.error_message:
            job.say(f"Failed: {status.error_message}")  # a reason the job could not give itself
        job.close()
        job.files.write(status)
        return status

    def _settle_scripted(self, status: JobStatus, job: _Job) -> JobStatus:
        """The script's own status files stand; the runner writes only a failure the
        script could not report (it never ran, was killed, or died at once)."""
        if status.status == FAILED and (job.files.stamp() == job.stamp or job.files.read().status == RUNNING):
            self.log.warn("The appliance's {kind} script failed: {message}", kind=job.files.kind.name,
                          message=status.error_message)
            job.files.write(status)
        return job.files.read()

    def _outcome(self, result: object, kind: JobKind, job: _Job) -> JobStatus:
        if not isinstance(result, ChildResult):
            self.log.failure("Could not run the {kind} job", result if isinstance(result, Failure) else None,
                             kind=kind.name)
            return JobStatus(FAILED, job.percentage, "The job could not be started", kind.unexpected_code)
        if result.timed_out:
            message = f"Stopped after running longer than {int(job.timeout)} seconds"
            return JobStatus(FAILED, job.percentage, message, kind.timeout_code)
        if result.exit_code == 0:
            return JobStatus(SUCCESS, 100)
        if self._stopping:
            if kind.interrupted_outcome == SUCCESS:
                return JobStatus(SUCCESS, 100)
            return JobStatus(FAILED, job.percentage, "Stopped with the daemon", kind.interrupted_code)
        message = job.error_message or _ending(result)
        return JobStatus(FAILED, job.percentage, message, job.error_code or kind.unexpected_code)


def _mtime(path: Path | None) -> int | None:
    try:
        return os.stat(path).st_mtime_ns if path is not None else None
    except FileNotFoundError:
        return None


def _text_or_none(value: object) -> str | None:
    return str(value) if value else None


def _read_text(path: Path | None) -> str | None:
    if path is None:
        return None
    try:
        text = path.read_text(errors="replace").strip()
    except FileNotFoundError:
        return None
    return text or None


def _ending(result: ChildResult) -> str:
    """Why a job that said nothing failed: its exit status, or the signal that killed it
    (an exit status of None told an administrator nothing)."""
    if result.exit_code is None and result.signal is not None:
        try:
            name = signal.Signals(result.signal).name
        except ValueError:
            name = "unknown"
        return f"The job was killed by signal {result.signal} ({name})"
    return f"The job ended with exit status {result.exit_code}"
