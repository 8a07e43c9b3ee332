"""The update job: install the update package the administrator uploaded.

The daemon's job runner starts it as

    python -m jidoteki_admin.jobs.update --admin-path DIR --package FILE

FILE is the package this request uploaded; only it is installed, and only it is removed
afterwards. Run by hand without --package, the job installs the newest
``software_package-*.enc`` in the uploads folder. The protocol (log lines, its own status
files, exit status) is the one every job shares: jobs/program.py. docs/packages.md lists
the steps and error codes.
"""

from __future__ import annotations

import argparse
import collections
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

from ..files import atomic_write, permission_problem, read_first_line, remove_quietly
from ..formats import package, updatehistory
from ..formats.package import E_BUSY, E_PRECHECK, E_SCRIPT, E_UNEXPECTED, PackageError, Version
from .program import JobFailed, Program, main, write_log
from .protocol import JobKind

LINE_MAX = 64 * 1024

UPDATE = JobKind(
    name="update",
    title="an update",
    program="jidoteki_admin.jobs.update",
    log_name="update.log",
    label="SYSTEM",
    status_name="status_update",
    error_message_name="status_error_message.txt",
    error_code_name="status_error_code.txt",
    busy_code=E_BUSY,
    unexpected_code=E_UNEXPECTED,
    timeout_code=E_SCRIPT,
    interrupted_code=E_SCRIPT,
    appliance_command="update",
    appliance_script="update_vm.sh",
    appliance_reports=True,
    persists=True,
)


