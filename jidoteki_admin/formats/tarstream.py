"""Reading a tar archive member by member, in one forward pass, for safe extraction.

tarfile parses each header in Python, field by field, and keeps every member it has read
in a list: about 18 microseconds and a few hundred bytes a member. A restore of 100,000
small files then spent more time reading headers than the kernel spent creating the
files, and its memory grew with the number of members. This reader parses a header with
one ``struct`` call, keeps nothing but the member in hand, and hands out each member's
data straight from the (decompressing) stream, so extraction is bound by the filesystem.

It reads what GNU tar, bsdtar and Python's tarfile write: ustar, GNU and pax headers,
GNU long names and long link names, pax extended and global headers (path, linkpath,
size, mtime) and base-256 numbers, uncompressed or gzip, bzip2 or xz compressed (but not
owners, which extraction never takes from an archive); and it reads them as tarfile does
(tests/test_tarstream.py holds the two side by side on generated archives). It is
stricter where tarfile guesses: a damaged header, a stream that ends before its
end-of-archive blocks (in a header, in a member or right after one), or an archive ending
after an extended header is an error (tarfile stops quietly, and a backup cut short would
look complete); sparse files are refused; a long name or an
extended header is at most 1 MiB (tarfile reads any size into memory).

Members come out as tarfile.TarInfo, so every check reads them as it would read
tarfile's. Errors are tarfile.ReadError, saying what and at which byte.
"""

from __future__ import annotations

import bz2
import contextlib
import gzip
import io
import lzma
import os
import re
import struct
import sys
import tarfile
import zlib
from typing import BinaryIO, Iterator

BLOCK = 512
_ZEROS = bytes(BLOCK)
# name, mode, (uid, gid), size, mtime, chksum, type, linkname, (magic and version, uname,
# gname, devmajor, devminor), prefix: the ustar layout, which GNU headers share up to the
# prefix. Owners are not read: extraction never takes them from an archive.
_HEADER = struct.Struct("100s8s16x12s12s8sc100s88x155s12x")
_SIGNED = struct.Struct("148b8x356b")
EXTENDED_MAX = 1 << 20  # a GNU long name or a pax header: far past PATH_MAX, never a memory bomb
BUFFER = 1 << 20  # read ahead from the file: one system call per megabyte, not per header
# What a damaged compressed stream raises besides OSError and EOFError.
DECOMPRESSION_ERRORS: tuple[type[Exception], ...] = (zlib.error, lzma.LZMAError)
_PAX_RECORD = re.compile(rb"(\d+) ([^=]+)=")
_PAX_NAME_FIELDS = {"path", "linkpath", "uname", "gname"}
_SPARSE_KEYS = ("GNU.sparse.map", "GNU.sparse.size", "GNU.sparse.major", "GNU.sparse.offset")
_DATA_TYPES = frozenset(tarfile.REGULAR_TYPES)  # members followed by their data
_KNOWN_TYPES = frozenset(tarfile.SUPPORTED_TYPES)  # an unknown type's data is skipped, as tarfile does


