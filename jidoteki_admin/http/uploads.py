"""Streaming multipart/form-data: file parts go to disk as their bytes arrive.

A request's form is parsed while its body is still arriving (see site.AdminRequest), so a
multi-gigabyte package costs a few buffers of memory. File parts are written once, into a
hidden partial file in the uploads directory; a handler that accepts one renames it into
place, and whatever no handler claimed is removed when the request ends.
"""

from __future__ import annotations

import errno
import logging
import os
import secrets
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from twisted.internet.defer import Deferred, inlineCallbacks, succeed
from twisted.logger import Logger

from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header

from ..files import remove_quietly, write_all
from .responses import APIError

FILE, TEXT = "file", "text"
PARTIAL_PREFIX = ".partial-"
# TLS hands the body over in 16 KiB records; parsing and writing in batches of this many
# bytes makes the per-call overhead small next to the copying.
BATCH_BYTES = 256 * 1024


_parser_log = Logger(namespace="jidoteki_admin.uploads.parser")


class _ParserLogHandler(logging.Handler):
    """python-multipart reports a malformed body through the stdlib logging module, which,
    with no handler configured, prints it to stderr. A malformed body is the client's
    problem and is answered with a 400; the parser's words are kept at debug level."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            _parser_log.debug("multipart parser: {message}", message=record.getMessage())
        except Exception:
            pass  # a log line must never break an upload


def route_parser_logging() -> None:
    """Send python-multipart's log records to twisted.logger instead of stderr; once."""
    parser_log = logging.getLogger("python_multipart")
    if not any(isinstance(h, _ParserLogHandler) for h in parser_log.handlers):
        parser_log.addHandler(_ParserLogHandler())
    parser_log.propagate = False


route_parser_logging()


@dataclass(frozen=True)
class FormPlan:
    """What an endpoint accepts: field name -> (FILE or TEXT, byte cap)."""

    fields: dict[str, tuple[str, int]]
    unknown_cap: int

    def cap(self, name: str) -> int:
        return self.fields[name][1] if name in self.fields else self.unknown_cap

    def most_bytes(self) -> int:
        """An upper bound for a whole body this plan can accept, boundaries included."""
        return sum(cap for _, cap in self.fields.values()) + 64 * 1024


@dataclass
class UploadedFile:
    field: str
    filename: str
    path: Path
    size: int = 0
    claimed: bool = False

    def move_to(self, destination: Path) -> Path:
        """Rename the upload into place; the same filesystem, so no byte is copied."""
        os.replace(self.path, destination)
        self.claimed = True
        self.path = destination
        return destination


@dataclass
class Form:
    texts: dict[str, bytes] = field(default_factory=dict)
    files: dict[str, UploadedFile] = field(default_factory=dict)

    def text(self, name: str) -> str:
        if name not in self.texts:
            raise APIError(400, f"Missing required parameter: {name}")
        try:
            return self.texts[name].decode("utf-8")
        except UnicodeDecodeError:
            raise APIError(400, f"Parameter {name} is not valid UTF-8") from None

    def file(self, name: str) -> UploadedFile:
        if name in self.files:
            return self.files[name]
        if name in self.texts:
            raise APIError(400, f"Parameter {name} must be a file upload (curl -F {name}=@FILE)")
        raise APIError(400, f"Missing required parameter: {name}")

    def discard(self) -> None:
        for upload in self.files.values():
            if not upload.claimed:
                remove_quietly(upload.path)



