"""The license check job: the details of the installed license, as GET /license answers.

    python -m jidoteki_admin.jobs.license_check --admin-path DIR --out DETAILS.json

It runs bin/license.sh (which may need root, as on the original appliances) and writes
what it prints to DETAILS.json; empty output, anything but a JSON object or a non-zero
exit status fail the job with LICENSE_INVALID (GET /license answers 404). Without the
script, the default scheme checks etc/license.asc against etc/license.pub. It changes
nothing, so it keeps no status files and does not persist.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .license import HOOK, default_details, hook_details, write_details
from .program import Program, main
from .protocol import JobKind

LICENSE_CHECK = JobKind(
    name="license_check",
    title="a license check",
    program="jidoteki_admin.jobs.license_check",
    log_name="license_check.log",  # not update_license.log, which an appliance's root script may own
    label="LICENSE",
    group="license",  # never while a license is being installed
    timeout=120,
)


class LicenseCheckProgram(Program):
    kind = LICENSE_CHECK
    description = "Write the details of the installed license, as bin/license.sh (or etc/license.pub) gives them."

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--out", type=Path, required=True, help="where to write the license's details (JSON)")

    def run(self) -> None:
        if self.tree.hook(HOOK) is None:
            details = default_details(self)
        else:
            if not self.tree.license_file.is_file():
                self.log("No license is installed; asking bin/license.sh all the same")
            details = hook_details(self)
        write_details(self.args.out, details)


if __name__ == "__main__":
    sys.exit(main(LicenseCheckProgram))
