"""Update packages: encryption, signatures, safe extraction and versions.

A package ``software_package-<anything>.enc`` is, byte for byte, what
``openssl aes-256-cbc -md sha256 -pbkdf2 -salt -pass file:updates.key`` makes of an
uncompressed tar holding ``software_package.tar.gz`` and its signature
``software_package.tar.gz.sign`` (``openssl dgst -sha256 -sign vendor.key``). Older
packages were encrypted with ``-md md5`` and no ``-pbkdf2``; they still open.
docs/packages.md describes the format in full.

Everything here streams: a package can be several gigabytes, so it is decrypted, split,
written to disk and hashed in one pass, in chunks, and never held in memory. The openssl
side of it (key derivation, AES-CBC, signatures) is crypto.py; this module is the package
format on top, and turns crypto's errors into the API's E1005.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import hashlib
import json
import io
import os
import queue
import stat
import tarfile
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from ..files import atomic_write, read_first_line, remove_quietly, write_all
from . import crypto, tarstream
from .crypto import CHUNK, CryptoError, DecryptingReader, EncryptingWriter

PACKAGE_PREFIX = "software_package-"
PACKAGE_SUFFIX = ".enc"
INNER_NAME = "software_package.tar.gz"
SIGNATURE_NAME = INNER_NAME + ".sign"

WHAT = "update package"
SIGNATURE_MAX = 64 * 1024  # far above any real signature (RSA-16384 is 2 KiB)

# The update section's error codes (API.md section 3), defined here once: the package
# format raises three of them, the update job and the section the others.
E_UNEXPECTED = "E1000"  # the update failed for a reason it could not name
E_VERSION = "E1001"  # no version, or not newer than the installed one
E_SCRIPT = "E1002"  # update.sh failed, or the update was interrupted or timed out
E_MISSING = "E1003"  # no update package
E_BUSY = "E1004"  # an update is already running
E_PACKAGE = "E1005"  # the package cannot be decrypted, verified or extracted
E_PRECHECK = "E1006"  # the package's precheck.sh refused to install it


class PackageError(Exception):
    """A package that cannot be used, with the API's error code (E1001, E1003, E1005)."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


@contextlib.contextmanager
def _package_errors():
    """Whatever crypto refuses is a package the appliance cannot use: E1005."""
    try:
        yield
    except CryptoError as e:
        raise PackageError(E_PACKAGE, str(e)) from None


def _looks_like_tar(block: bytes) -> bool:
    try:
        tarfile.TarInfo.frombuf(block, "utf-8", "surrogateescape")
    except tarfile.HeaderError:
        return False
    return True


def shown(path: Path, root: Path | None) -> str:
    """How an error message names a file: relative to the admin tree when it is inside
    ``root``, so the answers of the API never show the server's directory layout."""
    if root is not None:
        try:
            return str(Path(path).relative_to(root))
        except ValueError:
            pass
    return str(path)


def _reason(error: BaseException) -> str:
    """Why an operation failed, without the absolute path an OSError carries."""
    if isinstance(error, OSError) and error.strerror:
        return error.strerror
    return str(error)


def read_passphrase(key_file: Path, root: Path | None = None) -> bytes:
    with _package_errors():
        return crypto.read_passphrase(key_file, shown=shown(key_file, root))


def load_public_key(path: Path, root: Path | None = None):
    with _package_errors():
        return crypto.load_public_key(path, shown=shown(path, root))


def load_private_key(path: Path):
    with _package_errors():
        return crypto.load_private_key(path)


def verify_digest(public_key, signature: bytes, digest: bytes) -> None:
    with _package_errors():
        crypto.verify_digest(public_key, signature, digest, WHAT)


def encrypt(plain_path: Path, out_path: Path, key_file: Path, *, legacy_md5: bool = False) -> None:
    """Encrypt a file exactly as the vendor's ``openssl enc`` does for a package."""
    with _package_errors():
        crypto.encrypt(plain_path, out_path, key_file, legacy_md5=legacy_md5)


def decrypt(package_path: Path, out_path: Path, key_file: Path) -> str:
    """Decrypt a package to its plain outer tar, as ``openssl enc -d`` would; returns the scheme."""
    with _package_errors():
        return crypto.decrypt(package_path, out_path, key_file, _looks_like_tar, WHAT)


# ----------------------------------------------------------------------------------------
# Versions, ordered exactly as GNU `sort -V` orders them
#
# Appliances in the field compared versions with `sort -V`, so a vendor's numbering
# (1.2, 1.2.3.4, 2021.03.01, 1.2.3-1, ...) must rank here as it ranked there. What follows
# is gnulib's filevercmp as GNU coreutils 9.1 has it, on bytes, in the C locale; where it
# finds two versions equal (1.02 and 1.2), sort's last-resort byte comparison decides.


