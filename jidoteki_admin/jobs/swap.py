"""Replacing several files or directories together: all of them or none, whatever stops it.

A job that changes more than one thing (the three settings files, a certificate with its
key and CA, the top-level entries a restore puts back) stages every new entry beside its
target first, then swaps them in. A Swap keeps a journal while it does: the plan (each
target, its staged entry and where the previous one is kept) is written and fsynced
before the first move, and the journal says "done" only once every entry is in place
and whatever the job checks afterwards has passed (``commit``); it goes once the job has
said it succeeded (``close``). Each move is one
rename, fsynced, so the state of every entry can be read off the disk:

- the staged entry still there: not moved in yet; the target is the previous one;
- the staged entry gone: moved in; the previous one, if there was one, is kept aside.

So a job stopped by SIGTERM rolls back before it exits (``roll_back``), and one killed
outright, or lost with the power, is rolled back (or, once "done", finished) by the next
start (``recover``): the whole old state or the whole new state, never a mix.

A file replaced by a file is kept aside as a hard link, so the target is never missing
while it is replaced (a reader sees the old file or the new one); a directory (or a file
replaced by a directory, or the reverse) is renamed aside, then the new one renamed into
place. Targets that are symbolic links into a persistent mount are
replaced where the link leads, never the link itself (files.atomic_write does the same).
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..files import atomic_write, fsync_directory, remove_quietly, resolved_target

STAGING, MOVING, DONE = "staging", "moving", "done"
ROLLED_BACK, COMPLETED = "rolled back", "completed"


@dataclass(frozen=True)
class Entry:
    target: Path  # where the new entry goes (a link's destination, never the link)
    staged: Path  # the new entry, beside the target
    aside: Path  # where the previous one is kept until the swap is committed
    had_previous: bool

    def as_json(self) -> dict[str, object]:
        return {"target": str(self.target), "staged": str(self.staged), "aside": str(self.aside),
                "had-previous": self.had_previous}

    @classmethod
    def from_json(cls, value: dict[str, object]) -> Entry:
        return cls(Path(str(value["target"])), Path(str(value["staged"])), Path(str(value["aside"])),
                   bool(value["had-previous"]))


class SwapError(Exception):
    """The swap could not be done; everything it had moved is back as it was."""


class Swap:
    """Entries staged beside their targets, swapped in together under a journal.

    The journal is written as soon as the first entry (or scratch path) is staged, and
    again with each one, so that even a job killed while it stages leaves nothing behind:
    the next start removes what it had staged.
    """

    def __init__(self, journal: Path, log: Callable[[str], None] = lambda message: None,
                 checkpoint: Callable[[str], None] = lambda name: None):
        self.journal = journal
        self.log = log
        self.checkpoint = checkpoint  # called between moves (the fault tests stop a job there)
        self.entries: list[Entry] = []
        self.scratch: list[Path] = []  # the job's own work space, removed however it ends
        self.moving = False
        self.committed = False

    def add_scratch(self, path: Path) -> None:
        """A file or directory the job works in (a restore's staging directory, an
        update's decrypted package), removed whatever stops the job."""
        self.scratch.append(Path(path))
        self._note(STAGING)

    def stage_file(self, path: Path, data: bytes, mode: int, group: int | None = None,
                   owner: int | None = None) -> Path:
        """Write a new file for ``path`` beside where it leads; returns the target."""
        target = resolved_target(path)
        staged = target.with_name(f".{target.name}.staged")
        self.add(target, staged)  # noted before it exists: a kill in between leaves nothing unknown
        remove_quietly(staged)
        fd = os.open(staged, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        try:
            with os.fdopen(fd, "wb") as out:
                if group is not None or owner is not None:
                    os.fchown(out.fileno(), -1 if owner is None else owner, -1 if group is None else group)
                os.fchmod(out.fileno(), mode)
                out.write(data)
                out.flush()
                os.fsync(out.fileno())
        except BaseException:
            remove_quietly(staged)
            raise
        return target

    def add(self, target: Path, staged: Path) -> None:
        """Swap ``staged`` (a file or directory on the target's file system) in for
        ``target``, which may not exist yet."""
        aside = target.with_name(f".{target.name}.aside")
        self.entries.append(Entry(target, staged, aside, os.path.lexists(target)))
        self._note(STAGING)

    def _note(self, state: str) -> None:
        _write_journal(self.journal, state, self.entries, self.scratch)

    def install(self) -> None:
        """Move every staged entry into place, the previous ones kept aside; on any
        failure, put back what was moved and raise SwapError."""
        for entry in self.entries:
            _remove_entry(entry.aside)  # a stale one from a swap that never started
        self._note(MOVING)
        self.moving = True
        try:
            for number, entry in enumerate(self.entries):
                self.checkpoint(f"move{number}")
                _move_in(entry, self.checkpoint, f"move{number}.aside")
            self.checkpoint("moved")
        except OSError as e:
            self.roll_back()
            raise SwapError(f"could not move {e.filename or 'a file'} into place: {e.strerror or e}") from None

    def commit(self) -> None:
        """The new entries stay: the journal says so first, then the previous ones go. The
        journal stays, saying "done", until ``close``: a job killed after its commit and
        before it said so is finished by the recovery, and reported as having succeeded."""
        if not self.moving:
            return
        self._note(DONE)
        self.committed = True
        self.checkpoint("committed")
        _finish(self.entries, self.scratch)
        self.moving = False

    def close(self) -> None:
        """The job has said how it ended: its work space and the journal go."""
        if self.committed:
            forget(self.journal)
        elif not self.moving:
            _finish(self.entries, self.scratch)  # anything staged is removed
            if self.journal.exists():
                forget(self.journal)

    def roll_back(self) -> None:
        """Put every previous entry back (before the commit); the staged entries and the
        scratch paths are removed."""
        if not self.journal.exists():
            _finish(self.entries, self.scratch)
            return
        _undo(self.journal, self.entries, self.scratch, self.log)
        self.moving = False


def recover(journal: Path, log: Callable[[str], None] = lambda message: None) -> str | None:
    """Finish or undo the swap a journal describes: COMPLETED when it had been committed,
    ROLLED_BACK when not; None when there is no journal (nothing was left half-done).
    A completed swap's journal stays until ``forget``: its job says first that it
    succeeded (or a recovery cut short finishes it again)."""
    try:
        value = json.loads(journal.read_bytes())
        state = value["state"]
        entries = [Entry.from_json(e) for e in value["entries"]]
        scratch = [Path(str(p)) for p in value.get("scratch", [])]
    except FileNotFoundError:
        return None
    except (ValueError, KeyError, TypeError):
        # Written atomically, so never half-written: but not ours, or damaged. Nothing
        # was moved under a journal that could not be read, as it is written first.
        log(f"Ignoring the unreadable journal {journal}")
        remove_quietly(journal)
        return None
    if state == DONE:
        _finish(entries, scratch)
        return COMPLETED
    _undo(journal, entries, scratch, log)
    return ROLLED_BACK


def _move_in(entry: Entry, checkpoint: Callable[[str], None], aside: str) -> None:
    if entry.had_previous:
        if _is_dir(entry.target) or _is_dir(entry.staged):
            os.rename(entry.target, entry.aside)  # a rename cannot put a directory over a file, nor the reverse
        else:
            os.link(entry.target, entry.aside, follow_symlinks=False)
        fsync_directory(entry.target.parent)
        checkpoint(aside)
    os.replace(entry.staged, entry.target)
    fsync_directory(entry.target.parent)


def _undo(journal: Path, entries: list[Entry], scratch: list[Path], log: Callable[[str], None]) -> None:
    """Put each previous entry back, last first; safe to run again if it is itself cut
    short, since each step is read off the disk again."""
    for entry in reversed(entries):
        staged_there, aside_there = os.path.lexists(entry.staged), os.path.lexists(entry.aside)
        if not staged_there and os.path.lexists(entry.target):
            # Moved in (or, with no aside left, already put back by an undo cut short).
            if not entry.had_previous:
                os.rename(entry.target, entry.staged)  # the new one goes with the staged ones
            elif aside_there and not _is_dir(entry.aside) and not _is_dir(entry.target):
                os.replace(entry.aside, entry.target)  # a file comes back in one rename
                aside_there = False
            elif aside_there:
                os.rename(entry.target, entry.staged)
        if aside_there:
            if os.path.lexists(entry.target):
                _remove_entry(entry.aside)  # the previous file never left: this was a link to it
            else:
                os.rename(entry.aside, entry.target)
        fsync_directory(entry.target.parent)
        _remove_entry(entry.staged)
    for path in scratch:
        _remove_entry(path)
    if entries:
        log("Put back what was there before")
    forget(journal)


def _finish(entries: list[Entry], scratch: list[Path]) -> None:
    for entry in entries:
        _remove_entry(entry.aside)
        _remove_entry(entry.staged)
    for path in scratch:
        _remove_entry(path)


def forget(journal: Path) -> None:
    """Remove a journal whose swap is over (and whose job has said how it ended)."""
    remove_quietly(journal)
    fsync_directory(journal.parent)


def _write_journal(journal: Path, state: str, entries: list[Entry], scratch: list[Path]) -> None:
    journal.parent.mkdir(parents=True, exist_ok=True)
    value = {"state": state, "entries": [e.as_json() for e in entries], "scratch": [str(p) for p in scratch]}
    atomic_write(journal, json.dumps(value).encode(), 0o600)


def _is_dir(path: Path) -> bool:
    return path.is_dir() and not path.is_symlink()


def _remove_entry(path: Path) -> None:
    if _is_dir(path):
        shutil.rmtree(path, ignore_errors=True)
    else:
        remove_quietly(path)
