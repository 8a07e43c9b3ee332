"""What can go wrong talking to an appliance, one exception for each thing a caller acts on
differently: the appliance said no (APIError), it could not be reached or did not answer in
time (Unreachable), it is not the appliance trusted (Untrusted), a job it ran failed or did
not end in time (JobFailed, JobTimedOut), or the caller gave something unusable
(Misconfigured). A script retries an Unreachable appliance later; it never retries an
Untrusted one without a person looking."""

from __future__ import annotations

from typing import Any


class ClientError(Exception):
    """The request could not be made or its answer understood."""


class Misconfigured(ClientError):
    """The client was given something it cannot use: a URL, a fingerprint, a CA file, a file
    to upload or a place to save a download."""


class APIError(ClientError):
    """The appliance answered with an error status: ``status`` (403) and ``message``, its
    Error-Message, or else the status line it sent (``403 Forbidden``)."""

    def __init__(self, status: int, message: str, body: Any = None):
        self.status = status
        self.message = message
        self.body = body
        super().__init__(self.describe())

    def describe(self) -> str:
        """``403 Authentication error``: the status once, then what the appliance said
        (an answer without Error-Message says its status line, which repeats the code)."""
        message = self.message.strip()
        if not message or message.split(" ", 1)[0] == str(self.status):
            return message or str(self.status)
        return f"{self.status} {message}"


class Unreachable(ClientError):
    """No answer: the connection was refused or failed, the name did not resolve, or the
    appliance did not connect, shake hands or answer within its timeout."""


class TimedOut(Unreachable):
    """One of the timeouts ran out (``what``: connect, TLS handshake or read)."""

    def __init__(self, message: str, what: str, seconds: float):
        super().__init__(message)
        self.what = what
        self.seconds = seconds


class Untrusted(ClientError):
    """The appliance answered with a certificate the client does not trust: not the pinned
    fingerprint, or not signed by the CA (or not for the appliance's name).

    ``presented`` is the fingerprint of the certificate it presented (when known), and
    ``expected`` what was trusted: the pinned fingerprints, or the CA file.
    """

    def __init__(self, message: str, presented: str | None = None, expected: str | None = None):
        super().__init__(message)
        self.presented = presented
        self.expected = expected


class JobFailed(ClientError):
    """A job the client followed ended as failed; ``code`` (E1001) and ``message`` are the
    appliance's, ``report`` its last state as it answered it."""

    def __init__(self, what: str, report: dict[str, Any]):
        code, message = report.get("error-code"), report.get("error-message")
        said = f"{code}: {message}" if code and message else (message or code or "failed")
        super().__init__(f"{what} failed: {said}")
        self.report = report
        self.code = code
        self.message = message


class JobTimedOut(ClientError):
    """A job the client followed had not ended within the wait's limit. It goes on on the
    appliance: the limit is the client's, not the job's."""

    def __init__(self, message: str, job: str, run: str | None):
        super().__init__(message)
        self.job = job
        self.run = run
