"""The job runner: every asynchronous piece of work runs here, one job of a group at a time.

A job is a child program (jobs/protocol.py is the contract) in a session of its own,
whose stdout and stderr are the kind's log file. The job writes its own status files,
outcome last (jobs/status.py), as the old appliance's scripts did: the runner reads them,
and writes an outcome only for a job that ended without one (killed, timed out, or never
started). So whatever dies first, what GET reports is what the job did.

While a job runs, every status answer says "running", even once the job has written its
outcome: the runner shows the outcome only after the job's process has ended and every
part of the daemon that keeps something the job may have changed (the installed version,
the certificate in service) has been told (``when_finished``). A client that sees
"success" then reads the new state at once.

A job left running by a daemon that died is followed to its end by the next one (its
process is noted in the tree), and a job killed outright in the middle of a change is
finished or undone from its journal by its own program (``--recover``) at the next start.
The runner knows no section: sections register their JobKinds and start them.

How a kind's job is started is a Launcher's business: the built-in Python program by
default; an appliance's own scripts through its wrapper can take its place without any
section noticing, since both report through the same files.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

import psutil
from twisted.application.service import Service
from twisted.internet import defer
from twisted.logger import Logger
from twisted.python.failure import Failure

from ..config import LogRotate
from ..files import atomic_write, atomic_write_json, remove_quietly, rotate, tail_text
from ..layout import AdminTree
from .children import KILL_GRACE_SECONDS, ChildResult, RunningChild, default_env, run_child, signal_group
from .protocol import FAILED, RUNNING, SUCCESS, JobKind
from .status import JobStatus, StatusFiles

__all__ = ["AlreadyRunning", "JobKind", "JobRunner", "JobStatus", "RUNNING", "SUCCESS", "FAILED"]


REPORT_LOG_LINES = 10  # the log lines a job's status report shows (GET /update, /certs, /cluster)
ORPHAN_POLL_SECONDS = 0.1  # how often a job left by a previous daemon is looked at until it ends
INTERRUPTED = "Interrupted: the job stopped before it could say how it ended (its daemon or the machine stopped)"


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

    def recovery(self, kind: JobKind) -> Command:
        """How to run the kind's own program with ``--recover``."""

    def scripted(self, kind: JobKind) -> bool:
        """Whether the appliance's own script does this kind's jobs."""

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

    def recovery(self, kind: JobKind) -> Command:
        return self.command(kind, ["--recover"])

    def scripted(self, kind: JobKind) -> bool:
        return False

    def busy(self, kind: JobKind) -> bool:
        return False


class ApplianceScripts:
    """Hands each job to the appliance's own bin/wrapper.sh, as the original daemon did.

    The job's command word goes in SSH_ORIGINAL_COMMAND and its arguments (the original's,
    an empty one included) on the wrapper's command line; the wrapper (through the
    privileged entry point when one is configured, else run as it is, doing its own sudo)
    runs the appliance's script, which takes its lock <lock_dir>/<script>.task and writes
    its status files and its log itself. A kind the appliance has no script for
    (appliance_command None) runs the built-in program.
    """

    reports_through_files = True

    def __init__(self, tree: AdminTree, privileged: tuple[str, ...] = (), lock_dir: Path = Path("/tmp")):
        self.tree = tree
        self.privileged = privileged
        self.lock_dir = lock_dir
        self.builtin = BuiltinPrograms(tree, privileged=())

    def command(self, kind: JobKind, args: list[str], script_args: Sequence[str] = ()) -> Command:
        """The job program that runs the wrapper and records its outcome (jobs/appliance.py)."""
        if kind.appliance_command is None:
            return self.builtin.command(kind, args)
        reports = ["--reports"] if kind.appliance_reports else []
        return Command([sys.executable, "-m", "jidoteki_admin.jobs.appliance", "--admin-path", str(self.tree.root),
                        "--kind", f"{kind.program}:{kind.name}", "--command", kind.appliance_command, *reports,
                        "--", *self.wrapper(), *script_args])

    def wrapper(self) -> list[str]:
        """bin/wrapper.sh, or the privileged entry point that runs it as root."""
        return list(self.privileged) or [str(self.tree.wrapper)]

    def script_command(self, command: str, script_args: Sequence[str] = ()) -> Command:
        """The wrapper called directly, for what is read from its output (GET /services)."""
        return Command([*self.wrapper(), *script_args], {"SSH_ORIGINAL_COMMAND": command})

    def recovery(self, kind: JobKind) -> Command:
        return self.builtin.recovery(kind)

    def scripted(self, kind: JobKind) -> bool:
        return kind.appliance_command is not None

    def busy(self, kind: JobKind) -> bool:
        return kind.appliance_command is not None and kind.appliance_locks and self.lock(kind).exists()

    def lock(self, kind: JobKind) -> Path:
        script = kind.appliance_script or f"update_{kind.appliance_command}.sh"
        return self.lock_dir / f"{script}.task"


