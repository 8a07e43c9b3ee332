"""The Admin API as one Klein app: routing, the endpoint gate, and the one error layer.

Every request under /api/v1/admin takes the same path:
unknown or disabled endpoint (404) -> authentication (403) -> method (400) -> body
problems (400/413/507) -> the section's handler. Sections (setup.py, information.py, ...)
only describe their endpoints; nothing here knows what any of them does.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from urllib.parse import parse_qs

from klein import Klein
from twisted.internet.task import deferLater
from twisted.logger import Logger
from werkzeug.exceptions import MethodNotAllowed, NotFound
from werkzeug.routing import RequestRedirect

from . import API_PREFIX, responses
from .audit import AuditLog, client_host
from .auth import TokenStore
from .config import Config
from .docs import Docs
from .layout import AdminTree
from .responses import APIError
from .uploads import FormPlan

AUTHENTICATION_ERROR = "Authentication error"
SETUP_REFUSAL_DELAY = 2.0


@dataclass(frozen=True)
class Endpoint:
    """One API path: its handlers by method, and what its POST body may hold."""

    path: str
    handlers: Mapping[str, Callable]
    optional: str | None = None  # the config "endpoints" name that turns it on
    form: Mapping[str, str] = field(default_factory=dict)  # field name -> FILE or TEXT
    open_while_no_token: bool = False  # POST /setup, before any token exists
    audited: bool = False  # a GET that changes something (reboot) is audited like a POST

    @property
    def first_level(self) -> str:
        return "/" + self.path.strip("/").split("/")[0]


class AdminAPI:
    app = Klein()
    app.url_map.merge_slashes = False  # "//version" is a different, unknown path
    log = Logger()

    def __init__(self, tree: AdminTree, config: Config, tokens: TokenStore, audit: AuditLog, clock):
        self.tree = tree
        self.config = config
        self.tokens = tokens
        self.audit = audit
        self.clock = clock
        self.docs = Docs()
        self.endpoints: dict[str, Endpoint] = {}

    def add(self, section) -> None:
        for endpoint in section.endpoints():
            if endpoint.optional is None or endpoint.optional in self.config.endpoints:
                self.endpoints[API_PREFIX + endpoint.path] = endpoint

    def unserved_optional(self) -> list[str]:
        """Optional endpoints the config enables but no registered section serves: an
        operator who enabled them should hear why they answer 404."""
        served = {endpoint.first_level for endpoint in self.endpoints.values()}
        return [name for name in self.config.endpoints if "/" + name not in served]

    def resource(self):
        return self.app.resource()

    # The gate, shared by body planning (before the body) and dispatch (after it).

    def admit(self, method: str, path: bytes, args: Mapping[bytes, list[bytes]]) -> Endpoint:
        endpoint = self._lookup(path)
        if not (endpoint.open_while_no_token and self.tokens.current() is None):
            if not self.tokens.authenticates(
                method, path.decode("ascii"), _first(args, b"token"), _first(args, b"hash")
            ):
                raise APIError(403, AUTHENTICATION_ERROR)
        if method not in endpoint.handlers:
            expected = " or ".join(sorted(endpoint.handlers))
            raise APIError(400, f"Invalid authentication method. Expected {expected}")
        return endpoint

    def _lookup(self, path: bytes) -> Endpoint:
        try:
            return self.endpoints[path.decode("ascii")]
        except (KeyError, UnicodeDecodeError):
            raise APIError(404) from None

    def plan_body(self, method: bytes, uri: bytes) -> FormPlan | APIError | None:
        """What the body of this request may hold, decided from its request line alone."""
        path, _, query = uri.partition(b"?")
        try:
            endpoint = self.admit(_api_method(method), path, parse_qs(query))
        except APIError as refused:
            return refused
        if not endpoint.form:
            return None
        limits = self.config.upload_limits
        return FormPlan(
            {name: (kind, limits.get(name, limits["text"])) for name, kind in endpoint.form.items()},
            unknown_cap=limits["text"],
        )

    # Routes

    @app.route(API_PREFIX, branch=True, strict_slashes=False)
    def dispatch(self, request):
        method = _api_method(request.method)
        try:
            endpoint = self.admit(method, request.path, request.args)
        except APIError as refused:
            delay = self.refusal_delay(request.path, refused)
            if delay:
                return deferLater(self.clock, delay, self._raise, refused)
            raise
        if request.body_problem is not None:
            raise request.body_problem
        request.audited = endpoint.audited
        return endpoint.handlers[method](request)

    @app.route("/", methods=["GET", "HEAD"])
    def dashboard(self, request):
        return responses.body(request, 200, self.docs.home, responses.HTML)

    @app.route("/docs", methods=["GET", "HEAD"])
    def docs_page(self, request):
        return responses.body(request, 200, self.docs.page, responses.HTML)

    @app.route("/docs/style.css", methods=["GET", "HEAD"])
    def docs_stylesheet(self, request):
        return responses.body(request, 200, self.docs.stylesheet, responses.CSS)

    @app.route("/docs/API.md", methods=["GET", "HEAD"])
    def docs_source(self, request):
        return responses.body(request, 200, self.docs.source, responses.MARKDOWN)

    @app.route("/docs/NOTICE.TXT", methods=["GET", "HEAD"])
    def notice(self, request):
        return responses.body(request, 200, self.docs.notice, responses.TEXT)

    # The one error layer: every failure becomes a JSON answer, never a traceback.

    @app.handle_errors(APIError)
    def api_error(self, request, failure):
        problem = failure.value
        return responses.error(request, problem.status, problem.message, self.tokens.first_run)

    @app.handle_errors(NotFound, RequestRedirect)
    def not_found(self, request, failure):
        return responses.error(request, 404, None, self.tokens.first_run)

    @app.handle_errors(MethodNotAllowed)
    def method_not_allowed(self, request, failure):
        allowed = ", ".join(failure.value.valid_methods or ["GET"])
        request.setHeader(b"Allow", allowed.encode())
        return responses.error(request, 405, f"Method not allowed. Expected {allowed}", self.tokens.first_run)

    @app.handle_errors
    def unexpected(self, request, failure):
        self.log.failure("Unexpected error for request {id}", failure, id=request.request_id)
        return responses.error(
            request, 500, f"Internal error (request {request.request_id})", self.tokens.first_run
        )

    # Audit

    def record_refusal(self, request, problem: APIError) -> None:
        """Audit a request refused before its body (its method and path are not parsed yet)."""
        path = request.channel._path.partition(b"?")[0]
        self._audit(request, request.channel._command, path, f"{problem.status} {problem.message}")

    def record_finished(self, request) -> None:
        """Audit a finished request that changed something or failed; a 404 is left to the
        access log, so scanning for paths cannot flood the audit trail."""
        failed = request.code >= 400 and request.code != 404
        if request.method == b"POST" or failed or getattr(request, "audited", False):
            message = request.responseHeaders.getRawHeaders(b"error-message", [b""])[0]
            outcome = f"{request.code} {message.decode('ascii', 'replace')}".strip()
            self._audit(request, request.method, request.path, outcome)

    def _audit(self, request, method: bytes, path: bytes, outcome: str) -> None:
        self.audit.record(
            request.request_id,
            client_host(request),
            method.decode("ascii", "replace"),
            path.decode("ascii", "replace"),
            outcome,
        )

    def refusal_delay(self, path: bytes, refused: APIError) -> float:
        """Seconds to wait before refusing: slows token guessing through /setup, which
        answers without authentication, without delaying anyone else."""
        endpoint = self.endpoints.get(path.decode("ascii", "replace"))
        if refused.status == 403 and endpoint is not None and endpoint.open_while_no_token:
            return SETUP_REFUSAL_DELAY
        return 0.0

    @staticmethod
    def _raise(problem: APIError):
        raise problem


def _api_method(method: bytes) -> str:
    """HEAD is answered as GET (the body is dropped by twisted.web)."""
    name = method.decode("ascii", "replace")
    return "GET" if name == "HEAD" else name


def _first(args: Mapping[bytes, list[bytes]], name: bytes) -> str | None:
    values = args.get(name)
    return values[0].decode("utf-8", "replace") if values else None

