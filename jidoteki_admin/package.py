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
import functools
import hashlib
import io
import os
import re
import tarfile
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from . import crypto
from .crypto import CHUNK, CryptoError, DecryptingReader, EncryptingWriter
from .files import read_first_line, remove_quietly

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
# Versions


_VERSION_RE = re.compile(
    r"[vV]?(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)"
    r"(?:-((?:0|[1-9][0-9]*|[0-9]*[A-Za-z-][0-9A-Za-z-]*)"
    r"(?:\.(?:0|[1-9][0-9]*|[0-9]*[A-Za-z-][0-9A-Za-z-]*))*))?"
    r"(?:\+([0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*))?"
)


@functools.total_ordering
@dataclass(frozen=True, eq=False)
class Version:
    """A semantic version (https://semver.org), compared by semver precedence.

    A leading ``v`` is accepted; build metadata (``+...``) is kept but, as semver says,
    ignored when comparing.
    """

    major: int
    minor: int
    patch: int
    prerelease: tuple[str, ...] = ()
    build: str = ""

    @classmethod
    def parse(cls, text: str) -> Version:
        match = _VERSION_RE.fullmatch(text.strip())
        if match is None:
            raise ValueError(f"not a semantic version (like 1.2.3): {text.strip()!r}")
        major, minor, patch, pre, build = match.groups()
        return cls(int(major), int(minor), int(patch),
                   tuple(pre.split(".")) if pre else (), build or "")

    def _key(self) -> tuple:
        # A release ranks above any of its pre-releases; within a pre-release, numeric
        # identifiers rank below alphanumeric ones and a longer list wins a tie.
        if not self.prerelease:
            pre: tuple = (1,)
        else:
            pre = (0, tuple((0, int(p), "") if p.isdigit() else (1, 0, p)
                            for p in self.prerelease))
        return (self.major, self.minor, self.patch, pre)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Version):
            return NotImplemented
        return self._key() == other._key()

    def __lt__(self, other: Version) -> bool:
        if not isinstance(other, Version):
            return NotImplemented
        return self._key() < other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def __str__(self) -> str:
        text = f"{self.major}.{self.minor}.{self.patch}"
        if self.prerelease:
            text += "-" + ".".join(self.prerelease)
        if self.build:
            text += "+" + self.build
        return text


# ----------------------------------------------------------------------------------------
# Uploaded packages


def _natural_key(text: str) -> tuple:
    # Splitting on digit runs puts strings at even and integers at odd positions, so two
    # keys never compare a string with an integer.
    return tuple(int(part) if i % 2 else part for i, part in enumerate(re.split(r"(\d+)", text)))


def _package_sort_key(path: Path) -> tuple:
    label = path.name[len(PACKAGE_PREFIX):-len(PACKAGE_SUFFIX)]
    try:
        return (1, Version.parse(label), path.name)
    except ValueError:
        return (0, _natural_key(label), path.name)


def find_packages(uploads: Path) -> list[Path]:
    """Uploaded ``software_package-*.enc`` files, oldest first.

    Names are ordered by the semantic version after ``software_package-`` (so 1.10.0 comes
    after 1.9.0); names that hold no version sort before those that do, naturally.
    """
    try:
        paths = [p for p in Path(uploads).iterdir()
                 if p.name.startswith(PACKAGE_PREFIX) and p.name.endswith(PACKAGE_SUFFIX)
                 and len(p.name) > len(PACKAGE_PREFIX) + len(PACKAGE_SUFFIX) and p.is_file()]
    except FileNotFoundError:
        paths = []
    return sorted(paths, key=_package_sort_key)


def newest_package(uploads: Path) -> Path:
    packages = find_packages(uploads)
    if not packages:
        raise PackageError(E_MISSING, "Missing update package")
    return packages[-1]


# ----------------------------------------------------------------------------------------
# Opening a package: decrypt, split the outer tar, hash and verify in one pass


def _outer_member_name(member: tarfile.TarInfo) -> str | None:
    """The name of a wanted outer member, or None for the archive's own ``.`` entry."""
    name = member.name
    while name.startswith("./"):
        name = name[2:]
    if member.isdir() and name in ("", "."):
        return None
    if name not in (INNER_NAME, SIGNATURE_NAME) or not member.isreg():
        raise PackageError(E_PACKAGE, f"Unexpected member in update package: {member.name!r}")
    return name


