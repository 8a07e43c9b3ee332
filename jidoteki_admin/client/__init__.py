"""An asynchronous client for the Admin API, for scripts and fleets of appliances.

Every request is signed (API.md section 2): the token is turned into its key once, and only
the per-request hash travels; the token itself only ever travels as ``newtoken`` when it is
changed. The server is verified against pinned SHA-256 fingerprints of its certificate or a
CA file: appliances ship self-signed certificates, so trust-on-first-use with an explicit
fingerprint is the norm, and verification is never off. Every step has a timeout
(transport.Timeouts), so a hung appliance costs seconds. Uploads and downloads stream from
and to files, with progress; documents the caller holds (settings, certificates, a license)
are sent as they are, without a file.

    async with AdminClient(reactor, "https://10.0.0.12:8443", token="...", fingerprint="AB:CD:...") as client:
        print(await client.version())
        started = await client.update(Path("software_package-1.4.0.enc"))
        state = await client.follow(started, on_line=print)   # JobFailed if it fails

Errors (errors.py): APIError (the appliance said no), Unreachable and its TimedOut (no
answer), Untrusted (not the certificate trusted), JobFailed and JobTimedOut (a job followed),
Misconfigured (something given to the client it cannot use).
"""

from __future__ import annotations

import email.utils
import hashlib
import hmac
import io
import json
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import IO, Any
from urllib.parse import urlencode

import treq
from treq.client import HTTPClient
from twisted.internet.defer import CancelledError
from twisted.internet.error import ConnectError, ConnectionLost, DNSLookupError
from twisted.internet.error import TimeoutError as ConnectTimeout
from twisted.internet.task import deferLater
from twisted.internet.threads import deferToThread
from twisted.web.client import (Agent, FileBodyProducer, HTTPConnectionPool, RequestGenerationFailed,
                                RequestTransmissionFailed, ResponseFailed, ResponseNeverReceived)
from OpenSSL import SSL

from .errors import (APIError, ClientError, JobFailed, JobTimedOut, Misconfigured, TimedOut, Unreachable,
                     Untrusted)
from .results import (Answer, BackupStatus, CertsStatus, Document, Health, JobState, JobStatus, LogPart, Service,
                      Started, log_lines)
from .transport import (EndpointFactory, Timeouts, Trust, Watch, certificate_fingerprint, normal_fingerprint,
                        presented_fingerprint, split_url)

__all__ = [
    "AdminClient", "Timeouts", "ClientError", "APIError", "Misconfigured", "Unreachable", "TimedOut", "Untrusted",
    "JobFailed", "JobTimedOut", "Answer", "BackupStatus", "CertsStatus", "Document", "Health", "JobState",
    "JobStatus", "LogPart", "Service", "Started", "certificate_fingerprint", "normal_fingerprint",
    "presented_fingerprint", "secret_key", "sign", "log_lines", "API_PREFIX", "JOB_TITLES", "TailFollower",
]

API_PREFIX = "/api/v1/admin"
Progress = Callable[[int, int], None]  # (bytes done, bytes in all)
Upload = Path | str | tuple[str, bytes]  # a file to stream, or (file name, its bytes)
NETWORK_ERRORS = (ConnectError, ConnectionLost, DNSLookupError, ConnectTimeout, RequestGenerationFailed,
                  RequestTransmissionFailed, ResponseFailed, ResponseNeverReceived, SSL.Error)
# How messages name a job of each kind, and which status answer an appliance without
# GET /jobs (the original) reports it in.
JOB_TITLES = {"update": "The update", "certs": "The certificate install", "settings": "The settings change",
              "storage": "The storage change", "cluster": "The cluster change", "backup": "The backup",
              "backup_stop": "Stopping the backup", "reboot": "The reboot", "restore": "The restore",
              "license": "The license install"}
_STATUS_PATHS = {"update": "/update", "certs": "/certs", "cluster": "/cluster", "backup": "/backup"}
LOG_PART_MAX = 256 * 1024  # what one GET /jobs/<name>/log answer gives at most


def secret_key(token: str) -> bytes:
    """The HMAC key of a token: the lowercase hex text of its SHA-256, as ASCII bytes."""
    return hashlib.sha256(token.encode()).hexdigest().encode()


def sign(key: bytes, method: str, path: str) -> str:
    """The ``hash`` of a request: HMAC-SHA256 of METHOD + path (no query string)."""
    return hmac.new(key, (method + path).encode(), hashlib.sha256).hexdigest()


SIGNED, HASHED = "signature", "hash"  # how requests are authenticated: RFC 9421, or the old hash


