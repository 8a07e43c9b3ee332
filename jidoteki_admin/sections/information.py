"""Section 7: version, changelog, build, health and its history, the list of endpoints; and
(an addition) all of it with the jobs' outcomes and the daemon's answers as Prometheus
metrics at GET /metrics."""

from __future__ import annotations

import datetime
import json
import os
from collections import deque
from collections.abc import Callable
from pathlib import Path

import psutil
from twisted.application.service import Service
from twisted.internet.task import LoopingCall
from twisted.internet.defer import maybeDeferred
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger

from ..context import Context
from ..files import CachedFirstLine, atomic_write
from ..formats.certificates import days_left, expiry_warning, iso
from ..formats.healthhistory import FIELDS, RANGES, HealthHistory, rate
from ..http import metrics, responses
from ..http.catalogue import JSON, PLAIN_TEXT, READ, Endpoint, Reply, Section, get
from ..http.responses import APIError
from ..jobs.update import UPDATE

SAMPLE_INTERVAL = 10.0
BUILD_MAX = 1024 * 1024
SAMPLE_WINDOW = 300.0


_TEXT = {"type": "string"}
VERSION_SCHEMA = {"type": "object", "properties": {"version": _TEXT}, "required": ["version"]}
_USAGE = {"type": "object", "properties": {"used": _TEXT, "total": _TEXT, "percentage": {"type": "integer"}}}
HEALTH_SCHEMA = {
    "type": "object",
    "properties": {
        "disk": _USAGE,
        "memory": _USAGE,
        "cpu": {
            "type": "object",
            "properties": {"num": {"type": "integer"}, "load": _TEXT, "cpu5min": {"type": "number"}},
        },
        # An addition: the TLS certificate in service, with a warning near its expiry.
        "certificate": {
            "type": "object",
            "properties": {"subject": _TEXT, "expires": _TEXT, "days-left": {"type": "integer"}, "warning": _TEXT},
            "required": ["subject", "expires", "days-left"],
        },
    },
}
_FIGURE = {"type": ["number", "null"]}
HISTORY_SCHEMA = {
    "type": "object",
    "properties": {
        "range": {"enum": list(RANGES)},
        "interval": {"type": "integer"},
        "cores": {"type": "integer"},
        "samples": {
            "type": "array",
            "items": {"type": "object", "properties": {name: _FIGURE for name in FIELDS}, "required": list(FIELDS)},
        },
    },
    "required": ["range", "interval", "cores", "samples"],
}
ENDPOINTS_SCHEMA = {"type": "object", "properties": {"endpoints": {"type": "array", "items": _TEXT}}}