class DiskWriter:
    """Writes uploaded bytes in order on a thread of its own.

    A slow or throttled disk then never stalls the reactor, and copying into the page
    cache overlaps with TLS decryption. Above HIGH_WATER bytes in flight the caller is
    asked to stop reading from the network until the writer catches up.
    """

    HIGH_WATER = 8 * 1024 * 1024
    LOW_WATER = 2 * 1024 * 1024

    def __init__(self, reactor, pause: Callable[[], None], resume: Callable[[], None]):
        self.reactor = reactor
        self.pause = pause
        self.resume = resume
        self.error: Exception | None = None
        self.on_error: Callable[[Exception], None] = lambda error: None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="upload-writer")
        self._in_flight = 0
        self._queued = 0  # bytes submitted and not yet written (or failed)
        self._paused = False
        self._shut = False
        self._waiting: list[Deferred] = []

    def write(self, fd: int, data: memoryview) -> None:
        self._submit(len(data), write_all, fd, data)

    def close(self, fd: int, remove: Path | None = None) -> None:
        self._submit(0, _close, fd, remove)

    def remove(self, path: Path) -> None:
        """Remove a file once the writes queued before have been done."""
        self._submit(0, remove_quietly, path)

    def drained(self) -> Deferred:
        """Fires once everything submitted so far is on disk (or has failed)."""
        if self._in_flight == 0:
            return succeed(None)
        waiter = Deferred()
        self._waiting.append(waiter)
        return waiter

    def shutdown(self) -> None:
        self._shut = True
        self._executor.shutdown(wait=False)

    def _submit(self, size: int, operation, *args) -> None:
        if self._shut:
            return
        self._in_flight += 1
        self._queued += size
        future = self._executor.submit(operation, *args)
        future.add_done_callback(lambda done: self.reactor.callFromThread(self._done, done, size))
        if self._queued > self.HIGH_WATER and not self._paused:
            self._paused = True
            self.pause()

    def _done(self, future, size: int) -> None:
        self._in_flight -= 1
        # Written or failed, these bytes no longer wait: a failed write must not leave
        # reading paused for good.
        self._queued -= size
        problem = future.exception()
        if problem is not None and self.error is None:
            self.error = problem
            self.on_error(problem)
        if self._paused and self._queued < self.LOW_WATER:
            self._paused = False
            self.resume()
        if self._in_flight == 0:
            waiting, self._waiting = self._waiting, []
            for waiter in waiting:
                waiter.callback(None)


def _close(fd: int, remove: Path | None) -> None:
    os.close(fd)
    if remove is not None:
        remove_quietly(remove)


class FormStream:
    """Feeds body chunks through the multipart parser into files and small buffers.

    The first problem (malformed body, a part over its cap, a full disk) is kept in
    ``problem``; from then on the rest of the body is read and thrown away.
    """

    def __init__(self, plan: FormPlan, boundary: bytes, directory: Path, writer: DiskWriter):
        self.plan = plan
        self.directory = directory
        self.writer = writer
        writer.on_error = lambda error: self.fail(_storage_error(error))
        self.form = Form()
        self.problem: APIError | None = None
        self._ended = False
        self._headers: dict[bytes, bytes] = {}
        self._header_name = b""
        self._header_value = b""
        self._part: _Part | None = None
        self._pending: list[bytes] = []
        self._pending_bytes = 0
        self._aborted = False
        self._parser = MultipartParser(
            boundary,
            {
                "on_part_begin": self._part_begin,
                "on_header_field": self._header_field,
                "on_header_value": self._header_value_data,
                "on_header_end": self._header_end,
                "on_headers_finished": self._headers_finished,
                "on_part_data": self._part_data,
                "on_part_end": self._part_end,
                "on_end": self._end,
            },
            max_header_count=16,
        )

    def feed(self, data: bytes) -> None:
        if self.problem is not None or self._aborted:
            return
        self._pending.append(data)
        self._pending_bytes += len(data)
        if self._pending_bytes >= BATCH_BYTES:
            self._parse_pending()

    def _parse_pending(self) -> None:
        data = b"".join(self._pending)
        self._pending.clear()
        self._pending_bytes = 0
        try:
            self._parser.write(data)
        except APIError as refused:
            self.fail(refused)
        except MultipartParseError:
            self.fail(APIError(400, "Malformed multipart/form-data body"))
        except OSError as e:
            self.fail(_storage_error(e))

    @inlineCallbacks
    def finish(self):
        """Fires with the parsed form once it is all on disk; fails with the first problem
        seen, or with 400 if the body was cut short."""
        if self.problem is None and self._pending:
            self._parse_pending()
        if self.problem is None:
            try:
                self._parser.finalize()
            except MultipartParseError:
                self.fail(APIError(400, "Malformed multipart/form-data body"))
        if self.problem is None and not self._ended:
            self.fail(APIError(400, "Incomplete multipart/form-data body"))
        yield self.writer.drained()
        self.writer.shutdown()
        if self.problem is not None:
            raise self.problem
        return self.form

    def fail(self, problem: APIError) -> None:
        if self.problem is None:
            self.problem = problem
        self.abort()

    def abort(self) -> None:
        """Drop everything written so far: the writer removes each file after its writes."""
        if self._aborted:
            return
        self._aborted = True
        current, self._part = self._part, None
        if current is not None:
            current.close(remove=True)
        for upload in self.form.files.values():
            if current is None or upload is not getattr(current, "upload", None):
                self.writer.remove(upload.path)
            upload.claimed = True  # nothing left for Form.discard to do
        self.writer.shutdown()

    # multipart parser callbacks

    def _part_begin(self) -> None:
        self._headers = {}

    def _header_field(self, data: bytes, start: int, end: int) -> None:
        self._header_name += data[start:end]

    def _header_value_data(self, data: bytes, start: int, end: int) -> None:
        self._header_value += data[start:end]

    def _header_end(self) -> None:
        self._headers[self._header_name.strip().lower()] = self._header_value.strip()
        self._header_name = self._header_value = b""

    def _headers_finished(self) -> None:
        disposition, options = parse_options_header(self._headers.get(b"content-disposition", b""))
        name = options.get(b"name")
        if disposition != b"form-data" or not name:
            raise APIError(400, "Malformed multipart/form-data body: a part has no field name")
        field_name = name.decode("utf-8", "replace")
        if field_name in self.form.texts or field_name in self.form.files:
            raise APIError(400, f"Parameter {field_name} was given more than once")
        filename = options.get(b"filename")
        kind = self.plan.fields.get(field_name, (None, 0))[0]
        cap = self.plan.cap(field_name)
        if kind == FILE and filename is not None:
            self._part = _FilePart(
                field_name, filename.decode("utf-8", "replace"), cap, self.directory, self.writer
            )
            self.form.files[field_name] = self._part.upload
        elif kind is None:
            self._part = _Part(field_name, cap)
        else:
            self._part = _TextPart(field_name, cap)

    def _part_data(self, data: bytes, start: int, end: int) -> None:
        self._part.write(memoryview(data)[start:end])  # a view: no copy of the batch

    def _part_end(self) -> None:
        part, self._part = self._part, None
        part.close(remove=False)
        if isinstance(part, _TextPart):
            self.form.texts[part.name] = bytes(part.buffer)

    def _end(self) -> None:
        self._ended = True


