"""The appliance's persistence step, so a change survives the reboot of a live image.

On these appliances persisted files are symlinks into a persistent mount, and a change is
made durable by the appliance's own tooling, as the original daemon's wrapper did after
every successful change and before a reboot:

- ``bin/persist.sh`` in the admin tree, when the appliance has one; else
- when ``/usr/bin/symlinktool.sh`` and ``/etc/sysconfig/backup_device`` exist,
  ``symlinktool.sh -c DEVICE`` then ``symlinktool.sh -r DEVICE`` (DEVICE is the file's
  content without its first ``/``); else
- nothing: a plain host keeps its files anyway.

It runs in job programs (never in the daemon's reactor): after a success of a kind that
``persists``, and as the program jobs/persist.py after a token change.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

from .layout import AdminTree

SYMLINKTOOL = Path("/usr/bin/symlinktool.sh")
BACKUP_DEVICE = Path("/etc/sysconfig/backup_device")
STEP_TIMEOUT = 600

class PersistError(Exception):
    """The persistence step failed; the message says which command and how."""


def persistence_commands(tree: AdminTree, symlinktool: Path = SYMLINKTOOL,
                         backup_device: Path = BACKUP_DEVICE) -> list[list[str]]:
    """The commands that save this appliance's persistent files; none on a plain host."""
    hook = tree.hook("persist.sh")
    if hook is not None:
        return [[str(hook)]]
    if symlinktool.is_file() and backup_device.is_file():
        device = backup_device.read_text().strip().replace("/", "", 1)  # sed 's/\///'
        return [[str(symlinktool), "-c", device], [str(symlinktool), "-r", device]]
    return []


def persist(tree: AdminTree, log: Callable[[str], None], write: Callable[[bytes], None], **where: Path) -> None:
    """Run the persistence step, its output to ``write``; raises PersistError on failure."""
    for command in persistence_commands(tree, **where):
        log(f"Saving persistent files: {' '.join(command)}")
        try:
            done = subprocess.run(command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT, timeout=STEP_TIMEOUT, check=False)
        except (OSError, subprocess.TimeoutExpired) as e:
            raise PersistError(f"Could not save the persistent files: {e}") from None
        write(done.stdout if done.stdout.endswith(b"\n") or not done.stdout else done.stdout + b"\n")
        if done.returncode != 0:
            raise PersistError(f"Could not save the persistent files: {command[0]} "
                               f"ended with exit status {done.returncode}")


