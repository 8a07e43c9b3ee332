"""The scaffold every job program shares: arguments, log lines, progress, SIGTERM, failure.

A program subclasses Program, names its JobKind and fills in ``run`` (and ``clean_up``);
``main`` does the rest the same way for every kind, as jobs/protocol.py describes:

- ``--admin-path DIR`` (always absolute by the time a daemon passes it) plus the
  program's own arguments;
- log lines ``[unix time][LABEL] message`` on stdout, which the runner appends to the log;
- ``{"percentage": N}`` on fd 3 at each step, and the error code and message just before
  a failed exit, after the clean-up;
- SIGTERM raises Interrupted in the program, so its clean-up runs; a second SIGTERM is
  ignored so the clean-up is not cut short.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import signal
import subprocess
import sys
import time
import traceback
from pathlib import Path
from typing import Any

from ..files import remove_quietly
from ..layout import AdminTree
from ..persistence import PersistError, persist
from ..validate import Invalid, read_document
from .protocol import ERROR_CODE, ERROR_MESSAGE, MESSAGE_MAX, PERCENTAGE, PROGRESS_FD, JobKind


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


class Progress:
    """JSON lines on fd 3, when the runner opened it for writing.

    Run by hand, fd 3 is usually closed and progress is simply not reported. It is checked
    before the job opens any file, so it cannot be one of the job's own files.
    """

    def __init__(self, fd: int = PROGRESS_FD):
        try:
            writable = (fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_ACCMODE) in (os.O_WRONLY, os.O_RDWR)
        except OSError:
            writable = False
        self._fd: int | None = fd if writable else None

    def report(self, **fields: object) -> None:
        if self._fd is None:
            return
        try:
            os.write(self._fd, json.dumps(fields).encode() + b"\n")
        except OSError:
            self._fd = None

    def percentage(self, value: int) -> None:
        self.report(**{PERCENTAGE: value})

    def error(self, code: str | None, message: str) -> None:
        self.report(**{ERROR_CODE: code, ERROR_MESSAGE: message[:MESSAGE_MAX]})


class Program:
    """One job program. Subclasses set ``kind`` and ``description`` and write ``run``."""

    kind: JobKind
    description = ""
    interrupted_message = "Interrupted by SIGTERM"

    def __init__(self, tree: AdminTree, args: argparse.Namespace, progress: Progress):
        self.tree = tree
        self.args = args
        self.progress = progress

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        """The program's own arguments, besides --admin-path."""

    def log(self, message: str) -> None:
        log_line(self.kind.label, message)

    def step(self, percentage: int, message: str) -> None:
        self.log(message)
        self.progress.percentage(percentage)

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


def _interrupted(signum: int, frame: object) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # let the clean-up finish
    raise Interrupted("Interrupted by SIGTERM")


def parse_arguments(program: type[Program], argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog=f"python -m {program.kind.program}", description=program.description)
    parser.add_argument("--admin-path", required=True, type=Path, help="the appliance's admin tree")
    program.add_arguments(parser)
    return parser.parse_args(argv)


def main(program: type[Program], argv: list[str] | None = None) -> int:
    """Run a program the way the runner expects; returns the exit status."""
    progress = Progress()  # first, before any file of the job's own can take fd 3
    args = parse_arguments(program, argv)
    job = program(AdminTree(args.admin_path.resolve()), args, progress)
    failure = None
    try:
        try:
            # Inside the try: a SIGTERM from here on is an Interrupted this function handles;
            # before it, the default action ends the process, which the runner reports.
            signal.signal(signal.SIGTERM, _interrupted)
            job.run()
            if program.kind.persists and not job.persisted:
                job.persist()
        finally:
            # Still inside the outer try: a SIGTERM that arrives just as the work ends is
            # an Interrupted handled below, not an uncaught traceback.
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
    except JobFailed as e:
        failure = (e.code, e.message)
    except Interrupted:
        failure = (program.kind.interrupted_code, job.interrupted_message)
    except Exception as e:
        traceback.print_exc()
        failure = (program.kind.unexpected_code, f"Unexpected error: {type(e).__name__}: {e}")
    finally:
        job.clean_up()  # with SIGTERM ignored, so it is not cut short
    if failure is None:
        return 0
    # The error is reported last, once the clean-up is done, just before the exit.
    job.failed(*failure)
    progress.error(*failure)
    return 1
