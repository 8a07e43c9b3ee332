"""How the client reaches an appliance: TLS it trusts, and timeouts on every step.

An appliance that accepts a connection and then says nothing (a hung daemon, a firewall
that swallows packets, a half-dead VM) must cost its caller seconds, not a batch: the
client gives up when the connection is not made within ``Timeouts.connect`` (name lookup
included), when the TLS handshake does not end within ``Timeouts.handshake``, and when
nothing moves either way for ``Timeouts.read`` while a request is under way. Waits for jobs
have their own limit, ``Timeouts.wait``, applied by the client around them.

Trust is a set of pinned SHA-256 fingerprints or a CA file, never nothing. When the
certificate is refused, the client says which certificate was presented and what was
trusted (Untrusted), so that an operator can tell a swapped certificate from an outage.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable
from urllib.parse import urlsplit

from OpenSSL import SSL, crypto
from twisted.internet import ssl
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.endpoints import HostnameEndpoint
from twisted.internet.interfaces import (IHandshakeListener, IOpenSSLClientConnectionCreator, IProtocolFactory,
                                         IStreamClientEndpoint)
from twisted.internet.protocol import Factory, Protocol
from twisted.protocols.policies import ProtocolWrapper, WrappingFactory
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.python.failure import Failure
from zope.interface import implementer

from .errors import Misconfigured, TimedOut, Untrusted


@dataclass(frozen=True)
class Timeouts:
    """How long the client waits, in seconds.

    ``connect``: for the TCP connection, name lookup included. ``handshake``: for the TLS
    handshake once connected. ``read``: for the next byte either way while a request is
    under way (a slow upload is never cut while it moves). ``wait``: for a whole wait, such
    as a job to end or a rebooted appliance to answer again; also the time an appliance
    may take before it begins an answer it builds first (a restore, a log bundle).
    """

    connect: float = 10.0
    handshake: float = 10.0
    read: float = 30.0
    wait: float = 3600.0

    def __post_init__(self) -> None:
        for name in ("connect", "handshake", "read", "wait"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not value > 0:
                raise Misconfigured(f"the {name} timeout must be a number of seconds above 0, not {value!r}")

    def but(self, **changes: float | None) -> Timeouts:
        """A copy with the values given (None keeps the value)."""
        return replace(self, **{k: v for k, v in changes.items() if v is not None})


def normal_fingerprint(value: str) -> bytes:
    """A SHA-256 fingerprint as 32 bytes, from ``AB:CD:...``, ``abcd...`` or ``sha256:...``."""
    text = str(value).strip().lower().removeprefix("sha256:").replace(":", "")
    try:
        raw = bytes.fromhex(text)
    except ValueError:
        raw = b""
    if len(raw) != 32:
        raise Misconfigured(f"not a SHA-256 fingerprint: {value!r} (64 hex digits, colons allowed)")
    return raw


def shown_fingerprint(raw: bytes) -> str:
    """32 bytes as ``openssl x509 -fingerprint -sha256`` shows them: ``AB:CD:...``."""
    return ":".join(f"{b:02X}" for b in raw)


def x509_fingerprint(certificate: crypto.X509) -> str:
    return shown_fingerprint(hashlib.sha256(crypto.dump_certificate(crypto.FILETYPE_ASN1, certificate)).digest())


def certificate_fingerprint(pem: bytes) -> str:
    """The SHA-256 fingerprint of a PEM certificate (the first one, when a chain follows),
    as ``openssl x509 -fingerprint -sha256`` shows it."""
    try:
        return x509_fingerprint(crypto.load_certificate(crypto.FILETYPE_PEM, pem))
    except crypto.Error:
        raise Misconfigured("not a PEM certificate") from None


class Trust:
    """What the client trusts an appliance by: pinned fingerprints, or a CA file.

    After installing a certificate the client trusts both the one the appliance presented
    (already verified) and the one it uploaded (it holds its key): ``pinning``.
    """

    def __init__(self, ca_file: Path | str | None = None, fingerprint: str | None = None,
                 pins: frozenset[bytes] = frozenset()):
        self.authority: ssl.Certificate | None = None
        self.ca_file: Path | None = None
        if pins:
            self.pins = pins
            return
        if (ca_file is None) == (fingerprint is None):
            raise Misconfigured("give either a CA file or the certificate's fingerprint to trust")
        self.pins = frozenset([normal_fingerprint(fingerprint)]) if fingerprint is not None else frozenset()
        self.ca_file = Path(ca_file) if ca_file is not None else None
        if self.ca_file is not None:
            try:
                self.authority = ssl.Certificate.loadPEM(self.ca_file.read_bytes())
            except OSError as e:
                raise Misconfigured(f"cannot read the CA certificate {self.ca_file}: {e.strerror or e}") from None
            except (SSL.Error, crypto.Error):
                raise Misconfigured(f"{self.ca_file} holds no PEM certificate") from None

    def pinning(self, *fingerprints: str) -> Trust:
        """Trust exactly these fingerprints from now on."""
        return Trust(pins=frozenset(normal_fingerprint(f) for f in fingerprints))

    def describe(self) -> str:
        if self.authority is not None:
            return f"signed by the CA in {self.ca_file}"
        return " or ".join(shown_fingerprint(p) for p in sorted(self.pins))

    def creator(self, hostname: str) -> Any:
        """An IOpenSSLClientConnectionCreator for a connection to ``hostname``."""
        if self.authority is not None:
            return _AuthorityCreator(hostname, self.authority)
        return _PinnedCreator(self.pins)


def _watchdog_of(connection: SSL.Connection) -> _Watchdog | None:
    tls = connection.get_app_data()
    watchdog = getattr(tls, "wrappedProtocol", None)
    return watchdog if isinstance(watchdog, _Watchdog) else None


@implementer(IOpenSSLClientConnectionCreator)
class _PinnedCreator:
    """TLS 1.2+ to a server whose certificate has one of the pinned SHA-256 fingerprints.

    The chain is not checked against any authority (the pin is the trust); the leaf must
    match, so a man in the middle with any other certificate is refused in the handshake.
    """

    def __init__(self, pins: frozenset[bytes]):
        self.pins = pins
        context = SSL.Context(SSL.TLS_CLIENT_METHOD)
        context.set_min_proto_version(SSL.TLS1_2_VERSION)
        context.set_verify(SSL.VERIFY_PEER, self._verify)
        self.context = context

    def _verify(self, connection: SSL.Connection, certificate: crypto.X509, errno: int, depth: int,
                ok: int) -> bool:
        if depth != 0:
            return True
        digest = hashlib.sha256(crypto.dump_certificate(crypto.FILETYPE_ASN1, certificate)).digest()
        trusted = any(hmac.compare_digest(digest, pin) for pin in self.pins)
        watchdog = _watchdog_of(connection)
        if watchdog is not None:
            watchdog.certificate_seen(shown_fingerprint(digest), trusted)
        return trusted

    def clientConnectionForTLS(self, tlsProtocol: Any) -> SSL.Connection:
        connection = SSL.Connection(self.context, None)
        connection.set_app_data(tlsProtocol)
        connection.set_connect_state()
        return connection


@implementer(IOpenSSLClientConnectionCreator)
class _AuthorityCreator:
    """TLS 1.2+ to a server whose certificate the CA signed, for the URL's host name (or
    IP address): Twisted's own verification, watched so that a refusal can name the
    certificate presented."""

    def __init__(self, hostname: str, authority: ssl.Certificate):
        self.inner: Any = ssl.optionsForClientTLS(hostname, trustRoot=authority,
                                             extraCertificateOptions={"raiseMinimumTo": ssl.TLSVersion.TLSv1_2})

    def _verify(self, connection: SSL.Connection, certificate: crypto.X509, errno: int, depth: int,
                ok: int) -> bool:
        watchdog = _watchdog_of(connection)
        if watchdog is not None:
            if depth == 0:
                watchdog.certificate_seen(x509_fingerprint(certificate), bool(ok) and not watchdog.rejected)
            elif not ok:
                watchdog.rejected = True
        return bool(ok)

    def clientConnectionForTLS(self, tlsProtocol: Any) -> SSL.Connection:
        connection: SSL.Connection = self.inner.clientConnectionForTLS(tlsProtocol)
        connection.set_verify(SSL.VERIFY_PEER | SSL.VERIFY_FAIL_IF_NO_PEER_CERT, self._verify)
        return connection


@implementer(IOpenSSLClientConnectionCreator)
class _ProbeCreator:
    """Accepts any certificate: only for reading the one presented, never for a request."""

    def __init__(self) -> None:
        context = SSL.Context(SSL.TLS_CLIENT_METHOD)
        context.set_min_proto_version(SSL.TLS1_2_VERSION)
        context.set_verify(SSL.VERIFY_PEER, lambda *_: True)
        self.context = context

    def clientConnectionForTLS(self, tlsProtocol: Any) -> SSL.Connection:
        connection = SSL.Connection(self.context, None)
        connection.set_app_data(tlsProtocol)
        connection.set_connect_state()
        return connection


@dataclass
class Watch:
    """What the watchdogs of one client's connections share: its timeouts, whom it talks
    to (for messages), what it trusts, and where to note the certificate presented."""

    reactor: Any
    timeouts: Timeouts
    netloc: str
    trust: Trust | None  # None: a probe, which trusts nothing and sends nothing
    seen: Callable[[str], None] = lambda fingerprint: None


@implementer(IHandshakeListener)
class _Watchdog(ProtocolWrapper):
    """Sits between TLS and HTTP on one connection: gives the handshake its time, then
    drops the connection when nothing moves either way for the read timeout, and turns
    the way the connection ended into the error the caller should see."""

    transport: Any
    factory: _WatchdogFactory

    def __init__(self, factory: Any, wrapped: Any):
        super().__init__(factory, wrapped)
        self.watch = factory.watch
        self.timer: Any = None
        self.expired: TimedOut | None = None
        self.presented: str | None = None
        self.rejected = False
        self.handshaken = False

    def _arm(self, seconds: float, what: str) -> None:
        if self.timer is not None and self.timer.active():
            self.timer.cancel()
        self.timer = self.watch.reactor.callLater(seconds, self._expire, seconds, what)

    def _expire(self, seconds: float, what: str) -> None:
        netloc = self.watch.netloc
        message = {"handshake": f"no TLS handshake with {netloc} within {seconds:g} s",
                   "read": f"{netloc} sent nothing for {seconds:g} s"}[what]
        self.expired = TimedOut(message, what, seconds)
        self.transport.abortConnection()

    def makeConnection(self, transport: Any) -> None:
        self._arm(self.watch.timeouts.handshake, "handshake")
        super().makeConnection(transport)

    def handshakeCompleted(self) -> None:
        self.handshaken = True
        self._arm(self.factory.read, "read")
        certificate = self.transport.getPeerCertificate()
        if certificate is not None:
            self.presented = x509_fingerprint(certificate)
            if self.watch.trust is not None:
                self.watch.seen(self.presented)
        if IHandshakeListener.providedBy(self.wrappedProtocol):
            self.wrappedProtocol.handshakeCompleted()

    def certificate_seen(self, fingerprint: str, trusted: bool) -> None:
        self.presented = fingerprint
        self.rejected = self.rejected or not trusted

    def dataReceived(self, data: bytes) -> None:
        self._rearm()
        super().dataReceived(data)

    def write(self, data: bytes) -> None:
        self._rearm()
        super().write(data)

    def writeSequence(self, data: Any) -> None:
        self._rearm()
        super().writeSequence(data)

    def _rearm(self) -> None:
        """Something moved: the read timeout starts again (once the handshake is done;
        before, the handshake's own timeout runs)."""
        if self.handshaken and self.expired is None and self.timer is not None and self.timer.active():
            self.timer.reset(self.factory.read)

    def connectionLost(self, reason: Failure = None) -> None:  # type: ignore[assignment]
        if self.timer is not None and self.timer.active():
            self.timer.cancel()
        if self.expired is not None:
            reason = Failure(self.expired)
        elif self.rejected:
            reason = Failure(self._untrusted())
        elif reason is not None and _is_name_mismatch(reason):
            reason = Failure(Untrusted(f"{self.watch.netloc} presents a certificate that is not for its name "
                                       f"({reason.getErrorMessage()}); it presents {self.presented}",
                                       self.presented, self.watch.trust.describe() if self.watch.trust else None))
        super().connectionLost(reason)

    def _untrusted(self) -> Untrusted:
        trust = self.watch.trust
        expected = trust.describe() if trust is not None else None
        if trust is not None and trust.authority is not None:
            said = f"{self.watch.netloc} presents the certificate {self.presented}, which is not {expected}"
        else:
            said = f"{self.watch.netloc} presents the certificate {self.presented}, not the one pinned ({expected})"
        return Untrusted(said, self.presented, expected)


def _is_name_mismatch(reason: Failure) -> bool:
    try:
        from service_identity import VerificationError
    except ImportError:  # pragma: no cover (a dependency of twisted[tls])
        return False
    return reason.check(VerificationError) is not None


class _WatchdogFactory(WrappingFactory):
    protocol = _Watchdog  # type: ignore[assignment]

    def __init__(self, wrapped: IProtocolFactory, watch: Watch, read: float):
        super().__init__(wrapped)
        self.watch = watch
        self.read = read


@implementer(IStreamClientEndpoint)
class _Endpoint:
    """TCP (within the connect timeout, name lookup included), then TLS, then the watchdog,
    then the protocol asked for: what an Agent or a probe connects through."""

    def __init__(self, host: str, port: int, creator: Any, watch: Watch, read: float):
        self.host, self.port, self.creator, self.watch, self.read = host, port, creator, watch, read

    def connect(self, protocolFactory: Any) -> Deferred[Any]:
        reactor, seconds = self.watch.reactor, self.watch.timeouts.connect
        watched: Any = _WatchdogFactory(protocolFactory, self.watch, self.read)
        tls: Any = TLSMemoryBIOFactory(self.creator, True, watched)
        connecting: Deferred[Any] = HostnameEndpoint(reactor, self.host, self.port, timeout=seconds).connect(tls)
        late: list[bool] = []

        def give_up() -> None:
            late.append(True)
            connecting.cancel()

        timer = reactor.callLater(seconds, give_up)

        def settled(result: Any) -> Any:
            if timer.active():
                timer.cancel()
            if isinstance(result, Failure) and (late or _is_connect_timeout(result)):
                raise TimedOut(f"could not connect to {self.watch.netloc} within {seconds:g} s", "connect", seconds)
            return result

        connecting.addBoth(settled)
        connecting.addCallback(lambda protocol: protocol.wrappedProtocol.wrappedProtocol)
        return connecting


def _is_connect_timeout(failure: Failure) -> bool:
    from twisted.internet.error import TimeoutError as ConnectTimeout

    return failure.check(ConnectTimeout) is not None and failure.check(CancelledError) is None


class EndpointFactory:
    """For ``Agent.usingEndpointFactory``: every connection the client makes to its
    appliance goes through an _Endpoint with its timeouts and trust."""

    def __init__(self, watch: Watch, read: float):
        self.watch, self.read = watch, read

    def endpointForURI(self, uri: Any) -> _Endpoint:
        host = uri.host.decode("ascii")
        assert self.watch.trust is not None
        return _Endpoint(host, uri.port, self.watch.trust.creator(host), self.watch, self.read)


@implementer(IHandshakeListener)
class _Probe(Protocol):
    """Reads the certificate presented, then hangs up without sending a byte of HTTP."""

    transport: Any

    def __init__(self) -> None:
        self.done: Deferred[str] = Deferred()

    def handshakeCompleted(self) -> None:
        presented = self.transport.presented
        self.transport.loseConnection()
        if not self.done.called:
            self.done.callback(presented)

    def connectionLost(self, reason: Failure = None) -> None:  # type: ignore[assignment]
        if not self.done.called:
            self.done.errback(reason)


def split_url(url: str) -> tuple[str, int, str]:
    """(host, port, https://host:port) of an appliance's URL; anything else is refused."""
    try:
        parts = urlsplit(url)
        port = parts.port or 443
    except ValueError:
        parts, port = None, 0
    if parts is None or parts.scheme != "https" or not parts.hostname or (parts.path not in ("", "/")) \
            or parts.query or parts.fragment:
        raise Misconfigured(f"the appliance's URL must be https://HOST[:PORT], not {url!r}")
    return parts.hostname, port, f"https://{parts.netloc}"


async def presented_fingerprint(reactor: Any, url: str, timeouts: Timeouts | None = None) -> str:
    """The fingerprint of the certificate an appliance presents, read without trusting it
    and without sending it anything: the administrator compares it with the one the
    appliance's console shows before pinning it. Within the connect and handshake
    timeouts, and cancellable like any other request."""
    host, port, base = split_url(url)
    timeouts = timeouts or Timeouts()
    watch = Watch(reactor, timeouts, base.removeprefix("https://"), None)
    endpoint = _Endpoint(host, port, _ProbeCreator(), watch, timeouts.read)
    factory: Any = Factory.forProtocol(_Probe)
    probe: _Probe = await endpoint.connect(factory)
    return await probe.done
