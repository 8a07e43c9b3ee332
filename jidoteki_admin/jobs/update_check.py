"""The update check: what a package is, and whether it would install, changing nothing.

The daemon's job runner starts it as

    python -m jidoteki_admin.jobs.update_check --admin-path DIR --package FILE --report FILE [--stage]

It takes the steps of an update up to the update script: decrypt, verify the signature,
extract, compare versions, and run the package's own precheck.sh (docs/packages.md). It
writes what it found to the report (JSON) and removes the package, or with ``--stage``,
when the package would install, keeps it in the staged folder with a note of what it is
(GET /update/staged) for POST /update/apply. Nothing else of the appliance changes: the
extracted files live in a work folder removed however the job ends.

The job fails (and the API answers 400) when the package cannot be read as a package at
all; a package that is readable but would not install (not newer, refused by its
precheck) is a successful check whose report says why not.
"""

from __future__ import annotations

import argparse
import datetime
import os
import sys
from pathlib import Path

from ..files import read_first_line
from ..formats import package, updatehistory
from ..formats.package import E_BUSY, E_SCRIPT, E_UNEXPECTED, PackageError
from .program import main
from .protocol import JobKind
from .update import UpdateProgram, run_precheck, script_environment

CHANGELOG_MAX = 64 * 1024

UPDATE_CHECK = JobKind(
    name="update_check",
    title="an update check",
    program="jidoteki_admin.jobs.update_check",
    log_name="update-check.log",
    label="CHECK",
    busy_code=E_BUSY,
    unexpected_code=E_UNEXPECTED,
    timeout_code=E_SCRIPT,
    interrupted_code=E_SCRIPT,
    privileged=False,  # it installs nothing: it runs as the daemon's user, precheck.sh too
)


class CheckProgram(UpdateProgram):
    kind = UPDATE_CHECK
    description = "Check an uploaded update package without installing it."
    interrupted_message = "Update check interrupted by SIGTERM"

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        super().add_arguments(parser)
        parser.add_argument("--report", type=Path, required=True, help="where to write what the check found (JSON)")
        parser.add_argument("--stage", action="store_true",
                            help="keep a package that would install, for POST /update/apply")

    def _run(self) -> None:
        self.log(f"Checking update package {self.args.package.name if self.args.package else ''}".rstrip())
        self.step(10, "Looking for the update package")
        self.package = self.find_package()
        size = self.package.stat().st_size
        extracted = self.open_package()
        self.step(60, "Checking the update package version")
        version, installed, problem = self.compare(extracted)
        changelog = _text(extracted / "changelog.txt", CHANGELOG_MAX)
        output: list[str] = []
        if problem is None:
            self.step(70, "Running the package's precheck")
            refused = run_precheck(extracted, script_environment(self.tree, version or "", extracted), self.log,
                                   self.args.precheck_seconds, output)
            if refused is not None:
                problem = f"The package's precheck refused to install: {refused}"
        report = {
            "package": self.package.name,
            "size": size,
            "version": version,
            "installed": installed,
            "changelog": changelog,
            "installable": problem is None,
            "problem": problem,
            "precheck": output if (extracted / "precheck.sh").is_file() else None,
            "staged": False,
        }
        if self.args.stage and problem is None:
            self.step(90, "Staging the package")
            report["staged"] = True
            self.stage(report)
        updatehistory.write_json(self.args.report, report)
        self.log(f"The package would install: version {version}" if problem is None else
                 f"The package would not install: {problem}")
        self.step(100, "Update check done")

    def compare(self, extracted: Path) -> tuple[str | None, str | None, str | None]:
        """(the package's version, the installed one, why it would not install or None)."""
        try:
            version = self.check_version(extracted) or None
        except PackageError as e:
            path = extracted / "version.txt"
            version = (read_first_line(path) or "").strip() or None
            return version, _installed(self.tree), e.message
        return version, _installed(self.tree), None

    def stage(self, report: dict) -> None:
        """Keep the package where apply finds it, and note what it is; the note last, so a
        staged package is one whose note says so."""
        staged_dir = self.tree.staged_packages
        staged_dir.mkdir(parents=True, exist_ok=True)
        target = staged_dir / (package.PACKAGE_PREFIX + _label(report.get("version")) + package.PACKAGE_SUFFIX)
        os.replace(self.package, target)
        self.seen = []  # staged, not to be removed
        updatehistory.write_json(self.tree.staged_update, {
            "package": target.name,
            "uploaded-as": report["package"],
            "version": report["version"],
            "installed": report["installed"],
            "size": report["size"],
            "staged": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        })

    def failed(self, code, message: str) -> None:
        self.log(f"The update package cannot be checked: {message}")


CHECK_PREFIX = "checking-"  # the uploads' subfolder a package waits in while it is checked


def _installed(tree) -> str | None:
    value = read_first_line(tree.version_file)
    return value.strip() if value else None


def _text(path: Path, limit: int) -> str | None:
    try:
        with open(path, "rb") as f:
            data = f.read(limit + 1)
    except OSError:
        return None
    text = data[:limit].decode("utf-8", "replace")
    return text + ("\n[...]" if len(data) > limit else "")


def _label(version: str | None) -> str:
    safe = "".join(c if c.isalnum() or c in "._-" else "_" for c in (version or "staged"))[:100]
    return safe or "staged"


if __name__ == "__main__":
    sys.exit(main(CheckProgram))