def _order(s: bytes, pos: int) -> int:
    """filevercmp's weight of the byte at pos: end of string before everything but ``~``,
    ``~`` first of all, digits (a number starts) before letters, letters before the rest."""
    if pos == len(s):
        return -1
    c = s[pos]
    if 0x30 <= c <= 0x39:
        return 0
    if 0x41 <= c <= 0x5A or 0x61 <= c <= 0x7A:
        return c
    if c == 0x7E:
        return -2
    return c + 256


def _isdigit(s: bytes, pos: int) -> bool:
    return pos < len(s) and 0x30 <= s[pos] <= 0x39


def _verrevcmp(a: bytes, b: bytes) -> int:
    """dpkg's version comparison: non-digit runs by _order, digit runs as numbers."""
    i = j = 0
    while i < len(a) or j < len(b):
        while (i < len(a) and not _isdigit(a, i)) or (j < len(b) and not _isdigit(b, j)):
            diff = _order(a, i) - _order(b, j)
            if diff:
                return diff
            i, j = i + 1, j + 1
        while i < len(a) and a[i] == 0x30:
            i += 1
        while j < len(b) and b[j] == 0x30:
            j += 1
        first_diff = 0
        while _isdigit(a, i) and _isdigit(b, j):
            first_diff = first_diff or a[i] - b[j]
            i, j = i + 1, j + 1
        if _isdigit(a, i):
            return 1
        if _isdigit(b, j):
            return -1
        if first_diff:
            return first_diff
    return 0


_ALNUM_TILDE = frozenset(b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz~")
_ALPHA_TILDE = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz~")


def _prefix_length(s: bytes) -> int:
    """Where a file suffix like ``.tar.gz`` starts: the longest tail matching
    ``(\\.[A-Za-z~][A-Za-z0-9~]*)*$``.

    As in coreutils 9.1, the tail may be the whole string (".abc"); later releases keep
    the first byte out of it, which changes only names that start with a dot.
    """
    prefix, i = 0, 0
    while True:
        while i + 1 < len(s) and s[i] == 0x2E and s[i + 1] in _ALPHA_TILDE:
            i += 2
            while i < len(s) and s[i] in _ALNUM_TILDE:
                i += 1
        if i == len(s):
            return prefix
        i += 1
        prefix = i


def _dot_rank(s: bytes) -> int:
    """Empty first, then ".", then "..", then other names starting with ".", then the rest."""
    if not s:
        return 0
    if s == b".":
        return 1
    if s == b"..":
        return 2
    return 3 if s[:1] == b"." else 4


def filevercmp(a: str | bytes, b: str | bytes) -> int:
    """Compare two versions as gnulib's filevercmp does: negative, zero or positive.

    Suffixes are compared only when the versions without them are equal, so
    ``1.2.tar.gz`` and ``1.2.tgz`` rank by their ``1.2`` first.
    """
    a, b = _as_bytes(a), _as_bytes(b)
    rank = _dot_rank(a) - _dot_rank(b)
    if rank or _dot_rank(a) < 3:
        return rank
    a_prefix, b_prefix = _prefix_length(a), _prefix_length(b)
    result = _verrevcmp(a[:a_prefix], b[:b_prefix])
    if result or (a_prefix == len(a) and b_prefix == len(b)):
        return result
    return _verrevcmp(a, b)


def _as_bytes(text: str | bytes) -> bytes:
    return text if isinstance(text, bytes) else text.encode("utf-8", "surrogateescape")


@functools.total_ordering
class Version:
    """A version string, ordered as ``LC_ALL=C sort -V`` orders lines.

    Any non-empty line is a version: ``1.2``, ``1.2.3.4``, ``2021.03.01`` and ``1.2.3-1``
    all compare as the appliance's own update script compared them. Two versions are equal
    only when their text is (``sort -V`` falls back to the bytes when filevercmp ties), so
    ``new > installed`` is exactly the update script's test: sort -V puts the new one last,
    and it differs.
    """

    __slots__ = ("text",)

    def __init__(self, text: str):
        self.text = text

    @classmethod
    def parse(cls, text: str) -> Version:
        """The version in a version.txt line; surrounding whitespace is not part of it."""
        text = text.strip()
        if not text:
            raise ValueError("the version is empty")
        if any(ord(c) < 0x20 or ord(c) == 0x7F for c in text):
            raise ValueError(f"the version must be one line of text: {text!r}")
        return cls(text)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Version):
            return NotImplemented
        return self.text == other.text

    def __lt__(self, other: Version) -> bool:
        if not isinstance(other, Version):
            return NotImplemented
        return sort_v_compare(self.text, other.text) < 0

    def __hash__(self) -> int:
        return hash(self.text)

    def __str__(self) -> str:
        return self.text

    def __repr__(self) -> str:
        return f"Version({self.text!r})"


