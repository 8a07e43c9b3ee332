"""The license install job: put a license in etc/license.asc, only if it is valid.

    python -m jidoteki_admin.jobs.license --admin-path DIR --candidate FILE --out DETAILS.json

Where the appliance has bin/license.sh, that script decides, as on the original appliances
(docs/operations.md): the candidate is swapped in under a journal (swap.py), the previous
license kept aside, and bin/license.sh run; it prints the license's details as a JSON
object, and printing nothing, anything but a JSON object, or a non-zero exit status means
the license is not valid: the previous license is put back and the job fails with the
code LICENSE_INVALID. A job killed before the script accepted the license is undone by the
next start. Without the script, the default scheme (licensefile.py) checks the
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

from ..files import atomic_write
from ..formats import licensefile
from ..formats.validate import Invalid, load_document
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

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--candidate", type=Path, required=True, help="the uploaded license file")
        parser.add_argument("--out", type=Path, required=True, help="where to write the license's details (JSON)")

    def run(self) -> None:
        self.step(10, "Checking the license")
        data = self.candidate()
        if self.tree.hook(HOOK) is None:
            details = default_details(self, data)
            atomic_write(self.tree.license_file, data, 0o644)
        else:
            moves = self.changes()
            moves.stage_file(self.tree.license_file, data, 0o644)
            self.install(moves)
            self.step(50, f"Checking the license with bin/{HOOK}")
            details = hook_details(self)
        write_details(self.args.out, details)
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

    def rolled_back(self, code: str | None, message: str) -> tuple[str | None, str]:
        self.log("The previous license is back in place")
        return code, message


if __name__ == "__main__":
    sys.exit(main(LicenseProgram))
