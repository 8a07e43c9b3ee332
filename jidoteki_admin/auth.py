"""API token and HMAC authentication (API.md section 2)."""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from importlib import resources

from .files import atomic_write, fsync_directory, read_first_line, remove_quietly
from .layout import AdminTree

MAX_TOKEN_LENGTH = 255
TOKEN_FILE_MODE = 0o600


def secret_key(token: str) -> str:
    """The hex SHA-256 of the token: the HMAC key clients derive with `openssl dgst`."""
    return hashlib.sha256(token.encode()).hexdigest()


def request_hash(token: str, method: str, path: str) -> str:
    """HMAC-SHA256 over METHOD + path (no query string), keyed by the secret key."""
    return hmac.new(secret_key(token).encode(), (method + path).encode(), hashlib.sha256).hexdigest()


def token_problem(candidate: str) -> str | None:
    """Why ``candidate`` can't be an API token, or None when it can."""
    if not candidate:
        return "newtoken must not be empty"
    if len(candidate) > MAX_TOKEN_LENGTH:
        return f"newtoken must be at most {MAX_TOKEN_LENGTH} characters"
    if not (candidate.isascii() and candidate.isprintable()):
        return "newtoken must contain printable ASCII characters only"
    return None


class TokenStore:
    """The token in etc/api.token, re-read only when the file changes on disk."""

    def __init__(self, tree: AdminTree):
        self.tree = tree
        self._stamp: tuple | None = None
        self._token: str | None = None

    def current(self) -> str | None:
        """The token, or None when there is no usable one (missing or empty file)."""
        try:
            st = os.stat(self.tree.token_file)
        except FileNotFoundError:
            self._stamp, self._token = None, None
            return None
        stamp = (st.st_ino, st.st_size, st.st_mtime_ns)
        if stamp != self._stamp:
            self._token = read_first_line(self.tree.token_file) or None
            self._stamp = stamp
        return self._token

    @property
    def first_run(self) -> bool:
        """A generated passphrase is still in use; the administrator has not set a token."""
        return self.tree.first_run_marker.exists()

    def replace(self, token: str) -> None:
        """Install a new token atomically and end first-run mode."""
        atomic_write(self.tree.token_file, token.encode() + b"\n", TOKEN_FILE_MODE)
        remove_quietly(self.tree.first_run_marker)
        fsync_directory(self.tree.etc)

    def authenticates(self, method: str, path: str, token: str | None, hash_: str | None) -> bool:
        """Whether the query's token or hash matches; the hash decides when both are sent."""
        expected = self.current()
        if expected is None:
            return False
        if hash_ is not None:
            return hmac.compare_digest(
                hash_.lower().encode(), request_hash(expected, method, path).encode()
            )
        if token is not None:
            return hmac.compare_digest(token.encode(), expected.encode())
        return False

    def start_first_run(self, word_length: int) -> bool:
        """Write a random passphrase token when there is none; True if one was written."""
        if self.current() is not None:
            return False
        atomic_write(self.tree.token_file, passphrase(word_length).encode() + b"\n", TOKEN_FILE_MODE)
        atomic_write(self.tree.first_run_marker, b"", 0o600)
        return True


def passphrase(words: int) -> str:
    """Words drawn uniformly from the EFF large wordlist, joined by dashes."""
    return "-".join(secrets.choice(_wordlist()) for _ in range(words))


_WORDS: list[str] = []


def _wordlist() -> list[str]:
    if not _WORDS:
        text = resources.files(__package__).joinpath("data/eff_large_wordlist.txt").read_text()
        _WORDS.extend(line.split("\t")[1] for line in text.splitlines() if "\t" in line)
    return _WORDS


