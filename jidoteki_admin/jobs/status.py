"""A job's status on disk: written by the job itself, read by the daemon.

The old appliance's scripts kept their status in files (etc/status_update.json and .txt,
etc/status_error_code.txt and status_error_message.txt) and the daemon only read them, so
an outcome stayed true whoever died first. The job programs here do the same: each writes
its status when it starts, at every step and, last of all, its outcome, every file
replaced atomically and fsynced. The runner reads them and writes one only for a job that
died without saying how it ended.

Every kind has a status: a kind the old appliance kept files for keeps their names and
formats (``{"status":"running","percentage":N}`` plus a line with the status word, and the
error files); one it kept none for has ``etc/status_<name>.json`` alone, holding the
error code and message beside the status. Both kinds of file can be read by anyone with
``cat``, and are written with the owner of etc/, so a job that ran as root leaves files
the daemon's user can replace.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from ..files import atomic_write, remove_quietly
from ..layout import AdminTree
from .protocol import ERROR_CODE, ERROR_MESSAGE, FAILED, PERCENTAGE, RUNNING, SUCCESS, JobKind

STATUS_MAX = 64 * 1024  # what is read of a status file
MESSAGE_MAX = 1000  # an error message longer than this is cut


@dataclass(frozen=True)
class JobStatus:
    status: str | None
    percentage: int | None = None
    error_message: str | None = None
    error_code: str | None = None

    @property
    def final(self) -> bool:
        return self.status in (SUCCESS, FAILED)


class StatusFiles:
    """The status files of one kind of job in the admin tree."""

    def __init__(self, tree: AdminTree, kind: JobKind):
        self.tree = tree
        self.kind = kind
        base = kind.status_base
        self.json = tree.status_file(f"{base}.json")
        self.legacy = kind.status_name is not None  # the old appliance's files, in its formats
        self.txt = tree.status_file(f"{base}.txt") if self.legacy else None
        self.error_message = tree.status_file(kind.error_message_name or f"{base}_error_message.txt") \
            if self.legacy else None
        self.error_code = tree.status_file(kind.error_code_name or f"{base}_error_code.txt") if self.legacy else None

    def paths(self) -> list[Path]:
        return [p for p in (self.json, self.txt, self.error_message, self.error_code) if p is not None]

    def read(self) -> JobStatus:
        """What the files say; JobStatus(None) before any job of the kind ran.

        The JSON file, unless the status word file says otherwise and is newer: some of the
        appliance's scripts write only the word (update_certs.sh), and older ones of each."""
        try:
            with open(self.json, "rb") as f:
                value = json.loads(f.read(STATUS_MAX))
        except FileNotFoundError:
            value = self._read_txt()  # older appliances' scripts write only the status word
        except ValueError:
            return JobStatus(None)  # being written by a script that does not replace it whole
        else:
            word = self._read_txt()
            if word is not None and isinstance(value, dict) and word["status"] != value.get("status") \
                    and (_mtime(self.txt) or 0) > (_mtime(self.json) or 0):
                value = word
        if not isinstance(value, dict):
            return JobStatus(None)
        status, percentage = value.get("status"), value.get(PERCENTAGE)
        if status not in (RUNNING, SUCCESS, FAILED):
            return JobStatus(None)
        if not isinstance(percentage, int) or isinstance(percentage, bool):
            percentage = None
        if status != FAILED:
            return JobStatus(status, percentage)
        if ERROR_CODE in value or ERROR_MESSAGE in value:
            return JobStatus(status, percentage, _text(value.get(ERROR_MESSAGE)), _text(value.get(ERROR_CODE)))
        return JobStatus(status, percentage, _read_text(self.error_message), _read_text(self.error_code))

    def _read_txt(self) -> dict[str, str] | None:
        word = _read_text(self.txt)
        return {"status": word} if word in (RUNNING, SUCCESS, FAILED) else None

    def stamp(self) -> tuple[int | None, ...]:
        """Changes whenever a status file is written, by a job, a script or the runner."""
        return tuple(_mtime(path) for path in (self.json, self.txt, self.error_code))

    def write(self, status: JobStatus) -> None:
        """Replace the status files, each atomically and durably; the status itself last,
        so whoever sees a final status also sees its error files."""
        owner = _owner_of(self.tree.etc)
        message = (status.error_message or "")[:MESSAGE_MAX]
        if self.legacy:
            assert self.error_message is not None and self.error_code is not None and self.txt is not None
            if status.status == FAILED:
                _write(self.error_message, message.encode() + b"\n", owner)
                _write(self.error_code, (status.error_code or "").encode() + b"\n", owner)
            else:
                remove_quietly(self.error_message)
                remove_quietly(self.error_code)
            _write(self.json, json.dumps({"status": status.status, PERCENTAGE: status.percentage}).encode() + b"\n",
                   owner)
            _write(self.txt, (status.status or "").encode() + b"\n", owner)
            return
        value: dict[str, object] = {"status": status.status, PERCENTAGE: status.percentage}
        if status.status == FAILED:
            value.update({ERROR_CODE: status.error_code, ERROR_MESSAGE: message})
        _write(self.json, json.dumps(value).encode() + b"\n", owner)


def _write(path: Path, data: bytes, owner: tuple[int, int] | None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)  # a job run by hand on a tree not yet laid out
    atomic_write(path, data, 0o644, None if owner is None else owner[1], None if owner is None else owner[0])


def _owner_of(directory: Path) -> tuple[int, int] | None:
    """(uid, gid) a file written as root takes: etc/'s, so the daemon can replace it."""
    if os.geteuid() != 0:
        return None
    try:
        info = os.stat(directory)
    except OSError:
        return None
    return info.st_uid, info.st_gid


def _mtime(path: Path | None) -> int | None:
    try:
        return os.stat(path).st_mtime_ns if path is not None else None
    except FileNotFoundError:
        return None


def _text(value: object) -> str | None:
    return str(value) if value else None


def _read_text(path: Path | None) -> str | None:
    if path is None:
        return None
    try:
        with open(path, "rb") as f:
            text = f.read(STATUS_MAX).decode("utf-8", "replace").strip()
    except FileNotFoundError:
        return None
    return text or None
