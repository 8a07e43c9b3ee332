"""The Admin API as one Klein app: the gate over the endpoint catalogue, and the one error layer.

Every request takes the same path:
unknown or disabled endpoint (404) -> authentication (403) -> method (400) -> body
problems (400/413/507, answered by the HTTP layer) -> required and allowed form fields
(400) -> the section's handler. Public pages (/, /docs) skip authentication, and a wrong
method there is a 405. Nothing here knows what any section does: it reads the catalogue.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from klein import Klein
from twisted.internet.task import deferLater
from twisted.logger import Logger
from werkzeug.exceptions import MethodNotAllowed, NotFound
from werkzeug.routing import RequestRedirect

from ..config import AuthThrottle
from ..files import permission_problem
from ..formats.validate import Invalid
from ..jobs.runner import AlreadyRunning
from . import responses
from .audit import AuditLog, client_host
from .auth import Refused, TokenStore
from .catalogue import READ, Catalogue, Endpoint, Operation
from .responses import APIError
from .site import BodyPolicy, parse_query
from .throttle import FailureThrottle
from .uploads import FILE, FormPlan

AUTHENTICATION_ERROR = "Authentication error"


class OutOfScope(APIError):
    """A 403 for a token that authenticated but may not do this: not a guess at a token,
    so it is not slowed down as failed authentication is."""
CREDENTIALS = (b"token", b"hash", b"link")
SETUP_REFUSAL_DELAY = 2.0


class AdminAPI:
    app = Klein()
    app.url_map.merge_slashes = False  # "//version" is a different, unknown path
    log = Logger()

    def __init__(self, catalogue: Catalogue, tokens: TokenStore, audit: AuditLog, clock,
                 upload_limits: Mapping[str, int], throttle: AuthThrottle = AuthThrottle(),
                 authenticated: Sequence[Callable[[], None]] = ()):
        self.catalogue = catalogue
        self.tokens = tokens
        self.audit = audit
        self.clock = clock
        self.upload_limits = upload_limits  # replaced on SIGHUP
        self.throttle = FailureThrottle(clock, throttle, self._throttling)
        self.authenticated = authenticated  # told of every request that authenticated

    def resource(self):
        return self.app.resource()

    def body_policy(self, uploads: Path) -> BodyPolicy:
        """What the HTTP layer needs of the API while a body arrives."""
        return BodyPolicy(
            plan=self.plan_body,
            refusal_delay=self.refusal_delay,
            uploads=uploads,
            first_run=lambda: self.tokens.first_run,
            refused=self.record_refusal,
            finished=self.record_finished,
        )

    # The gate, shared by body planning (before the body) and dispatch (after it).

    def admit(self, request, method: str, uri: bytes, args: Mapping[bytes, list[bytes]],
              has_body: bool) -> tuple[Endpoint, Operation]:
        """The endpoint and operation a request may call, or why not. Who asks is decided
        once per request (a signature's nonce counts once) and kept on it as ``identity``."""
        path = uri.partition(b"?")[0]
        endpoint = self._lookup(path)
        if not endpoint.public:
            _refuse_repeated_credentials(args)
        identity = None
        if not (endpoint.public or (endpoint.open_while_no_token and self.tokens.current() is None)):
            identity = getattr(request, "identity", None)
            if identity is None:
                try:
                    if endpoint.by_link:
                        identity = self.tokens.redeem(_first(args, b"link"))
                    else:
                        identity = self.tokens.identify(method, path.decode("ascii"), request_url(request, uri),
                                                        args, request_headers(request), has_body,
                                                        wire_method=_wire_method(request))
                except Refused as refused:
                    raise APIError(403, str(refused)) from None
                request.identity = identity
                if not endpoint.by_link:
                    for listener in self.authenticated:
                        listener()
        operation = endpoint.operation(method)
        if operation is None:
            expected = " or ".join(endpoint.methods)
            if endpoint.public:
                raise MethodNotAllowed(valid_methods=endpoint.methods)
            raise APIError(400, f"Invalid authentication method. Expected {expected}")
        if identity is not None and operation.scope != READ and identity.scope == READ:
            raise OutOfScope(403, f"The token {identity.name!r} may only read: {method} {endpoint.full_path} "
                                  "needs a token of scope admin")
        return endpoint, operation

    def _lookup(self, path: bytes) -> Endpoint:
        try:
            endpoint = self.catalogue.lookup(path.decode("ascii"))
        except UnicodeDecodeError:
            endpoint = None
        if endpoint is None:
            raise APIError(404)
        return endpoint

    def plan_body(self, request) -> FormPlan | APIError | None:
        """What the body of this request may hold, decided from its request line and headers."""
        uri = request.line_uri
        try:
            _, operation = self.admit(request, _api_method(request.line_method), uri, parse_query(uri), True)
        except APIError as refused:
            return refused
        except MethodNotAllowed:
            return APIError(405, "Method not allowed")
        if not operation.form:
            return None
        limits = self.upload_limits
        return FormPlan(
            {f.name: (f.kind, limits.get(f.name, limits["text"])) for f in operation.form},
            unknown_cap=limits["text"],
        )

    # The one route: everything goes through the catalogue.

    @app.route("/", branch=True, strict_slashes=False)
    def dispatch(self, request):
        method = _api_method(request.method)
        try:
            _, operation = self.admit(request, method, request.uri, request.args, _has_body(request))
            _check_digest(request)
        except APIError as refused:
            delay = self.refusal_delay(request, request.path, refused)
            if delay:
                return deferLater(self.clock, delay, self._raise, refused)
            raise
        check_form(operation, request.form)
        return operation.handler(request)

    # The one error layer: every failure becomes a JSON answer, never a traceback.

    @app.handle_errors(APIError)
    def api_error(self, request, failure):
        problem = failure.value
        return responses.error(request, problem.status, problem.message, self.tokens.first_run)

    @app.handle_errors(Invalid)
    def invalid(self, request, failure):
        return responses.error(request, 400, str(failure.value), self.tokens.first_run)

    @app.handle_errors(AlreadyRunning)
    def already_running(self, request, failure):
        return responses.error(request, 400, failure.value.message, self.tokens.first_run)

    @app.handle_errors(PermissionError)
    def not_permitted(self, request, failure):
        """A file the daemon's user may not read or write (an appliance's owners and modes
        that do not fit it): said plainly, with the file and where the fix is."""
        problem = permission_problem(failure.value)
        self.log.error("Request {id}: {problem}", id=request.request_id, problem=problem)
        return responses.error(request, 500, problem, self.tokens.first_run)

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

    def record_refusal(self, request, method: bytes, path: bytes, problem: APIError) -> None:
        """Audit a request refused before its body (the HTTP layer names method and path)."""
        if not self._throttled_failure(request, problem.status):
            self._audit(request, method, path, f"{problem.status} {problem.message}")

    def record_finished(self, request) -> None:
        """Audit a finished request that changed something or failed; a 404 is left to the
        access log, so scanning for paths cannot flood the audit trail, and so is a
        failure to authenticate while its client is throttled (the episode is audited)."""
        failed = request.code >= 400 and request.code != 404
        if self._throttled_failure(request, request.code):
            return
        if request.method == b"POST" or failed or self._audited(request):
            message = request.responseHeaders.getRawHeaders(b"error-message", [b""])[0]
            outcome = f"{request.code} {message.decode('ascii', 'replace')}".strip()
            self._audit(request, request.method, request.path, outcome)

    def _audited(self, request) -> bool:
        endpoint = self.catalogue.lookup(request.path.decode("ascii", "replace"))
        operation = endpoint.operation(_api_method(request.method)) if endpoint else None
        return operation is not None and operation.audited

    def _audit(self, request, method: bytes, path: bytes, outcome: str) -> None:
        self.audit.record(
            request.request_id,
            client_host(request),
            method.decode("ascii", "replace"),
            path.decode("ascii", "replace"),
            outcome,
            token=getattr(getattr(request, "identity", None), "name", "-"),
        )

    def _throttled_failure(self, request, status: int) -> bool:
        return status == 403 and self.throttle.throttled(client_host(request))

    def _throttling(self, client: str, event: str, delayed: int) -> None:
        """Log and audit a throttling episode once as it starts and once as it ends."""
        if event == "start":
            self.log.warn("Slowing down {client}: it failed to authenticate more than {burst} times",
                          client=client, burst=self.throttle.settings.burst)
            outcome = "throttled: repeated authentication failures"
        else:
            self.log.info("Stopped slowing down {client}: {count} failed attempts were delayed",
                          client=client, count=delayed)
            outcome = f"throttling ended: {delayed} failed attempts were delayed"
        self.audit.record("-", client, "THROTTLE", "authentication", outcome)

    def refusal_delay(self, request, path: bytes, refused: APIError) -> float:
        """Seconds to wait before refusing. A failure to authenticate counts against its
        client's budget, and past it waits longer each time; /setup, which answers without
        authentication, always makes a guess wait. Nobody else is delayed."""
        if refused.status != 403 or isinstance(refused, OutOfScope):
            return 0.0
        delay = self.throttle.failed(client_host(request))
        endpoint = self.catalogue.lookup(path.decode("ascii", "replace"))
        if endpoint is not None and endpoint.open_while_no_token:
            delay = max(delay, SETUP_REFUSAL_DELAY)
        return delay

    @staticmethod
    def _raise(problem: APIError):
        raise problem


def check_form(operation: Operation, form) -> None:
    """Required fields are there, files are files, and a field with allowed values has one."""
    for field in operation.form:
        if field.kind == FILE:
            if field.required or field.name in form.texts:
                form.file(field.name)
        elif field.problem and field.required and field.name not in form.texts:
            raise APIError(400, field.problem)
        elif field.required or field.name in form.texts:
            _check_allowed(field, form.text(field.name))


def _check_allowed(field, value: str) -> None:
    if not field.allowed:
        return
    if (value.upper() if field.any_case else value) not in field.allowed:
        raise APIError(400, field.problem or f"Parameter {field.name} must be {' or '.join(field.allowed)}")


def _api_method(method: bytes) -> str:
    """HEAD is answered as GET (the body is dropped by twisted.web)."""
    name = method.decode("ascii", "replace")
    return "GET" if name == "HEAD" else name


def _refuse_repeated_credentials(args: Mapping[bytes, list[bytes]]) -> None:
    """A repeated token or hash is refused: a proxy that reads the last one and the daemon
    that reads the first could otherwise disagree on who is asking."""
    for name in CREDENTIALS:
        if len(args.get(name, ())) > 1:
            raise APIError(400, f"Parameter {name.decode()} was given more than once")


def _wire_method(request) -> str:
    """The method as sent (HEAD is HEAD): what a signature covers. The ``hash`` signs a
    HEAD as GET, as the API reference says."""
    method = getattr(request, "line_method", None) or request.method
    return method.decode("ascii", "replace") if isinstance(method, bytes) else str(method)


def _first(args: Mapping[bytes, list[bytes]], name: bytes) -> str | None:
    values = args.get(name)
    return values[0].decode("utf-8", "replace") if values else None


def request_headers(request) -> dict[str, str]:
    """A request's header fields by lower-case name, repeated ones joined as HTTP joins them."""
    return {name.decode("latin-1").lower(): ", ".join(v.decode("latin-1") for v in values)
            for name, values in request.requestHeaders.getAllRawHeaders()}


def request_url(request, uri: bytes) -> str:
    """The target URI a client signs: scheme, the Host it asked for, the request target."""
    scheme = "https" if request.isSecure() else "http"
    raw = request.getHeader(b"host")
    if raw:
        host = raw.decode("latin-1")
    else:
        address = request.getHost()
        host = f"{getattr(address, 'host', 'localhost')}:{getattr(address, 'port', 0)}"
    return f"{scheme}://{host}{uri.decode('latin-1')}"


def _has_body(request) -> bool:
    length = request.getHeader(b"content-length")
    return bool(request.getHeader(b"transfer-encoding")) or (length is not None and length.strip() not in (b"", b"0"))


def _check_digest(request) -> None:
    """A signature that covers Content-Digest covers the body only if the body is the one
    the field describes: checked once it has all arrived, before the handler runs."""
    identity = getattr(request, "identity", None)
    if identity is None or identity.digest is None:
        return
    received = request.body_sha256 or hashlib.sha256()
    if not hmac.compare_digest(received.digest(), identity.digest):
        raise APIError(403, "The body is not the one the signature's Content-Digest describes")