class JobFiles:
    """Where one kind keeps its log and its status.

    An outcome the runner had to decide but could not write (the status files are an
    appliance script's, owned by root) is kept in memory, and stands for as long as the
    files stay as they were.
    """

    def __init__(self, tree: AdminTree, kind: JobKind):
        self.kind = kind
        self.log = tree.log_file(kind.log_name)
        self.status = StatusFiles(tree, kind)
        self._decided: tuple[JobStatus, tuple[int | None, ...]] | None = None

    def read(self) -> JobStatus:
        if self._decided is not None:
            if self._decided[1] == self.stamp():
                return self._decided[0]
            self._decided = None
        return self.status.read()

    def stamp(self) -> tuple[int | None, ...]:
        return self.status.stamp()

    def write(self, status: JobStatus) -> bool:
        """Write a status the job could not write itself; False (and a log line) when the
        files are not the daemon's to write (an appliance script's, say)."""
        self._decided = None
        try:
            self.status.write(status)
        except OSError as e:
            JobRunner.log.warn("Cannot write the {kind} job's status to {path}: {why}", kind=self.kind.name,
                               path=e.filename or str(self.status.json), why=e.strerror or str(e))
            self._decided = (status, self.stamp())
            return False
        return True

    def say(self, clock: Any, message: str) -> None:
        """A line of the runner's own on the kind's log, in the appliance's format."""
        line = f"[{int(clock.seconds())}][{self.kind.label}] {message}\n".encode()
        try:
            fd = os.open(self.log, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o644)
        except OSError:
            return
        try:
            os.write(fd, line)
        finally:
            os.close(fd)


@dataclass(frozen=True)
class JobRun:
    """One run of a kind of job: kept in etc/jobs/<kind>.run from its start to the next
    run's, so its log can be read from where it began, and its times reported."""

    id: str
    started: float  # seconds since the epoch
    log_start: int  # where its lines begin in the kind's log
    ended: float | None = None

    def as_json(self) -> dict[str, object]:
        return {"id": self.id, "started": self.started, "log-start": self.log_start, "ended": self.ended}

    @classmethod
    def read(cls, path: Path) -> JobRun | None:
        try:
            value = json.loads(path.read_bytes())
            ended = value.get("ended")
            return cls(str(value["id"]), float(value["started"]), int(value["log-start"]),
                       None if ended is None else float(ended))
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            return None


@dataclass(frozen=True)
class LogPart:
    """Lines of a run's log from a position: what GET /jobs/<kind>/log answers."""

    run: JobRun | None
    start: int  # the position asked for (bytes from the run's first line)
    next: int  # where to ask from next
    lines: list[str]
    complete: bool  # the run has ended and nothing of it is left to read


LOG_PART_MAX = 256 * 1024  # what one answer gives of a log; the client asks again from ``next``


@dataclass
class _Job:
    """One job the runner follows: a child of this daemon, or one a previous daemon left."""

    kind: JobKind
    files: JobFiles
    child: RunningChild
    timeout: float
    stamp: tuple[int | None, ...]  # of the status files when it started
    scripted: bool = False
    adopted: bool = False
    timed_out: bool = False


