"""Checks for the TLS certificate, key and CA an administrator uploads (POST /certs).

Shared by the certs section, which refuses bad input before anything on disk changes, and
the certs job, which checks again what it is handed (it can be run by hand). Pure: no
Twisted, no web code, only ``cryptography``.

What is accepted, as the original appliances accepted it:

- ``public``: PEM certificates, the server's first, optionally followed by its chain,
  each certificate issued by the next one;
- ``private``: an unencrypted RSA or EC private key (PEM) matching the certificate;
- ``ca`` (optional): the certificate(s) of the authority that issued the last
  certificate of ``public``, themselves in chain order.

CRLF line endings are accepted (the original ran dos2unix over the files). Dates are not
a reason to refuse: appliance clocks are often wrong, so an expired or not yet valid
certificate is installed with a warning, as the original did.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from typing import Union

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes

from .validate import Invalid

EXPIRY_WARNING_DAYS = 30
# Real chains are two to four certificates; the cap bounds the signatures checked per request.
CHAIN_MAX = 10
CERTIFICATE_MARKER = b"-----BEGIN CERTIFICATE-----"
KEY_MARKER = b"PRIVATE KEY-----"
# What openssl writes around an encrypted key: PKCS#8, or the traditional format's header.
ENCRYPTED_MARKERS = (b"-----BEGIN ENCRYPTED PRIVATE KEY-----", b"Proc-Type: 4,ENCRYPTED")

PrivateKey = Union[rsa.RSAPrivateKey, ec.EllipticCurvePrivateKey]


def normalise(data: bytes) -> bytes:
    """The file with LF line endings (what dos2unix made of it)."""
    return data.replace(b"\r\n", b"\n").replace(b"\r", b"\n")


def read_certificates(data: bytes, what: str) -> list[x509.Certificate]:
    """Every certificate of a PEM file, in the file's order."""
    data = normalise(data)
    if not data.strip():
        raise Invalid(f"The {what} file is empty")
    if CERTIFICATE_MARKER not in data:
        raise Invalid(f"The {what} file is not a PEM certificate: no '-----BEGIN CERTIFICATE-----' line")
    if data.count(CERTIFICATE_MARKER) > CHAIN_MAX:
        raise Invalid(f"The {what} file holds {data.count(CERTIFICATE_MARKER)} certificates: at most {CHAIN_MAX}")
    try:
        return x509.load_pem_x509_certificates(data)
    except ValueError as e:
        raise Invalid(f"The {what} file holds a certificate that cannot be read: {_reason(e)}") from None


def read_private_key(data: bytes, check_rsa: bool = True) -> PrivateKey:
    """The unencrypted RSA or EC key of a PEM file.

    ``check_rsa`` False skips the consistency check of an RSA key's numbers (slow for
    very large keys): the match with the certificate is still checked, which is what the
    original did (a modulus comparison), and the job checks the rest.
    """
    data = normalise(data)
    if not data.strip():
        raise Invalid("The private file is empty")
    if KEY_MARKER not in data:
        raise Invalid("The private file is not a PEM private key: no '-----BEGIN ... PRIVATE KEY-----' line")
    if any(marker in data for marker in ENCRYPTED_MARKERS):
        raise Invalid("The private key is encrypted: upload it without a passphrase "
                      "(openssl pkey -in KEY -out UNENCRYPTED.key)")
    try:
        key = serialization.load_pem_private_key(data, password=None,
                                                 unsafe_skip_rsa_key_validation=not check_rsa)
    except TypeError:
        raise Invalid("The private key is encrypted: upload it without a passphrase "
                      "(openssl pkey -in KEY -out UNENCRYPTED.key)") from None
    except (ValueError, UnsupportedAlgorithm) as e:
        raise Invalid(f"The private key cannot be read: {_reason(e)}") from None
    if not isinstance(key, (rsa.RSAPrivateKey, ec.EllipticCurvePrivateKey)):
        raise Invalid(f"The private key is a {type(key).__name__.removesuffix('PrivateKey') or 'other'} key: "
                      "only RSA and EC keys are accepted")
    return key


def _reason(error: Exception) -> str:
    """cryptography's message, on one line and short enough for a header."""
    text = " ".join(str(error).split()) or type(error).__name__
    return text[:200]


def check_pair(certificate: x509.Certificate, key: PrivateKey) -> None:
    """The key is the one the certificate was issued for."""
    if _public_der(certificate.public_key()) != _public_der(key.public_key()):
        raise Invalid("The private key does not match the certificate in the public file")


def _public_der(public_key: CertificatePublicKeyTypes) -> bytes:
    return public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def check_issued(certificate: x509.Certificate, issuer: x509.Certificate) -> bool:
    """``issuer`` signed ``certificate``: the names match and the signature verifies."""
    try:
        certificate.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature, UnsupportedAlgorithm):
        return False
    return True


def check_chain(chain: list[x509.Certificate], what: str) -> None:
    """Each certificate is issued by the next one."""
    for position, (certificate, issuer) in enumerate(zip(chain, chain[1:]), start=1):
        if not check_issued(certificate, issuer):
            raise Invalid(f"The {what} is not in order: certificate {position} ({subject_of(certificate)}) "
                          f"is not issued by certificate {position + 1} ({subject_of(issuer)}); "
                          "put the server's certificate first, then each issuer in turn")


def subject_of(certificate: x509.Certificate) -> str:
    return certificate.subject.rfc4514_string()


