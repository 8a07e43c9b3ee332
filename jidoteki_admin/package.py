"""Update packages: encryption, signatures, safe extraction and versions.

A package ``software_package-<anything>.enc`` is, byte for byte, what
``openssl aes-256-cbc -md sha256 -pbkdf2 -salt -pass file:updates.key`` makes of an
uncompressed tar holding ``software_package.tar.gz`` and its signature
``software_package.tar.gz.sign`` (``openssl dgst -sha256 -sign vendor.key``). Older
packages were encrypted with ``-md md5`` and no ``-pbkdf2``; they still open.
docs/packages.md describes the format in full.

Everything here streams: a package can be several gigabytes, so it is decrypted, split,
written to disk and hashed in one pass, in chunks, and never held in memory.
"""

from __future__ import annotations

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
from typing import BinaryIO, Callable

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from .files import read_first_line, remove_quietly

PACKAGE_PREFIX = "software_package-"
PACKAGE_SUFFIX = ".enc"
INNER_NAME = "software_package.tar.gz"
SIGNATURE_NAME = INNER_NAME + ".sign"

MAGIC = b"Salted__"
SALT_SIZE = 8
BLOCK = 16  # AES block size
KEY_SIZE = 32  # AES-256
PBKDF2_ITERATIONS = 10000  # openssl enc's default for -pbkdf2
PASSPHRASE_MAX = 1023  # openssl reads -pass file: into a 1024-byte buffer
CHUNK = 1 << 20
SIGNATURE_MAX = 64 * 1024  # far above any real signature (RSA-16384 is 2 KiB)

E_VERSION = "E1001"
E_MISSING = "E1003"
E_PACKAGE = "E1005"


class PackageError(Exception):
    """A package that cannot be used, with the API's error code (E1001, E1003, E1005)."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


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
# Key derivation, exactly as openssl enc does it


def read_passphrase(key_file: Path) -> bytes:
    """The passphrase ``openssl -pass file:key_file`` uses.

    openssl reads at most 1023 bytes of the first line, cuts at the first newline and, being
    C, at the first NUL. A carriage return is kept, as openssl keeps it.
    """
    try:
        with open(key_file, "rb") as f:
            data = f.read(PASSPHRASE_MAX)
    except OSError as e:
        raise PackageError(E_PACKAGE, f"Cannot read the package key {key_file}: {e.strerror}") from None
    if not data:
        raise PackageError(E_PACKAGE, f"The package key {key_file} is empty")
    return data.split(b"\n", 1)[0].split(b"\0", 1)[0]


def derive_pbkdf2(passphrase: bytes, salt: bytes) -> tuple[bytes, bytes]:
    """Key and IV for ``-md sha256 -pbkdf2``: PBKDF2-HMAC-SHA256, 10000 rounds, 48 bytes."""
    material = hashlib.pbkdf2_hmac("sha256", passphrase, salt, PBKDF2_ITERATIONS, KEY_SIZE + BLOCK)
    return material[:KEY_SIZE], material[KEY_SIZE:]


def derive_md5(passphrase: bytes, salt: bytes) -> tuple[bytes, bytes]:
    """Key and IV for legacy ``-md md5`` packages: EVP_BytesToKey, MD5, one iteration."""
    material, block = b"", b""
    while len(material) < KEY_SIZE + BLOCK:
        block = hashlib.md5(block + passphrase + salt).digest()
        material += block
    return material[:KEY_SIZE], material[KEY_SIZE:KEY_SIZE + BLOCK]


SCHEMES: dict[str, Callable[[bytes, bytes], tuple[bytes, bytes]]] = {
    "pbkdf2": derive_pbkdf2,
    "md5": derive_md5,
}


def _aes(key: bytes, iv: bytes) -> Cipher:
    return Cipher(algorithms.AES(key), modes.CBC(iv))


# ----------------------------------------------------------------------------------------
# Encryption


class _EncryptingWriter:
    """A write-only file object producing the ``openssl enc -salt`` format."""

    def __init__(self, out: BinaryIO, passphrase: bytes, scheme: str = "pbkdf2"):
        salt = os.urandom(SALT_SIZE)
        key, iv = SCHEMES[scheme](passphrase, salt)
        self._out = out
        self._encryptor = _aes(key, iv).encryptor()
        self._length = 0
        out.write(MAGIC + salt)

    def write(self, data: bytes) -> int:
        self._out.write(self._encryptor.update(data))
        self._length += len(data)
        return len(data)

    def finish(self) -> None:
        """PKCS#7: always 1 to 16 bytes, each holding the padding length."""
        pad = BLOCK - self._length % BLOCK
        self._out.write(self._encryptor.update(bytes([pad]) * pad) + self._encryptor.finalize())