class JobRunner(Service):
    log = Logger()

    def __init__(self, tree: AdminTree, reactor: Any, clock: Any = None, timeout: float = 3600,
                 launcher: Launcher | None = None, log_rotate: LogRotate = LogRotate()):
        self.tree = tree
        self.reactor = reactor
        self.clock = clock or reactor
        self.timeout = timeout  # for kinds that do not set their own; replaced on SIGHUP
        self.launcher = launcher or BuiltinPrograms(tree)
        self.log_rotate = log_rotate  # applied to a kind's log when a job of it starts
        self.kinds: dict[str, JobKind] = {}
        self._files: dict[str, JobFiles] = {}
        self._running: dict[str, _Job] = {}
        self._listeners: dict[str, list[Callable[[JobStatus], None]]] = {}
        self._stopping = False

    def reopen_logs(self) -> None:
        """After an outside rotation (SIGHUP). Jobs write their logs themselves, opened
        with O_APPEND, so a copytruncate is followed; one that moved the file away is
        followed by the next job."""

    def register(self, kind: JobKind) -> JobFiles:
        """Make a kind known (its interrupted jobs are followed or settled at start-up)."""
        self.kinds[kind.name] = kind
        return self.files(kind)

    def files(self, kind: JobKind) -> JobFiles:
        if kind.name not in self._files:
            self._files[kind.name] = JobFiles(self.tree, kind)
        return self._files[kind.name]

    def when_finished(self, kind: JobKind, listener: Callable[[JobStatus], None]) -> None:
        """Call ``listener`` with the outcome of every job of this kind, before any answer
        shows that outcome: a section drops what it keeps of the files the job may have
        changed (the version, the certificate in service), so no answer is older than
        the status."""
        self._listeners.setdefault(kind.name, []).append(listener)

    def startService(self) -> None:
        super().startService()
        self._stopping = False
        # Once the reactor runs (at once when it already does): it reaps the children.
        self.reactor.callWhenRunning(self._recover_all)

    def _recover_all(self) -> None:
        for kind in list(self.kinds.values()):
            if kind.name not in self._running:
                self._recover(kind)
            taken = self.tree.request_taken(kind.name)
            if taken.exists() and kind.name not in self._running:
                os.replace(taken, self.tree.request_marker(kind.name))  # its job died before it ended
        self._start_requested()

    def stopService(self) -> defer.Deferred[Any]:
        """Stop this daemon's jobs with it (each undoes what it had begun), so none is left
        half-done; a job a previous daemon left is followed no further."""
        super().stopService()
        self._stopping = True
        jobs = list(self._running.values())
        children = [job.child for job in jobs if not job.adopted]
        for child in children:
            child.stop()
        for job in jobs:
            if job.adopted:
                self._running.pop(job.kind.name, None)
        return defer.DeferredList([child.done for child in children])

    # ------------------------------------------------------------------------------------
    # Start-up: jobs the previous daemon left

    def _recover(self, kind: JobKind) -> None:
        """A job of this kind the previous daemon started: follow it if it still runs;
        finish or undo it from its journal if it was killed in the middle of a change;
        settle it as the kind says an interruption ends if it died without a word."""
        if self._adopt(kind):
            return
        if self.tree.journal(kind.name).exists():
            self.log.warn("A {kind} job was left half-done: finishing or undoing it from its journal",
                          kind=kind.name)
            self._launch(kind, self.launcher.recovery(kind), scripted=False, new_run=False)
            return
        files = self.files(kind)
        if files.read().status != RUNNING or self.launcher.busy(kind):
            return  # it ended and said how, or an appliance script holding its lock is at work
        if kind.interrupted_outcome == SUCCESS:
            files.say(self.clock, "The job ended with the daemon, as it meant to")
            outcome = JobStatus(SUCCESS, 100)
        else:
            files.say(self.clock, INTERRUPTED)
            outcome = JobStatus(FAILED, files.read().percentage, INTERRUPTED, kind.interrupted_code)
            self.log.warn("Marked the interrupted {kind} job failed", kind=kind.name)
        files.write(outcome)
        self._end_run(kind)
        self._tell(kind, outcome)

    def _adopt(self, kind: JobKind) -> bool:
        """Follow a job the previous daemon left running to its end, as if it were ours."""
        record = self.tree.job_record(kind.name)
        try:
            noted = json.loads(record.read_bytes())
            pid, started = int(noted["pid"]), float(noted["started"])
        except (OSError, ValueError, KeyError, TypeError):
            remove_quietly(record)
            return False
        if not _alive(pid, started):
            remove_quietly(record)
            return False
        self.log.info("Following the {kind} job (process group {pid}) the previous daemon left running",
                      kind=kind.name, pid=pid)
        done: defer.Deferred[ChildResult] = defer.Deferred()
        timeout = float(kind.timeout or self.timeout)
        left = max(0.0, timeout - max(0.0, time.time() - started))  # process times are the wall clock's
        stopper = _GroupStopper(pid, self.clock, done)
        job = _Job(kind, self.files(kind), RunningChild(done, pid, stopper.stop), timeout,
                   self.files(kind).stamp(), scripted=self.launcher.scripted(kind), adopted=True)
        self._running[kind.name] = job
        timer = self.clock.callLater(left, self._time_out, job)
        self._watch(pid, started, done, timer)
        done.addBoth(self._finished, job)
        return True

    def _watch(self, pid: int, started: float, done: defer.Deferred[ChildResult], timer: Any) -> None:
        if done.called:
            return
        if _alive(pid, started):
            self.clock.callLater(ORPHAN_POLL_SECONDS, self._watch, pid, started, done, timer)
            return
        if timer.active():
            timer.cancel()
        done.callback(ChildResult(None))

    def _time_out(self, job: _Job) -> None:
        job.timed_out = True
        job.child.stop()

    # ------------------------------------------------------------------------------------
    # Starting and following jobs

    def stop(self, kind: JobKind) -> None:
        """Stop a running job of this kind (it undoes what it began and says so)."""
        job = self._running.get(kind.name)
        if job is not None:
            job.child.stop()

    def is_running(self, kind: JobKind) -> bool:
        return kind.name in self._running

    def running_in_group(self, group: str) -> JobKind | None:
        for job in self._running.values():
            if job.kind.group == group:
                return job.kind
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
        """The status of the kind's last job: "running" for as long as its process does,
        whatever it has written, so nobody sees an outcome before the daemon has taken in
        what the job changed."""
        status = self.files(kind).read()
        if self.is_running(kind):
            return JobStatus(RUNNING, status.percentage if status.status == RUNNING else None)
        return status

    def report(self, kind: JobKind) -> tuple[JobStatus, dict[str, object]]:
        """The status of the last job of a kind, and the start of every status answer the
        original gave for it: ``{"status": ..., "log": <its last lines>}``, both null
        before any job ran. A section adds what its kind reports beyond that.

        The log is the original's: ``tail -n 10`` of the log with every newline written as
        the two characters backslash and n, a trailing one included (its dashboard, and the
        clients written for it, split on them)."""
        status = self.status(kind)
        log = None
        if status.status is not None:
            run = self.run(kind)
            text = tail_text(self.files(kind).log, REPORT_LOG_LINES, start=run.log_start if run else 0)
            log = text.replace("\n", "\\n") if text is not None else None
        return status, {"status": status.status, "log": log}

    def start(self, kind: JobKind, args: list[str] | tuple[str, ...] = (),
              script_args: list[str] | tuple[str, ...] = ()) -> defer.Deferred[JobStatus]:
        """Start a job; fires with its final JobStatus.

        Raises AlreadyRunning when a job of the same group runs: no restore during an
        update, no reboot during a backup.
        """
        self.check_free(kind)
        command = self.launcher.command(kind, list(args), list(script_args))
        return self._launch(kind, command, scripted=self.launcher.scripted(kind))

    def _launch(self, kind: JobKind, command: Command, scripted: bool,
                new_run: bool = True) -> defer.Deferred[JobStatus]:
        files = self.files(kind)
        # A job's output is its log; an appliance script's is the daemon's own, as with the
        # original daemon (the script writes its log itself). A log the daemon's user may not
        # write is the caller's error to answer (a file, and whose), before anything changed.
        output = None if scripted else self._open_log(files)
        if new_run:
            self._begin_run(kind, files, output)
        if not scripted:
            # From the answer on, the status says "running", whatever the previous job said.
            files.write(JobStatus(RUNNING, 0))
        stamp = files.stamp()
        env = {**default_env(), **command.env}
        timeout = float(kind.timeout or self.timeout)
        try:
            try:
                child = run_child(self.reactor, command.argv, env=env, cwd=str(self.tree.tmp), timeout=timeout,
                                  clock=self.clock, output_fd=output, inherit_output=scripted)
            finally:
                if output is not None:
                    os.close(output)
        except Exception:
            # Spawning failed (no memory for a fork, say): the job must not stay "running".
            self.log.failure("Could not run the {kind} job", kind=kind.name)
            outcome = JobStatus(FAILED, 0, "The job could not be started", kind.unexpected_code)
            files.write(outcome)
            return defer.succeed(outcome)
        job = _Job(kind, files, child, timeout, stamp, scripted=scripted)
        self._running[kind.name] = job
        self._remember(kind, child)
        return child.done.addBoth(self._finished, job)

    def _begin_run(self, kind: JobKind, files: JobFiles, output: int | None) -> None:
        """Note a new run: its id, its start, and where its lines begin in the log."""
        try:
            size = os.fstat(output).st_size if output is not None else files.log.stat().st_size
        except OSError:
            size = 0
        now = self.clock.seconds()
        run = JobRun(f"{int(now * 1000):x}-{os.urandom(3).hex()}", now, size)
        try:
            atomic_write_json(self.tree.job_run(kind.name), run.as_json())
        except OSError as e:
            self.log.warn("Cannot note the {kind} job's run: {why}", kind=kind.name, why=e)

    def _end_run(self, kind: JobKind) -> None:
        path = self.tree.job_run(kind.name)
        run = JobRun.read(path)
        if run is not None and run.ended is None:
            try:
                atomic_write_json(path, replace(run, ended=self.clock.seconds()).as_json())
            except OSError as e:
                self.log.warn("Cannot note the end of the {kind} job's run: {why}", kind=kind.name, why=e)

    def run(self, kind: JobKind) -> JobRun | None:
        """The kind's last run (the one running, if one does)."""
        return JobRun.read(self.tree.job_run(kind.name))

    def read_log(self, kind: JobKind, position: int, limit: int = LOG_PART_MAX) -> LogPart:
        """The lines of the last run's log from ``position`` (bytes from its first line):
        whole lines only while the run goes on, everything once it has ended. A client that
        asks again from ``next`` gets every line once, and none of another run's."""
        run = self.run(kind)
        start = run.log_start if run is not None else 0
        running = self.is_running(kind)
        try:
            with open(self.files(kind).log, "rb") as f:
                end = f.seek(0, os.SEEK_END)
                if start > end:
                    start = 0  # the log was replaced (rotated by hand): all of it is this run's
                position = max(0, min(position, end - start))
                f.seek(start + position)
                data = f.read(limit)
        except FileNotFoundError:
            end, data, position = start, b"", 0
        at_end = start + position + len(data) >= end
        if running or not at_end:
            cut = data.rfind(b"\n") + 1
            if cut == 0 and len(data) >= limit:
                cut = len(data)  # a line longer than a whole answer: given in pieces
            data = data[:cut]
        text = data.decode("utf-8", "replace")
        lines = text.split("\n")
        if lines and lines[-1] == "":
            lines.pop()
        complete = not running and start + position + len(data) >= end
        return LogPart(run, position, position + len(data), lines, complete)

    def _open_log(self, files: JobFiles) -> int:
        """The log file, for the job's stdout and stderr: rotated first if it is too large,
        and opened to append, so the job writes its lines itself and none is lost if the
        daemon goes."""
        path = files.log
        limits = self.log_rotate
        try:
            if path.stat().st_size > limits.bytes:
                rotate(path, limits.keep)
        except FileNotFoundError:
            pass
        return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o644)

    def _remember(self, kind: JobKind, child: RunningChild) -> None:
        """Note the child's process, so a daemon started after this one dies follows the
        job to its end rather than reporting a job it cannot see."""
        if child.pid is None:
            return
        try:
            started = psutil.Process(child.pid).create_time()
            atomic_write_json(self.tree.job_record(kind.name), {"pid": child.pid, "started": started})
        except (psutil.Error, OSError) as e:
            self.log.warn("Cannot note the {kind} job's process ({why}): a daemon started after this one "
                          "dies could not follow it", kind=kind.name, why=e)

    def request(self, kind: JobKind) -> None:
        """Run a job of this kind soon, without waiting for it: now, or once more when the
        one running ends (so a change made while it runs is covered too). The request is
        noted on disk until the job starts, so a daemon that dies before leaves it to the
        next one."""
        try:
            atomic_write(self.tree.request_marker(kind.name), b"", 0o644)
        except OSError as e:
            self.log.warn("Cannot note the request for {kind} on disk: {why}", kind=kind.name, why=e)
        self._start_requested(kind)

    def _start_requested(self, only: JobKind | None = None) -> None:
        """Start the jobs requested (by the daemon or by a job) that can start now."""
        for kind in ([only] if only is not None else list(self.kinds.values())):
            marker = self.tree.request_marker(kind.name)
            if not marker.exists():
                continue
            try:
                self.check_free(kind)
            except AlreadyRunning:
                continue  # the marker stays: asked for again when the running job ends
            os.replace(marker, self.tree.request_taken(kind.name))  # a request made from now on is another
            self.start(kind)

    def _finished(self, result: object, job: _Job) -> JobStatus | defer.Deferred[JobStatus]:
        kind, files = job.kind, job.files
        if not self._stopping and not job.scripted and self.tree.journal(kind.name).exists():
            # Killed in the middle of a change (kill -9, say): its own program finishes or
            # undoes it before anyone hears how the job ended.
            files.say(self.clock, "The job ended in the middle of a change: finishing or undoing it")
            return self._launch(kind, self.launcher.recovery(kind), scripted=False, new_run=False)
        outcome = self._outcome(result, job)
        if not job.scripted and outcome.status == FAILED and outcome != files.read():
            files.say(self.clock, f"Failed: {outcome.error_message}")  # a reason the job could not give itself
        if outcome != files.read():
            files.write(outcome)
        self._end_run(kind)
        self._tell(kind, outcome)
        # Only now does any answer show the outcome (status() says "running" until here).
        if self._running.get(kind.name) is job:
            del self._running[kind.name]
            remove_quietly(self.tree.job_record(kind.name))
        if not self._stopping:
            self.reactor.callLater(0, self._start_requested)
        return outcome

    def _tell(self, kind: JobKind, outcome: JobStatus) -> None:
        for listener in self._listeners.get(kind.name, []):
            try:
                listener(outcome)
            except Exception:
                self.log.failure("After the {kind} job", kind=kind.name)

    def _outcome(self, result: object, job: _Job) -> JobStatus:
        """The job's own word when it gave one; else what the runner saw of its end."""
        kind, files = job.kind, job.files
        written = files.read()
        said = written.status in (SUCCESS, FAILED) and files.stamp() != job.stamp
        if not isinstance(result, ChildResult):
            self.log.failure("Could not follow the {kind} job", result if isinstance(result, Failure) else None,
                             kind=kind.name)
            return written if said else JobStatus(FAILED, written.percentage, "The job could not be followed",
                                                  kind.unexpected_code)
        if result.timed_out or job.timed_out:
            message = f"Stopped after running longer than {int(job.timeout)} seconds"
            return JobStatus(FAILED, written.percentage, message, kind.timeout_code)
        if self._stopping and not (said and written.status == SUCCESS):
            if kind.interrupted_outcome == SUCCESS:
                return JobStatus(SUCCESS, 100)
            return JobStatus(FAILED, written.percentage, "Stopped with the daemon", kind.interrupted_code)
        if said:
            return written
        if result.exit_code == 0:
            return JobStatus(SUCCESS, 100)  # a script that keeps no status: its exit status is its word
        if job.adopted and kind.interrupted_outcome == SUCCESS:
            return JobStatus(SUCCESS, 100)
        return JobStatus(FAILED, written.percentage if written.status == RUNNING else None, _ending(result, job),
                         kind.unexpected_code)


