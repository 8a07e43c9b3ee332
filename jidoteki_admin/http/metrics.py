"""GET /metrics in the Prometheus text format, written by ``prometheus-client``.

The figures are gathered per scrape (a Snapshot) and rendered through a registry of the
scrape's own, so nothing global is kept between scrapes and two daemons in one process
(tests) never share a metric. Names follow Prometheus's conventions: base units (bytes,
seconds), ``_total`` for counters, a ``_info`` metric for the version as a label.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, ProcessCollector, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, InfoMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4

CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4.encode()
PREFIX = "jidoteki_admin"
OUTCOMES = ("success", "failed", "running")


@dataclass(frozen=True)
class JobFacts:
    kind: str
    status: str | None  # running, success, failed; None: never ran
    started: float | None = None
    ended: float | None = None


@dataclass(frozen=True)
class Snapshot:
    version: str | None
    disk_used: int
    disk_total: int
    memory_used: int
    memory_total: int
    load5: float
    cpu_percent: float
    cpus: int
    certificate_expires: datetime.datetime | None
    now: float
    jobs: Sequence[JobFacts] = ()
    answers: Mapping[int, int] = field(default_factory=dict)
    throttled_clients: int = 0


class _Collector:
    def __init__(self, snapshot: Snapshot):
        self.snapshot = snapshot

    def collect(self) -> Iterator[Metric]:
        s = self.snapshot
        info = InfoMetricFamily(f"{PREFIX}_version", "The installed version (version.txt)", labels=["version"])
        info.add_metric([s.version or ""], {})
        yield info
        yield _gauge("disk_used_bytes", "Bytes used on the root filesystem", s.disk_used)
        yield _gauge("disk_size_bytes", "Size of the root filesystem in bytes", s.disk_total)
        yield _gauge("memory_used_bytes", "Memory in use (total less available) in bytes", s.memory_used)
        yield _gauge("memory_size_bytes", "Total memory in bytes", s.memory_total)
        yield _gauge("load5", "The 5-minute load average", s.load5)
        yield _gauge("cpu_percent", "CPU use over the last 5 minutes, percent of all cores", s.cpu_percent)
        yield _gauge("cpus", "Number of CPUs", s.cpus)
        if s.certificate_expires is not None:
            expires = s.certificate_expires.timestamp()
            yield _gauge("certificate_expiry_timestamp_seconds",
                         "When the certificate the API serves expires (Unix time)", expires)
            yield _gauge("certificate_days_left", "Whole days until the certificate the API serves expires "
                                                  "(negative once expired)", (expires - s.now) // 86400)
        outcome = GaugeMetricFamily(f"{PREFIX}_job_last_outcome",
                                    "1 for the outcome of the last job of each kind (running, success, failed)",
                                    labels=["kind", "outcome"])
        duration = GaugeMetricFamily(f"{PREFIX}_job_last_duration_seconds",
                                     "How long the last job of each kind ran (so far, while it runs)", labels=["kind"])
        ended = GaugeMetricFamily(f"{PREFIX}_job_last_end_timestamp_seconds",
                                  "When the last job of each kind ended (Unix time)", labels=["kind"])
        for job in s.jobs:
            if job.status is None:
                continue
            for name in OUTCOMES:
                outcome.add_metric([job.kind, name], 1.0 if job.status == name else 0.0)
            if job.started is not None:
                end = job.ended if job.ended is not None else s.now
                duration.add_metric([job.kind], max(0.0, end - job.started))
            if job.ended is not None:
                ended.add_metric([job.kind], job.ended)
        yield outcome
        yield duration
        yield ended
        requests = CounterMetricFamily(f"{PREFIX}_requests", "Requests answered, by status (refusals included)",
                                       labels=["status"])
        for status, count in sorted(s.answers.items()):
            requests.add_metric([str(status)], count)
        yield requests
        yield _gauge("throttled_clients", "Clients slowed down now for failing to authenticate", s.throttled_clients)


def _gauge(name: str, documentation: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(f"{PREFIX}_{name}", documentation, value=value)


def render(snapshot: Snapshot) -> bytes:
    """The text a scrape gets: the snapshot and the daemon's process figures."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Collector(snapshot))  # type: ignore[arg-type]
    ProcessCollector(registry=registry)
    return generate_latest(registry)