def signature_headers(key: bytes, keyid: str, method: str, target: str, digest: bytes | None = None,
                      created: int | None = None, nonce: str | None = None) -> dict[str, str]:
    """The headers of a request signed as API.md section 2 says (RFC 9421, HMAC-SHA256):
    Signature-Input and Signature over the method, the target URI with its query, and,
    for a request with a body, its Content-Digest (``digest``: the body's SHA-256)."""
    import base64
    import datetime

    import http_message_signatures as hms
    from http_message_signatures.algorithms import HMAC_SHA256

    headers: dict[str, str] = {}
    covered: tuple[str, ...] = ("@method", "@target-uri")
    if digest is not None:
        headers["Content-Digest"] = f"sha-256=:{base64.b64encode(digest).decode()}:"
        covered += ("content-digest",)
    message = _Message(method, target, headers)
    signer = hms.HTTPMessageSigner(signature_algorithm=HMAC_SHA256,
                                   key_resolver=hms.MappingKeyResolver(public_keys={}, private_keys={keyid: key}))
    moment = datetime.datetime.fromtimestamp(created if created is not None else _now(), datetime.timezone.utc)
    signer.sign(message, key_id=keyid, label="sig", covered_component_ids=covered, created=moment,
                nonce=nonce or os.urandom(16).hex(), use_existing_digest=digest is not None)
    return dict(message.headers)


def _now() -> float:
    import time

    return time.time()


class _Message:
    """A request as the signing library reads it: method, URL, headers."""

    def __init__(self, method: str, url: str, headers: dict[str, str]):
        self.method, self.url, self.headers = method, url, headers


