"""The audit trail: every authentication failure and every change, one JSON line each.

Lines never carry a secret: no token, hash, or uploaded content. The file is rotated by
size (the config's "log-rotate") and opened for each line, so an outside rotation needs
no signal.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

from ..config import LogRotate
from ..files import RotatingLog


class AuditLog:
    def __init__(self, path: Path, clock, rotate: LogRotate = LogRotate()):
        self.path = path
        self.clock = clock
        self.file = RotatingLog(path, rotate, 0o640)

    @property
    def rotate(self) -> LogRotate:
        return self.file.limits

    @rotate.setter
    def rotate(self, limits: LogRotate) -> None:
        self.file.limits = limits

    def record(self, request_id: str, client: str, action: str, target: str, outcome: str,
               token: str = "-") -> None:
        """One line; ``token`` names the token that acted (``admin`` for the API token, a
        named token's name), ``-`` when none was accepted."""
        entry = {
            "time": datetime.fromtimestamp(self.clock.seconds(), timezone.utc).isoformat(),
            "request": request_id,
            "client": client,
            "token": token,
            "action": action,
            "target": target,
            "outcome": outcome,
        }
        line = json.dumps(entry, separators=(",", ":")).encode() + b"\n"
        # O_APPEND keeps concurrent writers (jobs, hooks) from interleaving within a line.
        try:
            self.file.write(line)
        finally:
            self.file.close()


def client_host(request) -> str:
    """The client's address as the logs show it."""
    return getattr(request.getClientAddress(), "host", "-")
