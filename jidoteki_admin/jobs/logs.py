"""The log bundle job: logs.tar.gz of the admin tree's log/ and the directories the
appliance lists in etc/logs.txt, with the API token redacted.

    python -m jidoteki_admin.jobs.logs --admin-path DIR --out FILE

Like the original's ``tar --ignore-failed-read``, a listed path that is missing or
unreadable is logged and skipped. Every file goes into the bundle through a redacting
copy, so a token that ended up in a log line never leaves the appliance. The bundle is
written beside FILE and renamed into place once complete.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
import tarfile
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

from ..files import read_first_line, remove_quietly
from ..layout import AdminTree
from .program import JobFailed, Program, main
from .protocol import JobKind

REDACTED = b"REDACTED"
CHUNK = 1 << 20

LOGS = JobKind(
    name="logs",
    title="a log collection",
    program="jidoteki_admin.jobs.logs",
    log_name="logs.log",
    label="LOGS",
    group="logs",  # a download: it holds up no update, and none holds it up
    appliance_command="logs",
    privileged=True,  # the listed directories may be root's
)


class LogBundle:
    """Writes logs.tar.gz: the debug bundle job includes one too."""

    def __init__(self, tree: AdminTree, log: Callable[[str], None], work: Path):
        self.tree = tree
        self.log = log
        self.work = work  # where the redacted copies are made, on the bundle's file system

    def write(self, out: Path) -> None:
        """Write the bundle to ``out`` (a new file); raises OSError when it cannot."""
        secrets = token_secrets(self.tree)
        with open(out, "xb") as raw, tarfile.open(fileobj=raw, mode="w:gz") as tar:
            for path, arcname in self.sources():
                self.add(tar, path, arcname, secrets)

    def sources(self) -> Iterator[tuple[Path, str]]:
        """(path, name in the bundle): log/ as "log", then each listed path by its own
        absolute name without the leading "/"."""
        yield self.tree.log, "log"
        listed = self.tree.status_file("logs.txt")
        if not listed.is_file():
            self.log("No etc/logs.txt: only the admin tree's log/ is collected")
            return
        for entry in listed.read_text(errors="replace").split():
            path = Path(entry)
            if not path.is_absolute():
                self.log(f"Skipping {entry!r} in etc/logs.txt: not an absolute path")
                continue
            yield path, entry.lstrip("/")

    def add(self, tar: tarfile.TarFile, path: Path, arcname: str, secrets: list[bytes]) -> None:
        if not path.exists():
            self.log(f"Skipping {path}: not there")
            return
        if path.is_dir() and not path.is_symlink():
            for root, dirs, files in os.walk(path):
                dirs.sort()
                for name in sorted(files):
                    full = Path(root) / name
                    self.add_file(tar, full, f"{arcname}/{full.relative_to(path).as_posix()}", secrets)
            return
        self.add_file(tar, path, arcname, secrets)

    def add_file(self, tar: tarfile.TarFile, path: Path, arcname: str, secrets: list[bytes]) -> None:
        if path.is_symlink() or not path.is_file():
            return
        try:
            copy = redacted_copy(path, secrets, self.work)
        except OSError as e:
            self.log(f"Skipping {path}: {e.strerror or e}")
            return
        try:
            info = tar.gettarinfo(str(copy), arcname=arcname)
            info.mtime = int(path.stat().st_mtime)
            info.uid = info.gid = 0
            info.uname = info.gname = "root"
            with open(copy, "rb") as f:
                tar.addfile(info, f)
        finally:
            remove_quietly(copy)


def token_secrets(tree: AdminTree) -> list[bytes]:
    """What must never leave in a bundle: the API token and its HMAC key."""
    token = read_first_line(tree.token_file)
    if not token:
        return []
    return [token.encode(), hashlib.sha256(token.encode()).hexdigest().encode()]


class LogsProgram(Program):
    kind = LOGS
    description = "Collect the appliance's logs into logs.tar.gz, secrets redacted."

    def __init__(self, tree, args, status):
        super().__init__(tree, args, status)
        self.partial: Path | None = None

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--out", type=Path, required=True, help="where logs.tar.gz is written")

    def run(self) -> None:
        out: Path = self.args.out
        self.step(10, "Collecting log files")
        self.partial = out.with_name(f".{out.name}.{os.getpid()}.partial")
        try:
            LogBundle(self.tree, self.log, out.parent).write(self.partial)
            os.chmod(self.partial, 0o600)
            os.replace(self.partial, out)
        except OSError as e:
            raise JobFailed(None, f"Could not write the log bundle: {e.strerror or e}") from None
        self.partial = None
        self.step(100, f"Log bundle ready: {out.name}")

    def clean_up(self) -> None:
        if self.partial is not None:
            remove_quietly(self.partial)


def redacted_copy(path: Path, secrets: list[bytes], work: Path) -> Path:
    """A copy of the file with every secret replaced; line by line, so a secret is never
    split between two chunks (log lines are short; a line is cut at 1 MiB)."""
    fd, name = tempfile.mkstemp(prefix=".redact-", dir=work)
    try:
        with open(path, "rb") as src, os.fdopen(fd, "wb") as out:
            while line := src.readline(CHUNK):
                for secret in secrets:
                    line = line.replace(secret, REDACTED)
                out.write(line)
    except BaseException:
        remove_quietly(Path(name))
        raise
    return Path(name)


if __name__ == "__main__":
    sys.exit(main(LogsProgram))
