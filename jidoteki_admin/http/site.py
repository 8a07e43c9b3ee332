"""The HTTP layer under the API: a Request that streams form bodies, a Channel with
deadlines, and the Site with its connection caps.

Twisted's stock Request buffers a whole body and then parses it in memory. This one asks
the site's BodyPolicy, as soon as the headers are in, what the body may hold, then streams
it through uploads.FormStream, or throws it away unread. The policy is all this layer
knows of the API; every use of Twisted's private attributes is in this module.

Twisted's stock channel lets a client that sends a byte every few seconds hold a
connection for ever, drops a line over its limit without a word and answers a request it
cannot parse with a bare "400 Bad Request". AdminChannel gives the headers a deadline and
the body a minimum rate, and answers every refusal with the API's JSON error; the site
closes new connections past its caps at once.
"""

from __future__ import annotations

import hashlib
import io
import ipaddress
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote_to_bytes

from twisted.logger import Logger
from twisted.protocols.policies import ProtocolWrapper, WrappingFactory
from twisted.web import http, server

from ..config import ConnectionLimits
from . import responses
from .accesslog import AccessLog
from .audit import client_host
from .responses import SECURITY_HEADERS, APIError, add_security_headers, status_line
from .traffic import Traffic
from .uploads import DiskWriter, Form, FormPlan, FormStream, multipart_boundary

SECRET_PARAMETERS = {b"token", b"hash", b"newtoken", b"link"}  # a spent link is still nobody's business
SERVER_NAME = b"jidoteki-admin"
# A body this small is read to the end before answering, so the client sees a clean reply.
EARLY_REFUSAL_THRESHOLD = 64 * 1024
TOO_LARGE = "Request body is larger than this endpoint accepts"
# After an answer that ends a connection, a client has this long to let go before it is
# cut off: a TLS close otherwise waits for the client's own close for as long as it likes.
CLOSE_GRACE = 2.0
# Connections closed past the caps are logged at most once in this many seconds.
REFUSAL_REPORT_INTERVAL = 60.0


class RequestIds:
    """Random request ids (16 hex digits) drawn from the system a batch at a time: one
    os.urandom call per request cost as much as the rest of making the request."""

    BATCH = 256

    def __init__(self):
        self._pool = ""
        self._at = 0

    def next(self) -> str:
        if self._at >= len(self._pool):
            self._pool, self._at = os.urandom(8 * self.BATCH).hex(), 0
        start, self._at = self._at, self._at + 16
        return self._pool[start:self._at]


new_request_id = RequestIds().next


@dataclass(frozen=True)
class BodyPolicy:
    """What the HTTP layer asks of the API about a request whose body has not arrived."""

    # (request, its line and headers in) -> a FormPlan to stream, an APIError to refuse
    # with, or None for "no body expected".
    plan: Callable[..., FormPlan | APIError | None]
    # (request, path, refusal) -> seconds to wait before answering it
    refusal_delay: Callable[..., float]
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


