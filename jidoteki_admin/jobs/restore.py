"""The restore job: put a backup archive back under the backup root, all or nothing.

    python -m jidoteki_admin.jobs.restore --admin-path DIR --root /data --archive FILE --max-bytes N

It never runs as root (the original extracted as the unprivileged admin user): a bug in
the checks below still cannot write where the daemon's user cannot. The archive is
extracted into a staging directory inside the root, every member checked before it is
written as update packages are (package.extract_safely): no absolute names, no ``..``, no
link leaving the root, no device or FIFO, nothing more than 128 directories deep, and the
declared sizes and the number of members under caps, counted as the headers are read (a
compressed archive can expand a thousandfold: it is refused as soon as it passes the cap,
not after expanding all of it). One bad member refuses the whole archive, and the staging
directory goes with it. Then the top-level entries are swapped into place under a journal
(swap.py): an entry it
replaces is kept aside until all are in place. A move that fails, a SIGTERM, a kill -9 or
a power cut at any moment leaves the previous data as it was (put back by the job itself,
or by the next start from the journal), or, once every entry is in, the restored data.
Then the job asks for the persistence step, which needs root.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

from ..formats import package
from ..formats.package import PackageError, UnsafeMember
from . import swap
from .program import JobFailed, Program, main
from .protocol import JobKind

RESTORE = JobKind(
    name="restore",
    title="a restore",
    program="jidoteki_admin.jobs.restore",
    log_name="update_restore.log",
    label="RESTORE",
    # update_backup.sh RESTORE, under the lock a backup takes too.
    appliance_command="backup",
    appliance_script="update_backup.sh",
    privileged=False,
)


class RestoreProgram(Program):
    kind = RESTORE
    description = "Restore a backup archive under the backup root."

    def __init__(self, tree, args, status):
        super().__init__(tree, args, status)
        self.staging: Path | None = None

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--root", type=Path, required=True, help="the backup root (/data)")
        parser.add_argument("--archive", type=Path, required=True, help="the uploaded backup.tar")
        parser.add_argument("--max-bytes", type=int, required=True, help="the most the archive may expand to")
        parser.add_argument("--max-members", type=int, default=None, help="the most members it may hold")

    def run(self) -> None:
        args = self.args
        self.step(10, "Checking and extracting the backup archive")
        root = args.root
        root.mkdir(parents=True, exist_ok=True)
        self.staging = Path(tempfile.mkdtemp(prefix=".restore-", dir=root))
        self.changes().add_scratch(self.staging)  # gone however the job ends, kill -9 included
        limits = package.ArchiveLimits(max_bytes=args.max_bytes, max_members=args.max_members)
        try:
            names = package.extract_safely(args.archive, self.staging, limits)
        except PackageError as e:
            raise JobFailed(None, self.reworded(e)) from None
        self.step(80, "Moving the restored files into place")
        self.move_into_place(sorted({n.split("/", 1)[0] for n in names if n}))
        self.request("persist")
        self.step(100, "Restore complete")

    @staticmethod
    def reworded(error: PackageError) -> str:
        if isinstance(error, UnsafeMember):
            return f"Refusing {error.shown!r} in the backup archive: {error.why}"
        if isinstance(error, package.ArchiveTooLarge):
            return f"Refusing the backup archive: {error.why}"
        return f"Unable to extract backup archive: {error.message.split(': ', 1)[-1]}"

    def move_into_place(self, tops: list[str]) -> None:
        assert self.staging is not None
        moves = self.changes()
        for top in tops:
            moves.add(self.args.root / top, self.staging / top)
        try:
            moves.install()
        except swap.SwapError as e:
            raise JobFailed(None, f"Could not move the restored files into place ({e}); "
                                  f"the previous data is back as it was") from None
        self.commit()

    def clean_up(self) -> None:
        if self.staging is not None:
            shutil.rmtree(self.staging, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main(RestoreProgram))
