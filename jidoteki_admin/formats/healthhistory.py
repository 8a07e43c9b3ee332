"""The appliance's health over time, for the dashboard's Monitor charts (GET /health/history).

Three tiers, as the original's collectd graphs had them: a sample every 10 seconds for the
last hour, one a minute (the average of that minute's samples) for the last day, one an
hour (the average of that hour's minutes) for the last year. A tier is rolled up from the
one below when a sample opens a new minute or hour; since the finer tier still holds the
whole minute (or hour) then, nothing but the samples themselves needs keeping, and a
history read back from its file after a restart goes on exactly where it was.

Pure data: no Twisted, no files opened here (the sampler in sections/information.py reads
the figures, keeps the file and serves the answer).
"""

from __future__ import annotations

import json
import math
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

FIELDS = ("time", "load", "cpu", "memory", "disk", "rx", "tx")
FORMAT = 1


@dataclass(frozen=True)
class Tier:
    name: str
    seconds: int  # one sample per this many seconds
    keep: int  # samples kept


FINE = Tier("10s", 10, 360)  # an hour
MINUTE = Tier("1m", 60, 1440)  # a day
HOUR = Tier("1h", 3600, 8760)  # a year
TIERS = (FINE, MINUTE, HOUR)

# What each range the API offers is read from, and how far back it goes.
RANGES = {
    "hour": (FINE, 3600),
    "day": (MINUTE, 86400),
    "week": (HOUR, 7 * 86400),
    "month": (HOUR, 31 * 86400),
    "year": (HOUR, 366 * 86400),
}

Sample = tuple[Any, ...]  # (time, load, cpu, memory, disk, rx, tx); a figure may be None


class HealthHistory:
    def __init__(self) -> None:
        self.tiers: dict[str, deque[Sample]] = {tier.name: deque(maxlen=tier.keep) for tier in TIERS}

    def add(self, sample: Sample) -> bool:
        """Record a 10-second sample; True when it rolled a minute up (time to save)."""
        if len(sample) != len(FIELDS):
            raise ValueError(f"a sample has {len(FIELDS)} figures: {', '.join(FIELDS)}")
        fine = self.tiers[FINE.name]
        if fine and sample[0] <= fine[-1][0]:
            return False  # the clock went back: keep the series in order
        rolled = False
        if fine and _bucket(sample[0], MINUTE) != _bucket(fine[-1][0], MINUTE):
            rolled = self._roll(FINE, MINUTE, _bucket(fine[-1][0], MINUTE))
            minutes = self.tiers[MINUTE.name]
            if rolled and len(minutes) > 1 and _bucket(minutes[-1][0], HOUR) != _bucket(minutes[-2][0], HOUR):
                self._roll(MINUTE, HOUR, _bucket(minutes[-2][0], HOUR))
        fine.append(tuple(sample))
        return rolled

    def _roll(self, source: Tier, target: Tier, bucket: int) -> bool:
        """Average the ``source`` samples of one ``target`` period into ``target``."""
        start = bucket * target.seconds
        rolled = self.tiers[target.name]
        if rolled and rolled[-1][0] >= start:
            return False  # already rolled (a history read back from its file)
        inside = [s for s in self.tiers[source.name] if start <= s[0] < start + target.seconds]
        if not inside:
            return False
        rolled.append((start, *(_mean([s[i] for s in inside], FIELDS[i]) for i in range(1, len(FIELDS)))))
        return True

    def answer(self, range_name: str, now: float) -> list[dict[str, Any]]:
        """The samples of a range (a key of RANGES) up to ``now``, as the API gives them."""
        tier, span = RANGES[range_name]
        since = now - span
        return [dict(zip(FIELDS, s)) for s in self.tiers[tier.name] if s[0] >= since]

    def dumps(self) -> bytes:
        return json.dumps({"format": FORMAT, "fields": FIELDS,
                           "tiers": {name: list(samples) for name, samples in self.tiers.items()}},
                          separators=(",", ":")).encode()

    @classmethod
    def loads(cls, data: bytes) -> HealthHistory:
        """A history read back; ValueError when the file is not one (it is then started afresh)."""
        value = json.loads(data)
        if not isinstance(value, dict) or value.get("format") != FORMAT or list(value.get("fields", [])) != list(FIELDS):
            raise ValueError("not a health history of this format")
        tiers = value.get("tiers", {})
        if not isinstance(tiers, dict):
            raise ValueError("the tiers are an object")
        history = cls()
        for tier in TIERS:
            samples = tiers.get(tier.name, [])
            history.tiers[tier.name].extend(_checked(samples))
        return history


def _bucket(time: float, tier: Tier) -> int:
    return int(time // tier.seconds)


def _mean(values: Iterable[Any], field: str) -> float | int | None:
    """The mean of the known values: the load to 2 decimals (as /health gives it), the
    percentages and rates whole."""
    known = [float(v) for v in values if v is not None]
    if not known:
        return None
    mean = sum(known) / len(known)
    return round(mean, 2) if field == "load" else round(mean)


def _checked(samples: Any) -> list[Sample]:
    if not isinstance(samples, list):
        raise ValueError("a tier is a list of samples")
    found: list[Sample] = []
    for sample in samples:
        if not (isinstance(sample, list) and len(sample) == len(FIELDS) and all(_number_or_none(v) for v in sample)
                and sample[0] is not None):
            raise ValueError(f"not a sample: {sample!r}")
        if found and sample[0] <= found[-1][0]:
            raise ValueError("samples out of order")
        found.append(tuple(sample))
    return found


def _number_or_none(value: Any) -> bool:
    if value is None:
        return True
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def rate(before: Sequence[int] | None, after: Sequence[int], seconds: float) -> tuple[int | None, int | None]:
    """Bytes a second received and sent between two readings of the interface counters."""
    if before is None or seconds <= 0:
        return None, None
    rx, tx = (after[i] - before[i] for i in range(2))
    if rx < 0 or tx < 0:  # the counters were reset (an interface went away)
        return None, None
    return round(rx / seconds), round(tx / seconds)