def encrypt(plain_path: Path, out_path: Path, key_file: Path, *, legacy_md5: bool = False) -> None:
    """Encrypt a file as ``openssl enc -aes-256-cbc -salt`` would (pbkdf2, or legacy md5)."""
    passphrase = read_passphrase(key_file)
    with open(plain_path, "rb") as src, open(out_path, "wb") as out:
        writer = _EncryptingWriter(out, passphrase, "md5" if legacy_md5 else "pbkdf2")
        while chunk := src.read(CHUNK):
            writer.write(chunk)
        writer.finish()


# ----------------------------------------------------------------------------------------
# Decryption


def _looks_like_tar(block: bytes) -> bool:
    try:
        tarfile.TarInfo.frombuf(block, "utf-8", "surrogateescape")
    except tarfile.HeaderError:
        return False
    return True


class _DecryptingReader:
    """A read-only, forward-only file object over the plaintext of a package.

    Every package holds a tar, so the first 512 plaintext bytes are a tar header with a
    checksum. Decrypting just that block with each key derivation tells pbkdf2 from legacy
    md5 (or a wrong key) at once, instead of decrypting gigabytes to find bad padding.

    The file size is known, so all blocks but the last are decrypted as they are read;
    the last block is decrypted alone and its padding checked. ``read(n)`` returns exactly
    n bytes until the end (tarfile relies on it) and, when the position is block aligned,
    hands out the decrypted bytes without copying them.
    """

    def __init__(self, f: BinaryIO, passphrase: bytes):
        self._f = f
        size = os.fstat(f.fileno()).st_size
        header = f.read(len(MAGIC) + SALT_SIZE)
        body = size - len(header)
        if header[:len(MAGIC)] != MAGIC or len(header) != len(MAGIC) + SALT_SIZE:
            raise PackageError(E_PACKAGE, "Not an encrypted update package (no Salted__ header)")
        if body < tarfile.BLOCKSIZE + BLOCK or body % BLOCK:
            raise PackageError(E_PACKAGE, "Damaged update package (truncated ciphertext)")
        salt = header[len(MAGIC):]
        first = f.read(tarfile.BLOCKSIZE)
        for scheme, derive in SCHEMES.items():
            key, iv = derive(passphrase, salt)
            if _looks_like_tar(_aes(key, iv).decryptor().update(first)):
                break
        else:
            raise PackageError(E_PACKAGE, "Cannot decrypt update package: wrong key or damaged package")
        self.scheme = scheme
        self._decryptor = _aes(key, iv).decryptor()
        self._pending = self._decryptor.update(first)
        self._remaining = body - tarfile.BLOCKSIZE - BLOCK  # ciphertext before the last block
        self._ciphertext = memoryview(bytearray(CHUNK))
        self._done = False
        self._position = 0

    def read(self, size: int) -> bytes:
        parts, have = [], 0
        if self._pending:
            parts, have, self._pending = [self._pending], len(self._pending), b""
        while have < size:
            more = self._decrypt_next(size - have)
            if not more:
                break
            parts.append(more)
            have += len(more)
        data = parts[0] if len(parts) == 1 else b"".join(parts)
        if len(data) > size:
            data, self._pending = data[:size], data[size:]
        self._position += len(data)
        return data

    def _decrypt_next(self, wanted: int) -> bytes:
        if self._remaining > 0:
            count = min(-(-wanted // BLOCK) * BLOCK, self._remaining, CHUNK)
            view = self._ciphertext[:count]
            if self._f.readinto(view) != count:
                raise PackageError(E_PACKAGE, "Damaged update package (file changed while reading)")
            self._remaining -= count
            return self._decryptor.update(view)
        if not self._done:
            self._done = True
            return self._last_block()
        return b""

    def _last_block(self) -> bytes:
        last = self._f.read(BLOCK)
        if len(last) != BLOCK:
            raise PackageError(E_PACKAGE, "Damaged update package (file changed while reading)")
        plain = self._decryptor.update(last) + self._decryptor.finalize()
        pad = plain[-1]
        if not 1 <= pad <= BLOCK or plain[-pad:] != bytes([pad]) * pad:
            raise PackageError(E_PACKAGE, "Cannot decrypt update package: bad padding (wrong key or damaged package)")
        return plain[:-pad]

    def tell(self) -> int:
        return self._position

    def seek(self, position: int, whence: int = io.SEEK_SET) -> int:
        """Only forward: skipping means decrypting (tarfile skips member padding)."""
        if whence != io.SEEK_SET or position < self._position:
            raise io.UnsupportedOperation("a package is read forward only")
        while self._position < position and self.read(min(position - self._position, CHUNK)):
            pass
        return self._position

    def drain(self) -> None:
        """Read to the end, so the padding of the last block is always checked."""
        while self.read(CHUNK):
            pass


def decrypt(package_path: Path, out_path: Path, key_file: Path) -> str:
    """Decrypt a package to a plain file, as ``openssl enc -d`` would; returns the scheme."""
    passphrase = read_passphrase(key_file)
    with open(package_path, "rb") as f, open(out_path, "wb") as out:
        reader = _DecryptingReader(f, passphrase)
        while chunk := reader.read(CHUNK):
            out.write(chunk)
    return reader.scheme


# ----------------------------------------------------------------------------------------
# Signatures: openssl dgst -sha256 -sign / -verify, over a digest computed while streaming


def load_public_key(path: Path):
    try:
        return serialization.load_pem_public_key(Path(path).read_bytes())
    except OSError as e:
        raise PackageError(E_PACKAGE, f"Cannot read the public key {path}: {e.strerror}") from None
    except (ValueError, UnsupportedAlgorithm):
        raise PackageError(E_PACKAGE, f"Not a PEM public key: {path}") from None


def load_private_key(path: Path):
    try:
        return serialization.load_pem_private_key(Path(path).read_bytes(), password=None)
    except OSError as e:
        raise PackageError(E_PACKAGE, f"Cannot read the signing key {path}: {e.strerror}") from None
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise PackageError(E_PACKAGE, f"Not an unencrypted PEM private key: {path}") from None


def sign_digest(private_key, digest: bytes) -> bytes:
    """What ``openssl dgst -sha256 -sign`` writes: PKCS#1 v1.5 for RSA, DER ECDSA/DSA."""
    prehashed = Prehashed(hashes.SHA256())
    if isinstance(private_key, rsa.RSAPrivateKey):
        return private_key.sign(digest, padding.PKCS1v15(), prehashed)
    if isinstance(private_key, ec.EllipticCurvePrivateKey):
        return private_key.sign(digest, ec.ECDSA(prehashed))
    if isinstance(private_key, dsa.DSAPrivateKey):
        return private_key.sign(digest, prehashed)
    raise PackageError(E_PACKAGE, "The signing key must be an RSA, EC or DSA key")


def verify_digest(public_key, signature: bytes, digest: bytes) -> None:
    prehashed = Prehashed(hashes.SHA256())
    try:
        if isinstance(public_key, rsa.RSAPublicKey):
            public_key.verify(signature, digest, padding.PKCS1v15(), prehashed)
        elif isinstance(public_key, ec.EllipticCurvePublicKey):
            public_key.verify(signature, digest, ec.ECDSA(prehashed))
        elif isinstance(public_key, dsa.DSAPublicKey):
            public_key.verify(signature, digest, prehashed)
        else:
            raise PackageError(E_PACKAGE, "The public key must be an RSA, EC or DSA key")
    except InvalidSignature:
        raise PackageError(E_PACKAGE, "Invalid update package signature") from None


def sha256_file(path: Path) -> bytes:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
    return digest.digest()


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


def _copy_hashing(reader: _DecryptingReader, size: int, out_path: Path) -> bytes:
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


def _split_outer(reader: _DecryptingReader, out_path: Path) -> dict[str, bytes]:
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
           on_decrypted: Callable[[str], None] | None = None) -> tuple[Path, bytes, bytes]:
    """Decrypt a package and write its ``software_package.tar.gz`` into ``workdir``.

    Returns (path of the tar.gz, its SHA-256 digest, the signature bytes); nothing is
    verified yet. ``on_decrypted(scheme)`` is called once the key is known to open the
    package, before the long part. Raises PackageError (E1005, or E1003 when the package
    file is missing), leaving no tar.gz behind.
    """
    passphrase = read_passphrase(key_file)
    out_path = Path(workdir) / INNER_NAME
    try:
        f = open(package_path, "rb")
    except FileNotFoundError:
        raise PackageError(E_MISSING, f"Missing update package: {package_path}") from None
    try:
        with f:
            reader = _DecryptingReader(f, passphrase)
            if on_decrypted:
                on_decrypted(reader.scheme)
            found = _split_outer(reader, out_path)
    except (tarfile.TarError, EOFError) as e:
        remove_quietly(out_path)
        raise PackageError(E_PACKAGE, f"Cannot extract update package: {e}") from None
    except OSError as e:
        remove_quietly(out_path)
        raise PackageError(E_PACKAGE, f"Cannot read update package: {e}") from None
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
        raise PackageError(E_PACKAGE, f"Cannot extract {Path(tar_path).name}: {e}") from None
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
        raise PackageError(E_PACKAGE, f"Cannot read {Path(tar_path).name}: {e}") from None
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
    signature = sign_digest(load_private_key(signing_key_file), sha256_file(inner_path))
    passphrase = read_passphrase(key_file)
    out_path = Path(out_path)
    fd, tmp = tempfile.mkstemp(prefix=f".{out_path.name}.", dir=out_path.parent)
    try:
        with open(fd, "wb") as out:
            writer = _EncryptingWriter(out, passphrase, "md5" if legacy_md5 else "pbkdf2")
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