class AdminClient:
    """One appliance's Admin API.

    ``token`` (or none before the first ``setup``), and what to trust: ``fingerprint`` (the
    SHA-256 of its certificate) or ``ca_file``. ``timeouts`` for every step and wait;
    ``poll_interval`` seconds between two looks at a job. Use it as ``async with``, or call
    ``close()`` when done, which closes its connections.
    """

    def __init__(self, reactor: Any, url: str, token: str | None = None, ca_file: Path | str | None = None,
                 fingerprint: str | None = None, timeouts: Timeouts | None = None, poll_interval: float = 1.0,
                 token_name: str = "admin", auth: str = SIGNED):
        """``token_name``: the token's name for a named token (``admin``, the API token, by
        default); ``auth``: SIGNED (every request signed, RFC 9421) or HASHED (the query's
        ``hash``, for appliances that predate signed requests)."""
        if auth not in (SIGNED, HASHED):
            raise Misconfigured(f"auth must be {SIGNED!r} or {HASHED!r}, not {auth!r}")
        self.reactor = reactor
        self.token_name = token_name
        self.auth = auth
        self._skew = 0.0  # the appliance's clock less ours, once a signature was refused for it
        self.url = url
        host, port, self.base = split_url(url)
        self.netloc = self.base.removeprefix("https://")
        self.timeouts = timeouts or Timeouts()
        self.poll_interval = poll_interval
        self._key = secret_key(token) if token is not None else None  # the key is all the client keeps
        self._trust = Trust(ca_file, fingerprint)
        self._clients: dict[float, tuple[HTTPConnectionPool, HTTPClient]] = {}
        self.presented: str | None = None  # the fingerprint of the trusted certificate last presented

    def __repr__(self) -> str:
        return f"AdminClient({self.base!r}, trusting {self._trust.describe()})"

    async def __aenter__(self) -> AdminClient:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Close every connection the client keeps open."""
        clients, self._clients = self._clients, {}
        for pool, _ in clients.values():
            await pool.closeCachedConnections()

    def use_token(self, token: str) -> None:
        self._key = secret_key(token)

    def trust_also(self, fingerprint: str) -> None:
        """Trust the certificate with this fingerprint besides the one presented so far:
        for the moments around a certificate swap, when the appliance presents the old one
        to some connections and the new one (which the caller uploaded) to others."""
        trusted = [self.presented] if self.presented else []
        if not trusted and self._trust.pins:
            from .transport import shown_fingerprint

            trusted = [shown_fingerprint(p) for p in self._trust.pins]
        self._trust = self._trust.pinning(*trusted, fingerprint)
        self._reset()

    def _reset(self) -> None:
        clients, self._clients = self._clients, {}
        for pool, _ in clients.values():
            pool.closeCachedConnections()

    def _seen(self, fingerprint: str) -> None:
        self.presented = fingerprint

    def _http(self, read: float) -> HTTPClient:
        """The HTTP client whose connections allow ``read`` seconds without a byte: one
        per read timeout (most requests take the short one; a restore, the long one)."""
        if read not in self._clients:
            pool = HTTPConnectionPool(self.reactor, persistent=True)
            pool.cachedConnectionTimeout = int(min(pool.cachedConnectionTimeout, max(1.0, read)))
            watch = Watch(self.reactor, self.timeouts, self.netloc, self._trust, self._seen)
            agent = Agent.usingEndpointFactory(self.reactor, EndpointFactory(watch, read), pool=pool)
            self._clients[read] = (pool, HTTPClient(agent))
        return self._clients[read][1]

    # The wire

    def _authenticate(self, method: str, path: str, query: Mapping[str, str] | None = None,
                      digest: bytes | None = None) -> tuple[str, dict[bytes | str, list[bytes | str]]]:
        """The URL and headers of a signed request: the one place requests are signed.

        By default an HTTP Message Signature (API.md section 2) over the method, the URL
        with its query and, with a body, its SHA-256 (``digest``): nothing that grants
        access is in the URL, and the request cannot be replayed. With ``auth`` HASHED, the
        old ``hash`` query parameter (METHOD + path only).
        """
        if self._key is None:
            raise Misconfigured("no API token to sign the request with")
        if self.auth == HASHED:
            full = API_PREFIX + path
            return self._plain(path, {**(query or {}), "hash": sign(self._key, method, full)}), {}
        url = self._plain(path, query)
        signed = signature_headers(self._key, self.token_name, method, _target_uri(url), digest,
                                   created=int(_now() + self._skew))
        return url, {name: [value] for name, value in signed.items()}

    def _plain(self, path: str, query: Mapping[str, str] | None = None) -> str:
        url = self.base + API_PREFIX + path
        return url + "?" + urlencode(dict(query)) if query else url

    async def request(self, method: str, path: str, data: Mapping[str, str] | None = None,
                      files: Mapping[str, Upload] | None = None, query: Mapping[str, str] | None = None,
                      signed: bool = True, progress: Progress | None = None,
                      read_timeout: float | None = None) -> Answer:
        """The answer to a request, read whole; an error status raises APIError.

        ``files`` are streamed as multipart/form-data (a path, or a name and its bytes);
        ``data`` are text fields. ``read_timeout`` for a request the appliance works on
        before it answers (a restore), else the client's read timeout.
        """
        for attempt in (1, 2):
            response, opened = await self._send(method, path, data, files, query, signed, progress, read_timeout)
            try:
                body = await self._guard(method, path, treq.content(response))
            finally:
                for stream in opened:
                    stream.close()
            headers = {name.decode("latin-1").lower(): values[-1].decode("utf-8", "replace")
                       for name, values in response.headers.getAllRawHeaders()}
            answer = Answer(response.code, headers, body)
            if attempt == 1 and signed and self._clock_was_off(answer):
                continue  # signed again at the appliance's time
            if answer.status >= 400:
                raise _api_error(answer)
            return answer
        raise AssertionError("unreachable")  # pragma: no cover

    def _clock_was_off(self, answer: Answer) -> bool:
        """A signature refused for its time: learn the appliance's from its Date, once.
        (An appliance's clock is often not the administrator's; the window is 5 minutes.)"""
        if answer.status != 403 or self.auth != SIGNED or "check the client's clock" not in \
                answer.headers.get("error-message", ""):
            return False
        try:
            theirs = email.utils.parsedate_to_datetime(answer.headers["date"]).timestamp()
        except (KeyError, TypeError, ValueError, IndexError):
            return False
        skew = theirs - _now()
        if abs(skew - self._skew) < 2:
            return False  # already at their time: something else is wrong
        self._skew = skew
        return True

    async def _send(self, method: str, path: str, data: Mapping[str, str] | None, files: Mapping[str, Upload] | None,
                    query: Mapping[str, str] | None, signed: bool, progress: Progress | None,
                    read_timeout: float | None) -> tuple[Any, list[IO[bytes]]]:
        opened: list[IO[bytes]] = []
        kwargs: dict[str, Any] = {}
        try:
            body: _MultipartBody | None = None
            if files:
                streams = [(name, *_open_upload(upload)) for name, upload in files.items()]
                opened.extend(stream for _, _, stream, _ in streams)
                body = _MultipartBody(data or {}, streams, progress)
            elif data:  # text fields only: still multipart/form-data, as curl -F sends them
                body = _MultipartBody(data, [], None)
            digest = None
            if body is not None and signed and self.auth == SIGNED:
                # A signature covers the body's SHA-256, so it is read once before it is sent
                # (in a thread: a package can be gigabytes).
                digest = await deferToThread(body.digest)
            url, headers = self._authenticate(method, path, query, digest) if signed else (self._plain(path, query), {})
            if body is not None:
                kwargs["data"] = body.producer()
                headers = {**headers, b"Content-Type": [body.content_type]}
            if headers:
                kwargs["headers"] = headers
            http = self._http(read_timeout or self.timeouts.read)
            response = await self._guard(method, path, http.request(method, url, **kwargs))
        except BaseException:
            for stream in opened:
                stream.close()
            raise
        return response, opened

    async def _guard(self, method: str, path: str, pending: Any) -> Any:
        """``await pending``, with what went wrong on the way turned into Untrusted,
        TimedOut or Unreachable (a cancellation stays one)."""
        try:
            return await pending
        except NETWORK_ERRORS + (Untrusted, TimedOut) as e:
            raise self._network_error(e, method, path) from None

    def _network_error(self, error: BaseException, method: str, path: str) -> BaseException:
        reasons = [r.value for r in getattr(error, "reasons", None) or []] or [error]
        for reason in reasons:
            if isinstance(reason, CancelledError):
                return reason
        for reason in reasons:
            if isinstance(reason, (Untrusted, TimedOut)):
                return reason
        said = "; ".join(dict.fromkeys(_words(r) for r in reasons))
        return Unreachable(f"cannot reach {self.netloc}: {said}")

    async def get_json(self, path: str, query: Mapping[str, str] | None = None) -> Any:
        """GET ``path`` (under /api/v1/admin), signed; its JSON."""
        return (await self.request("GET", path, query=query)).json()

    async def get_document(self, path: str, query: Mapping[str, str] | None = None) -> Document:
        """GET ``path``, signed; its JSON object (ClientError for any other answer)."""
        return (await self.request("GET", path, query=query)).document()

    async def get_text(self, path: str) -> str:
        """GET ``path``, signed; its text (a log, the changelog)."""
        return (await self.request("GET", path)).body.decode("utf-8", "replace")

    async def download(self, path: str, destination: Path | str, progress: Progress | None = None,
                       mode: int = 0o600, read_timeout: float | None = None) -> int:
        """Stream a download into ``destination``, created with ``mode`` (0600 unless told:
        backups and bundles hold the appliance's data). It is written beside it and renamed
        when whole, so a failed download never leaves a partial file under the name.

        The destination's folder is checked before anything is asked of the appliance
        (a log bundle is built for the request)."""
        destination = Path(destination)
        partial = _writable(destination)
        url, headers = self._authenticate("GET", path)
        http = self._http(read_timeout or self.timeouts.read)
        response = await self._guard("GET", path, http.request("GET", url, headers=headers or None))
        if response.code >= 400:
            body = await self._guard("GET", path, treq.content(response))
            raise _api_error(Answer(response.code, _headers(response), body))
        total = int(response.headers.getRawHeaders(b"content-length", [b"0"])[0] or 0)
        done = [0]
        try:
            fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        except OSError as e:
            raise Misconfigured(f"cannot write {partial}: {e.strerror}") from None
        with os.fdopen(fd, "wb") as out:
            def write(chunk: bytes) -> None:
                out.write(chunk)
                done[0] += len(chunk)
                if progress is not None:
                    progress(done[0], total)
            try:
                await self._guard("GET", path, treq.collect(response, write))
                out.flush()
                os.fchmod(out.fileno(), mode)
            except BaseException as e:
                out.close()
                partial.unlink(missing_ok=True)
                if isinstance(e, OSError) and not isinstance(e, ClientError):
                    raise Misconfigured(f"cannot write {destination}: {e.strerror or e}") from None
                raise
        os.replace(partial, destination)
        return done[0]

    # The API, section by section

    async def setup(self, newtoken: str) -> None:
        """Set the first token (no authentication while none exists), or change it; the
        client signs with the new one from then on."""
        await self.request("POST", "/setup", data={"newtoken": newtoken}, signed=self._key is not None)
        self.use_token(newtoken)

    async def version(self) -> str:
        """The installed version (APIError 404 on an appliance that has none yet)."""
        return str((await self.get_document("/version"))["version"])

    async def changelog(self) -> str:
        """The changelog of the installed version, as text (APIError 404 before any)."""
        return await self.get_text("/changelog")

    async def build(self) -> Document:
        """The appliance's build information, as its image describes it."""
        return await self.get_document("/build")

    async def health(self) -> Health:
        """Disk, memory and CPU use now, and the certificate in service."""
        return Health.of(await self.get_document("/health"))

    async def services(self) -> list[Service]:
        """The services the appliance watches, the daemon last, and whether each runs."""
        return Service.all_of(await self.get_document("/services"))

    async def endpoints(self) -> list[str]:
        """The endpoints served, as paths (/api/v1/admin/update): what this appliance enables."""
        return [str(e) for e in (await self.get_document("/endpoints")).get("endpoints") or []]

    async def update_status(self) -> JobStatus:
        """The last update's status and the last lines of its log (GET /update)."""
        return JobStatus.of(await self.get_document("/update"))

    async def update(self, package: Path | str, progress: Progress | None = None) -> Started:
        """Upload an update package; the update runs on the appliance (follow it)."""
        return await self._start("update", "/update", files={"update": package}, progress=progress)

    async def check_update(self, package: Path | str, progress: Progress | None = None) -> Document:
        """What a package is and whether it would install (POST /update/check): ``version``,
        ``installed``, ``changelog``, ``installable`` and ``problem``. Nothing changes."""
        answer = await self.request("POST", "/update/check", files={"update": package}, progress=progress,
                                    read_timeout=max(self.timeouts.read, 600.0))
        return Document(json.loads(answer.body))

    async def stage_update(self, package: Path | str, progress: Progress | None = None) -> Document:
        """Check a package and keep it on the appliance, to apply later (APIError 400 when
        it would not install, or another is staged)."""
        answer = await self.request("POST", "/update/stage", files={"update": package}, progress=progress,
                                    read_timeout=max(self.timeouts.read, 600.0))
        return Document(json.loads(answer.body))

    async def staged_update(self) -> Document | None:
        """What is staged, or None."""
        staged = (await self.get_json("/update/staged")).get("staged")
        return Document(staged) if isinstance(staged, dict) else None

    async def apply_update(self) -> Started:
        """Install the staged package (follow it as an update)."""
        return await self._start("update", "/update/apply")

    async def discard_update(self) -> None:
        await self.request("POST", "/update/discard", data={})

    async def update_history(self) -> list[Document]:
        """Every update attempt, newest first."""
        return [Document(entry) for entry in (await self.get_json("/update/history")).get("history", [])]

    async def tokens(self) -> list[Document]:
        """The named tokens: name, scope, when made (never a token)."""
        return [Document(entry) for entry in (await self.get_json("/tokens")).get("tokens", [])]

    async def create_token(self, name: str, scope: str) -> Document:
        """Make a named token; the answer's ``token`` is the only time it is seen."""
        answer = await self.request("POST", "/tokens", data={"name": name, "scope": scope})
        return Document(json.loads(answer.body))

    async def revoke_token(self, name: str) -> None:
        await self.request("POST", "/tokens/revoke", data={"name": name})

    async def settings(self) -> Document:
        """The network and application settings, ``{"network": {...}, "app": {...}}``."""
        return await self.get_document("/settings")

    async def set_settings(self, document: Mapping[str, Any]) -> Started:
        """Send new network and application settings, ``{"network": {...}, "app": {...}}``."""
        return await self._start("settings", "/settings", files={"settings": _json_file("settings.json", document)})

    async def storage(self) -> Document:
        """The storage settings (a password masked) and the types on offer."""
        return await self.get_document("/storage")

    async def set_storage(self, document: Mapping[str, Any]) -> Started:
        """Send new storage settings, ``{"storage": {"type": ...}}`` (applied at the next reboot)."""
        return await self._start("storage", "/storage", files={"settings": _json_file("storage.json", document)})

    async def cluster(self) -> Document:
        """The cluster settings (the secret masked), with the last change's status and log."""
        return await self.get_document("/cluster")

    async def set_cluster(self, document: Mapping[str, Any]) -> Started:
        """Send new cluster settings, ``{"cluster": {...}}``."""
        return await self._start("cluster", "/cluster", files={"settings": _json_file("cluster.json", document)})

    async def license(self) -> Document:
        """The installed license's details."""
        return await self.get_document("/license")

    async def install_license(self, license: bytes | Path | str) -> Document:
        """Install a license (its bytes, or a file); the appliance checks it before it
        answers, with the new license's details."""
        upload: Upload = ("license.asc", license) if isinstance(license, bytes) else license
        answer = await self.request("POST", "/license", files={"license": upload},
                                    read_timeout=max(self.timeouts.read, self.timeouts.wait))
        return answer.document()

    async def certs_status(self) -> CertsStatus:
        """The last certificate install's status, and the certificate in service."""
        return CertsStatus.of(await self.get_document("/certs"))

    async def install_certs(self, public: bytes | Path | str, private: bytes | Path | str,
                            ca: bytes | Path | str | None = None) -> Started:
        """Install a certificate (PEM, its chain after it), its private key and optionally
        the CA that signed it, each as bytes or a file. The appliance presents it once the
        job succeeds; the client trusts it from now on, besides the one presented so far."""
        files: dict[str, Upload] = {}
        for name, value in (("public", public), ("private", private), ("ca", ca)):
            if value is not None:
                files[name] = (f"{name}.pem", value) if isinstance(value, bytes) else value
        pem = public if isinstance(public, bytes) else _read(Path(public))
        new = certificate_fingerprint(pem)
        started = await self._start("certs", "/certs", files=files)
        self.trust_also(new)
        return started

    async def start_backup(self) -> Started:
        """Start a backup (follow it, then ``download_backup``)."""
        return await self._start("backup", "/backup", data={"action": "START"})

    async def stop_backup(self) -> Started:
        """Stop a running backup, or delete the archive of the last one."""
        return await self._start("backup_stop", "/backup", data={"action": "STOP"})

    async def backup_status(self) -> BackupStatus:
        """The last backup's status, and its archive's size and SHA-256 once it succeeded."""
        return BackupStatus.of(await self.get_document("/backup"))

    async def download_backup(self, destination: Path | str, progress: Progress | None = None,
                              mode: int = 0o600) -> int:
        """Download the archive GET /backup describes; its size in bytes."""
        return await self.download("/backup/download", destination, progress, mode)

    async def restore(self, archive: Path | str, progress: Progress | None = None) -> None:
        """Restore a backup archive; the appliance answers once the restore is done (within
        the wait timeout)."""
        await self.request("POST", "/backup/restore", files={"archive": archive}, progress=progress,
                           read_timeout=max(self.timeouts.read, self.timeouts.wait))

    async def logs(self, destination: Path | str, progress: Progress | None = None, mode: int = 0o600) -> int:
        """Download the logs (logs.tar.gz, built for the request)."""
        return await self.download("/logs", destination, progress, mode,
                                   read_timeout=max(self.timeouts.read, self.timeouts.wait))

    async def debug_bundle(self, destination: Path | str, progress: Progress | None = None,
                           mode: int = 0o600) -> int:
        """Download the encrypted debug bundle (debug-bundle.tar, built for the request)."""
        return await self.download("/debug", destination, progress, mode,
                                   read_timeout=max(self.timeouts.read, self.timeouts.wait))

    async def reboot(self) -> Started:
        """Ask for a reboot. The appliance answers at once; ``rebooting()`` tells whether
        it goes through (it fails without a reboot command)."""
        return await self._start("reboot", "/reboot", method="GET")

    # Jobs (API.md section 14)

    async def jobs(self) -> list[JobState]:
        """Every kind of job the appliance runs, and its last run."""
        return [JobState.of(j) for j in (await self.get_document("/jobs")).get("jobs") or [] if isinstance(j, dict)]

    async def job(self, name: str) -> JobState:
        """A kind of job (``update``, ``certs``, ...) and its last run."""
        return JobState.of(await self.get_document(f"/jobs/{name}"))

    async def job_log(self, name: str, start: int = 0) -> LogPart:
        """The lines of the job's last run from byte ``start``; ask again from ``next``."""
        return LogPart.of(await self.get_document(f"/jobs/{name}/log", {"from": str(start)}))

    async def _start(self, job: str, path: str, method: str = "POST", **kwargs: Any) -> Started:
        previous, served = await self._previous_run(job)
        answer = await self.request(method, path, **kwargs)
        try:
            document = answer.document()
        except ClientError:
            document = {}
        return Started(job, previous, served, document)

    async def _previous_run(self, job: str) -> tuple[str | None, bool]:
        """The run before the one about to start, so that following reads only the new
        one; (None, False) on an appliance without GET /jobs."""
        try:
            return (await self.job(job)).run, True
        except APIError as e:
            if e.status == 404:
                return None, False
            raise

    async def follow(self, started: Started | str, on_line: Callable[[str], None] | None = None,
                     timeout: float | None = None) -> JobState:
        """Follow a job to its end: every line of its run's log once, to ``on_line``, then
        its final state. JobFailed when it failed; JobTimedOut when it has not ended
        within ``timeout`` (the wait timeout unless told); it goes on on the appliance.

        ``started`` is what starting it returned, or a job's name to follow its current
        (or last) run from its first line.
        """
        if isinstance(started, str):
            started = Started(started, None, True, started_here=False)
        if not started.jobs_served:
            return await self._follow_status(started, on_line, timeout)
        name = started.job
        title = JOB_TITLES.get(name, f"The {name} job")
        limit = timeout or self.timeouts.wait
        deadline = self.reactor.seconds() + limit
        position, run = 0, None
        while True:
            part = await self.job_log(name, position)
            if part.run is None and not started.started_here:
                return await self.job(name)  # it has never run: nothing to follow
            if part.run is not None and part.run != started.previous_run:
                if run is None:
                    run = part.run
                if part.run != run:
                    break  # a newer run began: ours has ended
                for line in part.lines:
                    if on_line is not None:
                        on_line(line)
                position = part.next
                if part.complete:
                    break
                if part.next - part.start >= LOG_PART_MAX // 2:
                    continue  # more is waiting: read it now
            if self.reactor.seconds() >= deadline:
                raise JobTimedOut(f"{title} had not ended after {limit:g} s; it goes on on the appliance",
                                  name, run)
            await deferLater(self.reactor, self.poll_interval, lambda: None)
        state = await self.job(name)
        if state.run != run:
            raise ClientError(f"{title} ended and another run began before its outcome could be read "
                              f"(GET /jobs/{name}/log tells the new one's)")
        if state.status == "failed":
            raise JobFailed(title, state.raw)
        return state

    async def _follow_status(self, started: Started, on_line: Callable[[str], None] | None,
                             timeout: float | None) -> JobState:
        """On an appliance without GET /jobs: poll the section's status answer, and pass on
        the lines of its ``log`` (the last ten) not seen before, as well as they tell."""
        name = started.job
        title = JOB_TITLES.get(name, f"The {name} job")
        path = _STATUS_PATHS.get(name)
        if path is None:
            return JobState(name, None, None, None, None, None, None, None, None, None, {})
        limit = timeout or self.timeouts.wait
        deadline = self.reactor.seconds() + limit
        follower = TailFollower(on_line)
        while True:
            report = await self.get_document(path)
            follower(report)
            status = report.get("status")
            if status == "failed":
                raise JobFailed(title, report)
            if status == "success":
                return JobState(name, None, "success", report.get("percentage"), None, None, None, None, None,
                                None, report)
            if self.reactor.seconds() >= deadline:
                raise JobTimedOut(f"{title} had not ended after {limit:g} s; it goes on on the appliance",
                                  name, None)
            await deferLater(self.reactor, self.poll_interval, lambda: None)

    async def rebooting(self, started: Started, timeout: float | None = None) -> bool:
        """Whether the reboot goes through: True once its job has run the reboot command or
        the appliance stopped answering; JobFailed when the job failed (no reboot command,
        say). False on an appliance without GET /jobs, which cannot tell."""
        if not started.jobs_served:
            return False
        limit = timeout or self.timeouts.wait
        deadline = self.reactor.seconds() + limit
        while True:
            try:
                state = await self.job("reboot")
            except Unreachable:
                return True
            if state.run is not None and state.run != started.previous_run:
                if state.status == "failed":
                    raise JobFailed("The reboot", state.raw)
                if state.status == "success" or (state.percentage or 0) >= 50:
                    return True
            if self.reactor.seconds() >= deadline:
                raise JobTimedOut(f"The reboot had not begun after {limit:g} s", "reboot", state.run)
            await deferLater(self.reactor, self.poll_interval, lambda: None)

    async def wait_until_answering(self, timeout: float | None = None, gone_first: bool = True) -> None:
        """Wait for the API to answer again after a reboot: first for it to go away (when
        ``gone_first``), then for GET /health to answer. A refusal (403) or a certificate
        not trusted ends the wait at once: neither gets better by waiting."""
        limit = timeout or self.timeouts.wait
        deadline = self.reactor.seconds() + limit
        gone = not gone_first
        while self.reactor.seconds() < deadline:
            try:
                await self.get_document("/health")
                if gone:
                    return
            except Unreachable:
                gone = True
                self._reset()
            except APIError as e:
                if e.status in (401, 403):
                    raise
                gone = True
            await deferLater(self.reactor, self.poll_interval, lambda: None)
        raise Unreachable(f"{self.netloc} did not answer again within {limit:g} s" if gone else
                          f"{self.netloc} still answered after {limit:g} s: it has not rebooted")


class TailFollower:
    """Passes on the lines of successive status answers' ``log`` (the last ten lines)
    once each, matching each answer's start against the end of what was seen: the best an
    appliance without GET /jobs allows (a busy job may outrun it)."""

    def __init__(self, on_line: Callable[[str], None] | None):
        self.on_line = on_line
        self.seen: list[str] = []

    def __call__(self, report: Mapping[str, Any]) -> None:
        lines = log_lines(report.get("log"))
        new = lines
        for overlap in range(min(len(lines), len(self.seen)), 0, -1):
            if self.seen[-overlap:] == lines[:overlap]:
                new = lines[overlap:]
                break
        self.seen.extend(new)
        if self.on_line is not None:
            for line in new:
                self.on_line(line)


class _MultipartBody:
    """A multipart/form-data body of text fields and files, as curl -F sends it, made
    here (not by treq) so that it is known byte for byte before it is sent: a signature
    covers its SHA-256. Files are streamed, never held in memory; ``progress`` hears of
    the files' bytes as they go."""

    def __init__(self, fields: Mapping[str, str], files: list[tuple[str, str, IO[bytes], int]],
                 progress: Progress | None):
        boundary = "jidoteki-admin-" + os.urandom(12).hex()
        self.content_type = f"multipart/form-data; boundary={boundary}".encode()
        self.segments: list[bytes | tuple[IO[bytes], int]] = []
        for name, value in fields.items():
            self.segments.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{_quoted(name)}"\r\n\r\n'
                                 .encode() + value.encode() + b"\r\n")
        for name, filename, stream, size in files:
            self.segments.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{_quoted(name)}"; '
                                 f'filename="{_quoted(filename)}"\r\nContent-Type: application/octet-stream\r\n\r\n'
                                 .encode())
            self.segments.append((stream, size))
            self.segments.append(b"\r\n")
        self.segments.append(f"--{boundary}--\r\n".encode())
        self.length = sum(len(s) if isinstance(s, bytes) else s[1] for s in self.segments)
        self.file_bytes = sum(size for _, _, _, size in files)
        self.progress = progress

    def digest(self) -> bytes:
        """The body's SHA-256, reading each file through and back to its start."""
        sha = hashlib.sha256()
        for segment in self.segments:
            if isinstance(segment, bytes):
                sha.update(segment)
                continue
            stream, _ = segment
            start = stream.tell()
            while chunk := stream.read(1024 * 1024):
                sha.update(chunk)
            stream.seek(start)
        return sha.digest()

    def producer(self) -> FileBodyProducer:
        producer = FileBodyProducer(_Concatenation(self.segments, self.file_bytes, self.progress), readSize=65536)
        producer.length = self.length
        return producer


