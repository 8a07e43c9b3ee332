"""The backup job: backup.tar of what etc/backup.txt lists under the backup root.

    python -m jidoteki_admin.jobs.backup --admin-path DIR --root /data --out FILE --status FILE

etc/backup.txt holds whitespace-separated globs, relative to the backup root and expanded
there, as on the original appliances; a listed path that matches nothing is logged and
skipped. The previous archive goes first: only the archive backup.json describes is ever
there, so a failed or stopped backup never leaves an older one looking current. Before
writing, the archive's size is estimated and the job refuses when it would leave less
than 16 MiB free. GNU tar writes the archive beside FILE (as fast as tar can be), the job
hashes it as it grows, and it is renamed into place, mode 0600. The status file is the
original's backup.json: {"status":"running"}, then {"status":"success","filesize":"<du -h>",
"sha256":"...","created":"<ISO 8601, UTC>"} or {"status":"failed"}, without a trailing
newline.
"""

from __future__ import annotations

import argparse
import datetime
import glob
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from ..files import atomic_write, remove_quietly
from .program import JobFailed, Program, main
from .protocol import JobKind

FREE_MARGIN = 16 * 1024 * 1024
TAR_BLOCK = 512
CHUNK = 1 << 20

BACKUP = JobKind(
    name="backup",
    title="a backup",
    program="jidoteki_admin.jobs.backup",
    log_name="update_backup.log",
    label="LIVE IMAGE",
    appliance_command="backup",
)
# POST /backup action=STOP on an appliance whose update_backup.sh does the work: it stops
# the running backup itself (by the PID in its lock, which it does not take) and deletes
# the archive. The daemon's own stop is the runner's (sections/backup.py).
BACKUP_STOP = JobKind(
    name="backup_stop",
    title="stopping a backup",
    program="jidoteki_admin.jobs.backup",
    log_name="update_backup.log",
    label="LIVE IMAGE",
    group="backup_stop",
    appliance_command="backup",
    appliance_locks=False,
)


def write_status(path: Path, value: dict[str, str]) -> None:
    atomic_write(path, json.dumps(value, separators=(",", ":")).encode(), 0o644)


def listed_paths(listing: Path, root: Path, log) -> list[str]:
    """The paths etc/backup.txt names, relative to the root, each glob expanded there."""
    if not listing.is_file():
        raise JobFailed(None, "Nothing to back up: etc/backup.txt is missing")
    found: list[str] = []
    for pattern in listing.read_text(errors="replace").split():
        if pattern.startswith("/") or ".." in Path(pattern).parts:
            log(f"Skipping {pattern!r}: not a path inside the backup root")
            continue
        matches = sorted(glob.glob(pattern, root_dir=root))
        if not matches:
            log(f"Skipping {pattern!r}: nothing there")
        found.extend(m for m in matches if m not in found)
    if not found:
        raise JobFailed(None, "Nothing to back up: no path listed in etc/backup.txt exists")
    return found


