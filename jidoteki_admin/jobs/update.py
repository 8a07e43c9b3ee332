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
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from .. import package
from ..files import read_first_line, remove_quietly
from ..package import E_BUSY, E_SCRIPT, E_UNEXPECTED, PackageError, Version
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

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--package", type=Path,
                            help="the uploaded package to install (default: the newest in the uploads folder)")
        parser.add_argument("--work-dir", type=Path,
                            help="where the package is decrypted and extracted (default: the tree's tmp/)")

    def run(self) -> None:
        try:
            self._run()
        except PackageError as e:
            raise JobFailed(e.code, e.message) from None

    def _run(self) -> None:
        self.log("Updating system. Please wait..")
        self.step(10, "Looking for the update package")
        self.package = self.find_package()
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

        self.step(60, "Checking the update package version")
        version = self.check_version(extracted)
        self.step(70, "Running the update script")
        self.run_update_script(extracted, version)
        self.step(80, "Installing version.txt and changelog.txt")
        self.install_files(extracted)
        self.persist()
        self.step(100, "Updating system successful")

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
        script_path.chmod(script_path.stat().st_mode | 0o755)
        before = self._error_files_stamp()
        # The script stays in the job's process group, which the runner kills as a whole
        # on a timeout, so nothing it starts outlives the job.
        script = subprocess.Popen(["/bin/sh", "-c", "./update.sh"], cwd=extracted,
                                  env=script_environment(self.tree, version, extracted),
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
            own = self._errors_written_by_script(before)
            if own is not None:
                raise PackageError(*own)
            how = f"exit status {status}" if status > 0 else f"signal {-status}"
            raise PackageError(E_SCRIPT, f"Update script failed with {how}")

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
    }


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
