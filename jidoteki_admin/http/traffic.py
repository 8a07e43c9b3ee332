"""What the daemon has answered, counted for GET /metrics.

The HTTP layer counts every answer by status as it logs it (refusals made before a body,
and connections refused whole, included); the API tells how many clients are being
slowed down for failing to authenticate. Counters only: nothing here is kept on disk, and
a restart starts them at zero, as Prometheus expects of a counter.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable


class Traffic:
    def __init__(self) -> None:
        self.answers: Counter[int] = Counter()
        self.throttled_clients: Callable[[], int] = lambda: 0  # the API replaces it

    def answered(self, status: int) -> None:
        self.answers[status] += 1