def early_answer(status: int, message: str | None, first_run: bool | None, request_id: str) -> bytes:
    """An error answer as bytes, for writing straight to a connection that is then closed:
    before a request is complete, or for one twisted.web could not parse. It carries what
    every answer of the API carries: the JSON body, the security headers, X-Request-Id and
    the Server name."""
    headers, payload = responses.error_answer(status, message, first_run)
    headers = {b"Server": SERVER_NAME, **SECURITY_HEADERS, **headers, b"Connection": b"close",
               b"X-Request-Id": request_id.encode()}
    head = [f"HTTP/1.1 {status_line(status)}".encode()]
    head += [name + b": " + value for name, value in headers.items()]
    return b"\r\n".join(head) + b"\r\n\r\n" + payload


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
        self.request_id = new_request_id()
        self.form = Form()
        self.body_problem: APIError | None = None
        self._form_stream: FormStream | None = None
        self._refused = False
        self._body_cap = 0  # for a chunked body, whose length nobody announced
        self._body_seen = 0
        self._uploading: set = set()  # the site's set of uploads, once this is one
        self.body_sha256 = None  # of the body as received, when it comes with a Content-Digest
        self.identity = None  # who the request is from, once the API has decided (auth.Identity)

    def setHeader(self, name, value) -> None:
        # twisted.web announces its name and version in every answer; say less.
        if name.lower() == b"server":
            value = SERVER_NAME
        super().setHeader(name, value)

    def processingFailed(self, reason):
        """The last resort, when even the API's error layer failed: twisted.web would answer
        an HTML page; this answers the API's JSON 500, as the error layer would have."""
        self._log.failure("Request {id} failed outside the error layer", failure=reason, id=self.request_id)
        if self.startedWriting:  # an answer is half out: all that can be done is to end it
            self.channel.loseConnection()
            return reason
        headers, payload = responses.error_answer(500, f"Internal error (request {self.request_id})", None)
        self.setResponseCode(500)
        for name, value in headers.items():
            self.setHeader(name, value)
        self.write(payload)
        self.finish()
        return reason

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
        if self.requestHeaders.hasHeader(b"content-digest"):
            self.body_sha256 = hashlib.sha256()  # a signature may cover it: checked before the handler
        plan = self.policy.plan(self)
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
            if length is None or length > EARLY_REFUSAL_THRESHOLD:
                self._refuse_early(self.body_problem)  # not worth reading to the end
        elif length is not None and length > plan.most_bytes():
            self._refuse_early(APIError(413, TOO_LARGE))
        else:
            self._body_cap = plan.most_bytes()
            channel = self.channel
            writer = DiskWriter(channel.site.reactor, channel.pause_reading, channel.resume_reading)
            self._form_stream = FormStream(plan, boundary, self.policy.uploads, writer)
            self._uploading = channel.site.uploading  # the channel is gone when the request ends
            self._uploading.add(self)

    def handleContentChunk(self, data: bytes) -> None:
        if self.body_sha256 is not None:
            self.body_sha256.update(data)  # a body no form reads is still the one the signature covers
        if self._form_stream is None:
            return
        self._body_seen += len(data)
        if self._body_seen > self._body_cap:
            # Only a chunked body gets here (a Content-Length over the cap was refused at
            # once): it gets the same cap, applied as it arrives.
            self._form_stream.abort()
            self._form_stream = None
            self._refuse_early(APIError(413, TOO_LARGE))
            return
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
        if not self.path.startswith(b"/"):
            self.body_problem = APIError(404)  # "OPTIONS *", or an absolute URI: no such path here
        add_security_headers(self)
        self.setHeader(b"X-Request-Id", self.request_id.encode())
        self.notifyFinish().addBoth(lambda _: self.abort_upload())
        super().process()

    def _handleStar(self) -> None:
        # twisted.web answers "OPTIONS *" (and 405s any other method on "*") with an empty
        # body of its own; here it is an unknown path like any other (set in process).
        self.render(None)

    def render(self, resrc) -> None:
        """A request the HTTP layer refused (its body, or a target that is not a path) is
        answered here; the API never sees it."""
        if self.body_problem is None:
            return super().render(resrc)
        problem = self.body_problem
        payload = responses.error(self, problem.status, problem.message, self.policy.first_run())
        if self.method != b"HEAD":
            self.write(payload)
        self.finish()

    def connectionLost(self, reason) -> None:
        self.abort_upload()
        super().connectionLost(reason)

    def abort_upload(self) -> None:
        """Stop reading the form and remove what no handler claimed: the request ended,
        its client left, or the daemon is stopping."""
        if self._form_stream is not None:
            self._form_stream.abort()
            self._form_stream = None
        self.form.discard()
        self._uploading.discard(self)

    def _refuse_early(self, problem: APIError) -> None:
        """Answer before the body arrives and hang up, so nothing large is read for nothing."""
        self._refused = True
        self.requestHeaders.removeHeader(b"expect")  # no "100 Continue" before the answer
        site = self.channel.site
        site.refused_early(self, problem)
        delay = self.policy.refusal_delay(self, self.line_path, problem)
        # twisted.web's own writing needs a finished request line and body: write the bytes.
        answer = early_answer(problem.status, problem.message, self.policy.first_run(), self.request_id)
        if delay:
            site.clock.callLater(delay, self._send_early, answer)
        else:
            self._send_early(answer)

    def _send_early(self, answer: bytes) -> None:
        # After a delay the client may have gone; twisted.web then drops the channel.
        if not self._disconnected and self.channel is not None and self.channel.transport is not None:
            self.channel.answer_and_close(answer)


# Where a channel is in the life of a request.
HEADERS, BODY, HANDLING, IDLE = "headers", "body", "handling", "idle"