def estimated_size(root: Path, paths: list[str]) -> int:
    """What tar will write, near enough: every file rounded up to blocks, a header each,
    and the end-of-archive blocks."""
    total = 2 * 10240
    for relative in paths:
        top = root / relative
        entries = [top] if not top.is_dir() or top.is_symlink() else [
            Path(d) / n for d, dirs, files in os.walk(top) for n in dirs + files] + [top]
        for entry in entries:
            total += TAR_BLOCK
            if entry.is_file() and not entry.is_symlink():
                total += -(-entry.stat().st_size // TAR_BLOCK) * TAR_BLOCK
    return total


class BackupProgram(Program):
    kind = BACKUP
    description = "Write backup.tar of the paths etc/backup.txt lists under the backup root."

    def __init__(self, tree, args, status):
        super().__init__(tree, args, status)
        self.partial: Path | None = None
        self.succeeded = False

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--root", type=Path, required=True, help="the backup root (/data)")
        parser.add_argument("--out", type=Path, required=True, help="backup.tar to write")
        parser.add_argument("--status", type=Path, required=True, help="backup.json to keep up to date")

    def run(self) -> None:
        args = self.args
        write_status(args.status, {"status": "running"})
        remove_quietly(args.out)
        self.step(10, "Validating backup file size")
        paths = listed_paths(self.tree.status_file("backup.txt"), args.root, self.log)
        needed, free = estimated_size(args.root, paths), shutil.disk_usage(args.out.parent).free
        if free - needed < FREE_MARGIN:
            raise JobFailed(None, f"Not enough free space for the backup: it needs about {needed} bytes "
                                  f"and {free} are free (at least {FREE_MARGIN} must stay free)")
        self.step(20, "Starting backup")
        self.partial = args.out.with_name(f".{args.out.name}.partial")
        digest = self.tar(paths)
        os.chmod(self.partial, 0o600)  # the appliance's data: for the daemon's user alone
        os.replace(self.partial, args.out)
        self.partial = None
        size = du_h(args.out)
        created = datetime.datetime.fromtimestamp(args.out.stat().st_mtime, datetime.timezone.utc)
        self.log(f"Created file: {args.out} - size: {size} - hash: {digest}")
        self.step(100, "Backup complete")
        write_status(args.status, {"status": "success", "filesize": size, "sha256": digest,
                                   "created": created.strftime("%Y-%m-%dT%H:%M:%SZ")})
        self.succeeded = True

    def tar(self, paths: list[str]) -> str:
        """GNU tar writes the archive straight to its file, and this process hashes the file
        as it grows, one core each: the archive is written once and read back from the page
        cache, where a pipe through tee would copy every byte three more times."""
        assert self.partial is not None
        remove_quietly(self.partial)  # what the hash reads from is tar's alone
        with tempfile.TemporaryFile() as errors:  # a file: tar never waits on a full pipe
            tar = subprocess.Popen(["tar", "-C", str(self.args.root), "-cf", str(self.partial), "--null", "-T", "-"],
                                   stdin=subprocess.PIPE, stderr=errors)
            assert tar.stdin is not None
            try:
                tar.stdin.write(b"\0".join(p.encode() for p in paths) + b"\0")
                tar.stdin.close()
            except BrokenPipeError:
                pass  # tar ended before reading the list: its status and its words say why
            try:
                digest = hash_growing_file(self.partial, lambda: tar.poll() is not None)
            finally:
                tar.wait()
                errors.seek(0)
                said = errors.read().decode("utf-8", "replace").strip()
                if said:
                    self.log(said)
        if tar.returncode != 0:
            raise JobFailed(None, f"tar ended with exit status {tar.returncode}")
        return digest

    def clean_up(self) -> None:
        if self.partial is not None:
            remove_quietly(self.partial)
        if not self.succeeded:
            remove_quietly(self.args.out)  # renamed into place before a stop: it is not what backup.json says
            write_status(self.args.status, {"status": "failed"})


def hash_growing_file(path: Path, finished, pause: float = 0.005) -> str:
    """The SHA-256 of a file another process is still writing, read behind the writer:
    when the reader catches up it waits ``pause`` seconds, until ``finished()`` says the
    writer has ended; then it reads to the end once more. Only appends are followed (tar
    never seeks back), so every byte is hashed exactly once."""
    digest, buffer = hashlib.sha256(), bytearray(CHUNK)
    view = memoryview(buffer)
    while not path.exists():  # tar creates it on its first write
        if finished():
            if not path.exists():  # asked again: tar may have made it and ended meanwhile
                return digest.hexdigest()
            break
        time.sleep(pause)
    with open(path, "rb", buffering=0) as archive:
        while True:
            done = finished()  # asked before reading: what was written before it ended is read below
            while count := archive.readinto(buffer):
                digest.update(view[:count])
            if done:
                return digest.hexdigest()
            time.sleep(pause)


def du_h(path: Path) -> str:
    """The size as ``du -h`` prints it, which the original's clients show."""
    done = subprocess.run(["du", "-h", str(path)], capture_output=True, check=False)
    return done.stdout.split(b"\t", 1)[0].decode() if done.returncode == 0 else str(path.stat().st_size)


if __name__ == "__main__":
    sys.exit(main(BackupProgram))