class _Part:
    """A part nobody asked for: counted against its cap and thrown away."""

    def __init__(self, name: str, cap: int):
        self.name = name
        self.cap = cap
        self.size = 0

    def write(self, data: memoryview) -> None:
        self.size += len(data)
        if self.size > self.cap:
            raise APIError(413, f"Parameter {self.name} is larger than its limit of {self.cap} bytes")

    def close(self, remove: bool) -> None:
        pass


class _TextPart(_Part):
    def __init__(self, name: str, cap: int):
        super().__init__(name, cap)
        self.buffer = bytearray()

    def write(self, data: memoryview) -> None:
        super().write(data)
        self.buffer += data


class _FilePart(_Part):
    def __init__(self, name: str, filename: str, cap: int, directory: Path, writer: DiskWriter):
        super().__init__(name, cap)
        path = directory / f"{PARTIAL_PREFIX}{secrets.token_hex(8)}"
        self.upload = UploadedFile(name, filename, path)
        self.writer = writer
        self.fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)

    def write(self, data: memoryview) -> None:
        super().write(data)
        self.writer.write(self.fd, data)
        self.upload.size = self.size

    def close(self, remove: bool) -> None:
        if self.fd is not None:
            self.writer.close(self.fd, self.upload.path if remove else None)
            self.fd = None


def _storage_error(error: Exception) -> APIError:
    if getattr(error, "errno", None) in (errno.ENOSPC, errno.EDQUOT):
        return APIError(507, "Not enough disk space to store the upload")
    return APIError(500, "Could not store the upload")


def remove_partial_files(directory: Path) -> int:
    """Remove every partial upload in ``directory``; how many there were.

    At start-up they are what a daemon killed mid-upload left; at shutdown, what the
    uploads just aborted had written (the writer thread may not get to remove them before
    the process exits). Uploads a handler accepted were renamed and are not touched."""
    removed = 0
    try:
        names = os.listdir(directory)
    except FileNotFoundError:
        return 0
    for name in names:
        if name.startswith(PARTIAL_PREFIX):
            remove_quietly(directory / name)
            removed += 1
    return removed


def multipart_boundary(content_type: bytes | None) -> bytes | None:
    """The boundary of a multipart/form-data body, or None for anything else."""
    if not content_type:
        return None
    kind, options = parse_options_header(content_type)
    if kind.lower() != b"multipart/form-data":  # media types are case-insensitive
        return None
    return options.get(b"boundary") or None
