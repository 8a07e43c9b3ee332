"""The scaffold every job program shares: arguments, log lines, status, SIGTERM, failure.

A program subclasses Program, names its JobKind and fills in ``run`` (and ``clean_up``);
``main`` does the rest the same way for every kind, as jobs/protocol.py describes:

- ``--admin-path DIR`` (always absolute by the time a daemon passes it) plus the
  program's own arguments, or ``--recover`` alone;
- log lines ``[unix time][LABEL] message`` on stdout, which is the kind's log file when
  the runner starts the job;
- the status files (jobs/status.py): "running" at the start and at each step, and the
  outcome last of all, after the clean-up, so the outcome on disk is the job's own word
  even when no daemon is left to see it end;
- SIGTERM raises Interrupted in the program, so whatever it changed is rolled back and its
  clean-up runs; a second SIGTERM is ignored so neither is cut short.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
import traceback
from pathlib import Path
from typing import Any

from ..files import atomic_write, remove_quietly
from ..formats.validate import Invalid, read_document
from ..layout import AdminTree
from ..persistence import PersistError, persist
from . import swap
from .protocol import FAILED, RUNNING, SUCCESS, JobKind
from .status import JobStatus, StatusFiles


class JobFailed(Exception):
    """The job cannot go on; the code and message are what GET /<kind> shows."""

    def __init__(self, code: str | None, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


class Interrupted(Exception):
    """SIGTERM: the runner (or an administrator) asked the job to stop."""


def write_log(data: bytes) -> None:
    try:
        sys.stdout.buffer.write(data)
        sys.stdout.flush()
    except OSError:
        pass  # a runner that went away must not turn a good job into a failed one


def log_line(label: str, message: str) -> None:
    write_log(f"[{int(time.time())}][{label}] {message}\n".encode())


class Program:
    """One job program. Subclasses set ``kind`` and ``description`` and write ``run``."""

    kind: JobKind
    description = ""
    interrupted_message = "Interrupted by SIGTERM"

    def __init__(self, tree: AdminTree, args: argparse.Namespace, status: StatusFiles):
        self.tree = tree
        self.args = args
        self.status = status
        self.percentage = 0
        self.swap: swap.Swap | None = None

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        """The program's own arguments, besides --admin-path."""

    def log(self, message: str) -> None:
        log_line(self.kind.label, message)

    def step(self, percentage: int, message: str) -> None:
        """A log line, and the percentage in the status files."""
        checkpoint(f"{self.kind.name}.{percentage}")
        self.log(message)
        self.percentage = percentage
        self.status.write(JobStatus(RUNNING, percentage))

    def changes(self) -> swap.Swap:
        """The job's changes, made together under this kind's journal (swap.py): files or
        directories to replace, and the work space to remove. A job that fails or is
        stopped before ``commit`` puts the previous ones back (main does), and one killed
        outright is rolled back at once by its runner, or by the next start
        (``--recover``)."""
        if self.swap is None:
            name = self.kind.name
            self.swap = swap.Swap(self.tree.journal(name), self.log, lambda at: checkpoint(f"{name}.{at}"))
        return self.swap

    def install(self, moves: swap.Swap) -> None:
        """Swap the staged files in; JobFailed, with everything as it was, if that fails."""
        try:
            moves.install()
        except swap.SwapError as e:
            raise JobFailed(None, f"Cannot save the new files ({e}); the previous ones are in place") from None

    def commit(self) -> None:
        """Keep what the swap installed. From here the job only finishes: a SIGTERM is
        ignored, so the outcome it reports is the change it made."""
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        if self.swap is not None:
            self.swap.commit()

    def request(self, kind: str) -> None:
        """Ask for a job of another kind to run after this one (the persistence step after
        a restore, which runs unprivileged): the runner starts it as soon as it can, or at
        its next start if the daemon is gone. Durable before this job says it succeeded."""
        marker = self.tree.request_marker(kind)
        marker.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(marker, b"", 0o644)

    def recover(self) -> str | None:
        """Finish or undo what a job of this kind left half-done (``--recover``): by
        default its swap, from the journal. Returns swap.COMPLETED or swap.ROLLED_BACK, or
        None when there was nothing to do. A program whose change reaches further than
        its files (a hook that applied them) undoes that too."""
        return swap.recover(self.tree.journal(self.kind.name), self.log)

    def run(self) -> None:
        raise NotImplementedError

    def clean_up(self) -> None:
        """Runs after ``run`` whatever happened, with SIGTERM ignored."""

    def run_hook(self, name: str, *args: str) -> bool:
        """Run the appliance's hook bin/<name> with ``args``, its output going to the log.

        False when the appliance has no such hook (the work done so far is all there is);
        a hook that fails fails the job.
        """
        hook = self.tree.hook(name)
        if hook is None:
            return False
        self.log(f"Running {hook}{''.join(' ' + a for a in args)}")
        sys.stdout.flush()
        done = subprocess.run([str(hook), *args], stdin=subprocess.DEVNULL, stderr=subprocess.STDOUT,
                              cwd=self.tree.root, check=False)
        if done.returncode != 0:
            raise JobFailed(self.kind.unexpected_code, f"bin/{name} failed with exit status {done.returncode}")
        return True

    persisted = False

    def persist(self) -> None:
        """Save the change for the next boot (persistence.py), or say plainly it is not.

        A kind that ``persists`` gets this after ``run``; a program may call it earlier,
        before its last step.
        """
        self.persisted = True
        try:
            persist(self.tree, self.log, write_log)
        except PersistError as e:
            raise JobFailed(self.kind.unexpected_code,
                            f"The change is made, but it may not survive a reboot: {e}") from None

    def rolled_back(self, code: str | None, message: str) -> tuple[str | None, str]:
        """After a failed job's swap put the previous files back: undo what reached beyond
        them (a hook that applied them), and return the failure as the job reports it."""
        return code, message

    def failed(self, code: str | None, message: str) -> None:
        """The last log line of a failed job; subclasses may word it their own way."""
        self.log(f"Failed: {message}")