def _alive(pid: int, started: float) -> bool:
    """Whether the job program a previous daemon noted still runs: the same process (its
    pid may be another's by now) and not a zombie waiting for an init that reaps slowly."""
    try:
        process = psutil.Process(pid)
        same: bool = abs(process.create_time() - started) <= 0.01
        return same and process.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


class _GroupStopper:
    """Stops the process group of a job that is not this daemon's child: SIGTERM, then
    SIGKILL after the grace period if it is still there."""

    def __init__(self, pid: int, clock: Any, done: defer.Deferred[ChildResult]):
        self.pid = pid
        self.clock = clock
        self.done = done

    def stop(self) -> None:
        if self.done.called:
            return
        signal_group(self.pid, signal.SIGTERM)
        kill = self.clock.callLater(KILL_GRACE_SECONDS, signal_group, self.pid, signal.SIGKILL)
        self.done.addBoth(lambda result: (kill.cancel() if kill.active() else None, result)[1])


def _ending(result: ChildResult, job: _Job) -> str:
    """Why a job that said nothing failed: its exit status, or the signal that killed it
    (an exit status of None told an administrator nothing)."""
    if job.adopted:
        return "The job ended while no daemon followed it, without saying how"
    if result.exit_code is None and result.signal is not None:
        try:
            name = signal.Signals(result.signal).name
        except ValueError:
            name = "unknown"
        return f"The job was killed by signal {result.signal} ({name})"
    return f"The job ended with exit status {result.exit_code}"
