"""The update history (GET /update/history) and the attempt it is made from.

An attempt is noted when an update starts (etc/jobs/update.attempt.json): the installed
version, the package. The update job adds what it learns (the package's version, whether
it rolled back). Once the update has ended, the attempt is settled into the history with
its outcome and times, by whichever daemon sees it first: the one that started it, or the
next one if it died first, even when the job ended while no daemon ran. The history keeps
the newest HISTORY_MAX attempts, newest first, and never one run twice.

Both the daemon and the update job use this module: it knows files, not the web.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..files import atomic_write

HISTORY_MAX = 100
FIELDS = ("run", "started", "ended", "seconds", "from", "to", "package", "outcome", "error-code",
          "error-message", "rolled-back")


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_bytes())
    except (OSError, ValueError):
        return None


def write_json(path: Path, value: Any) -> None:
    atomic_write(path, json.dumps(value, indent=1).encode() + b"\n", 0o644)


def note_attempt(path: Path, **facts: Any) -> None:
    """Add facts to the attempt being made (the update job calls it as it learns them)."""
    attempt = read_json(path)
    if not isinstance(attempt, dict):
        return  # run by hand, with no daemon noting the attempt: nothing to add to
    attempt.update(facts)
    write_json(path, attempt)


def entries(path: Path) -> list[dict[str, Any]]:
    value = read_json(path)
    history = value.get("history") if isinstance(value, dict) else None
    return [entry for entry in history if isinstance(entry, dict)] if isinstance(history, list) else []


def add(path: Path, entry: dict[str, Any], limit: int = HISTORY_MAX) -> bool:
    """Put an attempt at the top of the history; False when its run is there already."""
    history = entries(path)
    if entry.get("run") and any(old.get("run") == entry["run"] for old in history):
        return False
    write_json(path, {"history": [{name: entry.get(name) for name in FIELDS}, *history][:limit]})
    return True
