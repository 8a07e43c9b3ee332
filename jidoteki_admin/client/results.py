"""What the API answers, as typed values: a caller reads ``health.disk.percentage`` rather
than digging in dictionaries, and a type checker sees a misspelt field. Every value keeps
the document it was read from in ``raw``, so nothing the appliance adds is lost (and
``--json`` prints exactly what the appliance said). Documents that are the caller's own
(settings, storage, cluster, license details, build information) stay dictionaries."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

Document = dict[str, Any]  # a JSON object, as the appliance answered it or as it is sent


def _text(value: object) -> str | None:
    return None if value is None else str(value)


def _int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def log_lines(log: object) -> list[str]:
    """The lines of a status answer's ``log``: the appliance writes each newline as the
    two characters backslash and n (API.md section 3), as the original did."""
    if not isinstance(log, str) or not log:
        return []
    lines = log.replace("\\n", "\n").split("\n")
    return lines[:-1] if lines[-1] == "" else lines


@dataclass(frozen=True)
class Answer:
    """One answer of the API, read whole: its status, headers (names in lower case) and body."""

    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        """The body as JSON; ClientError when it is not."""
        from .errors import ClientError

        try:
            return json.loads(self.body)
        except ValueError:
            raise ClientError(f"the answer is not JSON: {self.body[:80]!r}") from None

    def document(self) -> Document:
        """The body as a JSON object; ClientError when it is anything else."""
        from .errors import ClientError

        value = self.json()
        if not isinstance(value, dict):
            raise ClientError(f"the answer is not a JSON object: {self.body[:80]!r}")
        return value


@dataclass(frozen=True)
class Usage:
    """Disk or memory use: ``used`` and ``total`` as the appliance words them (``1.2G``),
    and the percentage used."""

    used: str | None
    total: str | None
    percentage: int | None

    @classmethod
    def of(cls, value: object) -> Usage:
        found: Document = value if isinstance(value, dict) else {}
        return cls(_text(found.get("used")), _text(found.get("total")), _int(found.get("percentage")))


@dataclass(frozen=True)
class CertificateInfo:
    """The TLS certificate in service: its subject, expiry (ISO 8601, UTC) and whole days left."""

    subject: str
    expires: str
    days_left: int | None
    warning: str | None = None

    @classmethod
    def of(cls, value: object) -> CertificateInfo | None:
        if not isinstance(value, dict) or "subject" not in value:
            return None
        return cls(str(value["subject"]), str(value.get("expires", "")), _int(value.get("days-left")),
                   _text(value.get("warning")))


@dataclass(frozen=True)
class Health:
    """GET /health: disk, memory and CPU now, and the certificate in service."""

    disk: Usage
    memory: Usage
    cpus: int | None
    load: str | None  # the load averages as text
    cpu5min: float | None  # the 5-minute load average (the unit is cores, as the original's)
    certificate: CertificateInfo | None
    raw: Document = field(repr=False)

    @classmethod
    def of(cls, value: Document) -> Health:
        cpu: Document = value["cpu"] if isinstance(value.get("cpu"), dict) else {}
        load5 = cpu.get("cpu5min")
        return cls(Usage.of(value.get("disk")), Usage.of(value.get("memory")), _int(cpu.get("num")),
                   _text(cpu.get("load")), float(load5) if isinstance(load5, (int, float)) else None,
                   CertificateInfo.of(value.get("certificate")), value)


@dataclass(frozen=True)
class Service:
    """One service of GET /services, and whether it runs."""

    name: str
    running: bool

    @classmethod
    def all_of(cls, value: Document) -> list[Service]:
        found: list[Service] = []
        for entry in value.get("services") or []:
            if isinstance(entry, dict):
                found.extend(cls(str(name), state == "running") for name, state in entry.items())
        return found


@dataclass(frozen=True)
class JobStatus:
    """The status answer of a job's section (GET /update, /certs, /cluster): the outcome of
    its last run (``running``, ``success``, ``failed`` or None before any), the last lines
    of its log, and why it failed."""

    status: str | None
    log: list[str]
    percentage: int | None
    error_code: str | None
    error_message: str | None
    raw: Document = field(repr=False)

    @classmethod
    def of(cls, value: Document) -> JobStatus:
        return cls(_text(value.get("status")), log_lines(value.get("log")), _int(value.get("percentage")),
                   _text(value.get("error-code")), _text(value.get("error-message")), value)


@dataclass(frozen=True)
class CertsStatus(JobStatus):
    """GET /certs: the last install's status, and the certificate in service."""

    certificate: CertificateInfo | None = None
    load_error: str | None = None

    @classmethod
    def of(cls, value: Document) -> CertsStatus:
        base = JobStatus.of(value)
        return cls(base.status, base.log, base.percentage, base.error_code, base.error_message, value,
                   CertificateInfo.of(value), _text(value.get("load-error")))


@dataclass(frozen=True)
class BackupStatus:
    """GET /backup: the last backup's status and, once it succeeded, its archive's size (as
    the appliance words it), SHA-256 and when it was made."""

    status: str | None
    filesize: str | None
    sha256: str | None
    created: str | None
    raw: Document = field(repr=False)

    @classmethod
    def of(cls, value: Document) -> BackupStatus:
        return cls(_text(value.get("status")), _text(value.get("filesize")), _text(value.get("sha256")),
                   _text(value.get("created")), value)


@dataclass(frozen=True)
class JobState:
    """GET /jobs/<name>: a kind of job and its last run. ``run`` names the run and changes
    when a new one starts; ``status`` is ``running`` while its process runs, then its
    outcome, None before any run."""

    name: str
    title: str | None
    status: str | None
    percentage: int | None
    error_code: str | None
    error_message: str | None
    run: str | None
    started: str | None
    ended: str | None
    seconds: float | None
    raw: Document = field(repr=False)

    @classmethod
    def of(cls, value: Document) -> JobState:
        seconds = value.get("seconds")
        return cls(str(value.get("name", "")), _text(value.get("title")), _text(value.get("status")),
                   _int(value.get("percentage")), _text(value.get("error-code")), _text(value.get("error-message")),
                   _text(value.get("run")), _text(value.get("started")), _text(value.get("ended")),
                   float(seconds) if isinstance(seconds, (int, float)) else None, value)


@dataclass(frozen=True)
class LogPart:
    """GET /jobs/<name>/log?from=N: the run's lines from byte ``start``; ask again from
    ``next``. ``complete`` once the run has ended and every line of it was given."""

    run: str | None
    status: str | None
    start: int
    next: int
    lines: list[str]
    complete: bool

    @classmethod
    def of(cls, value: Document) -> LogPart:
        lines = value.get("lines")
        return cls(_text(value.get("run")), _text(value.get("status")), _int(value.get("from")) or 0,
                   _int(value.get("next")) or 0, [str(line) for line in lines] if isinstance(lines, list) else [],
                   value.get("complete") is True)


@dataclass(frozen=True)
class Started:
    """A job the appliance accepted (202): its kind, the run before it (so that following
    it reads this run's lines only), and whether the appliance serves GET /jobs."""

    job: str
    previous_run: str | None
    jobs_served: bool
    answer: Document = field(default_factory=dict, repr=False)  # the 202's {"Status", "Location"}
    started_here: bool = True  # False: a job's current run, followed by its name