def sort_v_compare(a: str | bytes, b: str | bytes) -> int:
    """The order ``LC_ALL=C sort -V`` gives two lines: filevercmp, then the bytes."""
    a, b = _as_bytes(a), _as_bytes(b)
    return filevercmp(a, b) or (a > b) - (a < b)


sort_v_key = functools.cmp_to_key(sort_v_compare)


# ----------------------------------------------------------------------------------------
# Uploaded packages


def find_packages(uploads: Path) -> list[Path]:
    """Uploaded ``software_package-*.enc`` files, oldest first.

    The names are ordered as the appliance's update script ordered them, by ``sort -V``
    (so 1.10 comes after 1.9, and 1.2.3-1 after 1.2.3); the last is the one to install.
    """
    try:
        paths = [p for p in Path(uploads).iterdir()
                 if p.name.startswith(PACKAGE_PREFIX) and p.name.endswith(PACKAGE_SUFFIX)
                 and len(p.name) > len(PACKAGE_PREFIX) + len(PACKAGE_SUFFIX) and p.is_file()]
    except FileNotFoundError:
        paths = []
    return sorted(paths, key=lambda p: sort_v_key(p.name))


def newest_package(uploads: Path) -> Path:
    packages = find_packages(uploads)
    if not packages:
        raise PackageError(E_MISSING, "Missing update package")
    return packages[-1]


# ----------------------------------------------------------------------------------------
# Opening a package: decrypt, split the outer tar, hash and verify in one pass


def _outer_member_name(member: tarfile.TarInfo) -> str | None:
    """The name of a wanted outer member, or None for any other member.

    The appliance's update script untarred the whole outer tar and used only the two files
    it needed, so anything else a vendor's tooling put in it is skipped, never written.
    """
    name = member.name
    while name.startswith("./"):
        name = name[2:]
    if name not in (INNER_NAME, SIGNATURE_NAME):
        return None
    if not member.isreg():
        raise PackageError(E_PACKAGE, f"{name} in update package is not a regular file")
    return name


