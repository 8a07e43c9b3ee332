"""The restore job: put a backup archive back under the backup root, all or nothing.

    python -m jidoteki_admin.jobs.restore --admin-path DIR --root /data --archive FILE --max-bytes N

It never runs as root (the original extracted as the unprivileged admin user): a bug in
the checks below still cannot write where the daemon's user cannot. Before anything is
written, every member is checked as update packages are (package.read_contents): no
absolute names, no ``..``, no link leaving the root, no device or FIFO, and the total
size under a cap (a compressed archive can expand a thousandfold). One bad member refuses
the whole archive. The archive is extracted into a staging directory inside the root,
then the top-level entries are swapped into place under a journal (swap.py): an entry it
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

from .. import package, swap
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

    def __init__(self, tree, args, status):
        super().__init__(tree, args, status)
        self.staging: Path | None = None

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
        try:
            package.extract_safely(args.archive, self.staging)
        except PackageError as e:
            raise JobFailed(None, self.reworded(e)) from None
        self.step(80, "Moving the restored files into place")
        self.move_into_place(sorted({n.split("/", 1)[0] for n in names if n}))
        self.request("persist")
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
        assert self.staging is not None
        moves = self.new_swap()
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
