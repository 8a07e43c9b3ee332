"""Requests twisted.web refuses at the protocol level get the API's answers, not a hang-up."""

import json
import os
import select
import socket
import ssl
import time

import pytest
import pytest_twisted
from twisted.internet.threads import deferToThread

from conftest import multipart, parse_responses, raw_conversation, raw_request, tls_client_context
from test_wire import assert_security_headers

TOKEN = "yourtoken"
VERSION = f"/api/v1/admin/version?token={TOKEN}"
MiB = 1024 * 1024


@pytest.fixture
def versioned(daemon):
    (daemon.admin_path / "etc" / "version.txt").write_text("1.2.3\n")
    return daemon


async def one_answer(daemon, data: bytes):
    responses = await raw_conversation(daemon, data, timeout=5.0)
    assert len(responses) == 1, responses
    return responses[0]


def assert_json_error(response, status: int, message: str | None = None) -> dict:
    """The answer is the API's JSON error, with every header an API answer carries."""
    assert response.status == status, response
    body = json.loads(response.body)
    assert body["Status"].startswith(f"{status} ")
    if message is not None:
        assert message in body["Error-Message"]
        assert response.header("Error-Message") == body["Error-Message"]
    assert response.header("Content-Type") == "application/json"
    assert response.header("Content-Length") == str(len(response.body))
    assert len(response.header("X-Request-Id") or "") == 16
    assert_security_headers(response.header)
    return body


# Lines over the limit