def _copy_hashing(reader: DecryptingReader, size: int, out_path: Path) -> bytes:
    """Copy ``size`` bytes of plaintext to out_path and return their SHA-256.

    Decrypting holds the interpreter; hashing and writing release it (hashlib does for
    anything over 2 KiB, os.write always): so a second thread hashes and writes each chunk
    while this one decrypts the next, and two cores share the work, as openssl's ``enc |
    tar`` pipeline does. At most QUEUED chunks wait, so memory stays flat."""
    digest = hashlib.sha256()
    fd = os.open(out_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    chunks: queue.Queue[bytes | None] = queue.Queue(maxsize=QUEUED)
    failed: list[BaseException] = []

    def hash_and_write() -> None:
        try:
            while (chunk := chunks.get()) is not None:
                if failed:
                    continue  # drain: the reader must never block on a full queue
                digest.update(chunk)
                write_all(fd, chunk)
        except BaseException as e:  # handed to the reading thread, which raises it
            failed.append(e)

    worker = threading.Thread(target=hash_and_write, name="package-writer", daemon=True)
    worker.start()
    try:
        while size > 0 and not failed:
            chunk = reader.read(min(size, CHUNK))
            if not chunk:
                raise PackageError(E_PACKAGE, f"Damaged update package (truncated {INNER_NAME})")
            chunks.put(chunk)
            size -= len(chunk)
    finally:
        chunks.put(None)
        worker.join()
        os.close(fd)
    if failed:
        raise failed[0]
    return digest.digest()


QUEUED = 4  # chunks (of CHUNK bytes) decrypted ahead of the writer


def _split_outer(reader: DecryptingReader, out_path: Path) -> dict[str, bytes]:
    """Walk the outer tar: the tar.gz goes to out_path (hashed), the signature to memory.

    tarfile parses the headers (ustar, GNU and pax alike); member data is read straight
    from the decrypting reader, which is positioned on it, so each byte is copied once.
    """
    found: dict[str, bytes] = {}
    with tarfile.open(fileobj=reader, mode="r:") as outer:
        for member in outer:
            name = _outer_member_name(member)
            if name is None:
                continue
            if name in found:
                raise PackageError(E_PACKAGE, f"Duplicate member in update package: {name}")
            if name == SIGNATURE_NAME and member.size > SIGNATURE_MAX:
                raise PackageError(E_PACKAGE, "Signature in update package is too large")
            reader.seek(member.offset_data)
            if name == INNER_NAME:
                found[name] = _copy_hashing(reader, member.size, out_path)
            else:
                found[name] = reader.read(member.size)
    reader.drain()
    for name in (INNER_NAME, SIGNATURE_NAME):
        if name not in found:
            raise PackageError(E_PACKAGE, f"Missing {name} in update package")
    return found


def unpack(package_path: Path, key_file: Path, workdir: Path,
           on_decrypted: Callable[[str], None] | None = None,
           root: Path | None = None) -> tuple[Path, bytes, bytes]:
    """Decrypt a package and write its ``software_package.tar.gz`` into ``workdir``.

    Returns (path of the tar.gz, its SHA-256 digest, the signature bytes); nothing is
    verified yet. ``on_decrypted(scheme)`` is called once the key is known to open the
    package, before the long part. Raises PackageError (E1005, or E1003 when the package
    file is missing), leaving no tar.gz behind; its messages name files relative to
    ``root`` (the admin tree) when given.
    """
    passphrase = read_passphrase(key_file, root)
    out_path = Path(workdir) / INNER_NAME
    try:
        f = open(package_path, "rb")
    except FileNotFoundError:
        raise PackageError(E_MISSING, f"Missing update package: {shown(package_path, root)}") from None
    try:
        with f, _package_errors():  # a bad padding shows only at the very end
            reader = DecryptingReader(f, passphrase, _looks_like_tar, WHAT)
            if on_decrypted:
                on_decrypted(reader.scheme)
            found = _split_outer(reader, out_path)
    except (tarfile.TarError, EOFError) as e:
        remove_quietly(out_path)
        raise PackageError(E_PACKAGE, f"Cannot extract update package: {e}") from None
    except OSError as e:
        remove_quietly(out_path)
        raise PackageError(E_PACKAGE, f"Cannot read update package: {_reason(e)}") from None
    except BaseException:
        remove_quietly(out_path)
        raise
    return out_path, found[INNER_NAME], found[SIGNATURE_NAME]


def decrypt_and_verify(package_path: Path, key_file: Path, public_key_file: Path, workdir: Path,
                       on_decrypted: Callable[[str], None] | None = None) -> Path:
    """Decrypt a package, verify its signature, and return the verified tar.gz in workdir."""
    public_key = load_public_key(public_key_file)  # fail before decrypting gigabytes
    inner, digest, signature = unpack(package_path, key_file, workdir, on_decrypted)
    try:
        verify_digest(public_key, signature, digest)
    except BaseException:
        remove_quietly(inner)
        raise
    return inner


# ----------------------------------------------------------------------------------------
# Safe extraction of the inner tar.gz


_KINDS = {
    tarfile.CHRTYPE: "a character device",
    tarfile.BLKTYPE: "a block device",
    tarfile.FIFOTYPE: "a FIFO",
}


class UnsafeMember(PackageError):
    """A member refused by the safe extraction; other archives (backups) name it in
    their own words from ``member`` and ``why``."""

    def __init__(self, member: str, why: str):
        self.member = member
        self.shown = member if len(member) <= NAME_SHOWN else f"{member[:100]}...{member[-60:]}"
        self.why = why
        super().__init__(E_PACKAGE, f"Refusing {self.shown!r} in update package: {why}")


NAME_SHOWN = 200  # a member's name in a refusal: a longer one is shown by its ends


def _refuse(member: tarfile.TarInfo, why: str) -> PackageError:
    return UnsafeMember(member.name, why)


def _relative_parts(member: tarfile.TarInfo, path: str) -> list[str]:
    """The components of a name from the archive, which must stay below the root."""
    if path.startswith("/") or "\\" in path or "\0" in path:
        raise _refuse(member, "absolute or unsafe path")
    parts = path.split("/")
    if "" in parts or "." in parts:  # "a//b", "./a", "a/": most names have none
        parts = [p for p in parts if p not in ("", ".")]
    if ".." in parts:
        raise _refuse(member, "path leaves the directory")
    return parts


def _check_symlink_target(member: tarfile.TarInfo, parts: list[str]) -> None:
    """A symbolic link may only point inside the root, seen from its own directory.

    The target must be relative, made of some leading ``..`` that do not climb above the
    root, then plain names. A ``..`` after a name is refused: the name may itself be a
    link, and the kernel would then climb from wherever that link points.
    """
    target = member.linkname
    if not target or target.startswith("/") or "\0" in target:
        raise _refuse(member, f"its target {target!r} is not a relative path")
    steps = [p for p in target.split("/") if p not in ("", ".")]
    up = next((i for i, step in enumerate(steps) if step != ".."), len(steps))
    if ".." in steps[up:]:
        raise _refuse(member, f"its target {target!r} goes back up after a name")
    if up > len(parts) - 1:
        raise _refuse(member, f"its target {target!r} leaves the directory")


def check_member(member: tarfile.TarInfo) -> str:
    """Refuse a member that could not be extracted safely, judged on its own.

    Member names come from the archive and are never trusted: no absolute paths or ``..``;
    regular files, directories and links only (no devices or FIFOs); a symbolic link's
    target stays inside the root and a hard link's names another member. Returns the name
    without leading ``./``. What depends on earlier members is _Members' job.
    """
    return "/".join(_checked_parts(member))


_REGULAR_TYPES = frozenset(tarfile.REGULAR_TYPES)
_PLAIN_TYPES = _REGULAR_TYPES | {tarfile.DIRTYPE, tarfile.SYMTYPE, tarfile.LNKTYPE}


def _checked_parts(member: tarfile.TarInfo) -> list[str]:
    """check_member's checks; the name's components. (The member's type is compared here,
    not asked of it: this runs for each of a restore's hundred thousand members.)"""
    kind = member.type
    if kind not in _PLAIN_TYPES:
        what = _KINDS.get(kind, f"an unsupported entry (type {kind!r})")
        raise _refuse(member, f"it is {what}")
    parts = _relative_parts(member, member.name)
    if kind == tarfile.SYMTYPE or kind == tarfile.LNKTYPE:
        if not parts:
            raise _refuse(member, "a link needs a name")
        if kind == tarfile.SYMTYPE:
            _check_symlink_target(member, parts)
        else:
            target = _relative_parts(member, member.linkname)
            if not target:
                raise _refuse(member, "its target is the directory itself")
            if target == parts:
                # Extracting it would first remove the file it names: refused up front, so
                # reading the archive and extracting it always agree.
                raise _refuse(member, "it is a hard link to itself")
    return parts


DEPTH_MAX = 128  # directories a member may be below the root: far past any real tree, and PATH_MAX


@dataclass(frozen=True)
class ArchiveLimits:
    """What an archive may expand to: the declared sizes of its regular files added up, and
    its number of members. Counted as the members' headers are read, so an archive past a
    limit is refused as soon as it passes it, not after expanding all of it."""

    max_bytes: int | None = None
    max_members: int | None = None


class ArchiveTooLarge(PackageError):
    def __init__(self, why: str):
        super().__init__(E_PACKAGE, why)
        self.why = why


class _Members:
    """What the archive has placed so far, by name: "dir", "file" or "link".

    The tar the appliance used accepted links, but nothing may be written through one: a
    member whose path goes through a link (or a file) placed before it is refused, a
    directory is never replaced, and a hard link must name a regular file placed before it.
    Members past DEPTH_MAX directories deep, and archives past their limits, are refused.
    """

    def __init__(self, limits: ArchiveLimits | None = None):
        self.kinds: dict[str, str] = {}
        self.limits = limits or ArchiveLimits()
        self.total = 0
        self.count = 0
        # The directory of the last member admitted, whose path was found to be made of
        # directories. It stays so: an entry found to be a directory is never replaced
        # (refused below), so a member in the same directory (most of them) need not
        # walk its path again.
        self.checked: str | None = None

    def admit(self, member: tarfile.TarInfo) -> str:
        self._count(member)
        parts = _checked_parts(member)
        name = "/".join(parts)
        if len(parts) > DEPTH_MAX:
            raise _refuse(member, f"it is more than {DEPTH_MAX} directories deep")
        directory = name.rpartition("/")[0]
        if directory != self.checked:
            for i in range(1, len(parts)):
                above = "/".join(parts[:i])
                kind = self.kinds.setdefault(above, "dir")
                if kind != "dir":
                    raise _refuse(member, f"its path goes through {above!r}, which is not a directory")
            self.checked = directory
        kind = member.type
        if kind != tarfile.DIRTYPE and self.kinds.get(name) == "dir":
            raise _refuse(member, "it would replace a directory")
        if kind == tarfile.LNKTYPE:
            # Not to a symbolic link: the copy would be a symbolic link elsewhere, and its
            # relative target would be read from a directory it was never checked from.
            if self.kinds.get("/".join(_relative_parts(member, member.linkname))) != "file":
                raise _refuse(member, f"its target {member.linkname!r} is not a regular file extracted before it")
        self.kinds[name] = "dir" if kind == tarfile.DIRTYPE else "link" if kind == tarfile.SYMTYPE else "file"
        return name

    def _count(self, member: tarfile.TarInfo) -> None:
        self.count += 1
        if member.type in _REGULAR_TYPES:
            self.total += member.size
        limits = self.limits
        if limits.max_members is not None and self.count > limits.max_members:
            raise ArchiveTooLarge(f"it holds more than the {limits.max_members} members allowed")
        if limits.max_bytes is not None and self.total > limits.max_bytes:
            raise ArchiveTooLarge(f"it expands to at least {self.total} bytes, more than the "
                                  f"{limits.max_bytes} allowed")


class _Writer:
    """Writes checked members under a root, never through a link, whatever is on disk.

    Every directory is opened relative to its parent with O_NOFOLLOW (a link, or a file,
    where a directory should be is refused: ELOOP/ENOTDIR), and every entry is made
    relative to that descriptor, so no path is resolved twice and nothing placed by the
    archive or by anyone else can send a write outside the root. A file is created with
    O_EXCL|O_NOFOLLOW; what is already at its place (a file or a link) is removed first, as
    tar does, and a directory there is refused. Modes are tamed as tarfile's 'data' filter
    tames them (which Debian 12's Python 3.11.2 does not have): no setuid, setgid or sticky
    bit, no group or other write, a file always readable and writable by its owner, a new
    directory as the umask makes it, and no ownership taken from the archive, even as root.

    The descriptors of recently used directories are kept (OPEN_DIRS of them, the oldest let
    go between members), so a member costs a handful of system calls: a restore of 100,000
    small files is bound by the filesystem, not by resolving names.
    """

    OPEN_DIRS = 64

    def __init__(self, root: Path):
        self.root = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        self.dirs: dict[str, int] = {}  # relative name -> descriptor, oldest first
        # The directory used last (the newest in dirs, or the root): the next member is
        # most often in it too.
        self.recent: tuple[str, int] = ("", self.root)
        self.umask = _umask()  # a file is made with its mode, and fchmod only when this takes from it

    def close(self) -> None:
        for fd in self.dirs.values():
            os.close(fd)
        self.dirs.clear()
        os.close(self.root)

    def write(self, tar: tarstream.TarStream, member: tarfile.TarInfo, name: str) -> None:
        # Descriptors are let go here, between members, never while one is written: a hard
        # link's target directory looked up after its own could otherwise close the one in
        # hand, whose number the next open may reuse for another directory.
        while len(self.dirs) > self.OPEN_DIRS:
            os.close(self.dirs.pop(next(iter(self.dirs))))
        directory, _, last = name.rpartition("/")
        parent = self._directory(member, directory)
        kind = member.type
        if kind == tarfile.DIRTYPE:
            self._mkdir(parent, last)
        elif kind == tarfile.SYMTYPE:
            self._place(member, parent, last, lambda: os.symlink(member.linkname, last, dir_fd=parent))
        elif kind == tarfile.LNKTYPE:
            target = _relative_parts(member, member.linkname)
            source = self._directory(member, "/".join(target[:-1]))
            if not stat.S_ISREG(os.lstat(target[-1], dir_fd=source).st_mode):
                raise _refuse(member, f"its target {member.linkname!r} is not a regular file")
            self._place(member, parent, last, lambda: os.link(target[-1], last, src_dir_fd=source,
                                                               dst_dir_fd=parent, follow_symlinks=False))
        else:
            self._file(tar, member, parent, last)

    def _directory(self, member: tarfile.TarInfo, wanted: str) -> int:
        """The descriptor of the directory ``wanted`` ("a/b", "" for the root), made if
        missing: from the deepest one on the way already open, down (a loop, at any depth)."""
        if wanted == self.recent[0]:
            return self.recent[1]
        parts = wanted.split("/") if wanted else []
        depth = len(parts)
        while depth and "/".join(parts[:depth]) not in self.dirs:
            depth -= 1
        fd = self.root
        if depth:
            key = "/".join(parts[:depth])
            fd = self.dirs[key] = self.dirs.pop(key)  # now the most recently used
        for below in range(depth, len(parts)):
            key = "/".join(parts[:below + 1])
            fd = self._open_dir(member, fd, parts[below], key)
            self.dirs[key] = fd
        self.recent = (wanted, fd)
        return fd

    @staticmethod
    def _open_dir(member: tarfile.TarInfo, parent: int, name: str, shown: str) -> int:
        flags = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
        try:
            return os.open(name, flags, dir_fd=parent)
        except FileNotFoundError:
            try:
                os.mkdir(name, 0o777, dir_fd=parent)
            except FileExistsError:
                pass
            return os.open(name, flags, dir_fd=parent)
        except OSError as e:
            if e.errno in (errno.ENOTDIR, errno.ELOOP):
                raise _refuse(member, f"its path goes through {shown!r}, which is not a directory") from None
            raise

    @staticmethod
    def _mkdir(parent: int, name: str) -> None:
        try:
            os.mkdir(name, 0o777, dir_fd=parent)
        except FileExistsError:
            if not stat.S_ISDIR(os.lstat(name, dir_fd=parent).st_mode):
                os.unlink(name, dir_fd=parent)  # a file or link: replaced, as tar does
                os.mkdir(name, 0o777, dir_fd=parent)

    @staticmethod
    def _place(member: tarfile.TarInfo, parent: int, name: str, make: Callable[[], object]) -> None:
        """Make an entry, removing a file or link already there first; never a directory."""
        try:
            make()
        except FileExistsError:
            if stat.S_ISDIR(os.lstat(name, dir_fd=parent).st_mode):
                raise _refuse(member, "it would replace a directory") from None
            os.unlink(name, dir_fd=parent)
            make()

    def _file(self, tar: tarstream.TarStream, member: tarfile.TarInfo, parent: int, name: str) -> None:
        mode = member.mode & 0o755
        if not mode & 0o100:
            mode &= ~0o111
        mode |= 0o600
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        try:
            fd = os.open(name, flags, mode, dir_fd=parent)
        except FileExistsError:  # the archive had it before: replaced, unless a directory
            fds: list[int] = []
            self._place(member, parent, name, lambda: fds.append(os.open(name, flags, mode, dir_fd=parent)))
            fd = fds[0]
        try:
            data = tar.whole()
            for chunk in tar.chunks() if data is None else (data,):
                write_all(fd, chunk)
            if mode & self.umask:  # the umask took some of it away: set it whole
                os.fchmod(fd, mode)
            try:
                os.utime(fd, (member.mtime, member.mtime))
            except (OverflowError, ValueError):
                pass  # a time no filesystem can hold: the file keeps the time it was written
        finally:
            os.close(fd)


def _umask() -> int:
    """The process's umask, read without changing it (os.umask would, for a moment, for
    every thread); every bit, as if it took everything, where the kernel does not say."""
    try:
        with open("/proc/self/status", "rb") as f:
            for line in f:
                if line.startswith(b"Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    return 0o777


def extract_safely(tar_path: Path, dest: Path, limits: ArchiveLimits | None = None) -> list[str]:
    """Extract a (compressed) tar into the directory ``dest``, one member at a time.

    Every member is checked before anything is written for it (check_member, _Members,
    ``limits``), and again on disk as it is written (_Writer). On error, what was already
    extracted stays in ``dest`` (a fresh directory the caller removes). Returns the
    extracted names.
    """
    names = []
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    placed = _Members(limits)
    try:
        writer = _Writer(dest)
        try:
            with tarstream.open_archive(tar_path) as stream:
                tar = tarstream.TarStream(stream)
                for member in tar:
                    name = placed.admit(member)
                    if name:
                        writer.write(tar, member, name)
                        names.append(name)
        finally:
            writer.close()
    except (tarfile.TarError, EOFError, OSError, *tarstream.DECOMPRESSION_ERRORS) as e:
        raise PackageError(E_PACKAGE, f"Cannot extract {Path(tar_path).name}: {_reason(e)}") from None
    return names


def read_contents(tar_path: Path, limits: ArchiveLimits | None = None) -> tuple[list[tarfile.TarInfo], str | None]:
    """The members of a (compressed) tar, each checked as extract_safely would, and the
    first line of its version.txt (None when it has none, or when it is a link), without
    extracting anything."""
    members, version = [], None
    placed = _Members(limits)
    try:
        with tarstream.open_archive(tar_path) as stream:
            tar = tarstream.TarStream(stream)
            for member in tar:
                if placed.admit(member) == "version.txt" and member.isreg():
                    first = next(tar.chunks(4096), b"")
                    version = bytes(first).split(b"\n", 1)[0].rstrip(b"\r").decode("utf-8", "replace")
                members.append(member)
    except (tarfile.TarError, EOFError, OSError, *tarstream.DECOMPRESSION_ERRORS) as e:
        raise PackageError(E_PACKAGE, f"Cannot read {Path(tar_path).name}: {_reason(e)}") from None
    return members, version


# ----------------------------------------------------------------------------------------
# Building packages (the vendor's side)


def _plain_tarinfo(info: tarfile.TarInfo) -> tarfile.TarInfo:
    info.uid = info.gid = 0
    info.uname = info.gname = "root"
    return info


def make_inner_tar(src_dir: Path, version: str | None, out_path: Path, compresslevel: int = 6) -> Version:
    """Write ``software_package.tar.gz``: the contents of src_dir with names relative to it.

    ``version`` (when given) is written as version.txt, replacing any in src_dir; without
    it src_dir must hold a version.txt. Either way it must be one non-empty line, which the
    appliance compares with its own by ``sort -V``. Links go in as links; whatever the
    appliance would refuse (a link leaving the package, a special file) is refused here.
    """
    src_dir = Path(src_dir)
    if not src_dir.is_dir():
        raise ValueError(f"Not a directory: {src_dir}")
    if version is None:
        version = read_first_line(src_dir / "version.txt")
        if version is None:
            raise ValueError(f"No version given and no version.txt in {src_dir}")
    parsed = Version.parse(version)
    admit = _admitting_filter()
    with tarfile.open(out_path, "w:gz", compresslevel=compresslevel, format=tarfile.GNU_FORMAT) as tar:
        for path, relative in _package_entries(src_dir):
            if relative == "version.txt":
                data = f"{version.strip()}\n".encode()
                info = admit(tarfile.TarInfo("version.txt"))
                info.size, info.mode, info.mtime = len(data), 0o644, int(time.time())
                tar.addfile(info, io.BytesIO(data))
            else:
                tar.add(path, arcname=relative, recursive=False, filter=admit)
    return parsed


def _admitting_filter():
    """A tarfile filter that checks each entry as the appliance will, then plain owners."""
    placed = _Members()

    def admit(info: tarfile.TarInfo) -> tarfile.TarInfo:
        try:
            placed.admit(info)
        except PackageError as e:
            raise ValueError(e.message) from None
        return _plain_tarinfo(info)

    return admit


def _package_entries(src_dir: Path):
    """(path, name) for everything under src_dir, version.txt first, in a stable order."""
    entries = [(src_dir / "version.txt", "version.txt")]
    for root, dirs, files in os.walk(src_dir):
        dirs.sort()
        for name in dirs + sorted(files):
            path = Path(root) / name
            relative = path.relative_to(src_dir).as_posix()
            if not (path.is_symlink() or path.is_dir() or path.is_file()):
                raise ValueError(f"Only regular files, directories and links can be packaged: {relative}")
            if relative != "version.txt":
                entries.append((path, relative))
    return entries


def seal(inner_path: Path, signing_key_file: Path, key_file: Path, out_path: Path,
         *, legacy_md5: bool = False) -> None:
    """Sign a software_package.tar.gz, put it and its signature in a tar, and encrypt that.

    The result is written beside out_path and renamed into place, so out_path is either
    the complete package or untouched.
    """
    with _package_errors():
        signature = crypto.sign_digest(load_private_key(signing_key_file), crypto.sha256_file(inner_path))
    passphrase = read_passphrase(key_file)
    out_path = Path(out_path)
    fd, tmp = tempfile.mkstemp(prefix=f".{out_path.name}.", dir=out_path.parent)
    try:
        with open(fd, "wb") as out:
            writer = EncryptingWriter(out, passphrase, "md5" if legacy_md5 else "pbkdf2")
            with tarfile.open(fileobj=writer, mode="w|", bufsize=CHUNK, format=tarfile.GNU_FORMAT) as outer:
                outer.add(inner_path, arcname=INNER_NAME, filter=_plain_tarinfo)
                info = _plain_tarinfo(tarfile.TarInfo(SIGNATURE_NAME))
                info.size, info.mode, info.mtime = len(signature), 0o644, int(os.path.getmtime(inner_path))
                outer.addfile(info, io.BytesIO(signature))
            writer.finish()
        os.chmod(tmp, 0o644)
        os.replace(tmp, out_path)
    except BaseException:
        remove_quietly(Path(tmp))
        raise


def build_package(src_dir: Path, version: str | None, key_file: Path, signing_key_file: Path,
                  out_path: Path, *, legacy_md5: bool = False, compresslevel: int = 6) -> Version:
    """Build an encrypted, signed update package from the contents of src_dir."""
    with tempfile.TemporaryDirectory(prefix=".package-", dir=Path(out_path).parent) as work:
        inner = Path(work) / INNER_NAME
        parsed = make_inner_tar(src_dir, version, inner, compresslevel)
        seal(inner, signing_key_file, key_file, out_path, legacy_md5=legacy_md5)
    return parsed


# The manifest beside a package (jidoteki-admin-vendor package --manifest, or manifest):
# what the package is, so a fleet tool decides whether to send it from the package itself,
# not its name. The manifest's bytes are signed with the vendor's key as openssl does it
# (openssl dgst -sha256 -sign vendor.key -out FILE.manifest.json.sig FILE.manifest.json),
# so an administrator with updates.pub checks it with openssl dgst -verify.
MANIFEST_FORMAT = "jidoteki-admin-manifest/1"
MANIFEST_SUFFIX = ".manifest.json"
MANIFEST_SIGNATURE_SUFFIX = ".manifest.json.sig"


def write_manifest(package_path: Path, version: str, signing_key_file: Path) -> tuple[Path, Path]:
    """Write FILE.manifest.json (version, size, SHA-256 of the package) and its signature."""
    manifest = {
        "format": MANIFEST_FORMAT,
        "package": package_path.name,
        "version": str(version),
        "size": package_path.stat().st_size,
        "sha256": crypto.sha256_file(package_path).hex(),
    }
    data = json.dumps(manifest, indent=1).encode() + b"\n"
    path = package_path.with_name(package_path.name + MANIFEST_SUFFIX)
    signature_path = package_path.with_name(package_path.name + MANIFEST_SIGNATURE_SUFFIX)
    with _package_errors():
        signature = crypto.sign_digest(load_private_key(signing_key_file), hashlib.sha256(data).digest())
    atomic_write(path, data, 0o644)
    atomic_write(signature_path, signature, 0o644)
    return path, signature_path
