"""The default license scheme: a signed JSON document, armored as text (docs/license.md).

    -----BEGIN JIDOTEKI LICENSE-----
    <base64 of the exact bytes of the JSON document>
    -----END JIDOTEKI LICENSE-----
    -----BEGIN JIDOTEKI LICENSE SIGNATURE-----
    <base64 of the signature over those bytes>
    -----END JIDOTEKI LICENSE SIGNATURE-----

The signature is ``openssl dgst -sha256 -sign`` over the document bytes (crypto.py: RSA
PKCS#1 v1.5, or ECDSA), checked against the vendor's public key in etc/license.pub. The
document is base64 inside the armor so that no mail program, editor or CRLF conversion
can change a byte that was signed; whitespace around the blocks and around each line,
and any line ending, are tolerated.

The document is a JSON object with at least ``app``, ``users``, ``expires`` (an ISO
date, 2038-01-19), ``name`` and ``contact``; anything else the vendor adds is kept and
shown. The details answered (GET /license) are the document with ``expires`` written as
API.md shows it ("19 January 2038") and ``expired`` added.

Everything here is pure (no Twisted, no web code): the section, the license job and the
vendor's tool share it. Every problem raises LicenseError, whose message is the answer's
Error-Message.
"""

from __future__ import annotations

import base64
import binascii
import datetime
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import crypto
from .validate import Invalid, load_document

BEGIN = "-----BEGIN JIDOTEKI LICENSE-----"
END = "-----END JIDOTEKI LICENSE-----"
BEGIN_SIGNATURE = "-----BEGIN JIDOTEKI LICENSE SIGNATURE-----"
END_SIGNATURE = "-----END JIDOTEKI LICENSE SIGNATURE-----"
LINE = 64  # base64 characters a line, as PEM has them
DOCUMENT_MAX = 64 * 1024
REQUIRED = ("app", "users", "expires", "name", "contact")
MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August", "September",
          "October", "November", "December")


class LicenseError(ValueError):
    """A license that cannot be used; str() says why, for the client."""


@dataclass(frozen=True)
class Armored:
    document: bytes  # the exact bytes that were signed
    signature: bytes


# ----------------------------------------------------------------------------------------
# The armor


def armor(document: bytes, signature: bytes) -> bytes:
    """The license file for a document and its signature."""
    return "\n".join([BEGIN, *_wrapped(document), END, BEGIN_SIGNATURE, *_wrapped(signature),
                      END_SIGNATURE, ""]).encode("ascii")


def _wrapped(data: bytes) -> list[str]:
    encoded = base64.b64encode(data).decode("ascii")
    return [encoded[i:i + LINE] for i in range(0, len(encoded), LINE)]


def parse(data: bytes) -> Armored:
    """The document and signature of a license file, or LicenseError saying what is wrong."""
    try:
        text = data.decode("ascii")
    except UnicodeDecodeError as e:
        raise LicenseError(f"The license file is not armored text: a non-ASCII byte at offset {e.start}") from None
    lines = [line.strip() for line in text.replace("\r\n", "\n").replace("\r", "\n").split("\n")]
    lines = [line for line in lines if line]
    if not lines:
        raise LicenseError("The license file is empty")
    document, rest = _block(lines, BEGIN, END, "license")
    signature, rest = _block(rest, BEGIN_SIGNATURE, END_SIGNATURE, "license signature")
    if rest:
        raise LicenseError(f"The license file has text after {END_SIGNATURE}")
    return Armored(document, signature)


def _block(lines: list[str], begin: str, end: str, what: str) -> tuple[bytes, list[str]]:
    """The decoded base64 between ``begin`` and ``end`` at the start of ``lines``, and
    the lines after it."""
    if not lines or lines[0] != begin:
        found = f"found {lines[0][:40]!r}" if lines else "found the end of the file"
        raise LicenseError(f"The license file is not armored text: expected {begin}, {found}")
    try:
        stop = lines.index(end)
    except ValueError:
        raise LicenseError(f"The license file is not armored text: {end} is missing") from None
    body = "".join(lines[1:stop])
    if not body:
        raise LicenseError(f"The license file has an empty {what} block")
    try:
        decoded = base64.b64decode(body, validate=True)
    except (binascii.Error, ValueError):
        raise LicenseError(f"The {what} block of the license file is not valid base64") from None
    if not decoded:
        raise LicenseError(f"The license file has an empty {what} block")
    return decoded, lines[stop + 1:]


