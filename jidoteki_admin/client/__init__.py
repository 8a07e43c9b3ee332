"""An asynchronous client for the Admin API, for scripts and fleets of appliances.

Every request is signed with the HMAC scheme of API.md section 2: the token is turned into
its key once, and only the per-request hash travels (the token itself only ever travels as
``newtoken`` when it is changed). The server is verified against a CA file or a pinned
SHA-256 fingerprint of its certificate: appliances ship self-signed certificates, so
trust-on-first-use with an explicit fingerprint is the norm, and verification is never
silently off. Uploads and downloads stream from and to files, with progress. Every error
answer becomes an APIError carrying the status and the server's Error-Message.

    client = AdminClient(reactor, "https://10.0.0.12:8443", token="...", fingerprint="AB:CD:...")
    version = await client.version()
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any
from urllib.parse import urlencode, urlsplit

import treq
from OpenSSL import SSL, crypto
from twisted.internet import ssl
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IOpenSSLClientConnectionCreator
from twisted.internet.task import deferLater
from twisted.internet.error import ConnectError, ConnectionLost, DNSLookupError, TimeoutError
from twisted.web.client import (Agent, FileBodyProducer, HTTPConnectionPool, RequestTransmissionFailed,
                                ResponseFailed, ResponseNeverReceived)
from twisted.web.iweb import IPolicyForHTTPS
from zope.interface import implementer

API_PREFIX = "/api/v1/admin"
Progress = Callable[[int, int], None]  # (bytes done, bytes in all)
NETWORK_ERRORS = (ConnectError, ConnectionLost, DNSLookupError, TimeoutError, RequestTransmissionFailed,
                  ResponseFailed, ResponseNeverReceived, SSL.Error)


class ClientError(Exception):
    """The request could not be made or its answer understood."""


class APIError(ClientError):
    """The API answered with an error status."""

    def __init__(self, status: int, message: str, body: Any = None):
        super().__init__(f"{status}: {message}" if message else str(status))
        self.status = status
        self.message = message
        self.body = body


class Misconfigured(ClientError):
    """The client was given something it cannot use: a URL, a fingerprint, a CA file."""


class Unreachable(ClientError):
    """No answer: the connection failed, or the server is not the one trusted."""


class JobFailed(ClientError):
    """A job the client waited for ended as failed."""

    def __init__(self, what: str, report: dict[str, Any]):
        code, message = report.get("error-code"), report.get("error-message")
        said = f"{code}: {message}" if code else (message or "failed")
        super().__init__(f"{what} failed: {said}")
        self.report = report
        self.code = code


def secret_key(token: str) -> bytes:
    """The HMAC key of a token: the lowercase hex text of its SHA-256, as ASCII bytes."""
    return hashlib.sha256(token.encode()).hexdigest().encode()


def sign(key: bytes, method: str, path: str) -> str:
    return hmac.new(key, (method + path).encode(), hashlib.sha256).hexdigest()


def normal_fingerprint(value: str) -> bytes:
    """A SHA-256 fingerprint as 32 bytes, from ``AB:CD:...``, ``abcd...`` or ``sha256:...``."""
    text = value.strip().lower().removeprefix("sha256:").replace(":", "")
    try:
        raw = bytes.fromhex(text)
    except ValueError:
        raw = b""
    if len(raw) != 32:
        raise Misconfigured(f"not a SHA-256 fingerprint: {value!r} (64 hex digits, colons allowed)")
    return raw


def certificate_fingerprint(pem: bytes) -> str:
    """The SHA-256 fingerprint of a PEM certificate, as ``openssl x509 -fingerprint`` shows it."""
    der = crypto.dump_certificate(crypto.FILETYPE_ASN1, crypto.load_certificate(crypto.FILETYPE_PEM, pem))
    return ":".join(f"{b:02X}" for b in hashlib.sha256(der).digest())


@implementer(IOpenSSLClientConnectionCreator)
class _PinnedCreator:
    """TLS 1.2+ to a server whose certificate has exactly the pinned SHA-256 fingerprint.

    The chain is not checked against any authority (the pin is the trust); the leaf must
    match, so a man in the middle with any other certificate is refused in the handshake.
    """

    def __init__(self, pin: bytes):
        self.pin = pin
        context = SSL.Context(SSL.TLS_CLIENT_METHOD)
        context.set_min_proto_version(SSL.TLS1_2_VERSION)
        context.set_verify(SSL.VERIFY_PEER, self._verify)
        self.context = context

    def _verify(self, connection, certificate, errno, depth, ok) -> bool:
        if depth != 0:
            return True
        der = crypto.dump_certificate(crypto.FILETYPE_ASN1, certificate)
        return hmac.compare_digest(hashlib.sha256(der).digest(), self.pin)

    def clientConnectionForTLS(self, protocol) -> SSL.Connection:
        return SSL.Connection(self.context, None)


@implementer(IPolicyForHTTPS)
class _TrustPolicy:
    def __init__(self, ca_file: Path | None, fingerprint: str | None):
        if (ca_file is None) == (fingerprint is None):
            raise Misconfigured("give either a CA file or the certificate's fingerprint to trust")
        self.pin = normal_fingerprint(fingerprint) if fingerprint else None
        self.authority = None
        if ca_file is not None:
            try:
                self.authority = ssl.Certificate.loadPEM(Path(ca_file).read_bytes())
            except (OSError, SSL.Error, crypto.Error) as e:
                raise Misconfigured(f"cannot read the CA certificate {ca_file}: {e}") from None

    def creatorForNetloc(self, hostname: bytes, port: int):
        if self.pin is not None:
            return _PinnedCreator(self.pin)
        return ssl.optionsForClientTLS(hostname.decode(), trustRoot=self.authority,
                                       extraCertificateOptions={"raiseMinimumTo": ssl.TLSVersion.TLSv1_2})


class _CountingFile:
    """A file whose reads report progress (treq streams multipart files by reading them)."""

    def __init__(self, stream: IO[bytes], total: int, progress: Progress | None):
        self.stream, self.total, self.progress, self.done = stream, total, progress, 0
        self.name = getattr(stream, "name", "upload")

    def read(self, size: int = -1) -> bytes:
        data = self.stream.read(size)
        self.done += len(data)
        if self.progress is not None:
            self.progress(self.done, self.total)
        return data

    def seek(self, *args: int) -> int:
        return self.stream.seek(*args)

    def tell(self) -> int:
        return self.stream.tell()

    def close(self) -> None:
        self.stream.close()


@dataclass
class AdminClient:
    """One appliance's Admin API."""

    reactor: Any
    url: str  # https://host:port
    token: str | None = None
    ca_file: Path | None = None
    fingerprint: str | None = None
    poll_interval: float = 1.0
    _key: bytes | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        parts = urlsplit(self.url)
        if parts.scheme != "https" or not parts.hostname:
            raise Misconfigured(f"the appliance's URL must be https://host[:port], not {self.url!r}")
        self.base = f"https://{parts.netloc}"
        if self.token is not None:
            self._key = secret_key(self.token)
            self.token = None  # the key is all the client keeps
        self.pool = HTTPConnectionPool(self.reactor, persistent=True)
        agent = Agent(self.reactor, contextFactory=_TrustPolicy(self.ca_file, self.fingerprint), pool=self.pool)
        self.http = treq.client.HTTPClient(agent)

    def use_token(self, token: str) -> None:
        self._key = secret_key(token)

    def close(self) -> Deferred:
        return self.pool.closeCachedConnections()

    # The wire

    def _url(self, method: str, path: str, signed: bool = True) -> str:
        full = API_PREFIX + path
        if signed:
            if self._key is None:
                raise ClientError("no API token to sign the request with")
            return self.base + full + "?" + urlencode({"hash": sign(self._key, method, full)})
        return self.base + full

    async def request(self, method: str, path: str, data: dict[str, str] | None = None,
                      files: dict[str, Path] | None = None, signed: bool = True,
                      progress: Progress | None = None):
        """The response to a request; an error status raises APIError."""
        url = self._url(method, path, signed)
        opened: list[IO[bytes]] = []
        try:
            kwargs: dict[str, Any] = {}
            if data or files:
                uploads: list[tuple[str, Any]] = []
                total = sum(Path(p).stat().st_size for p in (files or {}).values())
                counting: list[_CountingFile] = []

                def overall(_done: int, _total: int) -> None:
                    if progress is not None:
                        progress(sum(f.done for f in counting), total)

                for name, file_path in (files or {}).items():
                    stream = open(file_path, "rb")
                    opened.append(stream)
                    counting.append(_CountingFile(stream, total, overall))
                    uploads.append((name, (Path(file_path).name, "application/octet-stream",
                                           FileBodyProducer(counting[-1]))))
                if uploads:
                    kwargs["files"] = uploads
                    kwargs["data"] = dict(data or {})
                else:  # text fields only: still multipart/form-data, as curl -F sends them
                    content_type, kwargs["data"] = _text_form(data or {})
                    kwargs["headers"] = {b"Content-Type": [content_type]}
            try:
                response = await self.http.request(method, url, **kwargs)
            except NETWORK_ERRORS as e:
                raise Unreachable(f"{method} {path}: cannot reach {self.base}: {_reason(e)}") from None
        finally:
            for stream in opened:
                stream.close()
        if response.code >= 400:
            await _raise_for(response)
        return response

    async def get_json(self, path: str) -> Any:
        response = await self.request("GET", path)
        return await response_json(response)

    async def get_text(self, path: str) -> str:
        response = await self.request("GET", path)
        return (await treq.content(response)).decode("utf-8", "replace")

    async def download(self, path: str, destination: Path, progress: Progress | None = None) -> int:
        """Stream a download into ``destination`` (written beside it, renamed when whole)."""
        response = await self.request("GET", path)
        total = int(response.headers.getRawHeaders(b"content-length", [b"0"])[0] or 0)
        partial = Path(destination).with_name(f".{Path(destination).name}.partial")
        done = [0]
        with open(partial, "wb") as out:
            def write(chunk: bytes) -> None:
                out.write(chunk)
                done[0] += len(chunk)
                if progress is not None:
                    progress(done[0], total)
            try:
                await treq.collect(response, write)
            except BaseException:
                out.close()
                partial.unlink(missing_ok=True)
                raise
        os.replace(partial, destination)
        return done[0]

    # The API, section by section

    async def setup(self, newtoken: str) -> None:
        """Set the first token (no authentication while none exists), or change it."""
        await self.request("POST", "/setup", data={"newtoken": newtoken}, signed=self._key is not None)
        self.use_token(newtoken)

    async def version(self) -> str:
        return (await self.get_json("/version"))["version"]

    async def changelog(self) -> str:
        return await self.get_text("/changelog")

    async def build(self) -> Any:
        return await self.get_json("/build")

    async def health(self) -> Any:
        return await self.get_json("/health")

    async def services(self) -> Any:
        return await self.get_json("/services")

    async def endpoints(self) -> list[str]:
        return (await self.get_json("/endpoints"))["endpoints"]

    async def update(self, package: Path, progress: Progress | None = None) -> None:
        await self.request("POST", "/update", files={"update": package}, progress=progress)

    async def settings(self) -> Any:
        return await self.get_json("/settings")

    async def set_settings(self, document: Path) -> None:
        await self.request("POST", "/settings", files={"settings": document})

    async def install_certs(self, public: Path, private: Path, ca: Path | None = None) -> None:
        files = {"public": public, "private": private}
        if ca is not None:
            files["ca"] = ca
        await self.request("POST", "/certs", files=files)

    async def start_backup(self) -> None:
        await self.request("POST", "/backup", data={"action": "START"})

    async def stop_backup(self) -> None:
        await self.request("POST", "/backup", data={"action": "STOP"})

    async def restore(self, archive: Path, progress: Progress | None = None) -> None:
        await self.request("POST", "/backup/restore", files={"archive": archive}, progress=progress)

    async def reboot(self) -> None:
        await self.request("GET", "/reboot")

    # Waiting for jobs

    async def wait_for(self, path: str, what: str, seen: Callable[[dict[str, Any]], None] | None = None,
                       timeout: float | None = None) -> dict[str, Any]:
        """Poll GET ``path`` (a job's status) until it says success or failed.

        ``seen`` gets every report. A failure raises JobFailed with the server's error
        code and message.
        """
        waited = 0.0
        while True:
            report = await self.get_json(path)
            if seen is not None:
                seen(report)
            status = report.get("status")
            if status == "success":
                return report
            if status == "failed":
                raise JobFailed(what, report)
            if timeout is not None and waited >= timeout:
                raise ClientError(f"{what}: still {status or 'not started'} after {timeout:g} s")
            await deferLater(self.reactor, self.poll_interval, lambda: None)
            waited += self.poll_interval

    async def wait_until_answering(self, timeout: float = 600.0, gone_first: bool = True) -> None:
        """Wait for the API to answer again after a reboot: first for it to go away (when
        ``gone_first``), then for GET /health to answer."""
        waited, gone = 0.0, not gone_first
        while waited < timeout:
            try:
                await self.get_json("/health")
                if gone:
                    return
            except ClientError as e:
                if isinstance(e, APIError) and e.status == 403:
                    raise
                gone = True
            await deferLater(self.reactor, self.poll_interval, lambda: None)
            waited += self.poll_interval
        raise ClientError(f"the appliance did not answer again within {timeout:g} s")


