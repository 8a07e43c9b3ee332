"""The HTTP layer under the API: a Request that streams form bodies, and the Site.

Twisted's stock Request buffers a whole body and then parses it in memory. This one asks
the site's BodyPolicy, as soon as the headers are in, what the body may hold, then streams
it through uploads.FormStream, or throws it away unread. The policy is all this layer
knows of the API; every use of Twisted's private attributes is in this module.
"""

from __future__ import annotations

import io
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote_to_bytes

from twisted.logger import Logger
from twisted.web import server

from .audit import client_host
from . import responses
from .responses import SECURITY_HEADERS, APIError, add_security_headers, status_line
from .uploads import DiskWriter, Form, FormPlan, FormStream, multipart_boundary

SECRET_PARAMETERS = {b"token", b"hash", b"newtoken"}
SERVER_NAME = b"jidoteki-admin"
# A body this small is read to the end before answering, so the client sees a clean reply.
EARLY_REFUSAL_THRESHOLD = 64 * 1024


@dataclass(frozen=True)
class BodyPolicy:
    """What the HTTP layer asks of the API about a request whose body has not arrived."""

    # (method, uri) from the request line -> a FormPlan to stream, an APIError to refuse
    # with, or None for "no body expected".
    plan: Callable[[bytes, bytes], FormPlan | APIError | None]
    # (path, refusal) -> seconds to wait before answering it
    refusal_delay: Callable[[bytes, APIError], float]
    uploads: Path  # where file parts are written as they arrive
    first_run: Callable[[], bool]  # for the First-Run key of error answers
    refused: Callable[..., None]  # (request, method, path, refusal): audit an early refusal
    finished: Callable[..., None]  # (request): audit a finished request


def parse_query(uri: bytes) -> dict[bytes, list[bytes]]:
    """The query parameters of a request target: name -> values, in order, percent-decoded.

    The one parser for both the check made from the request line (before the body) and
    dispatch, so the two can never disagree. Pairs are split on "&" only, as browsers and
    the original daemon read a query; ";" is part of a value. A name without "=" has an
    empty value. Any bytes are accepted.
    """
    args: dict[bytes, list[bytes]] = {}
    for pair in uri.partition(b"?")[2].split(b"&"):
        if not pair:
            continue
        name, _, value = pair.partition(b"=")
        args.setdefault(_unquote(name), []).append(_unquote(value))
    return args


def _unquote(text: bytes) -> bytes:
    return unquote_to_bytes(text.replace(b"+", b" "))


def scrub_uri(uri: bytes) -> bytes:
    """The URI with the values of secret query parameters replaced; any bytes are fine.

    Names are compared the way the query parser reads them (percent-decoded), so an
    encoded name such as %74oken is scrubbed too. Pairs are split on ";" as well as "&":
    that scrubs more than the parser reads, never less.
    """
    path, sep, query = uri.partition(b"?")
    if not sep:
        return uri
    pairs = []
    for pair in re.split(rb"[&;]", query):
        name, equals, _ = pair.partition(b"=")
        if _unquote(name).lower() in SECRET_PARAMETERS:
            pair = name + b"=REDACTED"
        pairs.append(pair)
    return path + b"?" + b"&".join(pairs)