class _Concatenation:
    """The segments of a body read as one file (FileBodyProducer reads it in chunks)."""

    def __init__(self, segments: list[bytes | tuple[IO[bytes], int]], file_bytes: int, progress: Progress | None):
        self.parts = [io.BytesIO(s) if isinstance(s, bytes) else s[0] for s in segments]
        self.counted = [not isinstance(s, bytes) for s in segments]
        self.file_bytes, self.progress, self.done = file_bytes, progress, 0

    def read(self, size: int = -1) -> bytes:
        while self.parts:
            data = self.parts[0].read(size)
            if data:
                if self.counted[0]:
                    self.done += len(data)
                    if self.progress is not None:
                        self.progress(self.done, self.file_bytes)
                return data
            self.parts.pop(0)
            self.counted.pop(0)
        return b""

    def close(self) -> None:
        """The producer is done with it; the files are the request's to close."""


def _quoted(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\r", " ").replace("\n", " ")


def _words(reason: BaseException) -> str:
    """What went wrong with a connection, in a few words rather than Twisted's."""
    from twisted.internet import error

    if isinstance(reason, error.ConnectionRefusedError):
        return "connection refused"
    if isinstance(reason, error.DNSLookupError):
        return "the host name does not resolve"
    if isinstance(reason, error.NoRouteError):
        return "no route to the host"
    if isinstance(reason, (error.ConnectionLost, error.ConnectionDone)):
        return "the connection was lost"
    if isinstance(reason, SSL.Error):
        return f"TLS failed: {reason}"
    return str(reason) or type(reason).__name__


def _open_upload(upload: Upload) -> tuple[str, IO[bytes], int]:
    """(file name, stream, size) of an upload; Misconfigured when the file cannot be read."""
    if isinstance(upload, tuple):
        name, data = upload
        return name, io.BytesIO(data), len(data)
    path = Path(upload)
    try:
        stream = open(path, "rb")
        size = os.fstat(stream.fileno()).st_size
    except OSError as e:
        raise Misconfigured(f"cannot read {path}: {e.strerror or e}") from None
    if not path.is_file():
        stream.close()
        raise Misconfigured(f"{path} is not a file")
    return path.name, stream, size


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as e:
        raise Misconfigured(f"cannot read {path}: {e.strerror or e}") from None


def _json_file(name: str, document: Mapping[str, Any]) -> tuple[str, bytes]:
    if not isinstance(document, Mapping):
        raise Misconfigured(f"the {name.removesuffix('.json')} document must be a JSON object (a mapping)")
    try:
        return name, json.dumps(document).encode()
    except (TypeError, ValueError) as e:
        raise Misconfigured(f"the {name.removesuffix('.json')} document cannot be written as JSON: {e}") from None


def _writable(destination: Path) -> Path:
    """Where a download to ``destination`` is written until whole, once it is sure it can
    be: an existing folder that can be written, and no folder of that name."""
    folder = destination.parent
    if destination.is_dir():
        raise Misconfigured(f"{destination} is a folder: give the file to save to")
    if not folder.is_dir():
        raise Misconfigured(f"cannot save to {destination}: no folder {folder}")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise Misconfigured(f"cannot save to {destination}: {folder} is not writable")
    return destination.with_name(f".{destination.name}.partial")


def _headers(response: Any) -> dict[str, str]:
    return {name.decode("latin-1").lower(): values[-1].decode("utf-8", "replace")
            for name, values in response.headers.getAllRawHeaders()}


def _api_error(answer: Answer) -> APIError:
    message = answer.headers.get("error-message", "")
    try:
        value = json.loads(answer.body)
    except ValueError:
        value = None
    if not message and isinstance(value, dict):
        message = str(value.get("Error-Message") or value.get("Status") or "")
    return APIError(answer.status, message, value)


def _target_uri(url: str) -> str:
    """The URL as the appliance rebuilds it from what it receives (the Host header
    twisted's Agent sends names no port when it is 443), which is what is signed."""
    scheme, _, rest = url.partition("://")
    authority, slash, tail = rest.partition("/")
    if authority.endswith(":443") and scheme == "https":
        authority = authority[:-4]
    return f"{scheme}://{authority}{slash}{tail}"