class Information:
    name = "information"
    optional = False

    def __init__(self, context: Context):
        self.tree = context.tree
        # Read for every GET /version: looked at once a second, and at once when an update
        # ends, before its status says so (a version.txt changed by hand shows within a second).
        self.version_file = CachedFirstLine(context.tree.version_file, context.clock)
        context.runner.when_finished(UPDATE, lambda outcome: self.version_file.invalidate())
        self._version_body: tuple[str | None, bytes] = (None, b"")
        self.build_file = context.config.build_file
        self.sampler = CpuSampler(context.clock)
        self.history = HistorySampler(context.clock, context.tree.health_history,
                                      write=writer_in_thread(context.reactor))
        self.sampler.listeners.append(self.history.record)
        self.catalogue = context.catalogue
        self.tls = context.tls
        self.clock = context.clock
        self.runner = context.runner
        self.traffic = context.traffic

    def services(self):
        return [self.history, self.sampler]  # the history is read back before the first sample

    def section(self) -> Section:
        return Section(self.name, "Information", (
            Endpoint("/version", (get(self.version, "The installed version", Reply(JSON, VERSION_SCHEMA),
                                      errors=(404,), scope=READ),)),
            Endpoint("/changelog", (get(self.changelog, "The installed changelog", Reply(PLAIN_TEXT),
                                        errors=(404,), scope=READ),)),
            Endpoint("/build", (get(self.build, "The appliance's build information",
                                    Reply(JSON, {"type": "object"}), errors=(404, 500), scope=READ),)),
            Endpoint("/health", (get(self.health, "Disk, memory and CPU use", Reply(JSON, HEALTH_SCHEMA), scope=READ),)),
            Endpoint("/health/history", (get(self.health_history,
                                             "CPU load, memory, disk and network traffic over time "
                                             "(?range=hour, day, week, month or year)",
                                             Reply(JSON, HISTORY_SCHEMA), errors=(400,), scope=READ),)),
            Endpoint("/endpoints", (get(self.endpoint_list, "The endpoints this appliance serves",
                                        Reply(JSON, ENDPOINTS_SCHEMA), scope=READ),)),
            Endpoint("/metrics", (get(self.metrics, "Health, certificate, version, jobs and requests as Prometheus "
                                      "metrics (text format 0.0.4)", Reply(PLAIN_TEXT), scope=READ),)),
        ))

    def version(self, request) -> bytes:
        version = self.version_file.read()
        if version is None:
            raise APIError(404, "Version file not found")
        if self._version_body[0] != version:  # the JSON is made once per version, not per request
            self._version_body = (version, responses.compact_json({"version": version.strip()}))
        return responses.body(request, 200, self._version_body[1], responses.JSON)

    def changelog(self, request):
        return responses.stream_file(request, self.tree.changelog_file, responses.TEXT, no_cache=True)

    def build(self, request) -> bytes:
        """build.json as it is, byte for byte, as the original served it (once checked to be
        JSON: a broken file is a 500 naming it, not garbage a client chokes on)."""
        try:
            with open(self.build_file, "rb") as f:
                data = f.read(BUILD_MAX + 1)
        except FileNotFoundError:
            raise APIError(404, "Build file not found") from None
        try:
            if len(data) > BUILD_MAX:
                raise ValueError("too large")
            json.loads(data)
        except ValueError:
            raise APIError(500, f"Build file {self.build_file} is not valid JSON") from None
        request.setHeader(b"Cache-Control", b"no-cache")
        return responses.body(request, 200, data, responses.JSON)

    def health(self, request) -> bytes:
        """Disk, memory and CPU now. ``cpu5min`` is the 5-minute load average, as the
        original served it: its dashboard marks the CPU red at ``cpu5min >= num``, so the
        unit is the number of cores. The sampled CPU percentage is ``cpu5minPercent``."""
        disk = psutil.disk_usage("/")
        memory = psutil.virtual_memory()
        memory_used = memory.total - memory.available
        load = os.getloadavg()
        report = {
            "disk": {
                "used": human_size(disk.used),
                "total": human_size(disk.total),
                "percentage": _percent(disk.used, disk.total),
            },
            "memory": {
                "used": human_size(memory_used, "M"),
                "total": human_size(memory.total, "M"),
                "percentage": _percent(memory_used, memory.total),
            },
            "cpu": {
                "num": psutil.cpu_count() or 1,
                "load": ", ".join(f"{value:.2f}" for value in load),
                "cpu5min": round(load[1], 2),
                "cpu5minPercent": self.sampler.average(),
            },
        }
        certificate = self.certificate()
        if certificate is not None:
            report["certificate"] = certificate
        return responses.document(request, report, no_cache=True)

    def certificate(self) -> dict | None:
        """The certificate the HTTPS listener serves: when it expires, and a ``warning``
        once fewer than 30 days are left (or it has expired)."""
        served = self.tls.served()
        if served is None:
            return None
        now = datetime.datetime.fromtimestamp(self.clock.seconds(), datetime.timezone.utc)
        facts: dict = {"subject": served.subject, "expires": iso(served.not_after),
                       "days-left": days_left(served.not_after, now)}
        warning = expiry_warning(served.not_after, now)
        if warning is not None:
            facts["warning"] = warning
        return facts

    def health_history(self, request) -> bytes:
        """The samples of one range: every 10 s for the last hour, every minute for a day,
        every hour for a week, a month or a year."""
        wanted = request.args.get(b"range", [b"hour"])[-1].decode("utf-8", "replace") or "hour"
        if wanted not in RANGES:
            raise APIError(400, f"Unknown range: {wanted}. Allowed: {', '.join(RANGES)}")
        tier, _ = RANGES[wanted]
        return responses.document(request, {
            "range": wanted,
            "interval": tier.seconds,
            "cores": psutil.cpu_count() or 1,
            "samples": self.history.history.answer(wanted, self.history.clock.seconds()),
        }, no_cache=True)

    def metrics(self, request) -> bytes:
        """What GET /health and GET /jobs say, and how many requests were answered with
        each status, for a Prometheus scrape (docs/fleet.md has alert rules)."""
        disk = psutil.disk_usage("/")
        memory = psutil.virtual_memory()
        served = self.tls.served()
        jobs = []
        for name, kind in sorted(self.runner.kinds.items()):
            run = self.runner.run(kind)
            jobs.append(metrics.JobFacts(name, self.runner.status(kind).status,
                                         run.started if run else None, run.ended if run else None))
        version = self.version_file.read()
        snapshot = metrics.Snapshot(
            version=version.strip() if version else None,
            disk_used=disk.used, disk_total=disk.total,
            memory_used=memory.total - memory.available, memory_total=memory.total,
            load5=round(os.getloadavg()[1], 2), cpu_percent=self.sampler.average(), cpus=psutil.cpu_count() or 1,
            certificate_expires=served.not_after if served else None, now=self.clock.seconds(),
            jobs=jobs, answers=dict(self.traffic.answers), throttled_clients=self.traffic.throttled_clients())
        request.setHeader(b"Cache-Control", b"no-store")
        return responses.body(request, 200, metrics.render(snapshot), metrics.CONTENT_TYPE)

    def endpoint_list(self, request) -> bytes:
        return responses.document(request, {"endpoints": self.catalogue.listed()}, no_cache=True)


