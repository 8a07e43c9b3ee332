"""The TLS context every listener shares: TLS 1.2+ only, forward-secret AEAD ciphers."""

from __future__ import annotations

import datetime
import ipaddress
import socket
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from OpenSSL import SSL
from twisted.internet.interfaces import IOpenSSLServerConnectionCreator
from zope.interface import implementer

from .files import atomic_write
from .formats.certificates import alternative_names

# TLS 1.2 suites with ECDHE key exchange and an AEAD cipher; TLS 1.3 suites all qualify.
TLS12_CIPHERS = b"ECDHE+AESGCM:ECDHE+CHACHA20:!aNULL:!SHA1:!SHA256:!SHA384"
SELF_SIGNED_DAYS = 3650


@implementer(IOpenSSLServerConnectionCreator)
class ContextFactory:
    """What the TLS listeners ask for connections; one instance per daemon.

    The files are read by ``load`` (at start-up, and again when the certificate is
    replaced), not by the constructor, so assembling the daemon touches no disk.
    """

    def __init__(self, certificate: Path, private_key: Path):
        self.certificate = certificate
        self.private_key = private_key
        self._context: SSL.Context | None = None
        self._served: ServedCertificate | None = None

    def load(self) -> None:
        """Read the certificate and key; a bad pair raises and leaves the old one in use.

        New connections get the new context; connections already open keep theirs.
        """
        served = served_certificate(self.certificate)
        self._context = build_context(self.certificate, self.private_key)
        self._served = served

    def served(self) -> ServedCertificate | None:
        """What the listener serves now (None before the first load): read at load(), so
        it is never a file changed on disk since."""
        return self._served

    def getContext(self) -> SSL.Context:
        if self._context is None:
            raise RuntimeError("the TLS certificate has not been loaded")
        return self._context

    def serverConnectionForTLS(self, protocol) -> SSL.Connection:
        return SSL.Connection(self.getContext(), None)


@dataclass(frozen=True)
class ServedCertificate:
    """The facts of the certificate in service that the API reports."""

    subject: str  # RFC 4514
    not_after: datetime.datetime  # aware, UTC
    sha256: str  # hex fingerprint
    # What an administrator checks a certificate by, in a browser's viewer or openssl's:
    # who issued it, the names it is valid for, and from when.
    issuer: str = ""  # RFC 4514
    names: tuple[str, ...] = ()  # the subject alternative names, as certificates.alternative_names
    not_before: datetime.datetime | None = None  # aware, UTC


def served_certificate(certificate: Path) -> ServedCertificate:
    """The facts of the first certificate of a PEM file: the one a context built from it
    presents (read just before the context, as a pyOpenSSL context cannot be asked for it
    without being frozen)."""
    try:
        cert = x509.load_pem_x509_certificates(certificate.read_bytes())[0]
    except ValueError as e:
        raise SSL.Error(f"{certificate}: no certificate can be read ({e})") from None
    return ServedCertificate(cert.subject.rfc4514_string(), cert.not_valid_after_utc,
                             cert.fingerprint(hashes.SHA256()).hex(), cert.issuer.rfc4514_string(),
                             tuple(alternative_names(cert)), cert.not_valid_before_utc)


def build_context(certificate: Path, private_key: Path) -> SSL.Context:
    context = SSL.Context(SSL.TLS_METHOD)
    context.set_min_proto_version(SSL.TLS1_2_VERSION)
    context.set_options(
        SSL.OP_NO_COMPRESSION
        | SSL.OP_NO_RENEGOTIATION
        | SSL.OP_CIPHER_SERVER_PREFERENCE
        | SSL.OP_SINGLE_ECDH_USE
    )
    context.set_cipher_list(TLS12_CIPHERS)
    context.use_certificate_chain_file(str(certificate))
    context.use_privatekey_file(str(private_key))
    context.check_privatekey()
    context.set_alpn_select_callback(_prefer_http11)
    return context


def _prefer_http11(connection, offered):
    return b"http/1.1" if b"http/1.1" in offered else SSL.NO_OVERLAPPING_PROTOCOLS


def ensure_certificate(certificate: Path, private_key: Path) -> bool:
    """Generate a self-signed P-256 certificate unless a pair is already there."""
    if certificate.exists() and private_key.exists():
        return False
    key = ec.generate_private_key(ec.SECP256R1())
    hostname = socket.gethostname() or "localhost"
    names = {hostname, "localhost"}
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostname)])
    now = datetime.datetime.now(datetime.timezone.utc)
    alt_names = [x509.DNSName(name) for name in sorted(names)] + [
        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
        x509.IPAddress(ipaddress.ip_address("::1")),
    ]
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=SELF_SIGNED_DAYS))
        .add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    atomic_write(
        private_key,
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        ),
        0o600,
    )
    atomic_write(certificate, cert.public_bytes(serialization.Encoding.PEM), 0o644)
    return True
