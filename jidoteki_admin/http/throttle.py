"""Slowing down failed authentication, per client address, without blocking anyone.

Each client address has a token bucket: ``burst`` failures are free, one more is earned
every ``refill_seconds``. A failure the bucket cannot pay for is answered after a delay
that doubles with the debt (1, 2, 4, ... up to ``max_delay`` seconds), so guessing from
one address, in parallel or not, gets slower the longer it goes on, while the right token
from any address is answered at once. The caller waits with the clock (deferLater,
callLater); nothing here sleeps.

A client in debt is in a throttling episode: it is logged and audited once when it starts
and once when the bucket is full again, so a flood of guesses cannot flood the logs. The
table of addresses is bounded; IPv6 clients are counted per /64, the block one host gets.
"""

from __future__ import annotations

import ipaddress
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from ..config import AuthThrottle

MAX_CLIENTS = 10_000  # addresses remembered; the least recently seen is forgotten first
MAX_DEBT = 32  # failures owed beyond the burst; bounds how long recovery takes


@dataclass
class _Bucket:
    level: float
    stamp: float
    throttled: int = 0  # failures delayed in the current episode
    timer: object = None  # the check for the episode's end

    def refill(self, now: float, settings: AuthThrottle) -> None:
        earned = (now - self.stamp) / settings.refill_seconds
        self.level = min(settings.burst, self.level + earned)
        self.stamp = now


class FailureThrottle:
    """Token buckets of authentication failures, per client address."""

    def __init__(self, clock, settings: AuthThrottle, on_episode: Callable[[str, str, int], None],
                 max_clients: int = MAX_CLIENTS):
        self.clock = clock
        self.settings = settings  # replaced on SIGHUP
        self.on_episode = on_episode  # (client, "start" or "end", failures delayed)
        self.max_clients = max_clients
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()

    def failed(self, host: str) -> float:
        """Count a failure from ``host``; the seconds to wait before answering it."""
        key = client_key(host)
        bucket = self._bucket(key)
        bucket.level = max(bucket.level - 1, -MAX_DEBT)
        if bucket.level >= 0:
            return 0.0
        if not bucket.throttled:
            self.on_episode(key, "start", 0)
        bucket.throttled += 1
        if bucket.timer is None:
            self._check_later(key, bucket)
        return min(self.settings.max_delay, 2.0 ** (-bucket.level - 1))

    def throttled(self, host: str) -> bool:
        """Whether ``host`` is in a throttling episode (its failures are not audited one
        by one)."""
        bucket = self._buckets.get(client_key(host))
        return bucket is not None and bucket.throttled > 0

    def throttled_clients(self) -> int:
        """How many clients are being slowed down now (GET /metrics)."""
        return sum(1 for bucket in self._buckets.values() if bucket.throttled > 0)

    def stop(self) -> None:
        """Forget every client and cancel the pending checks (the daemon stops)."""
        for bucket in self._buckets.values():
            if bucket.timer is not None and bucket.timer.active():
                bucket.timer.cancel()
        self._buckets.clear()

    def __len__(self) -> int:
        return len(self._buckets)

    def _bucket(self, key: str) -> _Bucket:
        now = self.clock.seconds()
        bucket = self._buckets.get(key)
        if bucket is None:
            while len(self._buckets) >= self.max_clients:
                self._forget(*self._buckets.popitem(last=False))
            bucket = self._buckets[key] = _Bucket(self.settings.burst, now)
        else:
            self._buckets.move_to_end(key)
            bucket.refill(now, self.settings)
        return bucket

    def _check_later(self, key: str, bucket: _Bucket) -> None:
        """Look again once the bucket would be full: that ends the episode."""
        wait = (self.settings.burst - bucket.level) * self.settings.refill_seconds
        bucket.timer = self.clock.callLater(max(wait, 0.001), self._check, key, bucket)

    def _check(self, key: str, bucket: _Bucket) -> None:
        bucket.timer = None
        if self._buckets.get(key) is not bucket:
            return
        bucket.refill(self.clock.seconds(), self.settings)
        if bucket.level >= self.settings.burst:
            del self._buckets[key]
            self._forget(key, bucket)
        else:
            self._check_later(key, bucket)

    def _forget(self, key: str, bucket: _Bucket) -> None:
        if bucket.timer is not None and bucket.timer.active():
            bucket.timer.cancel()
        bucket.timer = None
        if bucket.throttled:
            self.on_episode(key, "end", bucket.throttled)


def client_key(host: str) -> str:
    """Whom a bucket is for: an IPv4 address, or the /64 of an IPv6 one (a single host
    commonly has a whole /64 to pick addresses from)."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network(f"{address}/64", strict=False))
    return host