class UpdateProgram(Program):
    kind = UPDATE
    description = "Install an uploaded update package."
    interrupted_message = "Update interrupted by SIGTERM"

    def __init__(self, tree, args, status):
        super().__init__(tree, args, status)
        self.package: Path | None = None
        self.seen: list[Path] = []  # removed at the end, installed or not
        self.workdir: Path | None = None
        self.env: dict[str, str] = {}
        self.script_said = False

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--package", type=Path,
                            help="the uploaded package to install (default: the newest in the uploads folder)")
        parser.add_argument("--work-dir", type=Path,
                            help="where the package is decrypted and extracted (default: the tree's tmp/)")
        parser.add_argument("--precheck-seconds", type=float, default=PRECHECK_SECONDS,
                            help="how long the package's precheck.sh may run")

    def run(self) -> None:
        try:
            self._run()
        except PackageError as e:
            raise JobFailed(e.code, e.message) from None
        except PermissionError as e:
            # The job's user may not read the key or write its work folder (an appliance's
            # modes): which file, which user, where the fix is.
            raise JobFailed(self.kind.unexpected_code, permission_problem(e).replace("The daemon", "The job")) from None

    def _run(self) -> None:
        self.log("Updating system. Please wait..")
        self.step(10, "Looking for the update package")
        self.package = self.find_package()
        extracted = self.open_package()
        self.step(60, "Checking the update package version")
        offered = read_first_line(extracted / "version.txt") if (extracted / "version.txt").is_file() else None
        updatehistory.note_attempt(self.tree.update_attempt, to=(offered or "").strip() or None)
        version = self.check_version(extracted)
        # The environment of the package's scripts, the installed version as it is now.
        self.env = script_environment(self.tree, version, extracted)
        self.step(65, "Running the package's precheck")
        refused = run_precheck(extracted, self.env, self.log, self.args.precheck_seconds)
        if refused is not None:
            raise PackageError(E_PRECHECK, f"The package's precheck refused to install: {refused}")
        self.step(70, "Running the update script")
        own = OwnFiles.take(self.tree, self.workdir / "own-files")
        try:
            self.run_update_script(extracted, version)
        except PackageError as e:
            raise self.roll_back_update(extracted, version, own, e) from None
        except BaseException:
            own.put_back(self.log)  # stopped: at least the appliance's own files are as they were
            updatehistory.note_attempt(self.tree.update_attempt, **{"rolled-back": False})
            raise
        self.step(80, "Installing version.txt and changelog.txt")
        self.install_files(extracted)
        self.persist()
        self.step(100, "Updating system successful")

    def open_package(self) -> Path:
        """Decrypt, verify and extract the package (steps 20 to 50); the extracted folder."""
        work = self.args.work_dir or self.tree.tmp
        work.mkdir(parents=True, exist_ok=True)
        self.workdir = Path(tempfile.mkdtemp(prefix="update-", dir=work))
        self.changes().add_scratch(self.workdir)  # a package can be gigabytes: gone however the job ends

        self.step(20, f"Decrypting update package {self.package.name}")
        public_key = package.load_public_key(self.tree.update_public_key, root=self.tree.root)
        inner, digest, signature = package.unpack(
            self.package, self.tree.update_key, self.workdir,
            on_decrypted=lambda scheme: self.step(30, "Extracting update package"), root=self.tree.root)
        self.step(40, "Verifying update package signature")
        package.verify_digest(public_key, signature, digest)

        self.step(50, f"Extracting {inner.name}")
        extracted = self.workdir / "software_package"
        package.extract_safely(inner, extracted)
        remove_quietly(inner)  # a package can be gigabytes: free the space before update.sh
        return extracted

    def roll_back_update(self, extracted: Path, version: str, own: "OwnFiles", failure: PackageError) -> PackageError:
        """update.sh failed: run the package's rollback.sh, if it has one, and put back the
        appliance's own files (version.txt, changelog.txt, etc/ and bin/) as they were
        before update.sh, so GET /version never shows a version that did not install. The
        failure's message says whether the package rolled back."""
        script = extracted / "rollback.sh"
        if script.is_file():
            self.log("Running the package's rollback.sh")
            env = {**self.env, "JIDO_UPDATE_ERROR_CODE": failure.code or "", "JIDO_UPDATE_ERROR_MESSAGE": failure.message}
            status = run_script(extracted, "rollback.sh", env)
            rolled_back = status == 0
            how = "rolled back by the package's rollback.sh" if rolled_back else \
                f"not rolled back: rollback.sh failed with {_exit_status(status)}"
        else:
            rolled_back = False
            how = "not rolled back: the package has no rollback.sh"
        own.put_back(self.log)
        updatehistory.note_attempt(self.tree.update_attempt, **{"rolled-back": rolled_back})
        self.log(f"The update failed and was {how}")
        if self.script_said:
            return failure  # update.sh's own code and message, as the original reported them
        return PackageError(failure.code, f"{failure.message}; {how}")

    def find_package(self) -> Path:
        """The package named on the command line; by hand, the newest one uploaded.

        A daemon always names the file its request uploaded, so a package left over in
        the uploads folder can never be installed in its place.
        """
        if self.args.package is None:
            # By hand, as the old appliance did: every package seen now is removed at the
            # end; one uploaded while the job runs is left for the next update.
            self.seen = package.find_packages(self.tree.uploads)
            if not self.seen:
                raise PackageError(package.E_MISSING, "Missing update package")
            return self.seen[-1]
        if self.tree.uploads.resolve() not in self.args.package.resolve().parents:
            # Run as root through the privileged entry point, it must not be pointed at
            # (and, afterwards, remove) any file of the system: only at what was uploaded.
            raise PackageError(package.E_MISSING, "The update package must be in the uploads folder")
        self.seen = [self.args.package]
        if not self.args.package.is_file():
            raise PackageError(package.E_MISSING, "Missing update package")
        return self.args.package

    def check_version(self, extracted: Path) -> str:
        """Refuse a package that is not newer than the installed version (E1001).

        As the appliance's own update script did: versions compare by ``sort -V``, and only
        when both version.txt files exist; a package or appliance without one is installed
        without a comparison. Returns the package's version ("" when it has none).
        """
        path = extracted / "version.txt"
        new = (read_first_line(path) or "").strip() if path.is_file() else None
        installed = read_first_line(self.tree.version_file)
        if new is None or installed is None:
            missing = "The update package has no version.txt" if new is None else "No etc/version.txt"
            self.log(f"{missing}: installing without comparing versions")
            return new or ""
        installed = installed.strip()
        if not Version(new) > Version(installed):
            raise PackageError(package.E_VERSION, f"Update package version {new!r} is not newer "
                               f"than the installed version {installed!r}")
        self.log(f"Updating from version {installed} to {new}")
        return new

    def run_update_script(self, extracted: Path, version: str) -> None:
        """Run the package's update.sh as the original did: made executable and run as
        ``./update.sh`` from a shell in the extracted directory, so its own shebang applies
        (a script without one runs under /bin/sh), with the documented environment.

        Error files the script writes itself (etc/status_error_*.txt) are its word on why
        it failed, and are kept rather than replaced by a generic E1002.
        """
        script_path = extracted / "update.sh"
        if not script_path.is_file():
            self.log("No update script in the package")
            return
        before = self._error_files_stamp()
        status = run_script(extracted, "update.sh", self.env)
        if status != 0:
            own = self._errors_written_by_script(before)
            if own is not None:
                self.script_said = True  # its own words, reported as they are (the original's contract)
                raise PackageError(*own)
            raise PackageError(E_SCRIPT, f"Update script failed with {_exit_status(status)}")

    def _error_files(self) -> tuple[Path, Path]:
        return (self.tree.status_file(UPDATE.error_code_name), self.tree.status_file(UPDATE.error_message_name))

    def _error_files_stamp(self) -> tuple:
        return tuple(_stamp(path) for path in self._error_files())

    def _errors_written_by_script(self, before: tuple) -> tuple[str, str] | None:
        """(code, message) when update.sh wrote the error files during its run."""
        if self._error_files_stamp() == before:
            return None
        code, message = (read_first_line(path) for path in self._error_files())
        if not code or not message:
            return None
        return code.strip(), message.strip()

    def install_files(self, extracted: Path) -> None:
        """version.txt and changelog.txt together (swap.py): GET /version and /changelog
        never show one package's version with another's changelog. Committed at once:
        update.sh has run, so the package is installed, whatever comes next."""
        moves = self.changes()
        for name, target in (("version.txt", self.tree.version_file), ("changelog.txt", self.tree.changelog_file)):
            source = extracted / name
            if source.is_file():
                moves.stage_file(target, source.read_bytes(), 0o644)
        self.install(moves)
        self.commit()

    def clean_up(self) -> None:
        for path in self.seen:
            remove_quietly(path)
        if self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def failed(self, code, message: str) -> None:
        self.log(f"Failed updating system: {message}")


