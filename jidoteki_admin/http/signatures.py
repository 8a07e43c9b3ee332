"""Replay-proof signed requests: HTTP Message Signatures (RFC 9421), HMAC-SHA256.

The published ``?hash=`` signs only the method and path, so a hash seen once (in a proxy
log, a shell history) works forever. A request signed here covers its method, its whole
target URI with the query, a Content-Digest of its body (when it has one) and the time it
was made, and carries a nonce: it is refused outside a window around that time, and a
second time within it. The verification itself is the ``http-message-signatures``
library's; this module says what must be covered and keeps the nonces.

    Signature-Input: sig=("@method" "@target-uri" "content-digest");created=1765100000;
                     nonce="9f1c...";keyid="admin";alg="hmac-sha256"
    Signature: sig=:<base64 HMAC-SHA256 of the signature base>:
    Content-Digest: sha-256=:<base64 SHA-256 of the body>:

The key is the same as the ``hash``'s: the hex SHA-256 of the token, as ASCII; ``keyid``
names the token (``admin``, or a named token's name).
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import hmac
import re
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import http_message_signatures as hms
from http_message_signatures.algorithms import HMAC_SHA256

REQUIRED = ("@method", "@target-uri")
DIGEST = "content-digest"
NONCE = re.compile(r"[!#-\[\]-~]{16,128}\Z")  # printable ASCII but " and \, 16 to 128 of them
KEYID = re.compile(r"[a-z0-9][a-z0-9._-]{0,62}\Z")
HEADER_MAX = 4096  # of Signature-Input or Signature


class SignatureRefused(Exception):
    """Why a signed request is refused (403), in words that give no secret away."""


@dataclass(frozen=True)
class Signed:
    keyid: str
    digest: bytes | None  # the SHA-256 of the body the signature covers, to check once it is read


class NonceCache:
    """The nonces seen within the window, per key; bounded, so a flood costs memory up to
    ``limit`` entries and no more (the oldest are forgotten first). Kept in memory only: a
    restart forgets them, and the window still bounds a replay to ``window`` seconds of a
    signature made before the restart."""

    def __init__(self, window: float, limit: int = 100_000):
        self.window = window
        self.limit = limit
        self._seen: OrderedDict[tuple[str, str], float] = OrderedDict()

    def first_use(self, keyid: str, nonce: str, now: float) -> bool:
        """Record the nonce; False when it was already used within the window."""
        while self._seen:
            oldest_key, seen_at = next(iter(self._seen.items()))
            if now - seen_at <= self.window * 2 and len(self._seen) < self.limit:
                break
            del self._seen[oldest_key]
        key = (keyid, nonce)
        if key in self._seen:
            return False
        self._seen[key] = now
        return True


class _Message:
    """What the library needs of a request: its method, URL and headers."""

    def __init__(self, method: str, url: str, headers: Mapping[str, str]):
        self.method = method
        self.url = url
        self.headers = dict(headers)


class _Keys(hms.HTTPSignatureKeyResolver):
    def __init__(self, key_of: Callable[[str], bytes | None]):
        self.key_of = key_of

    def resolve_public_key(self, key_id: str) -> bytes | None:
        return self.key_of(key_id)

    def resolve_private_key(self, key_id: str) -> bytes | None:
        return self.key_of(key_id)


class _Verifier(hms.HTTPMessageVerifier):
    """The library's verifier, with the time checks on the daemon's clock (injected, so
    tests move it) and its window: ``created`` within ``window`` seconds of now either
    way, an ``expires`` not yet past."""

    def __init__(self, key_of: Callable[[str], bytes | None], now: float, window: float):
        super().__init__(signature_algorithm=HMAC_SHA256, key_resolver=_Keys(key_of))
        self.now = now
        self.window = window

    def validate_created_and_expires(self, sig_input, max_age=None):
        created = sig_input.params.get("created")
        if type(created) is not int:
            raise SignatureRefused("The signature needs a created parameter: the Unix time it was made")
        if abs(self.now - created) > self.window:
            raise SignatureRefused(f"The signature was made more than {int(self.window)} seconds from the "
                                   "appliance's time: check the client's clock")
        expires = sig_input.params.get("expires")
        if expires is not None and (type(expires) is not int or expires < self.now):
            raise SignatureRefused("The signature has expired")


def verify(method: str, url: str, headers: Mapping[str, str], has_body: bool, key_of: Callable[[str], bytes | None],
           now: float, window: float, nonces: NonceCache) -> Signed:
    """The key id of a request signed as this module says, or SignatureRefused."""
    for name in ("signature-input", "signature"):
        if len(headers.get(name, "")) > HEADER_MAX:
            raise SignatureRefused(f"The {name} header is longer than {HEADER_MAX} bytes")
    verifier = _Verifier(key_of, now, window)
    message = _Message(method, url, headers)
    try:
        results = verifier.verify(message, max_age=None)
    except SignatureRefused:
        raise
    except hms.InvalidSignature as e:
        raise SignatureRefused(_reworded(str(e))) from None
    except hms.HTTPMessageSignaturesException as e:
        raise SignatureRefused(f"The signature cannot be checked: {_reworded(str(e))}") from None
    except (ValueError, TypeError, KeyError):
        raise SignatureRefused("The signature cannot be checked: Signature-Input or Signature is malformed") from None
    if len(results) != 1:
        raise SignatureRefused("Send one signature (one label in Signature-Input and Signature)")
    result = results[0]
    params = result.parameters
    keyid = str(params.get("keyid", ""))
    covered = [name.strip('"') for name in result.covered_components]
    missing = [name for name in (*REQUIRED, *((DIGEST,) if has_body else ())) if name not in covered]
    if missing:
        raise SignatureRefused(f"The signature must cover {', '.join(missing)}")
    nonce = params.get("nonce")
    if not isinstance(nonce, str) or not NONCE.match(nonce):
        raise SignatureRefused("The signature needs a nonce of 16 to 128 printable characters")
    if not nonces.first_use(keyid, nonce, now):
        raise SignatureRefused("This signature was already used: sign each request anew")
    digest = _digest(headers.get(DIGEST)) if DIGEST in covered else None
    return Signed(keyid, digest)


def _digest(value: str | None) -> bytes:
    """The SHA-256 a Content-Digest field gives (``sha-256=:BASE64:``)."""
    match = re.search(r"(?:^|,)\s*sha-256=:([A-Za-z0-9+/=]{44}):", value or "")
    if match is None:
        raise SignatureRefused("Content-Digest must give the body's sha-256")
    return base64.b64decode(match.group(1))


_WORDS = {
    "Signature did not match digest": "The signature does not match this request (its method, target URI or body) "
                                      "or the key it names",
    "Unable to resolve verification key": "The signature's keyid names no token",
    'Expected "Signature" header field to be present': "A signed request needs a Signature header",
    'Expected "Signature-Input" header field to be present': "A signed request needs a Signature-Input header",
}


def _reworded(problem: str) -> str:
    problem = problem.rstrip(".")
    return _WORDS.get(problem, problem or "The signature is not valid")


def signature_key(token: str) -> bytes:
    """The HMAC key of a token: the hex SHA-256 of it, as the ``hash`` uses."""
    return hashlib.sha256(token.encode()).hexdigest().encode()


def sign(method: str, url: str, body: bytes | None, keyid: str, key: bytes, created: int, nonce: str) -> dict[str, str]:
    """The headers that sign a request as verify() checks it (for tests and tools)."""
    message = _Message(method, url, {})
    signer = hms.HTTPMessageSigner(signature_algorithm=HMAC_SHA256,
                                   key_resolver=hms.MappingKeyResolver(public_keys={}, private_keys={keyid: key}))
    signer.sign(message, key_id=keyid, created=datetime.datetime.fromtimestamp(created, datetime.timezone.utc),
                nonce=nonce, label="sig", covered_component_ids=REQUIRED, body=body)
    return message.headers


def constant_time_equal(a: bytes, b: bytes) -> bool:
    return hmac.compare_digest(a, b)
