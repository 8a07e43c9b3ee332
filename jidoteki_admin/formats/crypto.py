"""openssl-compatible streaming encryption and signatures, for any format built on them.

What ``openssl enc -aes-256-cbc -salt -md sha256 -pbkdf2 -pass file:KEY`` writes (and the
legacy ``-md md5`` form without ``-pbkdf2``), and what ``openssl dgst -sha256 -sign`` /
``-verify`` make and check. Update packages (package.py) are built on this; so are the
debug bundles, encrypted backups and licenses that need the same tools on the vendor side.

Everything streams in chunks: a file may be gigabytes and is never held in memory. Errors
are CryptoError, whose message names the file by what it is for (``what``).
"""

from __future__ import annotations

import hashlib
import io
import os
from pathlib import Path
from typing import BinaryIO, Callable

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes, PublicKeyTypes
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

MAGIC = b"Salted__"
SALT_SIZE = 8
BLOCK = 16  # AES block size
KEY_SIZE = 32  # AES-256
PBKDF2_ITERATIONS = 10000  # openssl enc's default for -pbkdf2
PASSPHRASE_MAX = 1023  # openssl reads -pass file: into a 1024-byte buffer
CHUNK = 1 << 20
PROBE_SIZE = 512  # plaintext bytes checked to tell the key derivation (one tar header)
# A reader's probe is a whole number of blocks; the plaintext must be longer than it.


class CryptoError(Exception):
    """A key, ciphertext or signature that cannot be used; the message says which and why."""


# ----------------------------------------------------------------------------------------
# Key derivation, exactly as openssl enc does it


def read_passphrase(key_file: Path, what: str = "package", shown: str | None = None) -> bytes:
    """The passphrase ``openssl -pass file:key_file`` uses.

    openssl reads at most 1023 bytes of the first line, cuts at the first newline and, being
    C, at the first NUL. A carriage return is kept, as openssl keeps it. Errors name the
    file as ``shown`` (by default its path), so a caller can keep server paths out of them.
    """
    shown = shown or str(key_file)
    try:
        with open(key_file, "rb") as f:
            data = f.read(PASSPHRASE_MAX)
    except OSError as e:
        raise CryptoError(f"Cannot read the {what} key {shown}: {e.strerror}") from None
    if not data:
        raise CryptoError(f"The {what} key {shown} is empty")
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


def _aes(key: bytes, iv: bytes) -> Cipher[modes.CBC]:
    return Cipher(algorithms.AES(key), modes.CBC(iv))


class EncryptingWriter:
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
        writer = EncryptingWriter(out, passphrase, "md5" if legacy_md5 else "pbkdf2")
        while chunk := src.read(CHUNK):
            writer.write(chunk)
        writer.finish()


# ----------------------------------------------------------------------------------------
# Decryption


class DecryptingReader:
    """A read-only, forward-only file object over the plaintext of a package.

    The caller knows what the plaintext starts with (an update package holds a tar, whose
    first 512 bytes are a header with a checksum): ``recognise`` says whether a decrypted
    first block looks right. Trying each key derivation on just that block tells pbkdf2
    from legacy md5 (or a wrong key) at once, instead of decrypting gigabytes to find bad
    padding.

    The file size is known, so all blocks but the last are decrypted as they are read;
    the last block is decrypted alone and its padding checked. ``read(n)`` returns exactly
    n bytes until the end (tarfile relies on it) and, when the position is block aligned,
    hands out the decrypted bytes without copying them.
    """

    def __init__(self, f: io.BufferedIOBase, passphrase: bytes, recognise: Callable[[bytes], bool],
                 what: str = "file", probe: int = PROBE_SIZE):
        self._f = f
        self._what = what
        size = os.fstat(f.fileno()).st_size
        header = f.read(len(MAGIC) + SALT_SIZE)
        body = size - len(header)
        if header[:len(MAGIC)] != MAGIC or len(header) != len(MAGIC) + SALT_SIZE:
            raise CryptoError(f"Not an encrypted {what} (no Salted__ header)")
        if body < probe + BLOCK or body % BLOCK or probe % BLOCK:
            raise CryptoError(f"Damaged {what} (truncated ciphertext)")
        salt = header[len(MAGIC):]
        first = f.read(probe)
        for scheme, derive in SCHEMES.items():  # noqa: B007 (the scheme found is kept below)
            key, iv = derive(passphrase, salt)
            if recognise(_aes(key, iv).decryptor().update(first)):
                break
        else:
            raise CryptoError(f"Cannot decrypt {what}: wrong key or damaged {what.split()[-1]}")
        self.scheme = scheme
        self._decryptor = _aes(key, iv).decryptor()
        self._pending = self._decryptor.update(first)
        self._remaining = body - probe - BLOCK  # ciphertext before the last block
        self._ciphertext = memoryview(bytearray(CHUNK))
        self._plaintext = bytearray(CHUNK + BLOCK)  # update_into wants a block to spare
        self._plaintext_view = memoryview(self._plaintext)
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
                raise CryptoError(f"Damaged {self._what} (file changed while reading)")
            self._remaining -= count
            # Into a buffer kept for the purpose, then copied out once: update() makes a new
            # output object of each megabyte itself, at a third of the speed (631 against
            # 2,172 MiB/s on the development machine; docs/performance.md).
            written = self._decryptor.update_into(view, self._plaintext)
            return bytes(self._plaintext_view[:written])
        if not self._done:
            self._done = True
            return self._last_block()
        return b""

    def _last_block(self) -> bytes:
        last = self._f.read(BLOCK)
        if len(last) != BLOCK:
            raise CryptoError(f"Damaged {self._what} (file changed while reading)")
        plain = self._decryptor.update(last) + self._decryptor.finalize()
        pad = plain[-1]
        if not 1 <= pad <= BLOCK or plain[-pad:] != bytes([pad]) * pad:
            raise CryptoError(f"Cannot decrypt {self._what}: bad padding (wrong key or damaged {self._what.split()[-1]})")
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


