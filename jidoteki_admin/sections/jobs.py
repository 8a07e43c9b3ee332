"""Jobs (an addition): every kind of job's state, and its log read from a position.

GET /update, /certs and /cluster give the last 10 lines of a log, as the original did: a
client polling once a second loses lines of a busy job. Here every kind the daemon runs
has its status at GET /jobs/<name>, and the lines of its last run at
GET /jobs/<name>/log?from=N, N counted in bytes from the run's first line: a client that
asks again from the ``next`` it was given reads every line once, and none of another run's
(a new run has a new ``run`` id; start again from 0). The section is made once every other
section has registered its kinds.
"""

from __future__ import annotations

import datetime

from ..context import Context
from ..http import responses
from ..http.catalogue import JSON, READ, Endpoint, Reply, Section, get
from ..http.responses import APIError
from ..jobs.protocol import JobKind
from ..jobs.runner import JobRun

_TEXT_OR_NULL = {"type": ["string", "null"]}
JOB_SCHEMA = {
    "type": "object",
    "properties": {
        "name": {"type": "string"},
        "title": {"type": "string"},
        "status": {"enum": ["running", "success", "failed", None]},
        "percentage": {"type": ["integer", "null"]},
        "error-code": _TEXT_OR_NULL,
        "error-message": _TEXT_OR_NULL,
        "run": _TEXT_OR_NULL,
        "started": _TEXT_OR_NULL,
        "ended": _TEXT_OR_NULL,
        "seconds": {"type": ["number", "null"]},
    },
    "required": ["name", "status", "run"],
}
JOBS_SCHEMA = {"type": "object", "properties": {"jobs": {"type": "array", "items": JOB_SCHEMA}}}
LOG_SCHEMA = {
    "type": "object",
    "properties": {
        "run": _TEXT_OR_NULL,
        "status": {"enum": ["running", "success", "failed", None]},
        "from": {"type": "integer"},
        "next": {"type": "integer"},
        "lines": {"type": "array", "items": {"type": "string"}},
        "complete": {"type": "boolean"},
    },
    "required": ["run", "from", "next", "lines", "complete"],
}


class Jobs:
    name = "jobs"
    optional = False

    def __init__(self, context: Context):
        self.runner = context.runner
        self.clock = context.clock

    def section(self) -> Section:
        endpoints = [Endpoint("/jobs", (get(self.list, "Every kind of job and the state of its last run",
                                             Reply(JSON, JOBS_SCHEMA), scope=READ),))]
        for name, kind in sorted(self.runner.kinds.items()):
            endpoints.append(Endpoint(f"/jobs/{name}", (get(
                self._state(kind), f"The state of the last {name} job", Reply(JSON, JOB_SCHEMA), scope=READ),)))
            endpoints.append(Endpoint(f"/jobs/{name}/log", (get(
                self._log(kind), f"The lines of the last {name} job's log from a position (?from=N, bytes)",
                Reply(JSON, LOG_SCHEMA), errors=(400,), scope=READ),)))
        return Section(self.name, "Jobs", tuple(endpoints))

    def list(self, request) -> bytes:
        jobs = [self.state(kind) for _, kind in sorted(self.runner.kinds.items())]
        return responses.document(request, {"jobs": jobs}, no_cache=True)

    def _state(self, kind: JobKind):
        return lambda request: responses.document(request, self.state(kind), no_cache=True)

    def state(self, kind: JobKind) -> dict[str, object]:
        status = self.runner.status(kind)
        run = self.runner.run(kind)
        value: dict[str, object] = {"name": kind.name, "title": kind.title, "status": status.status,
                                    "percentage": status.percentage}
        if status.status == "failed":
            value.update({"error-code": status.error_code, "error-message": status.error_message})
        value.update(_times(run, self.clock.seconds()))
        return value

    def _log(self, kind: JobKind):
        def answer(request) -> bytes:
            position = _position(request.args.get(b"from", [b"0"])[-1])
            part = self.runner.read_log(kind, position)
            return responses.document(request, {
                "run": part.run.id if part.run else None, "status": self.runner.status(kind).status,
                "from": part.start, "next": part.next, "lines": part.lines, "complete": part.complete,
            }, no_cache=True)
        return answer


def _position(raw: bytes) -> int:
    if not raw.isdigit() or len(raw) > 18:
        raise APIError(400, "Parameter from must be a whole number of bytes, as the last answer's next gave it")
    return int(raw)


def _times(run: JobRun | None, now: float) -> dict[str, object]:
    if run is None:
        return {"run": None, "started": None, "ended": None, "seconds": None}
    end = run.ended if run.ended is not None else now
    return {"run": run.id, "started": _iso(run.started), "ended": _iso(run.ended) if run.ended else None,
            "seconds": round(max(0.0, end - run.started), 3)}


def _iso(seconds: float) -> str:
    return datetime.datetime.fromtimestamp(seconds, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