def script_environment(tree, version: str, extracted: Path) -> dict[str, str]:
    """What update.sh gets (docs/packages.md): a login-like environment of the user the
    job runs as, and where it is."""
    return {
        "PATH": os.environ.get("PATH") or "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "HOME": os.path.expanduser("~"),
        "LANG": os.environ.get("LANG") or "C.UTF-8",
        "JIDO_ADMIN_PATH": str(tree.root),
        "JIDO_UPDATE_VERSION": version,
        "JIDO_UPDATE_DIR": str(extracted),
        "JIDO_INSTALLED_VERSION": (read_first_line(tree.version_file) or "").strip(),
    }


def run_script(folder: Path, name: str, env: dict[str, str]) -> int:
    """Run a script of the package as the original ran update.sh: made executable and run
    as ``./NAME`` from a shell in the extracted folder, so its own shebang applies (one
    without runs under /bin/sh), its output going to the log line by line. It stays in the
    job's process group, which the runner kills as a whole on a timeout, so nothing it
    starts outlives the job. Returns its exit status (negative: the signal)."""
    path = folder / name
    path.chmod(path.stat().st_mode | 0o755)
    script = subprocess.Popen(["/bin/sh", "-c", f"./{name}"], cwd=folder, env=env, stdin=subprocess.DEVNULL,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        _pass_through(script.stdout)
    except BaseException:
        script.kill()  # interrupted: the script must not go on alone
        raise
    finally:
        script.stdout.close()
        status = script.wait()
    return status


PRECHECK_SECONDS = 60
PRECHECK_KEPT = 50  # lines of its output given as the reason for a refusal


def run_precheck(folder: Path, env: dict[str, str], log, seconds: float, kept: list[str] | None = None) -> str | None:
    """Run the package's optional precheck.sh (docs/packages.md): None when it allows the
    install (or there is none), else why not: its last lines of output, or that it did not
    finish within ``seconds``. It runs in a session of its own, killed whole on time.
    ``kept`` gets its last PRECHECK_KEPT lines whatever it says."""
    path = folder / "precheck.sh"
    if not path.is_file():
        log("No precheck.sh in the package")
        return None
    path.chmod(path.stat().st_mode | 0o755)
    log("Running the package's precheck.sh")
    last: collections.deque[str] = collections.deque(maxlen=PRECHECK_KEPT)
    script = subprocess.Popen(["/bin/sh", "-c", "./precheck.sh"], cwd=folder, env={**env, "JIDO_PRECHECK": "1"},
                              stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              start_new_session=True)
    group = _Group(script.pid)
    timer = threading.Timer(seconds, group.kill, (True,))
    timer.start()
    try:
        while chunk := script.stdout.readline(LINE_MAX):
            write_log(chunk if chunk.endswith(b"\n") else chunk + b"\n")
            last.append(chunk.decode("utf-8", "replace").rstrip("\n"))
        status = group.reaped(script)
    except BaseException:
        group.kill()
        group.reaped(script)
        raise
    finally:
        timer.cancel()
        script.stdout.close()
    if kept is not None:
        kept.extend(last)
    if group.expired:
        return f"precheck.sh did not finish within {int(seconds)} seconds"
    if status == 0:
        log("precheck.sh allows the update")
        return None
    said = " / ".join(line for line in list(last)[-3:] if line.strip())
    return f"precheck.sh exited with {_exit_status(status)}" + (f": {said}" if said else "")


class _Group:
    """A script's session, killed whole on time; never once its leader is reaped (its id
    could then be another process's)."""

    def __init__(self, pid: int):
        self.pid = pid
        self.lock = threading.Lock()
        self.done = False
        self.expired = False

    def kill(self, expired: bool = False) -> None:
        with self.lock:
            if self.done:
                return
            self.expired = self.expired or expired
            try:
                os.killpg(self.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass

    def reaped(self, process: subprocess.Popen) -> int:
        """Wait for the leader (its output is closed; it may still run, until the timer)."""
        while True:
            try:
                status = process.wait(timeout=0.5)
                break
            except subprocess.TimeoutExpired:
                continue
        with self.lock:
            self.done = True
        return status


def _exit_status(status: int) -> str:
    return f"exit status {status}" if status >= 0 else f"signal {-status}"


# What of etc/ the daemon (and jobs of other kinds) may write while an update runs: never
# put back over a newer one.
RUNTIME_FILES = {"health-history.json", "api.token", "api.token.setup", "api-tokens.json", "update-history.json"}
OWN_FILE_MAX = 16 * 1024 * 1024


class OwnFiles:
    """The appliance's own files as they were before update.sh: bin/ and the files at the
    top of etc/ (not the status files, nor what the daemon writes as it runs). After a
    failed update.sh they are put back: changed ones rewritten (through a link, to where
    it points), removed ones made again, new ones removed."""

    def __init__(self, tree, saved: Path, files: dict[Path, tuple[int, bytes | None]]):
        self.tree = tree
        self.saved = saved
        self.files = files  # path -> (mode, content) or (0, None) for one too large to keep

    @classmethod
    def take(cls, tree, saved: Path) -> "OwnFiles":
        files = {}
        for path in cls.scope(tree):
            try:
                info = path.stat()
                files[path] = (info.st_mode & 0o7777, path.read_bytes() if info.st_size <= OWN_FILE_MAX else None)
            except OSError:
                continue
        return cls(tree, saved, files)

    @staticmethod
    def scope(tree) -> list[Path]:
        found = []
        if tree.etc.is_dir():
            found += [p for p in tree.etc.iterdir() if p.is_file() and p.name not in RUNTIME_FILES
                      and not p.name.startswith("status")]
        if tree.bin.is_dir():
            found += [p for p in tree.bin.rglob("*") if p.is_file()]
        return found

    def put_back(self, log) -> None:
        changed = 0
        for path, (mode, content) in self.files.items():
            if content is None:
                continue
            try:
                if path.is_file() and path.read_bytes() == content and path.stat().st_mode & 0o7777 == mode:
                    continue
                atomic_write(path, content, mode)
                changed += 1
            except OSError as e:
                log(f"Could not put back {path}: {e.strerror or e}")
        for path in self.scope(self.tree):
            if path not in self.files:
                remove_quietly(path)
                changed += 1
        log(f"Put back {changed} of the appliance's own files as they were before the update" if changed
            else "The appliance's own files are as they were before the update")


def _stamp(path: Path) -> tuple | None:
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return (st.st_mtime_ns, st.st_size, st.st_ino)


def _pass_through(stream) -> None:
    """Copy a child's output to the log verbatim, line by line as it comes."""
    line = b"\n"
    while chunk := stream.readline(LINE_MAX):
        write_log(chunk)
        line = chunk
    if not line.endswith(b"\n"):  # keep the job's next log line on a line of its own
        write_log(b"\n")


if __name__ == "__main__":
    sys.exit(main(UpdateProgram))