def _padded(size: int) -> int:
    return -(-size // BLOCK) * BLOCK


_ENCODING = sys.getfilesystemencoding()


def _text(field: bytes) -> str:
    """A NUL-terminated name, decoded as tarfile decodes it (the filesystem encoding, bytes
    it cannot decode kept as surrogates, so they reach the disk as they were)."""
    return field.partition(b"\0")[0].decode(_ENCODING, "surrogateescape")


def _number(field: bytes, at: int) -> int:
    """An octal number, or GNU's base-256 (a first byte of 0x80, or 0xff when negative)."""
    try:
        return int(field.partition(b"\0")[0], 8)  # the usual "0000644\0"
    except ValueError:
        pass
    if field[0] in (0o200, 0o377):
        n = int.from_bytes(field[1:], "big")
        return n - 256 ** (len(field) - 1) if field[0] == 0o377 else n
    digits = field.partition(b"\0")[0].strip()
    if not digits:
        return 0  # a blank field, as tarfile reads it
    raise tarfile.ReadError(f"invalid number in the header at byte {at}")


@contextlib.contextmanager
def open_archive(path: str | os.PathLike) -> Iterator[BinaryIO]:
    """A tar file, opened for one forward pass, decompressed if it is gzip, bzip2 or xz
    (found from its first bytes, as ``tarfile.open(mode="r|*")`` finds it)."""
    with open(path, "rb", buffering=BUFFER) as raw:
        magic = raw.peek(6)[:6]
        if magic.startswith(b"\x1f\x8b"):
            inner: BinaryIO = gzip.GzipFile(fileobj=raw, mode="rb")
        elif magic.startswith(b"BZh"):
            inner = bz2.BZ2File(raw, "rb")  # type: ignore[assignment]
        elif magic.startswith(b"\xfd7zXZ\x00"):
            inner = lzma.LZMAFile(raw, "rb")  # type: ignore[assignment]
        else:
            yield raw
            return
        # Read through a large buffer: a header is then a copy, not a call into the
        # decompressor's Python code, which inflates a megabyte at a time.
        with inner, io.BufferedReader(inner, buffer_size=BUFFER) as stream:  # type: ignore[arg-type]
            yield stream  # type: ignore[misc]


class TarStream:
    """The members of a tar stream, in order; each member's data is read with ``chunks``
    before the next member is asked for (or skipped, if it is not read)."""

    def __init__(self, stream: BinaryIO):
        self._read = stream.read
        self.position = 0  # bytes of the archive consumed: error messages say where
        self._left = 0  # data of the member in hand not read yet
        self._padding = 0  # after it, read with its last piece
        self._globals: dict[str, str] = {}
        self._ended = False

    def __iter__(self) -> Iterator[tarfile.TarInfo]:
        while (member := self.next()) is not None:
            yield member

    def chunks(self, size: int = BUFFER) -> Iterator[bytes | memoryview]:
        """The data of the member in hand, at most ``size`` bytes at a time."""
        while self._left > size:
            self._left -= size
            yield self._exactly(size, "the data of a member")
        if self._left:
            yield self._rest()

    def whole(self) -> bytes | memoryview | None:
        """All the data of the member in hand, when it is at most BUFFER bytes (most are):
        one read, with its padding. None when it is larger: read it with ``chunks``."""
        return None if self._left > BUFFER else self._rest()

    def _rest(self) -> bytes | memoryview:
        """What is left of the member's data, read with its padding in one call."""
        want, self._left = self._left, 0
        data = self._exactly(want + self._padding, "the data of a member")
        self._padding = 0
        return memoryview(data)[:want] if len(data) > want else data

    def next(self) -> tarfile.TarInfo | None:
        """The next member, or None at the end of the archive."""
        if self._ended:
            return None
        for _ in self.chunks():  # data nobody read, and its padding: skipped
            pass
        extended: list[tuple[bytes, object]] = []  # GNU long names and pax headers, in order
        while True:
            at = self.position
            block = self._read(BLOCK)
            self.position += len(block)
            if not block or block == _ZEROS:
                if extended:
                    raise tarfile.ReadError(f"the archive ends after an extended header, at byte {at}")
                if not block:
                    # Every tar writes zero blocks after the last member; without them the
                    # archive was cut short, maybe right after a member.
                    raise tarfile.ReadError("empty file" if at == 0 else
                                            f"the archive ends at byte {at} without its end-of-archive "
                                            f"blocks: it is cut short")
                self._ended = True
                return None
            if len(block) < BLOCK:
                raise tarfile.ReadError(f"truncated header at byte {at}")
            member = self._header(block, at)
            kind = member.type
            if kind in (b"L", b"K", b"x", b"X", b"g"):
                data = self._extended(member, at)
                if kind == b"g":
                    self._globals.update(self._pax(data, at))
                else:
                    extended.append((kind, data if kind in (b"L", b"K") else self._pax(data, at)))
                continue
            return self._finish(member, extended, at)

    def _header(self, block: bytes, at: int) -> tarfile.TarInfo:
        name, mode, size, mtime, chksum, kind, linkname, prefix = _HEADER.unpack(block)
        try:
            expected = _number(chksum, at)
        except tarfile.ReadError:
            expected = -1  # not a number: not a header
        # Added up without the zeros, most of a header: a third of the time of sum(block).
        unsigned = sum(block.translate(None, b"\0")) - sum(block[148:156]) + 256
        if expected != unsigned and expected != sum(_SIGNED.unpack(block)) + 256:
            raise tarfile.ReadError(f"bad checksum in the header at byte {at}")
        member = tarfile.TarInfo(_text(name))
        member.mode = _number(mode, at)
        member.size = _number(size, at)
        member.mtime = _number(mtime, at)
        member.chksum = expected
        member.type = kind
        member.linkname = _text(linkname)
        member.offset = at
        if kind == tarfile.AREGTYPE and member.name.endswith("/"):
            member.type = tarfile.DIRTYPE  # the old V7 way of writing a directory
        if member.type == tarfile.DIRTYPE:
            member.name = member.name.rstrip("/")
        if kind not in tarfile.GNU_TYPES and (joined := _text(prefix)):
            member.name = joined + "/" + member.name
        if member.size < 0:
            raise tarfile.ReadError(f"negative size in the header at byte {at}")
        return member

    def _extended(self, member: tarfile.TarInfo, at: int) -> bytes:
        if member.size > EXTENDED_MAX:
            raise tarfile.ReadError(f"an extended header of {member.size} bytes at byte {at}, "
                                    f"more than the {EXTENDED_MAX} allowed")
        return self._exactly(_padded(member.size), "an extended header")[:member.size]

    @staticmethod
    def _pax(data: bytes, at: int) -> dict[str, str]:
        """pax records, ``"<length> <keyword>=<value>\\n"``, read as tarfile reads them."""
        binary = re.search(rb"\d+ hdrcharset=BINARY\n", data) is not None
        records: dict[str, str] = {}
        pos = 0
        while match := _PAX_RECORD.match(data, pos):
            length = int(match.group(1))
            if length == 0:
                raise tarfile.ReadError(f"invalid pax header at byte {at}")
            keyword = _decoded(match.group(2), False)
            value = data[match.end(2) + 1:match.start(1) + length - 1]
            records[keyword] = _decoded(value, binary and keyword in _PAX_NAME_FIELDS)
            pos += length
        return records

    def _finish(self, member: tarfile.TarInfo, extended: list[tuple[bytes, object]], at: int) -> tarfile.TarInfo:
        """Apply the global pax records, then the extended headers before the member, the
        nearest first (so the first one wins, as in tarfile), and set up its data."""
        if member.type == tarfile.GNUTYPE_SPARSE:
            raise tarfile.ReadError(f"{member.name!r} at byte {at} is a sparse file, which is not supported")
        if self._globals:
            _apply_pax(member, self._globals)
        for kind, value in reversed(extended):
            if kind == b"L":
                member.name = _text(value)  # type: ignore[arg-type]
                if member.type == tarfile.DIRTYPE:
                    member.name = member.name.removesuffix("/")
            elif kind == b"K":
                member.linkname = _text(value)  # type: ignore[arg-type]
            else:
                records = {**self._globals, **value}  # type: ignore[dict-item]
                if any(key.startswith(_SPARSE_KEYS) for key in records):
                    raise tarfile.ReadError(f"{member.name!r} at byte {at} is a sparse file, which is not supported")
                _apply_pax(member, records)
        if member.type == tarfile.DIRTYPE:
            member.name = member.name.rstrip("/")
        member.offset_data = self.position
        if member.type in _DATA_TYPES or member.type not in _KNOWN_TYPES:
            self._left = member.size
            self._padding = _padded(member.size) - member.size
        return member

    def _exactly(self, count: int, what: str) -> bytes:
        data = self._read(count)
        self.position += len(data)
        if len(data) < count:
            raise tarfile.ReadError(f"unexpected end of data in {what}, at byte {self.position}")
        return data


def _decoded(value: bytes, binary: bool) -> str:
    if not binary:
        try:
            return value.decode("utf-8", "strict")
        except UnicodeDecodeError:
            pass
    return value.decode(_ENCODING, "surrogateescape")


def _apply_pax(member: tarfile.TarInfo, records: dict[str, str]) -> None:
    """The fields a pax record replaces, as tarfile's _apply_pax_info replaces them."""
    for keyword, value in records.items():
        if keyword == "path":
            member.name = value.rstrip("/")
        elif keyword == "linkpath":
            member.linkname = value
        elif keyword == "size":
            try:
                member.size = int(value)
            except ValueError:
                member.size = 0
        elif keyword == "mtime":
            try:
                member.mtime = float(value)
            except ValueError:
                member.mtime = 0
