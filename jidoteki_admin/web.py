"""The HTTP layer under the API: a Request that streams form bodies, and the Site.

Twisted's stock Request buffers a whole body and then parses it in memory. This one asks
the API, as soon as the headers are in, what the body may hold (web.AdminSite.api.plan_body),
then streams it through uploads.FormStream, or throws it away unread.
"""

from __future__ import annotations

import io
import secrets
import re
from urllib.parse import unquote_to_bytes

from twisted.logger import Logger
from twisted.web import server

from .audit import client_host
from .responses import (
    SECURITY_HEADERS,
    APIError,
    add_security_headers,
    compact_json,
    error_value,
    header_safe,
    status_line,
)
from .uploads import DiskWriter, Form, FormPlan, FormStream, multipart_boundary

SECRET_PARAMETERS = {b"token", b"hash", b"newtoken"}
SERVER_NAME = b"jidoteki-admin"
# A body this small is read to the end before answering, so the client sees a clean reply.
EARLY_REFUSAL_THRESHOLD = 64 * 1024


def scrub_uri(uri: bytes) -> bytes:
    """The URI with the values of secret query parameters replaced; any bytes are fine.

    Names are compared the way the query parser reads them (percent-decoded), so an
    encoded name such as %74oken is scrubbed too.
    """
    path, sep, query = uri.partition(b"?")
    if not sep:
        return uri
    pairs = []
    for pair in re.split(rb"[&;]", query):
        name, equals, _ = pair.partition(b"=")
        if unquote_to_bytes(name.replace(b"+", b" ")).lower() in SECRET_PARAMETERS:
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

    def gotLength(self, length: int | None) -> None:
        self.content = io.BytesIO()  # stays empty: bodies go to the form stream or nowhere
        if length == 0:
            return
        plan = self.channel.site.api.plan_body(self.channel._command, self.channel._path)
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
            self._form_stream = FormStream(plan, boundary, self.channel.site.api.tree.uploads, writer)

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
        add_security_headers(self)
        self.setHeader(b"X-Request-Id", self.request_id.encode())
        self.notifyFinish().addBoth(lambda _: self.form.discard())
        super().process()

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
        delay = site.api.refusal_delay(self.channel._path.partition(b"?")[0], problem)
        answer = self._early_answer(problem, site.api.tokens.first_run)
        if delay:
            site.api.clock.callLater(delay, self._send_early, answer)
        else:
            self._send_early(answer)

    def _early_answer(self, problem: APIError, first_run: bool) -> bytes:
        payload = compact_json(error_value(problem.status, problem.message, first_run))
        headers = dict(SECURITY_HEADERS)
        headers.update(
            {
                b"Content-Type": b"application/json",
                b"Content-Length": str(len(payload)).encode(),
                b"Connection": b"close",
                b"X-Request-Id": self.request_id.encode(),
            }
        )
        if problem.message:
            headers[b"Error-Message"] = header_safe(problem.message)
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

    def __init__(self, api, reactor):
        super().__init__(api.resource(), reactor=reactor)
        self.api = api
        self.displayTracebacks = False

    def log(self, request: AdminRequest) -> None:
        """The access log, through twisted.logger, with secrets scrubbed.

        Whatever goes wrong here must not keep the request from finishing."""
        try:
            self._log_access(request)
            self.api.record_finished(request)
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
            method=request.channel._command.decode("ascii", "replace"),
            uri=scrub_uri(request.channel._path).decode("ascii", "replace"),
            code=problem.status,
            message=problem.message,
            request_id=request.request_id,
        )
        self.api.record_refusal(request, problem)
