"""The update job: install the newest uploaded update package.

The daemon's job runner starts it as

    python -m jidoteki_admin.jobs.update --admin-path DIR

with DIR/tmp as working directory. Log lines go to stdout (the runner appends them to
log/update.log). Progress and the outcome go to file descriptor 3, one JSON object a line:
``{"percentage": N}`` at each step, and ``{"error-code": ..., "error-message": ...}`` just
before a failed exit. Exit status 0 means the update is installed, 1 that it failed.
docs/packages.md lists the steps and error codes.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

from .. import package
from ..files import atomic_write, read_first_line, remove_quietly
from ..layout import AdminTree
from ..package import PackageError, Version

PROGRESS_FD = 3
E_UNEXPECTED = "E1000"
E_SCRIPT = "E1002"
LINE_MAX = 64 * 1024
MESSAGE_MAX = 1000  # keeps each progress line under PIPE_BUF, so it is written whole


class Interrupted(Exception):
    pass


def log(message: str) -> None:
    _write_log(f"[{int(time.time())}][SYSTEM] {message}\n".encode())


def _write_log(data: bytes) -> None:
    try:
        sys.stdout.buffer.write(data)
        sys.stdout.flush()
    except OSError:
        pass  # a runner that went away must not turn a good update into a failed one


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
        self._fd = fd if writable else None

    def report(self, **fields) -> None:
        if self._fd is None:
            return
        try:
            os.write(self._fd, json.dumps(fields).encode() + b"\n")
        except OSError:
            self._fd = None

    def percentage(self, value: int) -> None:
        self.report(percentage=value)

    def error(self, code: str, message: str) -> None:
        self.report(**{"error-code": code, "error-message": message[:MESSAGE_MAX]})


class UpdateJob:
    def __init__(self, tree: AdminTree, progress: Progress):
        self.tree = tree
        self.progress = progress
        self.packages: list[Path] = []
        self.workdir: Path | None = None

    def step(self, percentage: int, message: str) -> None:
        log(message)
        self.progress.percentage(percentage)

    def run(self) -> None:
        log("Updating system. Please wait..")
        self.step(10, "Looking for the update package")
        # Every package seen now is removed at the end, used or not; one uploaded while
        # the job runs is left for the next update.
        self.packages = package.find_packages(self.tree.uploads)
        if not self.packages:
            raise PackageError(package.E_MISSING, "Missing update package")
        newest = self.packages[-1]
        self.tree.tmp.mkdir(parents=True, exist_ok=True)
        self.workdir = Path(tempfile.mkdtemp(prefix="update-", dir=self.tree.tmp))

        self.step(20, f"Decrypting update package {newest.name}")
        public_key = package.load_public_key(self.tree.etc / "updates.pub")
        inner, digest, signature = package.unpack(
            newest, self.tree.etc / "updates.key", self.workdir,
            on_decrypted=lambda scheme: self.step(30, "Extracting update package"))
        self.step(40, "Verifying update package signature")
        package.verify_digest(public_key, signature, digest)

        self.step(50, f"Extracting {inner.name}")
        extracted = self.workdir / "software_package"
        package.extract_safely(inner, extracted)
        remove_quietly(inner)  # a package can be gigabytes: free the space before update.sh

        self.step(60, "Checking the update package version")
        version = self.check_version(extracted)
        self.step(70, "Running the update script")
        self.run_update_script(extracted, version)
        self.step(80, "Installing version.txt and changelog.txt")
        self.install(extracted)
        self.step(100, "Updating system successful")

    def check_version(self, extracted: Path) -> str:
        """Refuse a package that is not newer than the installed version (E1001).

        As the appliance's own update script did: versions compare by ``sort -V``, and only
        when both version.txt files exist; a package or appliance without one is installed
        without a comparison. Returns the package's version ("" when it has none).
        """
        path = extracted / "version.txt"
        new = (read_first_line(path) or "").strip() if path.is_file() else None
        installed = read_first_line(self.tree.etc / "version.txt")
        if new is None or installed is None:
            missing = "The update package has no version.txt" if new is None else "No etc/version.txt"
            log(f"{missing}: installing without comparing versions")
            return new or ""
        installed = installed.strip()
        if not Version(new) > Version(installed):
            raise PackageError(package.E_VERSION, f"Update package version {new!r} is not newer "
                               f"than the installed version {installed!r}")
        log(f"Updating from version {installed} to {new}")
        return new

    def run_update_script(self, extracted: Path, version: str) -> None:
        if not (extracted / "update.sh").is_file():
            log("No update script in the package")
            return
        env = {
            "PATH": os.environ.get("PATH", os.defpath),
            "JIDO_ADMIN_PATH": str(self.tree.root),
            "JIDO_UPDATE_VERSION": version,
            "JIDO_UPDATE_DIR": str(extracted),
        }
        # The script stays in the job's process group, which the runner kills as a whole
        # on a timeout, so nothing it starts outlives the job.
        script = subprocess.Popen(["/bin/sh", "update.sh"], cwd=extracted, env=env,
                                  stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT)
        try:
            _pass_through(script.stdout)
        except BaseException:
            script.kill()  # interrupted: the script must not go on alone
            raise
        finally:
            script.stdout.close()
            status = script.wait()
        if status != 0:
            how = f"exit status {status}" if status > 0 else f"signal {-status}"
            raise PackageError(E_SCRIPT, f"Update script failed with {how}")

    def install(self, extracted: Path) -> None:
        for name in ("version.txt", "changelog.txt"):
            source = extracted / name
            if source.is_file():
                atomic_write(self.tree.etc / name, source.read_bytes(), 0o644)

    def clean_up(self) -> None:
        for path in self.packages:
            remove_quietly(path)
        if self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def fail(self, code: str, message: str) -> int:
        log(f"Failed updating system: {message}")
        self.progress.error(code, message)
        return 1


def _pass_through(stream) -> None:
    """Copy a child's output to the log verbatim, line by line as it comes."""
    line = b"\n"
    while chunk := stream.readline(LINE_MAX):
        _write_log(chunk)
        line = chunk
    if not line.endswith(b"\n"):  # keep the job's next log line on a line of its own
        _write_log(b"\n")


def _interrupted(signum, frame):
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # let the clean-up finish
    raise Interrupted("Update interrupted by SIGTERM")


def main(argv: list[str] | None = None) -> int:
    progress = Progress()  # first, before any file of the job's own can take fd 3
    parser = argparse.ArgumentParser(prog="python -m jidoteki_admin.jobs.update",
                                     description="Install the newest uploaded update package.")
    parser.add_argument("--admin-path", required=True, type=Path, help="the appliance's admin tree")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, _interrupted)
    job = UpdateJob(AdminTree(args.admin_path.resolve()), progress)
    failure = None
    try:
        job.run()
    except PackageError as e:
        failure = (e.code, e.message)
    except Interrupted as e:
        failure = (E_SCRIPT, str(e))
    except Exception as e:
        traceback.print_exc()
        failure = (E_UNEXPECTED, f"Unexpected error: {type(e).__name__}: {e}")
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # the clean-up must not be cut short
        job.clean_up()
    # The error is reported last, once the clean-up is done, just before the exit.
    return job.fail(*failure) if failure else 0


if __name__ == "__main__":
    sys.exit(main())