class AdminChannel(http.HTTPChannel):
    """An HTTP/1.1 channel with deadlines, whose refusals are the API's answers.

    The request line and headers must arrive within ``header-timeout`` seconds of the
    connection (or of the first byte of the next request on a kept-alive one); a body must
    average ``body-min-rate`` bytes a second over each ``body-rate-window``, except while
    the daemon itself has paused reading. A line over the limit is answered 414 or 431, a
    request twisted.web cannot parse 400, a deadline missed 408: each with the JSON error
    body, the security headers and an X-Request-Id, and the connection is closed.
    """

    def __init__(self):
        super().__init__()
        self._phase = IDLE
        self._at_request_line = True
        self._timer = None  # the header deadline, or the next check of the body's rate
        self._body_bytes = 0
        self._reading_paused = False
        self._paused_in_window = False
        self._abort_call = None
        self._answered = False
        self._host = None
        self._secure: bool | None = None

    @property
    def limits(self) -> ConnectionLimits:
        return self.site.limits

    # Every request asks for these; through the TLS and connection-cap wrappers each
    # answer costs attribute lookups, an interface adaptation or a getsockname system
    # call. Neither changes during a connection, so each is asked once.

    def getHost(self):
        if self._host is None:
            self._host = super().getHost()
        return self._host

    def isSecure(self) -> bool:
        if self._secure is None:
            self._secure = bool(super().isSecure())
        return self._secure

    def connectionMade(self) -> None:
        super().connectionMade()
        self._begin_request()  # the TLS handshake counts against the first deadline

    def dataReceived(self, data: bytes) -> None:
        if self._answered:
            return  # read and dropped until the connection closes: nothing more is answered
        if self._phase == IDLE and data:
            self._begin_request()
        super().dataReceived(data)

    def lineReceived(self, line: bytes) -> None:
        if self._phase == IDLE:
            self._begin_request()  # a pipelined request, played back after the last one
        if self._receivedHeaderSize + len(line) > self.totalHeadersSize:
            self._too_large()
            return
        if line:
            self._at_request_line = False
        super().lineReceived(line)

    def lineLengthExceeded(self, line: bytes) -> None:
        self._too_large()

    def headerReceived(self, line: bytes) -> bool:
        if self._receivedHeaderCount >= self.maxHeaders:
            self.refuse(431, f"More than {self.maxHeaders} request header fields")
            return False
        return super().headerReceived(line)

    def allHeadersReceived(self) -> None:
        self._stop_timer()
        self._phase = BODY
        self.site.connections.progressed(self)
        super().allHeadersReceived()
        if self._phase == BODY and self.length != 0 and not self._answered:
            self._watch_body()

    def rawDataReceived(self, data: bytes) -> None:
        if self._phase == BODY:
            self._body_bytes += len(data)
        super().rawDataReceived(data)

    def allContentReceived(self) -> None:
        self._stop_timer()
        self._phase = HANDLING
        super().allContentReceived()

    def requestDone(self, request) -> None:
        if self.persistent:
            self._phase = IDLE  # the idle timeout applies until the next request begins
            self._at_request_line = True
            self.site.connections.waiting(self)
        super().requestDone(request)

    def connectionLost(self, reason) -> None:
        self._stop_timer()
        self.site.connections.progressed(self)  # no longer one to make room with
        if self._abort_call is not None and self._abort_call.active():
            self._abort_call.cancel()
        self._abort_call = None
        super().connectionLost(reason)

    def _respondToBadRequestAndDisconnect(self) -> None:
        # twisted.web calls this for every request it cannot parse: bad bytes in the
        # request line, a header without a name, two lengths, a bad chunk.
        self.refuse(400, "Malformed HTTP request")

    # Reading, as the upload writer asks

    def pause_reading(self) -> None:
        """Stop reading (the disk is behind); the body's rate is not judged meanwhile."""
        self._reading_paused = self._paused_in_window = True
        self.transport.pauseProducing()

    def resume_reading(self) -> None:
        self._reading_paused = False
        self.transport.resumeProducing()

    # Answers that end the connection

    def refuse(self, status: int, message: str) -> None:
        """Answer with the API's JSON error and hang up."""
        if self._answered or self.transport is None:
            return
        request_id = self.requests[-1].request_id if self.requests else new_request_id()
        self.site.refused_connection(self, status, message, request_id)
        self.answer_and_close(early_answer(status, message, self.site.policy.first_run(), request_id))

    def answer_and_close(self, answer: bytes) -> None:
        """Write a complete answer and close; only the first such answer is written."""
        if self._answered:
            return
        self._answered = True
        self._stop_timer()
        if self._reading_paused:
            self.resume_reading()  # drain what the client sends, so it gets to read the answer
        self.transport.write(answer)
        self.loseConnection()
        if self._abort_call is None:
            self._abort_call = self.site.clock.callLater(CLOSE_GRACE, self._abort)

    def _abort(self) -> None:
        self._abort_call = None
        self.transport.abortConnection()

    def make_room(self) -> None:
        """Closed at once to admit a new connection: this one has made the least progress
        (the oldest still without a request's complete headers)."""
        self._answered = True
        self._stop_timer()
        self.transport.abortConnection()

    # Deadlines

    def _begin_request(self) -> None:
        if self._phase != HEADERS:
            self.site.connections.waiting(self)
        self._phase = HEADERS
        self._stop_timer()
        self._timer = self.site.clock.callLater(self.limits.header_timeout, self._headers_too_slow)

    def _headers_too_slow(self) -> None:
        self._timer = None
        self.refuse(408, f"The request headers did not arrive within {self.limits.header_timeout:g} seconds")

    def _watch_body(self) -> None:
        self._body_bytes = 0
        self._paused_in_window = self._reading_paused
        self._timer = self.site.clock.callLater(self.limits.body_rate_window, self._check_body_rate)

    def _check_body_rate(self) -> None:
        self._timer = None
        limits = self.limits
        if self._body_bytes < limits.body_min_rate * limits.body_rate_window and not self._paused_in_window:
            self.refuse(408, f"The request body arrived slower than {limits.body_min_rate} bytes a second")
        else:
            self._watch_body()

    def _stop_timer(self) -> None:
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None

    def _too_large(self) -> None:
        if self._at_request_line:
            self.refuse(414, f"Request line is longer than {self.MAX_LENGTH} bytes")
        else:
            self.refuse(431, f"Request header fields are larger than {self.totalHeadersSize} bytes")