# ----------------------------------------------------------------------------------------
# The document


def make_document(app: str, users: int, expires: str, name: str, contact: str,
                  more: dict[str, Any] | None = None) -> bytes:
    """The bytes of a license document; checked as an appliance will check them."""
    value: dict[str, Any] = {"app": app, "users": users, "expires": expires, "name": name, "contact": contact}
    for key, extra in (more or {}).items():
        if key in value or key == "expired":
            raise LicenseError(f"{key!r} cannot be set twice or by hand")
        value[key] = extra
    data = json.dumps(value, ensure_ascii=False, indent=2).encode("utf-8") + b"\n"
    read_document(data)
    return data


def read_document(data: bytes) -> dict[str, Any]:
    """The license document: a JSON object with the required keys, each of its type."""
    try:
        value = load_document(data, "license document", DOCUMENT_MAX)
    except Invalid as e:
        raise LicenseError(str(e)) from None
    missing = [key for key in REQUIRED if key not in value]
    if missing:
        raise LicenseError(f"The license document lacks {', '.join(missing)}")
    for key in ("app", "name", "contact"):
        if not isinstance(value[key], str) or not value[key].strip():
            raise LicenseError(f"The license document's {key} must be a non-empty string")
    users = value["users"]
    if isinstance(users, bool) or not isinstance(users, int) or users < 0:
        raise LicenseError("The license document's users must be a whole number, 0 or more")
    expiry_date(value["expires"])
    if "expired" in value:
        raise LicenseError("The license document must not say itself whether it has expired")
    return value


def expiry_date(value: object) -> datetime.date:
    if isinstance(value, str) and len(value) == 10:
        try:
            return datetime.date.fromisoformat(value)
        except ValueError:
            pass
    raise LicenseError(f"The license document's expires must be a date like 2038-01-19, not {value!r}"[:200])


def shown_date(day: datetime.date) -> str:
    """A date as API.md shows it: 19 January 2038 (whatever the locale)."""
    return f"{day.day} {MONTHS[day.month - 1]} {day.year}"


def details(document: dict[str, Any], today: datetime.date | None = None) -> dict[str, Any]:
    """What GET /license answers: the document, its expiry date as API.md writes it, and
    whether it has expired (a license is good through the day it expires)."""
    today = today or datetime.datetime.now(datetime.timezone.utc).date()
    expires = expiry_date(document["expires"])
    shown = dict(document)
    shown["expires"] = shown_date(expires)
    shown["expired"] = today > expires
    return shown


# ----------------------------------------------------------------------------------------
# Signing and checking


def sign(document: bytes, key_file: Path) -> bytes:
    """The license file of a document, signed with the vendor's license key."""
    try:
        signature = crypto.sign_digest(crypto.load_private_key(key_file), hashlib.sha256(document).digest())
    except crypto.CryptoError as e:
        raise LicenseError(str(e)) from None
    return armor(document, signature)


def verify(data: bytes, public_key: Path, shown_key: str = "etc/license.pub") -> dict[str, Any]:
    """The document of a license file whose signature the public key accepts."""
    armored = parse(data)
    if not public_key.is_file():
        raise LicenseError(f"No license can be checked: the license public key {shown_key} is missing")
    try:
        key = crypto.load_public_key(public_key, shown=shown_key)
        crypto.verify_digest(key, armored.signature, hashlib.sha256(armored.document).digest(), "license")
    except crypto.CryptoError as e:
        raise LicenseError(f"{e} (checked with {shown_key})" if "signature" in str(e) else str(e)) from None
    return read_document(armored.document)


def check(data: bytes, public_key: Path, today: datetime.date | None = None) -> dict[str, Any]:
    """The details of a license file (GET /license), or LicenseError."""
    return details(verify(data, public_key), today)


def check_file(license_file: Path, public_key: Path, limit: int = 1 << 20) -> dict[str, Any]:
    """The details of the installed license, or LicenseError when there is none."""
    try:
        with open(license_file, "rb") as f:
            data = f.read(limit + 1)
    except FileNotFoundError:
        raise LicenseError("No license is installed") from None
    except OSError as e:
        raise LicenseError(f"Cannot read the license: {e.strerror}") from None
    if len(data) > limit:
        raise LicenseError("The installed license file is too large")
    return check(data, public_key)
