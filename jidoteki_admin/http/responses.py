"""The wire format every answer shares (API.md): JSON status bodies, errors, headers."""

from __future__ import annotations

import json
import os

from twisted.protocols.basic import FileSender
from twisted.web import http
from twisted.web.http import RESPONSES

from .. import API_PREFIX

SECURITY_HEADERS = {
    b"Strict-Transport-Security": b"max-age=31536000",
    b"X-Frame-Options": b"DENY",
    b"X-Content-Type-Options": b"nosniff",
    b"Content-Security-Policy": b"default-src 'self'; frame-ancestors 'none'; base-uri 'none'",
    b"Referrer-Policy": b"no-referrer",
}

JSON = b"application/json"
TEXT = b"text/plain; charset=utf-8"
HTML = b"text/html; charset=utf-8"
MARKDOWN = b"text/markdown; charset=utf-8"
CSS = b"text/css; charset=utf-8"


class APIError(Exception):
    """Raised by a handler to answer with an error status and a message saying why."""

    def __init__(self, status: int, message: str | None = None):
        super().__init__(message or status_line(status))
        self.status = status
        self.message = message


# Reasons twisted.web's table lacks.
_REASONS = {431: b"Request Header Fields Too Large"}


def status_line(status: int) -> str:
    return f"{status} {(RESPONSES.get(status) or _REASONS.get(status, b'Unknown')).decode()}"


def add_security_headers(request) -> None:
    for name, value in SECURITY_HEADERS.items():
        request.responseHeaders.setRawHeaders(name, [value])


def body(request, status: int, content: bytes, content_type: bytes) -> bytes:
    """Set status, type and length for a complete body, and return the body."""
    request.setResponseCode(status)
    request.setHeader(b"Content-Type", content_type)
    request.setHeader(b"Content-Length", str(len(content)).encode())
    return content


def document(request, value: object, status: int = 200, no_cache: bool = False) -> bytes:
    """A JSON document such as {"version":"1.0.0"}: compact and without a trailing
    newline, byte for byte what the original daemon sends, so clients that compare
    bodies as strings keep working."""
    if no_cache:
        request.setHeader(b"Cache-Control", b"no-cache")
    return body(request, status, compact_json(value), JSON)


def text(request, content: bytes, no_cache: bool = False) -> bytes:
    if no_cache:
        request.setHeader(b"Cache-Control", b"no-cache")
    return body(request, 200, content, TEXT)


def status(request, code: int = 200) -> bytes:
    """{"Status":"200 OK"} and friends."""
    return _compact(request, code, {"Status": status_line(code)})


def accepted(request, endpoint: str) -> bytes:
    """202 for work handed to a job; the Location is where to poll for its status."""
    location = API_PREFIX + endpoint
    request.setHeader(b"Location", location.encode())
    return _compact(request, 202, {"Status": status_line(202), "Location": location})


def error(request, code: int, message: str | None = None, first_run: bool | None = None) -> bytes:
    """Answer an error through the request (the API's error layer)."""
    headers, payload = error_answer(code, message, first_run)
    request.setResponseCode(code)
    for name, value in headers.items():
        request.setHeader(name, value)
    return payload


def error_answer(code: int, message: str | None, first_run: bool | None) -> tuple[dict[bytes, bytes], bytes]:
    """The headers and body of every error answer, whoever writes it: the API's error
    layer through a request, or the HTTP layer straight to the connection."""
    payload = compact_json(error_value(code, message, first_run))
    headers = {b"Content-Type": JSON, b"Content-Length": str(len(payload)).encode()}
    if message:
        headers[b"Error-Message"] = header_safe(message)
    return headers, payload


def error_value(code: int, message: str | None, first_run: bool | None) -> dict:
    """The body of every error answer; "First-Run" only where first-run is enabled
    (TokenStore.first_run gives None elsewhere)."""
    value: dict[str, object] = {"Status": status_line(code)}
    if message:
        value["Error-Message"] = message
    if first_run is not None:
        value["First-Run"] = first_run
    return value


def compact_json(value: object) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


def _compact(request, code: int, value: dict) -> bytes:
    return body(request, code, compact_json(value), JSON)


def header_safe(message: str) -> bytes:
    """Header values are one line of visible ASCII."""
    return " ".join(message.split()).encode("ascii", "replace")


def json_file(path, limit: int, not_found: str, invalid: str) -> object:
    """A small JSON file a section answers with: 404 ``not_found`` when it is not there,
    500 ``invalid`` when it is not JSON. At most ``limit`` bytes are read."""
    try:
        with open(path, "rb") as f:
            return json.loads(f.read(limit))
    except FileNotFoundError:
        raise APIError(404, not_found) from None
    except ValueError:
        raise APIError(500, invalid) from None


def stream_file(request, path, content_type: bytes, filename: str | None = None, no_cache: bool = False):
    """Send a file of any size from disk with a producer; fires when the transfer ends.

    Raises APIError(404) when the file is not there.
    """
    try:
        f = open(path, "rb")
    except FileNotFoundError:
        raise APIError(404, f"{path.name} not found") from None
    info = os.fstat(f.fileno())
    request.setResponseCode(200)
    request.setHeader(b"Content-Type", content_type)
    request.setHeader(b"Content-Length", str(info.st_size).encode())
    if no_cache:
        request.setHeader(b"Cache-Control", b"no-cache")
    if filename:
        # A download says when what it holds was made (a backup's date, say).
        request.setHeader(b"Last-Modified", http.datetimeToString(info.st_mtime))
        request.setHeader(b"Filename", filename.encode())
        request.setHeader(b"Content-Disposition", f'attachment; filename="{filename}"'.encode())
    if request.method == b"HEAD":
        f.close()
        return b""
    transfer = FileSender().beginFileTransfer(f, request)
    transfer.addBoth(lambda result: (f.close(), b"")[1])
    return transfer
