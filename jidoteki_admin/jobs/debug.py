"""The debug bundle job: the appliance's debug commands' output and its logs, encrypted
for the vendor (debugbundle.py describes the format).

    python -m jidoteki_admin.jobs.debug --admin-path DIR --out FILE

Each line of etc/debug.txt, up to its first ``;``, is a command run by /bin/sh with a
timeout, as the original ran them; its output goes to debug-N.log under a
``Running: <command>`` line. logs.tar.gz (as GET /logs builds it) is added, which the
original meant to and never did. The bundle is encrypted to etc/updates.pub, which must
be an RSA key.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

from ..formats import debugbundle
from ..formats.crypto import CryptoError
from .logs import LogBundle
from .program import JobFailed, Program, main
from .protocol import JobKind

COMMAND_TIMEOUT = 60
OUTPUT_MAX = 16 * 1024 * 1024  # per command: a runaway command must not fill the disk

DEBUG = JobKind(
    name="debug",
    title="a debug bundle",
    program="jidoteki_admin.jobs.debug",
    log_name="debug.log",
    label="DEBUG",
    group="logs",
    appliance_command="debug",
    privileged=True,  # the original ran the debug commands as root
)


def debug_commands(listing: Path) -> list[str]:
    """The commands of etc/debug.txt: each line up to its first ";", blank ones skipped."""
    if not listing.is_file():
        return []
    commands = []
    for line in listing.read_text(errors="replace").splitlines():
        command = line.split(";", 1)[0].strip()
        if command:
            commands.append(command)
    return commands


class DebugProgram(Program):
    kind = DEBUG
    description = "Build the encrypted debug bundle for the vendor."

    def __init__(self, tree, args, status):
        super().__init__(tree, args, status)
        self.work: Path | None = None

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--out", type=Path, required=True, help="where debug-bundle.tar is written")

    def run(self) -> None:
        out: Path = self.args.out
        self.work = Path(tempfile.mkdtemp(prefix=".debug-", dir=out.parent))
        commands = debug_commands(self.tree.status_file("debug.txt"))
        self.step(10, f"Running {len(commands)} debug command(s)")
        for number, command in enumerate(commands, 1):
            self.run_command(number, command)
        self.step(60, "Collecting log files")
        try:
            LogBundle(self.tree, self.log, self.work).write(self.work / "logs.tar.gz")
            self.step(80, "Encrypting the debug bundle")
            plain = self.work / debugbundle.PLAIN_NAME
            with tarfile.open(plain, "w:gz") as tar:
                for path in sorted(self.work.iterdir()):
                    if path.name != plain.name:
                        tar.add(path, arcname=path.name)
            key = self.tree.update_public_key
            debugbundle.seal(plain, key, out, shown=str(key.relative_to(self.tree.root)))
        except CryptoError as e:
            raise JobFailed(None, f"Could not encrypt the debug bundle: {e}") from None
        except OSError as e:
            raise JobFailed(None, f"Could not write the debug bundle: {e.strerror or e}") from None
        self.step(100, f"Debug bundle ready: {out.name}")

    def run_command(self, number: int, command: str) -> None:
        assert self.work is not None
        output = self.work / f"debug-{number}.log"
        with open(output, "wb") as out:
            out.write(f"Running: {command}\n".encode())
            out.flush()
            try:
                subprocess.run(["/bin/sh", "-c", f"{command} 2>&1 | head -c {OUTPUT_MAX}"],
                               stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                               timeout=COMMAND_TIMEOUT, check=False)
            except subprocess.TimeoutExpired:
                out.write(f"\n(stopped after {COMMAND_TIMEOUT} seconds)\n".encode())
                self.log(f"Debug command {number} stopped after {COMMAND_TIMEOUT} seconds")

    def clean_up(self) -> None:
        if self.work is not None:
            shutil.rmtree(self.work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main(DebugProgram))