def decrypt(encrypted_path: Path, out_path: Path, key_file: Path, recognise: Callable[[bytes], bool],
            what: str = "file") -> str:
    """Decrypt a file to a plain file, as ``openssl enc -d`` would; returns the scheme."""
    passphrase = read_passphrase(key_file)
    with open(encrypted_path, "rb") as f, open(out_path, "wb") as out:
        reader = DecryptingReader(f, passphrase, recognise, what)
        while chunk := reader.read(CHUNK):
            out.write(chunk)
    return reader.scheme


# ----------------------------------------------------------------------------------------
# Signatures: openssl dgst -sha256 -sign / -verify, over a digest computed while streaming


def load_public_key(path: Path, shown: str | None = None) -> PublicKeyTypes:
    """The PEM public key in ``path``; errors name it as ``shown`` (by default its path)."""
    shown = shown or str(path)
    try:
        return serialization.load_pem_public_key(Path(path).read_bytes())
    except OSError as e:
        raise CryptoError(f"Cannot read the public key {shown}: {e.strerror}") from None
    except (ValueError, UnsupportedAlgorithm):
        raise CryptoError(f"Not a PEM public key: {shown}") from None


def load_private_key(path: Path) -> PrivateKeyTypes:
    try:
        return serialization.load_pem_private_key(Path(path).read_bytes(), password=None)
    except OSError as e:
        raise CryptoError(f"Cannot read the signing key {path}: {e.strerror}") from None
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise CryptoError(f"Not an unencrypted PEM private key: {path}") from None


def sign_digest(private_key: PrivateKeyTypes, digest: bytes) -> bytes:
    """What ``openssl dgst -sha256 -sign`` writes: PKCS#1 v1.5 for RSA, DER ECDSA/DSA."""
    prehashed = Prehashed(hashes.SHA256())
    if isinstance(private_key, rsa.RSAPrivateKey):
        return private_key.sign(digest, padding.PKCS1v15(), prehashed)
    if isinstance(private_key, ec.EllipticCurvePrivateKey):
        return private_key.sign(digest, ec.ECDSA(prehashed))
    if isinstance(private_key, dsa.DSAPrivateKey):
        return private_key.sign(digest, prehashed)
    raise CryptoError("The signing key must be an RSA, EC or DSA key")


def verify_digest(public_key: PublicKeyTypes, signature: bytes, digest: bytes, what: str = "file") -> None:
    prehashed = Prehashed(hashes.SHA256())
    try:
        if isinstance(public_key, rsa.RSAPublicKey):
            public_key.verify(signature, digest, padding.PKCS1v15(), prehashed)
        elif isinstance(public_key, ec.EllipticCurvePublicKey):
            public_key.verify(signature, digest, ec.ECDSA(prehashed))
        elif isinstance(public_key, dsa.DSAPublicKey):
            public_key.verify(signature, digest, prehashed)
        else:
            raise CryptoError("The public key must be an RSA, EC or DSA key")
    except InvalidSignature:
        raise CryptoError(f"Invalid {what} signature") from None


def sha256_file(path: Path) -> bytes:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
    return digest.digest()


# ----------------------------------------------------------------------------------------
# RSA encryption of a small secret: openssl rsautl -encrypt -pubin (PKCS#1 v1.5)


def rsa_encrypt(public_key: PublicKeyTypes, data: bytes) -> bytes:
    """What ``openssl rsautl -encrypt -pubin -inkey KEY`` (or ``pkeyutl -encrypt``) writes."""
    if not isinstance(public_key, rsa.RSAPublicKey):
        raise CryptoError("The public key must be an RSA key to encrypt to it")
    return public_key.encrypt(data, padding.PKCS1v15())


def rsa_decrypt(private_key: PrivateKeyTypes, data: bytes) -> bytes:
    """What ``openssl rsautl -decrypt -inkey KEY`` gives back."""
    if not isinstance(private_key, rsa.RSAPrivateKey):
        raise CryptoError("The private key must be an RSA key to decrypt with it")
    try:
        return private_key.decrypt(data, padding.PKCS1v15())
    except ValueError:
        raise CryptoError("Cannot decrypt the key: not encrypted to this private key") from None