class AdminRequest(server.Request):
    """A request whose form is parsed while it arrives; see the module docstring."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.request_id = secrets.token_hex(8)
        self.form = Form()
        self.body_problem: APIError | None = None
        self._form_stream: FormStream | None = None
        self._refused = False

    def setHeader(self, name, value) -> None:
        # twisted.web announces its name and version in every answer; say less.
        if name.lower() == b"server":
            value = SERVER_NAME
        super().setHeader(name, value)

    def __repr__(self) -> str:
        return f"<AdminRequest {self.request_id} {self.method!r} {scrub_uri(self.uri or b'')!r}>"

    @property
    def policy(self) -> BodyPolicy:
        return self.channel.site.policy

    # Before the body arrives, twisted.web has parsed the request line but not yet set
    # self.method and self.uri (they are set in requestReceived, after the body). The
    # channel keeps them in private attributes; these two are the only readers.

    @property
    def line_method(self) -> bytes:
        return self.method if self.method != b"(no method yet)" else self.channel._command

    @property
    def line_uri(self) -> bytes:
        return self.uri if self.uri != b"(no uri yet)" else self.channel._path

    @property
    def line_path(self) -> bytes:
        return self.line_uri.partition(b"?")[0]

    def gotLength(self, length: int | None) -> None:
        self.content = io.BytesIO()  # stays empty: bodies go to the form stream or nowhere
        if length == 0:
            return
        plan = self.policy.plan(self.line_method, self.line_uri)
        if isinstance(plan, APIError):
            if length is None or length > EARLY_REFUSAL_THRESHOLD:
                self._refuse_early(plan)
        elif isinstance(plan, FormPlan):
            self._start_form(plan, length)
        elif length is None or length > EARLY_REFUSAL_THRESHOLD:
            self._refuse_early(APIError(413, "This endpoint takes no request body"))

    def _start_form(self, plan: FormPlan, length: int | None) -> None:
        boundary = multipart_boundary(self.requestHeaders.getRawHeaders(b"content-type", [None])[0])
        if boundary is None:
            self.body_problem = APIError(400, "Expected a multipart/form-data body")
        elif length is not None and length > plan.most_bytes():
            self._refuse_early(APIError(413, "Request body is larger than this endpoint accepts"))
        else:
            transport = self.channel.transport
            writer = DiskWriter(self.channel.site.reactor, transport.pauseProducing, transport.resumeProducing)
            self._form_stream = FormStream(plan, boundary, self.policy.uploads, writer)

    def handleContentChunk(self, data: bytes) -> None:
        if self._form_stream is not None:
            self._form_stream.feed(data)

    def requestReceived(self, command: bytes, path: bytes, version: bytes) -> None:
        if self._refused:
            return
        if self._form_stream is None:
            return super().requestReceived(command, path, version)
        # The request is handled once the form is all on disk.
        finished = self._form_stream.finish()
        finished.addCallbacks(self._form_ready, self._form_refused)
        finished.addCallback(lambda _: self._handle_unless_gone(command, path, version))

    def _form_ready(self, form) -> None:
        self._form_stream = None
        self.form = form

    def _form_refused(self, failure) -> None:
        self._form_stream = None
        if failure.check(APIError):
            self.body_problem = failure.value
        else:
            self.channel.site.logger.failure("Reading the upload of {id} failed", failure, id=self.request_id)
            self.body_problem = APIError(500, "Could not store the upload")

    def _handle_unless_gone(self, command: bytes, path: bytes, version: bytes) -> None:
        if self._disconnected:
            self.form.discard()  # the client left: nothing is started on its behalf
            return
        super().requestReceived(command, path, version)

    def process(self) -> None:
        self.args = parse_query(self.uri)  # not twisted.web's parser, which also splits on ";"
        add_security_headers(self)
        self.setHeader(b"X-Request-Id", self.request_id.encode())
        self.notifyFinish().addBoth(lambda _: self.form.discard())
        super().process()

    def render(self, resrc) -> None:
        """A body the HTTP layer refused is answered here; the API never sees it."""
        if self.body_problem is None:
            return super().render(resrc)
        problem = self.body_problem
        payload = responses.error(self, problem.status, problem.message, self.policy.first_run())
        if self.method != b"HEAD":
            self.write(payload)
        self.finish()

    def connectionLost(self, reason) -> None:
        if self._form_stream is not None:
            self._form_stream.abort()
        self.form.discard()
        super().connectionLost(reason)

    def _refuse_early(self, problem: APIError) -> None:
        """Answer before the body arrives and hang up, so nothing large is read for nothing."""
        self._refused = True
        self.requestHeaders.removeHeader(b"expect")  # no "100 Continue" before the answer
        site = self.channel.site
        site.refused_early(self, problem)
        delay = self.policy.refusal_delay(self.line_path, problem)
        answer = self._early_answer(problem, self.policy.first_run())
        if delay:
            site.clock.callLater(delay, self._send_early, answer)
        else:
            self._send_early(answer)

    def _early_answer(self, problem: APIError, first_run: bool) -> bytes:
        """The error answer as bytes, written to the connection before the request is
        complete (twisted.web's own writing needs a finished request line and body)."""
        headers, payload = responses.error_answer(problem.status, problem.message, first_run)
        headers = {**SECURITY_HEADERS, **headers, b"Connection": b"close", b"X-Request-Id": self.request_id.encode()}
        head = [f"HTTP/1.1 {status_line(problem.status)}".encode()]
        head += [name + b": " + value for name, value in headers.items()]
        return b"\r\n".join(head) + b"\r\n\r\n" + payload

    def _send_early(self, answer: bytes) -> None:
        if self.channel.transport is not None and not self._disconnected:
            self.channel.transport.write(answer)
            self.channel.loseConnection()


class AdminSite(server.Site):
    requestFactory = AdminRequest
    logger = Logger()

    def __init__(self, resource, policy: BodyPolicy, reactor, clock=None):
        super().__init__(resource, reactor=reactor)
        self.policy = policy
        self.clock = clock or reactor
        self.displayTracebacks = False

    def log(self, request: AdminRequest) -> None:
        """The access log, through twisted.logger, with secrets scrubbed.

        Whatever goes wrong here must not keep the request from finishing."""
        try:
            self._log_access(request)
            self.policy.finished(request)
        except Exception:
            self.logger.failure("Could not log request {id}", id=request.request_id)

    def _log_access(self, request: AdminRequest) -> None:
        self.logger.info(
            '{client} "{method} {uri} {protocol}" {code} {length} id={request_id}',
            client=client_host(request),
            method=request.method.decode("ascii", "replace"),
            uri=scrub_uri(request.uri).decode("ascii", "replace"),
            protocol=(request.clientproto or b"").decode("ascii", "replace"),
            code=request.code,
            length=request.sentLength or "-",
            request_id=request.request_id,
        )

    def refused_early(self, request: AdminRequest, problem: APIError) -> None:
        self.logger.info(
            '{client} "{method} {uri}" {code} refused before the body: {message} id={request_id}',
            client=client_host(request),
            method=request.line_method.decode("ascii", "replace"),
            uri=scrub_uri(request.line_uri).decode("ascii", "replace"),
            code=problem.status,
            message=problem.message,
            request_id=request.request_id,
        )
        self.policy.refused(request, request.line_method, request.line_path, problem)
