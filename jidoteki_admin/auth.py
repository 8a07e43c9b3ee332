"""API token and HMAC authentication (API.md section 2)."""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from functools import lru_cache
from importlib import resources

from .files import CachedFirstLine, atomic_write
from .layout import AdminTree

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
                 clock=None, max_age: float = 1.0):
        self.tree = tree
        self.first_run_enabled = first_run_enabled
        self.group = group
        self._file = CachedFirstLine(tree.token_file, clock, max_age)
        self._last: str | None = None

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
        text = resources.files(__package__).joinpath("data/eff_large_wordlist.txt").read_text()
        _WORDS.extend(line.split("\t")[1] for line in text.splitlines() if "\t" in line)
    return _WORDS