def _text_form(fields: dict[str, str]) -> tuple[bytes, bytes]:
    boundary = "jidoteki-admin-" + os.urandom(12).hex()
    parts = [f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'.encode()
             + value.encode() + b"\r\n" for name, value in fields.items()]
    return (f"multipart/form-data; boundary={boundary}".encode(),
            b"".join(parts) + f"--{boundary}--\r\n".encode())


async def presented_fingerprint(reactor: Any, url: str) -> str:
    """The fingerprint of the certificate an appliance presents, fetched without trusting
    it: the administrator compares it with the one the appliance's console shows before
    pinning it, and a fleet tool compares it with the certificate it means to install."""
    import ssl as stdlib_ssl

    from twisted.internet.threads import deferToThreadPool

    parts = urlsplit(url)
    host, port = parts.hostname or "", parts.port or 443

    def fetch() -> str:
        return certificate_fingerprint(stdlib_ssl.get_server_certificate((host, port)).encode())

    try:
        return await deferToThreadPool(reactor, reactor.getThreadPool(), fetch)
    except OSError as e:
        raise Unreachable(f"cannot reach {host}:{port}: {e}") from None


async def _raise_for(response) -> None:
    body = await treq.content(response)
    message = response.headers.getRawHeaders(b"error-message", [b""])[0].decode("utf-8", "replace")
    try:
        value = json.loads(body)
    except ValueError:
        value = None
    if not message and isinstance(value, dict):
        message = str(value.get("Status", ""))
    raise APIError(response.code, message, value)


async def response_json(response) -> Any:
    body = await treq.content(response)
    try:
        return json.loads(body)
    except ValueError:
        raise ClientError(f"the answer is not JSON: {body[:80]!r}") from None


def _reason(error: Exception) -> str:
    """The reasons inside Twisted's wrapped failures (ResponseNeverReceived and friends)."""
    reasons = getattr(error, "reasons", None)
    if reasons:
        return "; ".join(str(r.value) or type(r.value).__name__ for r in reasons)
    return str(error) or type(error).__name__


