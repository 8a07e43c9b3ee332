"""Who is asking (API.md section 2): the API token and its HMAC ``hash``, as the original
took them; requests signed with HTTP Message Signatures (signatures.py); and named tokens
with a scope, which answer to the same three ways but may do only what their scope allows.
"""

from __future__ import annotations

import datetime
import hashlib
import hmac
import json
import os
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

from ..files import CachedFirstLine, atomic_write
from ..layout import AdminTree
from . import signatures
from .catalogue import ADMIN, READ

MAX_TOKEN_LENGTH = 255
TOKEN_FILE_MODE = 0o600
GROUP_TOKEN_FILE_MODE = 0o660
TOKEN_CHARACTERS = "newtoken may only contain the characters ! to ~ (ASCII 0x21 to 0x7E)"


def secret_key(token: str) -> str:
    """The hex SHA-256 of the token: the HMAC key clients derive with `openssl dgst`."""
    return hashlib.sha256(token.encode()).hexdigest()


def request_hash(token: str, method: str, path: str) -> str:
    """HMAC-SHA256 over METHOD + path (no query string), keyed by the secret key."""
    return hmac.new(secret_key(token).encode(), (method + path).encode(), hashlib.sha256).hexdigest()


@lru_cache(maxsize=256)
def expected_hash(token: str, method: str, path: str) -> bytes:
    """request_hash as bytes, kept for the few (token, method, path) a daemon sees again
    and again: two SHA-256 passes and an HMAC object for every request add up. Only
    endpoints that exist get this far (an unknown path is a 404 before authentication),
    and the cache is bounded, so odd methods cannot make it grow."""
    return request_hash(token, method, path).encode()


ADMIN_NAME = "admin"  # the keyid of the API token itself
TOKEN_NAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,62}\Z")
SCOPES = (READ, ADMIN)


@dataclass(frozen=True)
class Identity:
    """Who a request is from: ``admin`` (the API token) or a named token, and its scope."""

    name: str
    scope: str
    digest: bytes | None = None  # the body's SHA-256 a signature covers, to check once it is read
    grant: str | None = None  # a one-time link's: the one download it is for


class Refused(Exception):
    """Authentication failed; the message says why, without a secret (the API answers 403)."""


def token_problem(candidate: str) -> str | None:
    """Why ``candidate`` can't be an API token, or None when it can."""
    if not candidate:
        return "newtoken must not be empty"
    if len(candidate) > MAX_TOKEN_LENGTH:
        return f"newtoken must be at most {MAX_TOKEN_LENGTH} characters"
    if not all("!" <= c <= "~" for c in candidate):
        return TOKEN_CHARACTERS
    return None