def _copy_hashing(reader: DecryptingReader, size: int, out_path: Path) -> bytes:
    digest = hashlib.sha256()
    fd = os.open(out_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with open(fd, "wb", buffering=0) as out:
        while size > 0:
            chunk = reader.read(min(size, CHUNK))
            if not chunk:
                raise PackageError(E_PACKAGE, f"Damaged update package (truncated {INNER_NAME})")
            digest.update(chunk)
            out.write(chunk)
            size -= len(chunk)
    return digest.digest()


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
    tarfile.SYMTYPE: "a symbolic link",
    tarfile.LNKTYPE: "a hard link",
    tarfile.CHRTYPE: "a character device",
    tarfile.BLKTYPE: "a block device",
    tarfile.FIFOTYPE: "a FIFO",
}


def check_member(member: tarfile.TarInfo, dest: Path | None = None) -> str:
    """Refuse anything but a regular file or directory with a plain relative name.

    Member names come from the archive and are never trusted: no absolute paths, no
    ``..``, no links, devices or FIFOs. Returns the name without leading ``./``.
    """
    name = member.name
    if not member.isreg() and not member.isdir():
        kind = _KINDS.get(member.type, f"an unsupported entry (type {member.type!r})")
        raise PackageError(E_PACKAGE, f"Refusing {member.name!r} in update package: it is {kind}")
    if name.startswith("/") or "\\" in name or "\0" in name:
        raise PackageError(E_PACKAGE, f"Refusing {member.name!r} in update package: absolute or unsafe path")
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise PackageError(E_PACKAGE, f"Refusing {member.name!r} in update package: path leaves the directory")
    if dest is not None:
        root = Path(dest).resolve()
        target = root.joinpath(*parts).resolve()
        if target != root and root not in target.parents:
            raise PackageError(E_PACKAGE, f"Refusing {member.name!r} in update package: path leaves the directory")
    return "/".join(parts)


def extract_safely(tar_path: Path, dest: Path) -> list[str]:
    """Extract a (compressed) tar into the directory ``dest``, one member at a time.

    Every member is checked before anything is written for it, and tarfile's 'data' filter
    checks again. On error, what was already extracted stays in ``dest`` (a fresh directory
    the caller removes). Returns the extracted names.
    """
    names = []
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    try:
        with tarfile.open(tar_path, mode="r|*") as tar:
            for member in tar:
                name = check_member(member, dest)
                if name:
                    tar.extract(member, dest, filter="data")
                    names.append(name)
    except (tarfile.TarError, EOFError, OSError) as e:
        raise PackageError(E_PACKAGE, f"Cannot extract {Path(tar_path).name}: {_reason(e)}") from None
    return names


def read_contents(tar_path: Path) -> tuple[list[tarfile.TarInfo], str | None]:
    """The members of a (compressed) tar, each checked as extract_safely would, and the
    first line of its version.txt (None when it has none), without extracting anything."""
    members, version = [], None
    try:
        with tarfile.open(tar_path, mode="r|*") as tar:
            for member in tar:
                if check_member(member) == "version.txt" and member.isreg():
                    line = tar.extractfile(member).readline(4096)
                    version = line.rstrip(b"\r\n").decode("utf-8", "replace")
                members.append(member)
    except (tarfile.TarError, EOFError, OSError) as e:
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
    it src_dir must hold a version.txt. Either way it must be a semantic version. Links and
    special files are refused, since the appliance would refuse them.
    """
    src_dir = Path(src_dir)
    if not src_dir.is_dir():
        raise ValueError(f"Not a directory: {src_dir}")
    if version is None:
        version = read_first_line(src_dir / "version.txt")
        if version is None:
            raise ValueError(f"No version given and no version.txt in {src_dir}")
    parsed = Version.parse(version)
    with tarfile.open(out_path, "w:gz", compresslevel=compresslevel, format=tarfile.GNU_FORMAT) as tar:
        for path, relative in _package_entries(src_dir):
            if relative == "version.txt":
                data = f"{version.strip()}\n".encode()
                info = _plain_tarinfo(tarfile.TarInfo("version.txt"))
                info.size, info.mode, info.mtime = len(data), 0o644, int(time.time())
                tar.addfile(info, io.BytesIO(data))
            else:
                tar.add(path, arcname=relative, recursive=False, filter=_plain_tarinfo)
    return parsed


def _package_entries(src_dir: Path):
    """(path, name) for everything under src_dir, version.txt first, in a stable order."""
    entries = [(src_dir / "version.txt", "version.txt")]
    for root, dirs, files in os.walk(src_dir):
        dirs.sort()
        for name in dirs + sorted(files):
            path = Path(root) / name
            relative = path.relative_to(src_dir).as_posix()
            if path.is_symlink() or not (path.is_dir() or path.is_file()):
                raise ValueError(f"Only regular files and directories can be packaged: {relative}")
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
