"""The endpoint catalogue: what the daemon serves, declared once.

A section declares its name, whether it is optional (the config's "endpoints" list turns
it on) and its endpoints; an endpoint declares, per method, a one-line summary, its form
fields (which are required, which values are allowed), what it returns and its error
statuses. From this one catalogue come the gate (gate.py), GET /endpoints and the OpenAPI
document at /docs/openapi.json (openapi.py), so none of them can drift from the others.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any
from dataclasses import dataclass, field

from .. import API_PREFIX
from .uploads import FILE, TEXT

__all__ = ["FILE", "TEXT", "Field", "Reply", "Operation", "Endpoint", "Section", "Catalogue"]

# What an operation answers with; openapi.py describes each.
STATUS = "status"  # {"Status": "200 OK"}
JSON = "json"  # a JSON document (Reply.schema describes it)
PLAIN_TEXT = "text"  # text/plain, from a file or a log
DOWNLOAD = "download"  # a file to save (Content-Disposition, Filename)
ACCEPTED = "accepted"  # 202 with Location: the work went to a job
PAGE = "page"  # a public page or file: HTML, Markdown, CSS, JSON
REDIRECT = "redirect"  # 301 to Reply.media_type's place: an old path of a public page

# Who may call an operation: a token of scope READ may only ask what is (status, health,
# versions, metrics); ADMIN, the default, is everything. A new operation is ADMIN unless
# it is declared READ, so a mutating endpoint can never be open to a read token by omission.
READ, ADMIN = "read", "admin"


@dataclass(frozen=True)
class Field:
    """One form field of a POST body."""

    name: str
    kind: str = TEXT  # FILE or TEXT
    required: bool = True
    allowed: tuple[str, ...] = ()  # for a TEXT field: the only values accepted
    description: str = ""
    any_case: bool = False  # "start" is START
    problem: str | None = None  # the message for a missing or refused value, where the API names one


@dataclass(frozen=True)
class Reply:
    kind: str
    schema: dict[str, Any] | None = None  # for JSON: a JSON Schema of the document
    media_type: str | None = None  # for PAGE and DOWNLOAD
    description: str = ""
    code: int = 200  # for STATUS: {"Status": "202 Accepted"} answers 202


@dataclass(frozen=True)
class Operation:
    """One method of an endpoint."""

    method: str
    handler: Callable[..., Any]  # (request) -> body, Deferred or coroutine
    summary: str
    reply: Reply
    form: tuple[Field, ...] = ()
    errors: tuple[int, ...] = ()  # statuses beyond those every endpoint may answer
    audited: bool = False  # a GET that changes something (reboot) is audited like a POST
    scope: str = ADMIN  # READ: a read token may call it too

    def field(self, name: str) -> Field | None:
        return next((f for f in self.form if f.name == name), None)


@dataclass(frozen=True)
class Endpoint:
    """One path: its operations by method.

    ``path`` is relative to /api/v1/admin for API endpoints and absolute for public pages.
    """

    path: str
    operations: tuple[Operation, ...]
    public: bool = False  # no authentication: /, /docs and their files
    open_while_no_token: bool = False  # POST /setup, before any token exists
    by_link: bool = False  # no credentials: a one-time link in the query is checked instead

    def operation(self, method: str) -> Operation | None:
        return next((op for op in self.operations if op.method == method), None)

    @property
    def methods(self) -> list[str]:
        return sorted(op.method for op in self.operations)

    @property
    def full_path(self) -> str:
        return self.path if self.public else API_PREFIX + self.path


@dataclass(frozen=True)
class Section:
    """What one section of the API reference serves."""

    name: str  # for an optional section, the config "endpoints" name that turns it on
    title: str
    endpoints: tuple[Endpoint, ...]
    optional: bool = False
    description: str = ""


def get(handler: Callable[..., Any], summary: str, reply: Reply, **more: Any) -> Operation:
    return Operation("GET", handler, summary, reply, **more)


def post(handler: Callable[..., Any], summary: str, reply: Reply, *form: Field, **more: Any) -> Operation:
    return Operation("POST", handler, summary, reply, tuple(form), **more)


@dataclass
class Catalogue:
    """The sections this daemon serves, and every endpoint by its full path."""

    enabled: frozenset[str] = frozenset()  # optional sections the config turns on
    sections: list[Section] = field(default_factory=list)
    _by_path: dict[str, tuple[Section, Endpoint]] = field(default_factory=dict)

    def add(self, section: Section) -> bool:
        """Serve a section; an optional one only when enabled. True when it is served."""
        if section.optional and section.name not in self.enabled:
            return False
        for endpoint in section.endpoints:
            if endpoint.full_path in self._by_path:
                raise ValueError(f"{endpoint.full_path} is declared twice")
            self._by_path[endpoint.full_path] = (section, endpoint)
        self.sections.append(section)
        return True

    def lookup(self, path: str) -> Endpoint | None:
        """The endpoint at ``path``; an API endpoint also answers with one trailing slash,
        as clients written for the original daemon may send it."""
        found = self._by_path.get(path)
        if found is None and path.endswith("/"):
            found = self._by_path.get(path[:-1])
            if found is not None and found[1].public:
                found = None
        return found[1] if found else None

    def endpoints(self) -> Iterator[tuple[Section, Endpoint]]:
        for section in self.sections:
            for endpoint in section.endpoints:
                yield section, endpoint

    def paths(self) -> list[str]:
        return sorted(self._by_path)

    def listed(self) -> list[str]:
        """What GET /endpoints answers: the first-level API endpoints plus /docs, sorted,
        as API.md lists them."""
        first_levels = {
            API_PREFIX + "/" + endpoint.path.strip("/").split("/")[0]
            for _, endpoint in self.endpoints()
            if not endpoint.public
        }
        return sorted(first_levels | {"/docs"})

    def served_names(self) -> set[str]:
        return {section.name for section in self.sections}


def names(fields: Iterable[Field]) -> list[str]:
    return [f.name for f in fields]