@dataclass(frozen=True)
class Candidate:
    """An upload that passed every check, and what installing it writes."""

    chain: list[x509.Certificate]  # the server's certificate, then its issuers
    ca: list[x509.Certificate]  # the authority's certificates, from ``ca`` or the chain
    key: PrivateKey
    warnings: list[str]

    @property
    def certificate(self) -> x509.Certificate:
        return self.chain[0]

    def certificate_pem(self) -> bytes:
        """The server's certificate, its chain, then the CA's: what the listener serves."""
        return b"".join(_pem(c) for c in self.chain + self.ca)

    def ca_pem(self) -> bytes:
        return b"".join(_pem(c) for c in self.ca)

    def key_pem(self) -> bytes:
        """The key in the traditional format ("BEGIN RSA PRIVATE KEY"), as the original's."""
        return self.key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                                      serialization.NoEncryption())

    def bundle_pem(self) -> bytes:
        """Key, certificate and CA in one file (the original's enterprise.pem)."""
        return self.key_pem() + self.certificate_pem()


def _pem(certificate: x509.Certificate) -> bytes:
    return certificate.public_bytes(serialization.Encoding.PEM)


def validate(public: bytes, private: bytes, ca: bytes | None, now: datetime.datetime,
             check_rsa: bool = True) -> Candidate:
    """Every check of an upload; raises Invalid naming the first problem."""
    chain = read_certificates(public, "public")
    key = read_private_key(private, check_rsa)
    check_pair(chain[0], key)
    check_chain(chain, "certificate chain in the public file")
    authority: list[x509.Certificate] = []
    if ca is not None:
        authority = read_certificates(ca, "ca")
        if _pem(authority[0]) == _pem(chain[-1]):
            authority = authority[1:]  # the chain already ends with the CA's certificate
        if authority and not check_issued(chain[-1], authority[0]):
            raise Invalid(f"The CA did not sign the certificate: {subject_of(chain[-1])} is issued by "
                          f"{chain[-1].issuer.rfc4514_string()}, not by {subject_of(authority[0])}")
        check_chain(authority, "certificate chain in the ca file")
    return Candidate(chain, authority if ca is not None else chain[1:], key, date_warnings(chain[0], now))


def date_warnings(certificate: x509.Certificate, now: datetime.datetime) -> list[str]:
    """What is wrong with the certificate's dates, as of ``now`` (an aware datetime)."""
    start, end = certificate.not_valid_before_utc, certificate.not_valid_after_utc
    if now < start:
        return [f"The certificate is not valid yet: from {iso(start)} (the clock says {iso(now)}); "
                "installed anyway"]
    if now >= end:
        return [f"The certificate expired on {iso(end)} (the clock says {iso(now)}); installed anyway"]
    left = days_left(end, now)
    if left < EXPIRY_WARNING_DAYS:
        return [f"The certificate expires in {left} day{'s' if left != 1 else ''}, on {iso(end)}"]
    return []


def days_left(expires: datetime.datetime, now: datetime.datetime) -> int:
    """Whole days until ``expires``: 0 on its last day, negative once it has passed."""
    return (expires - now) // datetime.timedelta(days=1)


def expiry_warning(expires: datetime.datetime, now: datetime.datetime) -> str | None:
    """What /health says of a certificate expiring within EXPIRY_WARNING_DAYS (or expired)."""
    left = days_left(expires, now)
    if left < 0:
        return f"The TLS certificate expired on {iso(expires)}"
    if left < EXPIRY_WARNING_DAYS:
        return f"The TLS certificate expires in {left} day{'s' if left != 1 else ''}, on {iso(expires)}"
    return None


def iso(moment: datetime.datetime) -> str:
    return moment.astimezone(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def fingerprint(certificate: x509.Certificate) -> str:
    return certificate.fingerprint(hashes.SHA256()).hex()


def colon_fingerprint(hex_digest: str) -> str:
    """A SHA-256 fingerprint as browsers' certificate viewers and ``openssl x509
    -fingerprint`` show it (AB:CD:...), so an administrator can compare them by eye."""
    return ":".join(hex_digest[i:i + 2] for i in range(0, len(hex_digest), 2)).upper()


def alternative_names(certificate: x509.Certificate) -> list[str]:
    """The names a certificate is valid for, from its subject alternative name extension:
    DNS names and IP addresses as written, others (URIs, e-mail addresses) as ``URI:...``
    and ``email:...``. None without the extension."""
    try:
        extension = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        return []
    names: list[str] = []
    for name in extension.value:
        if isinstance(name, (x509.DNSName, x509.IPAddress)):
            names.append(str(name.value))
        elif isinstance(name, x509.UniformResourceIdentifier):
            names.append(f"URI:{name.value}")
        elif isinstance(name, x509.RFC822Name):
            names.append(f"email:{name.value}")
    return names


def description(subject: str, issuer: str, names: list[str] | tuple[str, ...], sha256: str,
                not_before: datetime.datetime | None, not_after: datetime.datetime,
                now: datetime.datetime) -> dict[str, object]:
    """What GET /certs and POST /certs/check say of a certificate (additions to the
    original's answer): who it is for and from, the names it covers, its fingerprint and
    its dates."""
    facts: dict[str, object] = {"subject": subject, "issuer": issuer, "alt-names": list(names),
                                "fingerprint": colon_fingerprint(sha256)}
    if not_before is not None:
        facts["not-before"] = iso(not_before)
    facts.update({"expires": iso(not_after), "days-left": days_left(not_after, now)})
    return facts


def describe(certificate: x509.Certificate, now: datetime.datetime) -> dict[str, object]:
    return description(certificate.subject.rfc4514_string(), certificate.issuer.rfc4514_string(),
                       alternative_names(certificate), fingerprint(certificate),
                       certificate.not_valid_before_utc, certificate.not_valid_after_utc, now)