@pytest.mark.parametrize("size", [20_000, 100_000])
@pytest_twisted.ensureDeferred
async def test_a_long_request_line_is_414(daemon, size):
    target = VERSION + "&x=" + "y" * size
    answer = await one_answer(daemon, f"GET {target} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    assert_json_error(answer, 414, "Request line is longer than 16384 bytes")
    assert answer.header("Connection") == "close"


@pytest.mark.parametrize("size", [20_000, 100_000])
@pytest_twisted.ensureDeferred
async def test_a_long_header_line_is_431(daemon, size):
    data = f"GET {VERSION} HTTP/1.1\r\nHost: x\r\nX-Long: {'z' * size}\r\n\r\n".encode()
    answer = await one_answer(daemon, data)
    assert_json_error(answer, 431, "Request header fields are larger than 16384 bytes")


@pytest_twisted.ensureDeferred
async def test_headers_over_the_total_limit_are_431(daemon):
    headers = "".join(f"X-Pad-{i}: {'p' * 900}\r\n" for i in range(20))
    answer = await one_answer(daemon, f"GET {VERSION} HTTP/1.1\r\nHost: x\r\n{headers}\r\n".encode())
    assert_json_error(answer, 431)


@pytest_twisted.ensureDeferred
async def test_too_many_header_fields_are_431(daemon):
    headers = "".join(f"X-{i}: 1\r\n" for i in range(600))
    answer = await one_answer(daemon, f"GET {VERSION} HTTP/1.1\r\nHost: x\r\n{headers}\r\n".encode())
    assert_json_error(answer, 431, "More than 500 request header fields")


@pytest_twisted.ensureDeferred
async def test_a_long_line_after_a_good_request_is_answered_too(versioned):
    good = f"GET {VERSION} HTTP/1.1\r\nHost: x\r\n\r\n".encode()
    bad = f"GET {VERSION}&x={'y' * 20_000} HTTP/1.1\r\nHost: x\r\n\r\n".encode()
    first, second = await raw_conversation(versioned, good + bad, timeout=5.0)
    assert first.status == 200
    assert_json_error(second, 414)


# Protocol-level 400s


@pytest.mark.parametrize("data", [
    b"GET /api/v1/admin/ver\x01sion HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET /api/v1/admin/version HTTP/1.1 extra\r\nHost: x\r\n\r\n",
    b"GET /api/v1/admin/version HTTP/1.1\r\nHost: x\r\nno colon here\r\n\r\n",
    b"GET /api/v1/admin/version HTTP/1.1\r\nHost: x\r\nBad Name: 1\r\n\r\n",
    b"POST /api/v1/admin/setup HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
    b"POST /api/v1/admin/setup HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n",
    b"POST /api/v1/admin/setup HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n",
    b"POST /api/v1/admin/setup HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    b"POST /api/v1/admin/setup HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcX\r\n",
], ids=["control-byte", "four-parts", "no-colon", "bad-name", "two-lengths", "negative-length",
        "unknown-coding", "bad-chunk-size", "bad-chunk-end"])
@pytest_twisted.ensureDeferred
async def test_protocol_errors_get_the_json_400(daemon, data):
    answer = await one_answer(daemon, data)
    assert_json_error(answer, 400, "Malformed HTTP request")
    assert answer.header("Connection") == "close"


@pytest.mark.parametrize("method", ["GET", "OPTIONS", "HEAD", "POST"])
@pytest_twisted.ensureDeferred
async def test_asterisk_is_an_unknown_path(daemon, method):
    response = await raw_request(daemon, method, "*")
    assert response.status == 404
    if method != "HEAD":
        assert response.body == b'{"Status":"404 Not Found"}'
    assert_security_headers(response.header)


# Chunked bodies


def send_until_answered(port: int, head: bytes, chunk: bytes, total: int) -> tuple[int, bytes]:
    """Send a head, then chunks until ``total`` bytes or until the server answers (or hangs
    up). Returns (body bytes sent, everything received)."""
    sent, received = 0, b""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        with tls_client_context().wrap_socket(raw) as tls:
            tls.sendall(head)
            try:
                while sent < total:
                    early = received_so_far(tls)
                    if early is not None:
                        received = early
                        break
                    tls.sendall(chunk)
                    sent += len(chunk)
            except (BrokenPipeError, ConnectionResetError):
                pass
            deadline = time.monotonic() + 10
            try:
                while time.monotonic() < deadline:
                    data = tls.recv(65536)
                    if not data:
                        break
                    received += data
            except (OSError, ValueError):
                pass
    return sent, received


def received_so_far(tls) -> bytes | None:
    """Application data the server has sent already, without waiting; None if none (a
    readable socket may hold only TLS session tickets)."""
    if not select.select([tls], [], [], 0)[0] and not tls.pending():
        return None
    tls.settimeout(0.0)
    try:
        return tls.recv(65536)
    except ssl.SSLWantReadError:
        return None
    finally:
        tls.settimeout(10)


def chunked_form(path: str, pieces: int, piece: bytes) -> tuple[bytes, bytes, int]:
    """The head of a chunked multipart POST, one chunk, and the body size to send."""
    content_type = "multipart/form-data; boundary=BOUNDARY"
    head = (f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: {content_type}\r\n"
            "Transfer-Encoding: chunked\r\n\r\n").encode()
    start = b'--BOUNDARY\r\nContent-Disposition: form-data; name="update"; filename="p.enc"\r\n\r\n'
    head += b"%x\r\n%s\r\n" % (len(start), start)
    chunk = b"%x\r\n%s\r\n" % (len(piece), piece)
    return head, chunk, pieces * len(chunk)


@pytest_twisted.ensureDeferred
async def test_a_chunked_body_over_the_caps_is_refused_while_it_arrives(daemon):
    head, chunk, total = chunked_form(f"/api/v1/admin/setup?token={TOKEN}", 800, os.urandom(64 * 1024))
    sent, received = await deferToThread(send_until_answered, daemon.port, head, chunk, total)
    (answer,) = parse_responses(received)
    assert_json_error(answer, 413, "Request body is larger than this endpoint accepts")
    assert sent < 4 * MiB, f"{sent} bytes of a 50 MiB body were read before the answer"


@pytest_twisted.ensureDeferred
async def test_a_chunked_upload_over_its_cap_leaves_no_partial_file(make_daemon):
    daemon = make_daemon({"upload-limits": {"update": 1 * MiB}})
    head, chunk, total = chunked_form(f"/api/v1/admin/update?token={TOKEN}", 320, os.urandom(64 * 1024))
    sent, received = await deferToThread(send_until_answered, daemon.port, head, chunk, total)
    (answer,) = parse_responses(received)
    assert answer.status == 413
    assert sent < 8 * MiB
    uploads = daemon.admin_path / "home" / "sftp" / "uploads"
    for _ in range(100):
        if not os.listdir(uploads):
            break
        await deferToThread(time.sleep, 0.05)
    assert os.listdir(uploads) == []


@pytest_twisted.ensureDeferred
async def test_a_chunked_body_within_the_caps_is_accepted(daemon):
    content_type, body = multipart({"newtoken": "chunked"})
    encoded = b"".join(b"%x\r\n%s\r\n" % (len(piece), piece) for piece in (body[:10], body[10:])) + b"0\r\n\r\n"
    data = (f"POST /api/v1/admin/setup?token={TOKEN} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
            f"Content-Type: {content_type}\r\nTransfer-Encoding: chunked\r\n\r\n").encode() + encoded
    answer = await one_answer(daemon, data)
    assert answer.status == 200
    assert (daemon.admin_path / "etc" / "api.token").read_text() == "chunked\n"


@pytest_twisted.ensureDeferred
async def test_a_large_body_that_is_not_a_form_is_refused_before_it_is_read(daemon):
    head = (f"POST /api/v1/admin/update?token={TOKEN} HTTP/1.1\r\nHost: x\r\n"
            f"Content-Type: application/json\r\nContent-Length: {1024 * MiB}\r\n\r\n").encode()
    sent, received = await deferToThread(send_until_answered, daemon.port, head, b"x" * 65536, 1024 * MiB)
    (answer,) = parse_responses(received)
    assert_json_error(answer, 400, "Expected a multipart/form-data body")
    assert sent < 8 * MiB


# Bodies nobody asked for, and bodies of the wrong kind: refused before they are read
# when they are large or of unknown length, read to the end first when they are small.


async def answer_to_the_head_alone(daemon, head: bytes) -> list:
    """Send only the request head (and no body, or a body's first chunk); what the daemon
    answers without waiting for the rest."""
    from twisted.internet.protocol import Protocol

    received = []
    client = Protocol()
    client.dataReceived = received.append
    daemon.network.attach(client)
    client.transport.write(head)
    await daemon.network.settle()
    return parse_responses(b"".join(received)) if received else []


def request_head(method: str, target: str, content_type: str, length: int | None) -> bytes:
    framing = "Transfer-Encoding: chunked" if length is None else f"Content-Length: {length}"
    return f"{method} {target} HTTP/1.1\r\nHost: x\r\nContent-Type: {content_type}\r\n{framing}\r\n\r\n".encode()


VERSION_BY_TOKEN = "/api/v1/admin/version?token=yourtoken"
UPDATE_BY_TOKEN = "/api/v1/admin/update?token=yourtoken"


@pytest.mark.parametrize("method, target, content_type, message, status", [
    ("GET", VERSION_BY_TOKEN, "text/plain", "This endpoint takes no request body", 413),
    ("POST", UPDATE_BY_TOKEN, "text/plain", "Expected a multipart/form-data body", 400),
])
@pytest.mark.parametrize("length", [100_000, None], ids=["large", "chunked"])
@pytest_twisted.ensureDeferred
async def test_a_large_or_chunked_body_of_the_wrong_kind_is_refused_before_it_is_read(
        memory_daemon, method, target, content_type, message, status, length):
    head = request_head(method, target, content_type, length) + (b"a\r\n" + b"x" * 10 + b"\r\n" if length is None else b"")
    answers = await answer_to_the_head_alone(memory_daemon, head)
    assert [(a.status, json.loads(a.body)["Error-Message"], a.headers["connection"]) for a in answers] == [
        (status, message, "close")]


@pytest.mark.parametrize("method, target, content_type", [
    ("GET", VERSION_BY_TOKEN, "text/plain"),
    ("POST", UPDATE_BY_TOKEN, "text/plain"),
])
@pytest_twisted.ensureDeferred
async def test_a_small_body_of_the_wrong_kind_is_read_to_the_end_first(memory_daemon, method, target, content_type):
    """So the client, still sending, is not cut off before it can read the answer."""
    (memory_daemon.admin_path / "etc" / "version.txt").write_text("1.0.0\n")
    assert await answer_to_the_head_alone(memory_daemon, request_head(method, target, content_type, 10)) == []
    response = await raw_request(memory_daemon, method, target, {"Content-Type": content_type}, b"x" * 10)
    expected = (200, b'{"version":"1.0.0"}') if method == "GET" else (
        400, b'{"Status":"400 Bad Request","Error-Message":"Expected a multipart/form-data body"}')
    assert (response.status, response.body) == expected
