"""The restore job: put a backup archive back under the backup root, all or nothing.

    python -m jidoteki_admin.jobs.restore --admin-path DIR --root /data --archive FILE --max-bytes N

It never runs as root (the original extracted as the unprivileged admin user): a bug in
the checks below still cannot write where the daemon's user cannot. Before anything is
written, every member is checked as update packages are (package.read_contents): no
absolute names, no ``..``, no link leaving the root, no device or FIFO, and the total
size under a cap (a compressed archive can expand a thousandfold). One bad member refuses
the whole archive. The archive is extracted into a staging directory inside the root,
then each top-level entry is moved into place; an entry it replaces is kept aside until
all are in place, and put back if any move fails, so a failed restore leaves the previous
data as it was.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path

from .. import package
from ..package import PackageError, UnsafeMember
from .program import JobFailed, Program, main
from .protocol import JobKind

RESTORE = JobKind(
    name="restore",
    title="a restore",
    program="jidoteki_admin.jobs.restore",
    log_name="update_restore.log",
    label="RESTORE",
    privileged=False,
)


class RestoreProgram(Program):
    kind = RESTORE
    description = "Restore a backup archive under the backup root."

    def __init__(self, tree, args, progress):
        super().__init__(tree, args, progress)
        self.staging: Path | None = None
        self.aside: Path | None = None

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--root", type=Path, required=True, help="the backup root (/data)")
        parser.add_argument("--archive", type=Path, required=True, help="the uploaded backup.tar")
        parser.add_argument("--max-bytes", type=int, required=True, help="the most the archive may expand to")

    def run(self) -> None:
        args = self.args
        self.step(10, "Checking the backup archive")
        names = self.check()
        self.step(40, "Extracting the backup archive")
        root = args.root
        root.mkdir(parents=True, exist_ok=True)
        self.staging = Path(tempfile.mkdtemp(prefix=".restore-", dir=root))
        self.aside = Path(tempfile.mkdtemp(prefix=".restore-old-", dir=root))
        try:
            package.extract_safely(args.archive, self.staging)
        except PackageError as e:
            raise JobFailed(None, self.reworded(e)) from None
        self.step(80, "Moving the restored files into place")
        self.move_into_place(sorted({n.split("/", 1)[0] for n in names if n}))
        self.step(100, "Restore complete")

    def check(self) -> list[str]:
        try:
            members, _ = package.read_contents(self.args.archive)
        except PackageError as e:
            raise JobFailed(None, self.reworded(e)) from None
        total = sum(m.size for m in members if m.isreg())
        if total > self.args.max_bytes:
            raise JobFailed(None, f"The backup archive expands to {total} bytes, more than the "
                                       f"{self.args.max_bytes} allowed")
        return ["/".join(p for p in m.name.split("/") if p not in ("", ".")) for m in members]

    @staticmethod
    def reworded(error: PackageError) -> str:
        if isinstance(error, UnsafeMember):
            return f"Refusing {error.member!r} in the backup archive: {error.why}"
        return f"Unable to extract backup archive: {error.message.split(': ', 1)[-1]}"

    def move_into_place(self, tops: list[str]) -> None:
        assert self.staging is not None and self.aside is not None
        moved: list[str] = []
        try:
            for top in tops:
                target = self.args.root / top
                if target.exists() or target.is_symlink():
                    os.replace(target, self.aside / top)
                os.replace(self.staging / top, target)
                moved.append(top)
        except OSError as e:
            self.roll_back(moved, tops)
            raise JobFailed(None, f"Could not move the restored files into place: {e.strerror or e}") from None

    def roll_back(self, moved: list[str], tops: list[str]) -> None:
        """Put back what the restore replaced, so the previous data stays as it was."""
        assert self.aside is not None
        for top in reversed(tops):
            target = self.args.root / top
            if top in moved:
                if target.is_dir() and not target.is_symlink():
                    shutil.rmtree(target, ignore_errors=True)
                else:
                    target.unlink(missing_ok=True)
            if (self.aside / top).exists() or (self.aside / top).is_symlink():
                os.replace(self.aside / top, target)

    def clean_up(self) -> None:
        for path in (self.staging, self.aside):
            if path is not None:
                shutil.rmtree(path, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main(RestoreProgram))