def client_network(host: str) -> str:
    """What the per-client cap counts by: the /24 of an IPv4 address and the /64 of an IPv6
    one (a single IPv6 host commonly holds a whole /64), so that one host cannot take the
    cap many times over by changing its address."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host  # not an IP address (a Unix socket, an in-memory test transport)
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    prefix = 24 if address.version == 4 else 64
    return str(ipaddress.ip_network(f"{address}/{prefix}", strict=False))


class ConnectionCounter:
    """Open connections, in all and per client network, held against the site's caps.

    A new connection past the per-client cap is refused. One past the global cap makes
    room: the open connection that has made the least progress (the one waiting longest
    without a request's complete headers, usually a client trickling them) is closed to
    admit it, so connections held open slowly from many addresses cannot lock an
    administrator out; only when every open connection is busy with a request is the new
    one refused. Refusals are logged at most once a minute, with how many there were, so a
    flood of connections cannot flood the log."""

    def __init__(self, site: "AdminSite"):
        self.site = site
        self.total = 0
        self.by_host: dict[str, int] = {}  # by client network (client_network)
        self._waiting: dict[AdminChannel, None] = {}  # without complete headers, longest first
        self._closing: set[AdminChannel] = set()  # closed to make room, not yet gone
        self.made_room = 0  # connections closed to admit others, since the start
        self._unreported = 0
        self._last_report: float | None = None

    def waiting(self, channel: "AdminChannel") -> None:
        """A connection waits for a request's headers from now on."""
        self._waiting.pop(channel, None)
        self._waiting[channel] = None

    def progressed(self, channel: "AdminChannel") -> None:
        """A connection has a request's headers (or is gone)."""
        self._waiting.pop(channel, None)
        self._closing.discard(channel)

    def admit(self, host: str) -> bool:
        limits = self.site.limits
        network = client_network(host)
        if self.by_host.get(network, 0) >= limits.max_per_client:
            self._refused(f"{network} has {self.by_host[network]} connections open "
                          f"(connections.max-per-client is {limits.max_per_client})")
            return False
        if self.total - len(self._closing) >= limits.max and not self._make_room():
            self._refused(f"{self.total} connections are open, each busy with a request "
                          f"(connections.max is {limits.max})")
            return False
        self.total += 1
        self.by_host[network] = self.by_host.get(network, 0) + 1
        return True

    def _make_room(self) -> bool:
        if not self._waiting:
            return False
        channel = next(iter(self._waiting))
        self._waiting.pop(channel)
        self._closing.add(channel)
        self.made_room += 1
        channel.make_room()
        return True

    def release(self, host: str) -> None:
        self.total -= 1
        network = client_network(host)
        left = self.by_host.get(network, 1) - 1
        if left > 0:
            self.by_host[network] = left
        else:
            self.by_host.pop(network, None)

    def _refused(self, reason: str) -> None:
        self._unreported += 1
        now = self.site.clock.seconds()
        if self._last_report is None or now - self._last_report >= REFUSAL_REPORT_INTERVAL:
            self.site.logger.warn("Closed {count} new connection(s) at once: {reason}",
                                  count=self._unreported, reason=reason)
            self._unreported, self._last_report = 0, now


class ConnectionLimiter(WrappingFactory):
    """Wraps a listener's factory (TLS, or the site itself): a new connection past the
    caps is closed at once, before a byte is read or a TLS handshake is made."""

    protocol = ProtocolWrapper

    def __init__(self, wrapped, counter: ConnectionCounter):
        super().__init__(wrapped)
        self.counter = counter

    def buildProtocol(self, addr):
        host = getattr(addr, "host", "-")
        if not self.counter.admit(host):
            return None  # the listening port closes the socket
        protocol = super().buildProtocol(addr)
        protocol.client_host = host
        return protocol

    def unregisterProtocol(self, protocol) -> None:
        super().unregisterProtocol(protocol)
        self.counter.release(protocol.client_host)


class AdminSite(server.Site):
    requestFactory = AdminRequest
    protocol = AdminChannel  # HTTP/1.1 only: the TLS context never offers h2
    logger = Logger()

    def __init__(self, resource, policy: BodyPolicy, reactor, clock=None,
                 limits: ConnectionLimits = ConnectionLimits(), traffic: Traffic | None = None):
        super().__init__(resource, reactor=reactor)
        self.policy = policy
        self.traffic = traffic or Traffic()  # every answer counted by status, as it is logged
        self.clock = clock or reactor
        self.limits = limits  # replaced on SIGHUP; every connection reads the current one
        self.connections = ConnectionCounter(self)
        self.uploading: set[AdminRequest] = set()  # requests with a form on its way to disk
        self.displayTracebacks = False
        self.access_log = AccessLog(self.clock)  # the daemon points it at twistd's log file

    def buildProtocol(self, addr):
        channel = super().buildProtocol(addr)
        channel.callLater = self.clock.callLater  # the idle timeout, on the injected clock
        return channel

    def abort_uploads(self) -> None:
        """Abort every upload in progress (the daemon is stopping): no new part is begun
        and no partial file is kept."""
        for request in list(self.uploading):
            request.abort_upload()

    def limited(self, factory) -> ConnectionLimiter:
        """A listener's factory held to this site's connection caps (one count for all)."""
        return ConnectionLimiter(factory, self.connections)

    def log(self, request: AdminRequest) -> None:
        """The access log line (accesslog.py: batched into twistd's log), secrets scrubbed.

        Whatever goes wrong here must not keep the request from finishing."""
        try:
            self.traffic.answered(request.code)
            self._log_access(request)
            self.policy.finished(request)
        except Exception:
            self.logger.failure("Could not log request {id}", id=request.request_id)

    def _log_access(self, request: AdminRequest) -> None:
        # One f-string: this runs for every request (see accesslog.py).
        self.access_log.record(
            f'{client_host(request)} "{_text(request.method)} {_text(scrub_uri(request.uri))} '
            f'{_text(request.clientproto or b"")}" {request.code} {request.sentLength or "-"} '
            f'id={request.request_id}'
        )

    def refused_connection(self, channel: AdminChannel, status: int, message: str, request_id: str) -> None:
        """The access log line of a request the channel refused before it was complete."""
        peer = channel.transport.getPeer() if channel.transport is not None else None
        self.traffic.answered(status)
        self.access_log.record(f"{getattr(peer, 'host', '-')} {status} {message} id={request_id}")

    def refused_early(self, request: AdminRequest, problem: APIError) -> None:
        self.traffic.answered(problem.status)
        self.access_log.record(
            f'{client_host(request)} "{_text(request.line_method)} {_text(scrub_uri(request.line_uri))}" '
            f'{problem.status} refused before the body: {problem.message} id={request.request_id}'
        )
        self.policy.refused(request, request.line_method, request.line_path, problem)


def _text(value: bytes) -> str:
    """Request bytes as log text: anything that is not ASCII shows as a replacement mark."""
    return value.decode("ascii", "replace")
