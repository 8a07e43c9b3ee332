"""The audit trail: every authentication failure and every change, one JSON line each.

Lines never carry a secret: no token, hash, or uploaded content.
"""

from __future__ import annotations

import json
import os
from datetime import datetime, timezone
from pathlib import Path


class AuditLog:
    def __init__(self, path: Path, clock):
        self.path = path
        self.clock = clock

    def record(self, request_id: str, client: str, action: str, target: str, outcome: str) -> None:
        entry = {
            "time": datetime.fromtimestamp(self.clock.seconds(), timezone.utc).isoformat(),
            "request": request_id,
            "client": client,
            "action": action,
            "target": target,
            "outcome": outcome,
        }
        line = json.dumps(entry, separators=(",", ":")).encode() + b"\n"
        # O_APPEND keeps concurrent writers (jobs, hooks) from interleaving within a line.
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o640)
        try:
            os.write(fd, line)
        finally:
            os.close(fd)


def client_host(request) -> str:
    """The client's address as the logs show it."""
    return getattr(request.getClientAddress(), "host", "-")
