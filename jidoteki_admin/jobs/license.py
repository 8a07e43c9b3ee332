"""The license install job: put a license in etc/license.asc, only if it is valid.

    python -m jidoteki_admin.jobs.license --admin-path DIR --candidate FILE --out DETAILS.json

Where the appliance has bin/license.sh, that script decides, as on the original appliances
(docs/operations.md): the candidate is installed atomically, the previous license kept
aside, and bin/license.sh run; it prints the license's details as a JSON object, and
printing nothing, anything but a JSON object, or a non-zero exit status means the license
is not valid: the previous license is put back and the job fails with the code
LICENSE_INVALID. Without the script, the default scheme (licensefile.py) checks the
candidate against etc/license.pub before anything is written. The details go to
DETAILS.json, which POST /license answers with; then the persistence step saves the
license for the next boot.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from .. import licensefile
from ..files import atomic_write, remove_quietly
from ..validate import Invalid, load_document
from .program import JobFailed, Program, main
from .protocol import JobKind

INVALID = "LICENSE_INVALID"
LICENSE_MAX = 1 << 20  # the upload cap of the license field
OUTPUT_MAX = 64 * 1024
HOOK = "license.sh"
HOOK_TIMEOUT = 60

LICENSE_INSTALL = JobKind(
    name="license",
    title="a license installation",
    program="jidoteki_admin.jobs.license",
    log_name="update_license.log",
    label="LICENSE",
    status_name="status_license",
    group="license",
    timeout=300,
    appliance_command="license",
    persists=True,
)


def aside_files(tree) -> tuple[Path, Path]:
    """Where an installation keeps the previous license (or notes there was none) until
    the new one is accepted: on disk, so a job killed outright (kill -9, a power cut) still
    leaves the next license job a way to put it back."""
    return tree.tmp / "license-previous.asc", tree.tmp / "license-previous.none"


def set_aside(tree, previous: bytes | None) -> None:
    kept, none = aside_files(tree)
    if previous is None:
        atomic_write(none, b"", 0o600)
    else:
        atomic_write(kept, previous, 0o600)


def put_back(tree) -> bool:
    """Put back the license an unfinished installation set aside; True if there was one."""
    kept, none = aside_files(tree)
    if kept.is_file():
        atomic_write(tree.license_file, kept.read_bytes(), 0o644)
    elif none.exists():
        remove_quietly(tree.license_file)
    else:
        return False
    forget_aside(tree)
    return True


def forget_aside(tree) -> None:
    for path in aside_files(tree):
        remove_quietly(path)


def recover(program: Program) -> None:
    """Every license job starts by undoing an installation that died half-way."""
    if put_back(program.tree):
        program.log("Put back the license an interrupted installation had replaced")


def hook_details(program: Program) -> dict[str, Any]:
    """The details bin/license.sh prints for the installed license, or JobFailed (with
    the code LICENSE_INVALID) when it says the license is not valid."""
    hook = program.tree.hook(HOOK)
    assert hook is not None
    program.log(f"Running {hook}")
    sys.stdout.flush()
    try:
        done = subprocess.run([str(hook)], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                              cwd=program.tree.root, timeout=HOOK_TIMEOUT, check=False)
    except subprocess.TimeoutExpired:
        raise JobFailed(None, f"bin/{HOOK} did not finish within {HOOK_TIMEOUT} seconds") from None
    except OSError as e:
        raise JobFailed(None, f"Cannot run bin/{HOOK}: {e.strerror or e}") from None
    if done.returncode != 0:
        raise JobFailed(INVALID, f"The license is not valid: bin/{HOOK} exited with status {done.returncode}")
    if not done.stdout.strip():
        raise JobFailed(INVALID, f"The license is not valid: bin/{HOOK} printed nothing")
    try:
        return load_document(done.stdout, f"bin/{HOOK} output", OUTPUT_MAX)
    except Invalid as e:
        raise JobFailed(INVALID, f"The license is not valid: {e}") from None


def default_details(program: Program, data: bytes | None = None) -> dict[str, Any]:
    """The details of a license (by default the installed one) under the default scheme."""
    tree = program.tree
    try:
        if data is None:
            return licensefile.check_file(tree.license_file, tree.license_public_key)
        return licensefile.check(data, tree.license_public_key)
    except licensefile.LicenseError as e:
        raise JobFailed(INVALID, str(e)) from None


def write_details(path: Path, details: dict[str, Any]) -> None:
    atomic_write(path, json.dumps(details, separators=(",", ":")).encode(), 0o644)


class LicenseProgram(Program):
    kind = LICENSE_INSTALL
    description = "Install a license in etc/license.asc if bin/license.sh (or etc/license.pub) accepts it."

    def __init__(self, tree, args, progress):
        super().__init__(tree, args, progress)
        self.previous: bytes | None = None
        self.replaced = False  # the candidate is in place and the previous one aside
        self.succeeded = False

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--candidate", type=Path, required=True, help="the uploaded license file")
        parser.add_argument("--out", type=Path, required=True, help="where to write the license's details (JSON)")

    def run(self) -> None:
        recover(self)
        self.step(10, "Checking the license")
        data = self.candidate()
        if self.tree.hook(HOOK) is None:
            details = default_details(self, data)
            atomic_write(self.tree.license_file, data, 0o644)
        else:
            self.install(data)
            self.step(50, f"Checking the license with bin/{HOOK}")
            details = hook_details(self)
        write_details(self.args.out, details)
        self.succeeded = True
        self.step(100, "License installed")

    def candidate(self) -> bytes:
        try:
            with open(self.args.candidate, "rb") as f:
                data = f.read(LICENSE_MAX + 1)
        except OSError as e:
            raise JobFailed(None, f"Cannot read the uploaded license: {e.strerror}") from None
        if not data.strip():
            raise JobFailed(INVALID, "The license file is empty")
        if len(data) > LICENSE_MAX:
            raise JobFailed(INVALID, f"The license file is larger than {LICENSE_MAX} bytes")
        return data

    def install(self, data: bytes) -> None:
        """Put the candidate in place, keeping the previous license to put back."""
        target = self.tree.license_file
        try:
            self.previous = target.read_bytes()
        except FileNotFoundError:
            self.previous = None
        set_aside(self.tree, self.previous)
        self.replaced = True
        atomic_write(target, data, 0o644)

    def clean_up(self) -> None:
        """A license that was not accepted never stays: the previous one goes back."""
        if not self.replaced:
            return
        if self.succeeded:
            forget_aside(self.tree)
            return
        target = self.tree.license_file
        if self.previous is None:
            remove_quietly(target)
        else:
            atomic_write(target, self.previous, 0o644)
        forget_aside(self.tree)
        self.log("The previous license is back in place")


if __name__ == "__main__":
    sys.exit(main(LicenseProgram))