class TokenStore:
    """The token in etc/api.token, re-read only when the file changes on disk.

    With a ``clock``, the file is looked at no more than once every ``max_age`` seconds
    (a token changed outside the daemon takes effect within that time); a token the
    daemon writes itself (POST /setup, first run) takes effect for the next request.
    Without one, the file is looked at on every request. ``first_run_enabled`` is the config's first-run switch. ``group``, when the appliance
    has an admin group, owns the token files (mode 0660) so its unprivileged tools can read
    them, as on appliances in the field; without it they are the daemon's alone (0600).
    """

    def __init__(self, tree: AdminTree, first_run_enabled: bool = False, group: int | None = None,
                 clock=None, max_age: float = 1.0, signature_window: float = 300.0,
                 query_credentials: bool = True):
        self.tree = tree
        self.first_run_enabled = first_run_enabled
        self.group = group
        self.clock = clock
        self._file = CachedFirstLine(tree.token_file, clock, max_age)
        self._last: str | None = None
        self.named = NamedTokens(tree.named_tokens, group)
        self.nonces = signatures.NonceCache(signature_window)
        self.links = OneTimeLinks()
        self.query_credentials = query_credentials  # replaced on SIGHUP

    def current(self) -> str | None:
        """The token, or None when there is no usable one (missing or empty file)."""
        token = self._file.read() or None
        if token != self._last:
            expected_hash.cache_clear()  # no hash of a token that is gone stays in memory
            self._last = token
        return token

    def invalidate(self) -> None:
        """Look at the token file on the next request, whenever it was last looked at."""
        self._file.invalidate()

    @property
    def first_run(self) -> bool | None:
        """What error answers say under "First-Run"; None for no such key at all.

        With first-run enabled, true while the generated passphrase is in use: the marker
        etc/api.token.setup holds something (setting a token empties it, as the original
        daemon did, whose dashboard hides its first-run page on false). An appliance that
        does not use first-run says nothing about it.
        """
        if not self.first_run_enabled:
            return None
        try:
            return os.stat(self.tree.first_run_marker).st_size > 0
        except FileNotFoundError:
            return False

    def replace(self, token: str) -> None:
        """Install a new token atomically and end first-run mode."""
        self._write(self.tree.token_file, token)
        self.ended_first_run()

    def ended_first_run(self) -> None:
        """A token was set (here or by the appliance's script): first-run mode is over."""
        _empty_if_present(self.tree.first_run_marker)

    def _write(self, path, token: str) -> None:
        mode = TOKEN_FILE_MODE if self.group is None else GROUP_TOKEN_FILE_MODE
        try:
            atomic_write(path, token.encode() + b"\n", mode, self.group)
        finally:
            self.invalidate()  # the next request checks the new token, not the old

    def authenticates(self, method: str, path: str, token: str | None, hash_: str | None) -> bool:
        """Whether the query's token or hash matches; the hash decides when both are sent."""
        expected = self.current()
        if expected is None:
            return False
        if hash_ is not None:
            return hmac.compare_digest(hash_.lower().encode(), expected_hash(expected, method, path))
        if token is not None:
            return hmac.compare_digest(token.encode(), expected.encode())
        return False

    @property
    def signature_window(self) -> float:
        return self.nonces.window

    @signature_window.setter
    def signature_window(self, seconds: float) -> None:
        self.nonces.window = seconds

    def identify(self, method: str, path: str, url: str, args: Mapping[bytes, list[bytes]],
                 headers: Mapping[str, str], has_body: bool, wire_method: str | None = None) -> Identity:
        """Who signed or sent credentials with this request, or Refused.

        A signature (Signature-Input) decides when there is one; else the query's hash,
        then its token, of the API token first and then of the named tokens.
        """
        if "signature-input" in headers or "signature" in headers:
            return self._signed(wire_method or method, url, headers, has_body)
        token, hash_ = _first(args, b"token"), _first(args, b"hash")
        if token is None and hash_ is None:
            if "authorization" in headers:
                return self._bearer(headers["authorization"])
            raise Refused("Authentication error")
        if not self.query_credentials:
            raise Refused("Credentials in the query are turned off on this appliance: sign the request "
                          "(HTTP Message Signatures, docs/API.md section 2)")
        if self.authenticates(method, path, token, hash_):
            return Identity(ADMIN_NAME, ADMIN)
        found = self.named.by_hash(method, path, hash_) if hash_ is not None else self.named.by_token(token)
        if found is None:
            raise Refused("Authentication error")
        return found

    def _bearer(self, value: str) -> Identity:
        """``Authorization: Bearer TOKEN``, for a token of scope read only: what a monitoring
        system (Prometheus) can send without putting the token in a URL. A token that may
        change things must sign, or use the query as the published API does."""
        scheme, _, token = value.strip().partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Refused("Authorization must be Bearer followed by a read token")
        found = self.named.by_token(token.strip())
        if found is None or found.scope != READ:
            raise Refused("Authorization: Bearer is for tokens of scope read: sign the request, or give the "
                          "token as the API reference says")
        return found

    def redeem(self, link: str | None) -> Identity:
        """The one download a link is for, as the token that asked for it; the link is spent."""
        if not link:
            raise Refused("Authentication error")
        return self.links.redeem(link, self._now())

    def _now(self) -> float:
        return self.clock.seconds() if self.clock is not None else datetime.datetime.now().timestamp()

    def _signed(self, method: str, url: str, headers: Mapping[str, str], has_body: bool) -> Identity:
        admin = self.current()

        def key_of(keyid: str) -> bytes | None:
            if keyid == ADMIN_NAME:
                return signatures.signature_key(admin) if admin is not None else None
            return self.named.key(keyid)

        try:
            signed = signatures.verify(method, url, headers, has_body, key_of, self._now(), self.nonces.window,
                                       self.nonces)
        except signatures.SignatureRefused as e:
            raise Refused(str(e)) from None
        scope = ADMIN if signed.keyid == ADMIN_NAME else self.named.scope(signed.keyid)
        if scope is None:
            raise Refused("The signature's keyid names no token")
        return Identity(signed.keyid, scope, signed.digest)

    def start_first_run(self, word_length: int) -> bool:
        """Write a random passphrase token when there is none; True if one was written.

        The passphrase also goes to etc/api.token.setup, as the original daemon put it there
        for the appliance to show; a non-empty marker is what first-run means.
        """
        if self.current() is not None:
            return False
        token = passphrase(word_length)
        # The marker first: a crash in between leaves no token, so the next start begins anew.
        self._write(self.tree.first_run_marker, token)
        self._write(self.tree.token_file, token)
        return True