def document_bytes(document: object) -> bytes:
    """A settings document as the original wrote it (storage.json, cluster.json): compact
    JSON and a newline."""
    return json.dumps(document, separators=(",", ":")).encode() + b"\n"


class StagedDocumentProgram(Program):
    """A job handed a settings document its section checked and staged (``--settings``).

    The job checks it again, against what is stored (a masked secret in it stands for the
    stored one), since it runs as root and can be run by hand; the staged file is removed
    whatever happens. Subclasses name the stored file and the check.
    """

    def stored_path(self) -> Path:
        raise NotImplementedError

    def recheck(self, posted: dict[str, Any], stored: object) -> dict[str, Any]:
        raise NotImplementedError

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--settings", type=Path, required=True, help="the checked settings document")

    def checked(self) -> dict[str, Any]:
        try:
            return self.recheck(read_document(self.args.settings, "settings"), self.stored())
        except FileNotFoundError:
            raise JobFailed(None, f"Invalid or missing settings file: {self.args.settings}") from None
        except Invalid as e:
            raise JobFailed(None, f"Invalid or missing settings file: {e}") from None

    def stored(self) -> object:
        try:
            return json.loads(self.stored_path().read_bytes())
        except (OSError, ValueError):
            return None

    def clean_up(self) -> None:
        remove_quietly(self.args.settings)


CHECKPOINTS = "JIDO_JOB_CHECKPOINTS"  # a folder; the fault tests stop jobs at named points


def checkpoint(name: str) -> None:
    """A point where the fault tests may hold a job: with $JIDO_JOB_CHECKPOINTS set to a
    folder holding a file of this name, the job creates NAME.reached and waits for the
    file to go, so a test can send its signal at exactly this point; a file "trace" there
    gets the name of every point passed, so a test learns a job's points from the job.
    Unset, nothing."""
    folder = os.environ.get(CHECKPOINTS)
    if not folder:
        return
    trace = Path(folder) / "trace"
    if trace.exists():
        with open(trace, "a") as f:
            f.write(name + "\n")
    hold = Path(folder) / name
    if not hold.exists():
        return
    (Path(folder) / f"{name}.reached").touch()
    while hold.exists():
        time.sleep(0.01)


def _interrupted(signum: int, frame: object) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # let the roll-back and the clean-up finish
    raise Interrupted("Interrupted by SIGTERM")


