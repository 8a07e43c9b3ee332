"""The debug bundle format, exactly as the original appliance wrote it, so vendors'
existing tooling opens it:

    debug-bundle.tar
      debug.key.enc      a random passphrase (``openssl rand -base64 32``: 44 characters
                         and a newline), encrypted to the vendor's RSA key etc/updates.pub
                         with PKCS#1 v1.5 (``openssl rsautl -encrypt -pubin``)
      debug.tar.gz.enc   debug.tar.gz encrypted with ``openssl enc -aes-256-cbc -md sha256
                         -pbkdf2 -salt -pass file:debug.key``

docs/packages.md shows the openssl commands that open it; ``jidoteki-admin-vendor
open-debug-bundle`` does the same. Everything streams: a bundle may be large.
"""

from __future__ import annotations

import base64
import io
import os
import tarfile
import tempfile
from pathlib import Path

from ..files import remove_quietly
from . import crypto
from .crypto import CHUNK, CryptoError, DecryptingReader, EncryptingWriter

KEY_NAME = "debug.key.enc"
DATA_NAME = "debug.tar.gz.enc"
PLAIN_NAME = "debug.tar.gz"
KEY_MAX = 64 * 1024  # an RSA-16384 ciphertext is 2 KiB
GZIP_MAGIC = b"\x1f\x8b"


def new_passphrase() -> bytes:
    """``openssl rand -base64 32``: the file that -pass file: reads, newline included."""
    return base64.b64encode(os.urandom(32)) + b"\n"


def seal(plain: Path, public_key_file: Path, out: Path, shown: str | None = None) -> None:
    """Encrypt ``plain`` (a tar.gz) for the holder of the private key, into the bundle
    ``out`` (written beside it and renamed into place). Errors name the key file as
    ``shown`` (the appliance's answers name files relative to the admin tree)."""
    public_key = crypto.load_public_key(public_key_file, shown)
    key_file = new_passphrase()
    encrypted_key = crypto.rsa_encrypt(public_key, key_file)
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", dir=out.parent)
    try:
        with open(fd, "wb") as raw, tarfile.open(fileobj=raw, mode="w") as tar:
            _add_bytes(tar, KEY_NAME, encrypted_key)
            _add_encrypted(tar, plain, key_file.split(b"\n", 1)[0], out.parent)
        os.chmod(tmp, 0o600)
        os.replace(tmp, out)
    except BaseException:
        remove_quietly(Path(tmp))
        raise


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mode = len(data), 0o600
    tar.addfile(info, io.BytesIO(data))


def _add_encrypted(tar: tarfile.TarFile, plain: Path, passphrase: bytes, work: Path) -> None:
    fd, tmp = tempfile.mkstemp(prefix=".debug-enc-", dir=work)
    try:
        with open(fd, "wb") as out, open(plain, "rb") as src:
            writer = EncryptingWriter(out, passphrase)
            while chunk := src.read(CHUNK):
                writer.write(chunk)
            writer.finish()
        tar.add(tmp, arcname=DATA_NAME)
    finally:
        remove_quietly(Path(tmp))


def open_bundle(bundle: Path, private_key_file: Path, out: Path) -> None:
    """Decrypt a debug bundle into ``out`` (debug.tar.gz); raises CryptoError."""
    private_key = crypto.load_private_key(private_key_file)
    try:
        with tarfile.open(bundle, mode="r:") as tar:
            members = {m.name.removeprefix("./"): m for m in tar if m.isreg()}
            if KEY_NAME not in members or DATA_NAME not in members:
                raise CryptoError(f"Not a debug bundle: it needs {KEY_NAME} and {DATA_NAME}")
            if members[KEY_NAME].size > KEY_MAX:
                raise CryptoError(f"Not a debug bundle: {KEY_NAME} is too large")
            key_file = crypto.rsa_decrypt(private_key, tar.extractfile(members[KEY_NAME]).read())
            passphrase = key_file.split(b"\n", 1)[0].split(b"\0", 1)[0]
            _decrypt_member(tar, members[DATA_NAME], passphrase, out)
    except tarfile.TarError as e:
        raise CryptoError(f"Not a debug bundle: {e}") from None


def _decrypt_member(tar: tarfile.TarFile, member: tarfile.TarInfo, passphrase: bytes, out: Path) -> None:
    """The encrypted tar.gz is copied out first: the decrypting reader needs a real file."""
    with tempfile.TemporaryDirectory(prefix=".debug-", dir=out.parent) as work:
        encrypted = Path(work) / DATA_NAME
        with tar.extractfile(member) as src, open(encrypted, "wb") as copy:
            while chunk := src.read(CHUNK):
                copy.write(chunk)
        with open(encrypted, "rb") as f, open(out, "wb") as plain:
            # A gzip file is at least 18 bytes: its first block tells the key derivation.
            reader = DecryptingReader(f, passphrase, lambda block: block.startswith(GZIP_MAGIC), "debug bundle",
                                      probe=crypto.BLOCK)
            while chunk := reader.read(CHUNK):
                plain.write(chunk)