def _empty_if_present(path) -> None:
    """Truncate a file to 0 bytes, durably, keeping it (and the link to it, if it is one)."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_TRUNC)
    except FileNotFoundError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def passphrase(words: int) -> str:
    """Words drawn uniformly from the EFF large wordlist, joined by dashes."""
    return "-".join(secrets.choice(_wordlist()) for _ in range(words))


_WORDS: list[str] = []


def _wordlist() -> list[str]:
    if not _WORDS:
        text = resources.files("jidoteki_admin").joinpath("data/eff_large_wordlist.txt").read_text()
        _WORDS.extend(line.split("\t")[1] for line in text.splitlines() if "\t" in line)
    return _WORDS




def _first(args: Mapping[bytes, list[bytes]], name: bytes) -> str | None:
    values = args.get(name)
    return values[0].decode("utf-8", "replace") if values else None


class NamedTokens:
    """Tokens besides the API token, each with a name and a scope (read or admin), in
    etc/api-tokens.json. A token is shown once, when made; the file keeps the hex SHA-256 of
    it, which checks a ``token`` and is the HMAC key of its ``hash`` and its signatures (as
    etc/api.token, the file is the daemon's alone: 0600, or 0660 with the admin group).
    Read again whenever the file changes on disk; a revoked token is refused at once."""

    def __init__(self, path, group: int | None = None):
        self.path = path
        self.group = group
        self._stamp: tuple[int, int, int] | None = None
        self._tokens: dict[str, dict[str, str]] = {}

    def _load(self) -> dict[str, dict[str, str]]:
        try:
            info = os.stat(self.path)
        except FileNotFoundError:
            self._stamp, self._tokens = None, {}
            return self._tokens
        stamp = (info.st_ino, info.st_size, info.st_mtime_ns)
        if stamp != self._stamp:
            try:
                value = json.loads(self.path.read_bytes())
                tokens = value["tokens"]
                self._tokens = {str(name): dict(entry) for name, entry in tokens.items()
                                if isinstance(entry, dict) and entry.get("scope") in SCOPES and entry.get("key")}
            except (OSError, ValueError, KeyError, TypeError, AttributeError):
                self._tokens = {}  # a damaged file authenticates nobody
            self._stamp = stamp
        return self._tokens

    def listing(self) -> list[dict[str, str]]:
        return [{"name": name, "scope": entry["scope"], "created": entry.get("created", "")}
                for name, entry in sorted(self._load().items())]

    def scope(self, name: str) -> str | None:
        entry = self._load().get(name)
        return entry["scope"] if entry else None

    def key(self, name: str) -> bytes | None:
        entry = self._load().get(name)
        return entry["key"].encode() if entry else None

    def by_token(self, token: str | None) -> Identity | None:
        if not token:
            return None
        key = signatures.signature_key(token)
        for name, entry in self._load().items():
            if hmac.compare_digest(key, entry["key"].encode()):
                return Identity(name, entry["scope"])
        return None

    def by_hash(self, method: str, path: str, hash_: str | None) -> Identity | None:
        if not hash_:
            return None
        given = hash_.lower().encode()
        for name, entry in self._load().items():
            expected = hmac.new(entry["key"].encode(), (method + path).encode(), hashlib.sha256).hexdigest()
            if hmac.compare_digest(given, expected.encode()):
                return Identity(name, entry["scope"])
        return None

    def create(self, name: str, scope: str, now: float) -> str:
        """Make a token; returns it (the only time it is seen). Raises ValueError why not."""
        if not TOKEN_NAME.match(name) or name == ADMIN_NAME:
            raise ValueError("name must be 1 to 63 lower-case letters, digits, dots, dashes and underscores, "
                             f"not {ADMIN_NAME!r}")
        if scope not in SCOPES:
            raise ValueError(f"scope must be {' or '.join(SCOPES)}")
        tokens = dict(self._load())
        if name in tokens:
            raise ValueError(f"a token named {name!r} exists: revoke it first")
        if len(tokens) >= NAMED_TOKENS_MAX:
            raise ValueError(f"there are already {NAMED_TOKENS_MAX} named tokens, the most an appliance keeps: "
                             f"revoke one first")
        token = secrets.token_urlsafe(32)
        created = datetime.datetime.fromtimestamp(now, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        tokens[name] = {"scope": scope, "key": signatures.signature_key(token).decode(), "created": created}
        self._save(tokens)
        return token

    def revoke(self, name: str) -> bool:
        tokens = dict(self._load())
        if tokens.pop(name, None) is None:
            return False
        self._save(tokens)
        return True

    def _save(self, tokens: dict[str, dict[str, str]]) -> None:
        mode = TOKEN_FILE_MODE if self.group is None else GROUP_TOKEN_FILE_MODE
        atomic_write(self.path, json.dumps({"tokens": tokens}, indent=1).encode() + b"\n", mode, self.group)
        self._stamp = None  # read back at the next request


# Named tokens an appliance keeps: far more than a fleet's tools and monitors need, and few
# enough that a query token tried against each (NamedTokens.by_token) stays cheap.
NAMED_TOKENS_MAX = 100

LINK_SECONDS = 60.0
LINKS_MAX = 1000


class OneTimeLinks:
    """Links for one download each (POST /downloads): a random id that works once, within
    ``seconds``, for the one download it names and nothing else. Kept in memory, by the
    SHA-256 of the id (a lookup then tells a timing observer nothing of a live id); a
    restart forgets them, as it should. At most ``limit`` wait at once, the oldest go first."""

    def __init__(self, seconds: float = LINK_SECONDS, limit: int = LINKS_MAX):
        self.seconds = seconds
        self.limit = limit
        self._links: dict[bytes, tuple[Identity, float]] = {}

    def make(self, grant: str, by: Identity, now: float) -> tuple[str, float]:
        """A new link's id for ``grant``, asked for by ``by``; and when it expires."""
        for key in [key for key, (_, expires) in self._links.items() if expires <= now]:
            del self._links[key]
        while len(self._links) >= self.limit:
            del self._links[next(iter(self._links))]
        link = secrets.token_urlsafe(32)
        expires = now + self.seconds
        self._links[hashlib.sha256(link.encode()).digest()] = (Identity(by.name, by.scope, grant=grant), expires)
        return link, expires

    def redeem(self, link: str, now: float) -> Identity:
        found = self._links.pop(hashlib.sha256(link.encode()).digest(), None)
        if found is None:
            raise Refused("This download link was already used, has expired or never existed: ask for a new one")
        identity, expires = found
        if now > expires:
            raise Refused("This download link has expired: ask for a new one")
        return identity