def parse_arguments(program: type[Program], argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog=f"python -m {program.kind.program}", description=program.description)
    parser.add_argument("--admin-path", required=True, type=Path, help="the appliance's admin tree")
    parser.add_argument("--recover", action="store_true",
                        help="finish or undo what a job of this kind left half-done, and nothing else")
    first, _ = parser.parse_known_args(argv)
    if first.recover:
        return parser.parse_args(argv)  # the program's own arguments do not apply
    program.add_arguments(parser)
    return parser.parse_args(argv)


def main(program: type[Program], argv: list[str] | None = None) -> int:
    """Run a program the way the runner expects; returns the exit status."""
    args = parse_arguments(program, argv)
    tree = AdminTree(args.admin_path.resolve())
    kind = program.kind
    status = StatusFiles(tree, kind)
    job = program(tree, args, status)
    if args.recover:
        return _recover(job, status)
    failure = None
    try:
        try:
            # Inside the try: a SIGTERM from here on is an Interrupted this function handles;
            # before it, the default action ends the process, which the runner reports.
            signal.signal(signal.SIGTERM, _interrupted)
            status.write(JobStatus(RUNNING, 0))
            checkpoint(f"{kind.name}.start")
            job.run()
            if kind.persists and not job.persisted:
                job.persist()
            job.commit()
        finally:
            # Still inside the outer try: a SIGTERM that arrives just as the work ends is
            # an Interrupted handled below, not an uncaught traceback.
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
    except JobFailed as e:
        failure = (e.code, e.message)
    except Interrupted:
        failure = (kind.interrupted_code, job.interrupted_message)
    except Exception as e:
        traceback.print_exc()
        failure = (kind.unexpected_code, f"Unexpected error: {type(e).__name__}: {e}")
    finally:
        try:
            if failure is not None and job.swap is not None and not job.swap.committed:
                job.swap.roll_back()  # with SIGTERM ignored, so it is not cut short
                failure = job.rolled_back(*failure)
        finally:
            job.clean_up()
    if failure is None:
        outcome = JobStatus(SUCCESS, 100)
    else:
        # The outcome is written last, once the roll-back and the clean-up are done.
        job.failed(*failure)
        outcome = JobStatus(FAILED, job.percentage, failure[1], failure[0])
    if _outcome(status, outcome):
        if job.swap is not None:
            job.swap.close()  # the outcome is on disk: the journal of a committed swap can go
        remove_quietly(tree.request_taken(kind.name))  # a request this job answered
    return 0 if outcome.status == SUCCESS else 1


def _recover(job: Program, status: StatusFiles) -> int:
    """``--recover``: a job of this kind was left half-done (its daemon and it were killed,
    or the power went): finish or undo it, and say which in the status files."""
    kind = job.kind
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a recovery is short, and must not stop half-way
    try:
        done = job.recover()
        if done == swap.COMPLETED and kind.persists:
            job.persist()
    except JobFailed as e:
        job.failed(e.code, e.message)
        _outcome(status, JobStatus(FAILED, job.percentage, e.message, e.code))
        return 1
    except Exception as e:
        traceback.print_exc()
        message = f"Interrupted, and the recovery failed: {type(e).__name__}: {e}"
        _outcome(status, JobStatus(FAILED, None, message, kind.unexpected_code))
        return 1
    previous = status.read()
    if done == swap.COMPLETED or (previous.status == RUNNING and kind.interrupted_outcome == SUCCESS):
        job.log("The interrupted job had made its change: finished it")
        if _outcome(status, JobStatus(SUCCESS, 100)):
            swap.forget(job.tree.journal(kind.name))
        return 0
    if done == swap.ROLLED_BACK:
        message = "Interrupted before it finished; the previous state is back in place"
    elif previous.status == RUNNING:
        message = "Interrupted before it finished"
    else:
        return 0  # nothing was left half-done, and the status already says how it ended
    job.log(message)
    _outcome(status, JobStatus(FAILED, previous.percentage, message, kind.interrupted_code))
    return 1


def _outcome(status: StatusFiles, outcome: JobStatus) -> bool:
    """Write the job's outcome; if even that fails, say so on the log and let the exit
    status tell whoever watches (the runner then writes it, if it can)."""
    try:
        status.write(outcome)
    except OSError as e:
        log_line(status.kind.label, f"Could not write the outcome to {status.json}: {e.strerror or e}")
        return False
    return True