UNITS = "KMGTPE"


def human_size(size: int, unit: str | None = None) -> str:
    """Sizes as `df -h` and `free -m` print them: "3.4G", "234G", "260M"."""
    if unit is not None:
        return f"{round(size / 1024 ** (UNITS.index(unit) + 1))}{unit}"
    if size < 1024:
        return f"{size}B"
    value, index = size / 1024, 0
    while value >= 1024 and index < len(UNITS) - 1:
        value, index = value / 1024, index + 1
    number = f"{value:.1f}"
    if float(number) >= 10:  # 9.96 is "10G", as df -h writes it, not "10.0G"
        number = f"{round(value)}"
    return number + UNITS[index]


def _percent(part: int, whole: int) -> int:
    return round(100 * part / whole) if whole else 0


class CpuSampler(Service):
    """Samples the CPU every few seconds so /health can give a 5-minute average at once."""

    def __init__(self, clock, read_percent=lambda: psutil.cpu_percent(interval=None)):
        self.clock = clock
        self.read_percent = read_percent
        self.samples: deque[float] = deque(maxlen=int(SAMPLE_WINDOW / SAMPLE_INTERVAL))
        self.listeners: list[Callable[[float], None]] = []  # each sample is also theirs
        self._loop: LoopingCall | None = None

    def startService(self) -> None:
        super().startService()
        self.read_percent()  # psutil's first reading only sets its baseline
        self._loop = LoopingCall(self._sample)
        self._loop.clock = self.clock
        self._loop.start(SAMPLE_INTERVAL, now=False)

    def stopService(self):
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        return super().stopService()

    def _sample(self) -> None:
        percent = self.read_percent()
        self.samples.append(percent)
        for listener in self.listeners:
            listener(percent)

    def average(self) -> int:
        if not self.samples:
            return 0
        return round(sum(self.samples) / len(self.samples))


def read_figures() -> tuple[float, int, int, tuple[int, int]]:
    """The 5-minute load, memory and disk use in percent (as /health counts them), and the
    bytes received and sent on every interface so far."""
    disk = psutil.disk_usage("/")
    memory = psutil.virtual_memory()
    network = psutil.net_io_counters()
    return (round(os.getloadavg()[1], 2), _percent(memory.total - memory.available, memory.total),
            _percent(disk.used, disk.total), (network.bytes_recv, network.bytes_sent))


def writer_in_thread(reactor):
    """Saves the history in the reactor's thread pool: a few hundred KB and an fsync,
    every minute, are not for the thread that answers requests."""
    def write(path: Path, data: bytes):
        return deferToThreadPool(reactor, reactor.getThreadPool(), atomic_write, path, data, 0o644)
    return write


def _write_now(path: Path, data: bytes):
    return maybeDeferred(atomic_write, path, data, 0o644)


class HistorySampler(Service):
    """Keeps the health history: one sample with each CPU sample (every 10 s), saved to a
    small file in the admin tree when a minute is complete and when the daemon stops, read
    back when it starts, so a restart loses nothing."""

    log = Logger()

    def __init__(self, clock, path: Path, read=read_figures, write=_write_now):
        self.clock = clock
        self.path = path
        self.read = read
        self.write = write
        self.history = HealthHistory()
        self._counters: tuple[float, tuple[int, int]] | None = None

    def startService(self) -> None:
        super().startService()
        try:
            self.history = HealthHistory.loads(self.path.read_bytes())
        except FileNotFoundError:
            pass
        except (OSError, ValueError) as e:
            self.log.warn("The health history {path} cannot be read ({error}); it starts afresh",
                          path=str(self.path), error=str(e))

    def stopService(self):
        try:
            atomic_write(self.path, self.history.dumps(), 0o644)  # stopping: no thread to wait for
        except OSError as e:
            self.log.warn("The health history could not be saved: {error}", error=str(e))
        return super().stopService()

    def record(self, cpu_percent: float) -> None:
        now = self.clock.seconds()
        try:
            load, memory, disk, counters = self.read()
        except OSError as e:
            self.log.warn("Health figures could not be read: {error}", error=str(e))
            return
        before = self._counters
        rx, tx = rate(before[1] if before else None, counters, now - before[0] if before else 0)
        self._counters = (now, counters)
        if self.history.add((int(now), load, round(cpu_percent), memory, disk, rx, tx)):
            self.write(self.path, self.history.dumps()).addErrback(
                lambda failure: self.log.warn("The health history could not be saved: {error}",
                                              error=failure.getErrorMessage()))
