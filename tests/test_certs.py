"""Section 9, TLS: certificates replaced through the real daemon, the job as a real child
process, and the swap seen by fresh TLS handshakes; the checks of certificates.py on their
own; the install's roll-back; a certificate replaced by hand and a real SIGHUP."""

from __future__ import annotations

import datetime
import hashlib
import itertools
import os
import signal
import socket
import ssl
import stat
from dataclasses import dataclass
from pathlib import Path

import pytest
import pytest_twisted
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID
from hypothesis import given
from hypothesis import strategies as st
from twisted.internet.threads import deferToThread

from conftest import json_of, tls_client_context, wait_until
from jidoteki_admin.formats import certificates
from jidoteki_admin.formats.certificates import days_left, expiry_warning, normalise
from jidoteki_admin.formats.validate import Invalid
from jidoteki_admin.jobs import certs as certs_job
from jidoteki_admin.jobs.program import main
from test_signals import start as start_twistd
from test_signals import twistd, wait_for  # noqa: F401 (the fixture, for the SIGHUP test)

NOW = datetime.datetime.now(datetime.timezone.utc)
DAY = datetime.timedelta(days=1)


# A small PKI, made once: a root CA, an intermediate under it, and server certificates.

@dataclass
class Issued:
    certificate: x509.Certificate
    key: object

    @property
    def pem(self) -> bytes:
        return self.certificate.public_bytes(serialization.Encoding.PEM)

    @property
    def key_pem(self) -> bytes:
        return self.key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption())

    @property
    def der(self) -> bytes:
        return self.certificate.public_bytes(serialization.Encoding.DER)


def issue(name: str, issuer: Issued | None = None, key=None, ca: bool = False,
          not_before: datetime.datetime | None = None, not_after: datetime.datetime | None = None) -> Issued:
    key = key or ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    builder = (x509.CertificateBuilder()
               .subject_name(subject)
               .issuer_name(issuer.certificate.subject if issuer else subject)
               .public_key(key.public_key())
               .serial_number(x509.random_serial_number())
               .not_valid_before(not_before or NOW - DAY)
               .not_valid_after(not_after or NOW + 365 * DAY)
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if not ca:
        builder = builder.add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                                     x509.DNSName(name)]), critical=False)
    return Issued(builder.sign(issuer.key if issuer else key, hashes.SHA256()), key)


@dataclass
class PKI:
    root: Issued
    intermediate: Issued
    rsa_leaf: Issued  # RSA, issued by the intermediate
    ec_leaf: Issued  # EC, issued by the root
    other_root: Issued


@pytest.fixture(scope="module")
def pki() -> PKI:
    root = issue("Test Root CA", ca=True)
    intermediate = issue("Test Intermediate CA", root, ca=True)
    rsa_leaf = issue("rsa.example.test", intermediate, key=rsa.generate_private_key(65537, 2048))
    return PKI(root, intermediate, rsa_leaf, issue("ec.example.test", root), issue("Other Root CA", ca=True))


def served(port: int) -> bytes:
    """The certificate a new TLS connection is shown (never a pooled connection)."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
        with tls_client_context().wrap_socket(raw) as tls:
            return tls.getpeercert(binary_form=True)


def verified_by(port: int, root_pem: bytes) -> bool:
    """A client that trusts only the root accepts the server: it serves its whole chain."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.load_verify_locations(cadata=root_pem.decode())
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
        try:
            with ctx.wrap_socket(raw):
                return True
        except ssl.SSLCertVerificationError:
            return False


def der_of(path: Path) -> bytes:
    return x509.load_pem_x509_certificates(path.read_bytes())[0].public_bytes(serialization.Encoding.DER)


@pytest.fixture
def certs_daemon(make_daemon):
    daemon = make_daemon(config={"endpoints": ["certs"]})
    daemon.accept_any_certificate()  # its certificate changes under the client
    return daemon


async def post_certs(daemon, public: bytes | None, private: bytes | None, ca: bytes | None = None, fields=None):
    files = {}
    for name, content in (("public", public), ("private", private), ("ca", ca)):
        if content is not None:
            files[name] = (f"{name}.pem", content)
    return await daemon.post_form("/certs", fields or {}, files)


async def finished(daemon, seconds: float = 30) -> dict:
    body: dict = {}

    async def done():
        nonlocal body
        body = await json_of(await daemon.get("/certs"))
        return body["status"] not in ("running", None)

    for _ in range(int(seconds / 0.05)):
        if await done():
            return body
        await wait_until(lambda: False, timeout=0.05)
    raise AssertionError(f"the certs job did not finish: {body}")


def tree_files(daemon) -> dict[str, bytes]:
    """Every file of etc/ssl and the uploads folder (what a refused upload must not change)."""
    found = {}
    for folder in (daemon.admin_path / "etc" / "ssl", daemon.admin_path / "home" / "sftp" / "uploads"):
        for name in sorted(os.listdir(folder)):
            found[f"{folder.name}/{name}"] = (folder / name).read_bytes()
    return found


def hook(daemon, body: str) -> Path:
    path = daemon.admin_path / "bin" / "certs.sh"
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)
    return path


# The swap


@pytest_twisted.ensureDeferred
async def test_an_rsa_certificate_with_its_chain_is_served_to_new_connections_at_once(certs_daemon, pki):
    daemon = certs_daemon
    before = await json_of(await daemon.get("/certs"))
    assert before["status"] is None and before["log"] is None  # no update yet
    assert set(before) == {"status", "log", "subject", "issuer", "alt-names", "fingerprint", "not-before", "expires",
                           "days-left"}
    old = await deferToThread(served, daemon.port)
    assert old == der_of(daemon.service.tree.certificate)
    assert (await daemon.get("/health")).code == 200  # the pooled connection, on the old certificate

    response = await post_certs(daemon, pki.rsa_leaf.pem + pki.intermediate.pem, pki.rsa_leaf.key_pem, pki.root.pem)
    assert response.code == 202
    assert await response.content() == b'{"Status":"202 Accepted","Location":"/api/v1/admin/certs"}'
    assert response.headers.getRawHeaders("Location") == ["/api/v1/admin/certs"]
    body = await finished(daemon)
    assert body["status"] == "success", body
    assert "Validating and adding TLS certificates" in body["log"]
    assert "no other service was told" in body["log"]

    assert await deferToThread(served, daemon.port) == pki.rsa_leaf.der
    assert await deferToThread(verified_by, daemon.port, pki.root.pem)
    assert body["subject"] == "CN=rsa.example.test"
    assert body["expires"] == certificates.iso(pki.rsa_leaf.certificate.not_valid_after_utc)
    assert body["days-left"] in (363, 364)

    tree = daemon.service.tree
    assert tree.certificate.read_bytes() == pki.rsa_leaf.pem + pki.intermediate.pem + pki.root.pem
    assert tree.ca_certificate.read_bytes() == pki.root.pem
    assert tree.private_key.read_bytes().startswith(b"-----BEGIN RSA PRIVATE KEY-----")
    assert stat.S_IMODE(tree.private_key.stat().st_mode) == 0o600
    assert stat.S_IMODE(tree.certificate.stat().st_mode) == 0o644
    assert sorted(os.listdir(tree.etc / "ssl")) == ["ca.pem", "cert.pem", "key.pem"]  # nothing left behind
    assert os.listdir(tree.uploads) == []
    assert (tree.etc / "status_certs.txt").read_text() == "success\n"


@pytest_twisted.ensureDeferred
async def test_an_ec_key_without_a_ca_is_installed_and_the_ca_file_left_alone(certs_daemon, pki):
    daemon = certs_daemon
    response = await post_certs(daemon, pki.ec_leaf.pem, pki.ec_leaf.key_pem)
    assert response.code == 202, await response.content()
    body = await finished(daemon)
    assert body["status"] == "success", body
    assert await deferToThread(served, daemon.port) == pki.ec_leaf.der
    assert daemon.service.tree.private_key.read_bytes().startswith(b"-----BEGIN EC PRIVATE KEY-----")
    assert not daemon.service.tree.ca_certificate.exists()
    assert "No CA certificate given" in body["log"]


@pytest_twisted.ensureDeferred
async def test_the_certificate_in_service_says_who_issued_it_its_names_and_fingerprint(certs_daemon, pki):
    """Additions to GET /certs: what a browser's certificate viewer shows, to compare by."""
    daemon = certs_daemon
    assert (await post_certs(daemon, pki.ec_leaf.pem, pki.ec_leaf.key_pem)).code == 202
    body = await finished(daemon)
    leaf = pki.ec_leaf.certificate
    assert body["issuer"] == "CN=Test Root CA"
    assert body["alt-names"] == ["localhost", "ec.example.test"]
    assert body["fingerprint"] == ":".join(f"{b:02X}" for b in leaf.fingerprint(hashes.SHA256()))
    assert body["not-before"] == certificates.iso(leaf.not_valid_before_utc)
    assert body["expires"] == certificates.iso(leaf.not_valid_after_utc)


@pytest_twisted.ensureDeferred
async def test_a_check_describes_the_upload_and_installs_nothing(certs_daemon, pki):
    daemon = certs_daemon
    before, served_before = tree_files(daemon), await deferToThread(served, daemon.port)
    soon = issue("soon.example.test", pki.root, not_after=NOW + 10 * DAY)
    response = await daemon.post_form("/certs/check", {}, {"public": ("p.pem", soon.pem),
                                                            "private": ("k.pem", soon.key_pem),
                                                            "ca": ("ca.pem", pki.root.pem)})
    assert response.code == 200, await response.content()
    body = await json_of(response)
    assert body["subject"] == "CN=soon.example.test" and body["issuer"] == "CN=Test Root CA"
    assert body["days-left"] in (9, 10) and body["alt-names"] == ["localhost", "soon.example.test"]
    assert body["warnings"] and body["warnings"][0].startswith("The certificate expires in")
    refused = await daemon.post_form("/certs/check", {}, {"public": ("p.pem", soon.pem),
                                                           "private": ("k.pem", pki.ec_leaf.key_pem)})
    assert refused.code == 400
    assert (await json_of(refused))["Error-Message"].startswith("The private key does not match")
    assert tree_files(daemon) == before  # nothing staged, nothing left in the uploads folder
    assert await deferToThread(served, daemon.port) == served_before
    assert (await json_of(await daemon.get("/certs")))["status"] is None  # no job ran


@pytest_twisted.ensureDeferred
async def test_crlf_line_endings_are_accepted(certs_daemon, pki):
    daemon = certs_daemon
    crlf = [data.replace(b"\n", b"\r\n") for data in (pki.ec_leaf.pem, pki.ec_leaf.key_pem, pki.root.pem)]
    assert (await post_certs(daemon, *crlf)).code == 202
    assert (await finished(daemon))["status"] == "success"
    assert await deferToThread(served, daemon.port) == pki.ec_leaf.der
    assert b"\r" not in daemon.service.tree.certificate.read_bytes()


@pytest_twisted.ensureDeferred
async def test_the_bundle_and_the_configured_paths_are_written_and_the_hook_told(make_daemon, tmp_path, pki):
    pki_dir = tmp_path / "pki"
    for sub in ("certs", "private", "cacerts"):
        (pki_dir / sub).mkdir(parents=True)
    paths = {"tls-certificate": pki_dir / "certs" / "enterprise.crt",
             "tls-private-key": pki_dir / "private" / "enterprise.key",
             "tls-ca": pki_dir / "cacerts" / "enterprise-ca.crt",
             "tls-bundle": pki_dir / "enterprise.pem"}
    daemon = make_daemon(config={"endpoints": ["certs"], **{k: str(v) for k, v in paths.items()}})
    told, persisted = tmp_path / "told", tmp_path / "persisted"
    hook(daemon, f'echo "$@" > {told}\necho reloading the web front ends\n')
    persist = daemon.admin_path / "bin" / "persist.sh"
    persist.write_text(f"#!/bin/sh\n[ -e {told} ] && touch {persisted}\n")  # after the hook
    persist.chmod(0o755)
    response = await post_certs(daemon, pki.rsa_leaf.pem, pki.rsa_leaf.key_pem,
                                pki.intermediate.pem + pki.root.pem)
    assert response.code == 202, await response.content()
    body = await finished(daemon)
    assert body["status"] == "success", body
    key = paths["tls-private-key"].read_bytes()
    chain = pki.rsa_leaf.pem + pki.intermediate.pem + pki.root.pem
    assert paths["tls-certificate"].read_bytes() == chain
    assert paths["tls-ca"].read_bytes() == pki.intermediate.pem + pki.root.pem
    assert paths["tls-bundle"].read_bytes() == key + chain
    assert stat.S_IMODE(paths["tls-bundle"].stat().st_mode) == 0o600
    assert told.read_text().split() == [str(paths[k]) for k in ("tls-certificate", "tls-private-key",
                                                                 "tls-ca", "tls-bundle")]
    assert "reloading the web front ends" in body["log"]
    assert persisted.exists()
    assert await deferToThread(served, daemon.port) == pki.rsa_leaf.der
    assert await deferToThread(verified_by, daemon.port, pki.root.pem)


@pytest_twisted.ensureDeferred
async def test_with_an_admin_group_the_key_is_readable_by_that_group(make_daemon, pki):
    gid = os.getgid()
    daemon = make_daemon(config={"endpoints": ["certs"], "admin-group": gid})
    assert (await post_certs(daemon, pki.ec_leaf.pem, pki.ec_leaf.key_pem)).code == 202
    assert (await finished(daemon))["status"] == "success"
    key = daemon.service.tree.private_key.stat()
    assert stat.S_IMODE(key.st_mode) == 0o640 and key.st_gid == gid


# Dates: installed, with a warning


@pytest_twisted.ensureDeferred
async def test_an_expired_certificate_is_installed_with_a_warning(certs_daemon, pki):
    old = issue("expired.example.test", pki.root, not_before=NOW - 400 * DAY, not_after=NOW - 10 * DAY)
    assert (await post_certs(certs_daemon, old.pem, old.key_pem, pki.root.pem)).code == 202
    body = await finished(certs_daemon)
    assert body["status"] == "success"
    assert "WARNING: The certificate expired on" in body["log"] and "installed anyway" in body["log"]
    assert body["days-left"] == -11  # the 11th day since it expired (0 is its last day)
    assert await deferToThread(served, certs_daemon.port) == old.der
    health = await json_of(await certs_daemon.get("/health"))
    assert health["certificate"]["warning"].startswith("The TLS certificate expired on")


@pytest_twisted.ensureDeferred
async def test_a_certificate_not_valid_yet_is_installed_with_a_warning(certs_daemon, pki):
    future = issue("future.example.test", pki.root, not_before=NOW + 10 * DAY, not_after=NOW + 400 * DAY)
    assert (await post_certs(certs_daemon, future.pem, future.key_pem)).code == 202
    body = await finished(certs_daemon)
    assert body["status"] == "success" and "WARNING: The certificate is not valid yet" in body["log"]


@pytest_twisted.ensureDeferred
async def test_a_certificate_expiring_soon_is_warned_of_in_the_log_and_in_health(certs_daemon, pki):
    daemon = certs_daemon
    health = await json_of(await daemon.get("/health"))
    assert health["certificate"]["days-left"] > 3000 and "warning" not in health["certificate"]
    assert {"disk", "memory", "cpu"} <= set(health)
    soon = issue("soon.example.test", pki.root, not_after=NOW + 12 * DAY + datetime.timedelta(hours=1))
    assert (await post_certs(daemon, soon.pem, soon.key_pem)).code == 202
    body = await finished(daemon)
    assert body["status"] == "success" and "WARNING: The certificate expires in 12 days" in body["log"]
    health = await json_of(await daemon.get("/health"))
    assert health["certificate"] == {
        "subject": "CN=soon.example.test", "expires": certificates.iso(soon.certificate.not_valid_after_utc),
        "days-left": 12, "warning": f"The TLS certificate expires in 12 days, on "
                                    f"{certificates.iso(soon.certificate.not_valid_after_utc)}"}


# Refused: a 400 at once, and nothing changes


def encrypted(issued: Issued) -> bytes:
    return issued.key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                    serialization.BestAvailableEncryption(b"secret"))


def traditional_encrypted(issued: Issued) -> bytes:
    return issued.key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                                    serialization.BestAvailableEncryption(b"secret"))


REFUSED = {
    "mismatched key": (lambda p: (p.rsa_leaf.pem, p.ec_leaf.key_pem, None),
                       "The private key does not match the certificate in the public file"),
    "encrypted key": (lambda p: (p.ec_leaf.pem, encrypted(p.ec_leaf), None), "The private key is encrypted"),
    "encrypted traditional key": (lambda p: (p.rsa_leaf.pem, traditional_encrypted(p.rsa_leaf), None),
                                  "The private key is encrypted"),
    "a CA that did not sign it": (lambda p: (p.ec_leaf.pem, p.ec_leaf.key_pem, p.other_root.pem),
                                  "The CA did not sign the certificate"),
    "a CA that did not sign the chain": (lambda p: (p.rsa_leaf.pem + p.intermediate.pem, p.rsa_leaf.key_pem,
                                                    p.other_root.pem), "The CA did not sign the certificate"),
    "chain out of order": (lambda p: (p.rsa_leaf.pem + p.root.pem + p.intermediate.pem, p.rsa_leaf.key_pem, None),
                           "The certificate chain in the public file is not in order: certificate 1"),
    "ca chain out of order": (lambda p: (p.rsa_leaf.pem, p.rsa_leaf.key_pem, p.root.pem + p.intermediate.pem),
                              "The CA did not sign the certificate"),
    "garbage public": (lambda p: (os.urandom(3000), p.ec_leaf.key_pem, None),
                       "The public file is not a PEM certificate"),
    "garbage inside the markers": (lambda p: (b"-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydA==\n"
                                              b"-----END CERTIFICATE-----\n", p.ec_leaf.key_pem, None),
                                   "The public file holds a certificate that cannot be read"),
    "non-ASCII public": ("é café ünïcode ☃".encode() * 50, "The public file is not a PEM certificate"),
    "empty public": (lambda p: (b"", p.ec_leaf.key_pem, None), "The public file is empty"),
    "empty private": (lambda p: (p.ec_leaf.pem, b"", None), "The private file is empty"),
    "garbage private": (lambda p: (p.ec_leaf.pem, b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
                                   None), "The private key cannot be read"),
    "a certificate as the key": (lambda p: (p.ec_leaf.pem, p.ec_leaf.pem, None),
                                 "The private file is not a PEM private key"),
    "garbage ca": (lambda p: (p.ec_leaf.pem, p.ec_leaf.key_pem, b"{\"json\": true}"),
                   "The ca file is not a PEM certificate"),
    "a chain too long": (lambda p: (p.ec_leaf.pem + p.root.pem * 10, p.ec_leaf.key_pem, None),
                         "The public file holds 11 certificates: at most 10"),
    "a JSON document": (lambda p: (b'["public"]', p.ec_leaf.key_pem, None), "The public file is not a PEM"),
}


@pytest.mark.parametrize("case", sorted(REFUSED))
@pytest_twisted.ensureDeferred
async def test_a_bad_upload_is_refused_at_once_and_changes_nothing(certs_daemon, pki, case):
    daemon = certs_daemon
    make, message = REFUSED[case]
    public, private, ca = make(pki) if callable(make) else (make, pki.ec_leaf.key_pem, None)
    before, served_before = tree_files(daemon), await deferToThread(served, daemon.port)
    response = await post_certs(daemon, public, private, ca)
    assert response.code == 400
    said = (await json_of(response))["Error-Message"]
    assert said.startswith(message), said
    assert tree_files(daemon) == before
    assert await deferToThread(served, daemon.port) == served_before
    assert (await json_of(await daemon.get("/certs")))["status"] is None  # no job ran
    assert not (daemon.admin_path / "log" / "update_certs.log").exists()


@pytest.mark.parametrize("missing", ["public", "private"])
@pytest_twisted.ensureDeferred
async def test_a_missing_file_field_is_refused(certs_daemon, pki, missing):
    files = {"public": pki.ec_leaf.pem, "private": pki.ec_leaf.key_pem}
    files[missing] = None
    before = tree_files(certs_daemon)
    response = await post_certs(certs_daemon, files["public"], files["private"])
    assert response.code == 400
    assert (await json_of(response))["Error-Message"] == f"Missing required parameter: {missing}"
    assert tree_files(certs_daemon) == before


@pytest.mark.parametrize("field", ["public", "private", "ca"])
@pytest_twisted.ensureDeferred
async def test_a_text_field_in_place_of_a_file_is_refused(certs_daemon, pki, field):
    files = {"public": pki.ec_leaf.pem, "private": pki.ec_leaf.key_pem, "ca": pki.root.pem}
    text = files.pop(field).decode()
    before = tree_files(certs_daemon)
    response = await post_certs(certs_daemon, files.get("public"), files.get("private"), files.get("ca"),
                                fields={field: text})
    assert response.code == 400
    assert (await json_of(response))["Error-Message"] == \
        f"Parameter {field} must be a file upload (curl -F {field}=@FILE)"
    assert tree_files(certs_daemon) == before


@pytest_twisted.ensureDeferred
async def test_a_huge_file_is_refused_before_it_is_read(certs_daemon, pki):
    before = tree_files(certs_daemon)
    response = await post_certs(certs_daemon, pki.ec_leaf.pem * 2000, pki.ec_leaf.key_pem)  # over 1 MiB
    assert response.code == 413
    assert "public" in (await json_of(response))["Error-Message"]
    assert tree_files(certs_daemon) == before


@pytest_twisted.ensureDeferred
async def test_a_second_upload_while_the_job_runs_is_refused(certs_daemon, pki, tmp_path):
    daemon = certs_daemon
    release = tmp_path / "release"
    hook(daemon, f"i=0; while [ ! -e {release} ] && [ $i -lt 600 ]; do sleep 0.05; i=$((i+1)); done\n")
    assert (await post_certs(daemon, pki.ec_leaf.pem, pki.ec_leaf.key_pem)).code == 202
    assert (await json_of(await daemon.get("/certs")))["status"] == "running"
    again = await post_certs(daemon, pki.rsa_leaf.pem, pki.rsa_leaf.key_pem)
    assert again.code == 400
    assert (await json_of(again))["Error-Message"] == "A certificates update is already running"
    release.touch()
    assert (await finished(daemon))["status"] == "success"
    assert await deferToThread(served, daemon.port) == pki.ec_leaf.der


# Failures after the upload: the old certificate stays, in service and on disk


@pytest.mark.parametrize("failing", ["certs.sh", "persist.sh"])
@pytest_twisted.ensureDeferred
async def test_a_failing_hook_or_persistence_puts_the_previous_files_back(certs_daemon, pki, failing):
    daemon = certs_daemon
    before, served_before = tree_files(daemon), await deferToThread(served, daemon.port)
    script = daemon.admin_path / "bin" / failing
    script.write_text("#!/bin/sh\necho cannot do it\nexit 3\n")
    script.chmod(0o755)
    assert (await post_certs(daemon, pki.ec_leaf.pem, pki.ec_leaf.key_pem, pki.root.pem)).code == 202
    body = await finished(daemon)
    assert body["status"] == "failed"
    assert "cannot do it" in body["log"]
    if failing == "certs.sh":
        assert body["error-message"] == "bin/certs.sh failed with exit status 3"
    else:
        assert body["error-message"].startswith("The new certificate could not be saved for the next boot (")
        assert body["error-message"].endswith("the previous one is back in place")
    assert tree_files(daemon) == before
    assert await deferToThread(served, daemon.port) == served_before


@pytest_twisted.ensureDeferred
async def test_a_pair_that_will_not_load_keeps_the_old_certificate_in_service(certs_daemon, pki):
    daemon = certs_daemon
    served_before = await deferToThread(served, daemon.port)
    hook(daemon, 'echo "not a key" > "$2"\n')  # spoils the installed key after the checks
    assert (await post_certs(daemon, pki.ec_leaf.pem, pki.ec_leaf.key_pem)).code == 202
    body = await finished(daemon)
    assert body["status"] == "success"
    assert body["load-error"].startswith("The new certificate is installed but could not be loaded")
    assert body["subject"] != "CN=ec.example.test"
    assert await deferToThread(served, daemon.port) == served_before
    assert (await daemon.get("/health")).code == 200


# The checks on their own


def test_validate_accepts_a_chain_ending_with_the_ca_it_is_also_given(pki):
    candidate = certificates.validate(pki.rsa_leaf.pem + pki.intermediate.pem + pki.root.pem,
                                      pki.rsa_leaf.key_pem, pki.root.pem, NOW)
    assert candidate.certificate_pem() == pki.rsa_leaf.pem + pki.intermediate.pem + pki.root.pem
    assert candidate.warnings == []


@pytest.mark.parametrize("order", list(itertools.permutations(["intermediate", "root"])) + [("root",), ()])
def test_only_a_chain_in_issuing_order_is_accepted(pki, order):
    chain = b"".join(getattr(pki, name).pem for name in order)
    if order in (("intermediate", "root"), ()):
        certificates.validate(pki.rsa_leaf.pem + chain, pki.rsa_leaf.key_pem, None, NOW)
    else:
        with pytest.raises(Invalid, match="is not in order: certificate 1 "):
            certificates.validate(pki.rsa_leaf.pem + chain, pki.rsa_leaf.key_pem, None, NOW)


def test_keys_other_than_rsa_and_ec_are_refused(pki):
    from cryptography.hazmat.primitives.asymmetric import ed25519

    key = ed25519.Ed25519PrivateKey.generate()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    with pytest.raises(Invalid, match="only RSA and EC keys are accepted"):
        certificates.read_private_key(pem)


def test_an_inconsistent_rsa_key_is_refused_by_the_full_check(pki):
    numbers = pki.rsa_leaf.key.private_numbers()
    broken = rsa.RSAPrivateNumbers(numbers.p, numbers.q, numbers.d, numbers.dmp1, numbers.dmq1 ^ 2,
                                   numbers.iqmp, numbers.public_numbers)
    key = broken.private_key(unsafe_skip_rsa_key_validation=True)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                            serialization.NoEncryption())
    certificates.read_private_key(pem, check_rsa=False)
    with pytest.raises(Invalid, match="The private key cannot be read"):
        certificates.read_private_key(pem)


@given(st.lists(st.sampled_from([b"\n", b"\r\n"]), min_size=1, max_size=200), st.booleans())
def test_any_mix_of_line_endings_reads_the_same(pki_pem, endings, trailing_cr):
    lines = pki_pem.split(b"\n")
    mixed = b"".join(line + endings[i % len(endings)] for i, line in enumerate(lines))
    if trailing_cr:
        mixed += b"\r"
    assert b"\r" not in normalise(mixed)
    assert certificates.read_certificates(mixed, "public")[0].public_bytes(serialization.Encoding.PEM) \
        == x509.load_pem_x509_certificates(pki_pem)[0].public_bytes(serialization.Encoding.PEM)


@pytest.fixture(scope="module")
def pki_pem(pki) -> bytes:
    return pki.rsa_leaf.pem + pki.intermediate.pem


@given(st.integers(min_value=-10_000 * 86400, max_value=10_000 * 86400))
def test_days_left_and_the_expiry_warning_agree(seconds):
    expires = NOW + datetime.timedelta(seconds=seconds)
    left = days_left(expires, NOW)
    assert left * 86400 <= seconds < (left + 1) * 86400
    warning = expiry_warning(expires, NOW)
    assert (warning is None) == (seconds >= 30 * 86400)
    if warning is not None:
        assert ("expired" in warning) == (seconds < 0)


# The install by hand: a rename that fails puts the previous files back


@pytest.fixture(autouse=True)
def sigterm_as_it_was():
    """A program run in this process leaves SIGTERM ignored, as it does before exiting."""
    handler = signal.getsignal(signal.SIGTERM)
    yield
    signal.signal(signal.SIGTERM, handler)


def test_a_failed_rename_puts_back_what_was_renamed(tmp_path, pki, monkeypatch, capsys):
    admin = tmp_path / "admin"
    for sub in ("etc/ssl", "log", "tmp", "bin"):
        (admin / sub).mkdir(parents=True)
    uploads = tmp_path / "uploads"
    uploads.mkdir()
    (uploads / "public.pem").write_bytes(pki.rsa_leaf.pem)
    (uploads / "private.key").write_bytes(pki.rsa_leaf.key_pem)
    (uploads / "ca.pem").write_bytes(pki.intermediate.pem)
    targets = {name: admin / "etc" / "ssl" / name for name in ("cert.pem", "key.pem", "ca.pem", "bundle.pem")}
    for name, path in targets.items():
        path.write_text(f"old {name}\n")
    argv = ["--admin-path", str(admin), "--public", str(uploads / "public.pem"),
            "--private", str(uploads / "private.key"), "--ca", str(uploads / "ca.pem"),
            "--certificate", str(targets["cert.pem"]), "--private-key", str(targets["key.pem"]),
            "--ca-file", str(targets["ca.pem"]), "--bundle", str(targets["bundle.pem"])]
    real_replace, calls = os.replace, []

    def failing_replace(source, destination):
        if Path(destination).parent == admin / "etc" / "ssl":
            calls.append(Path(destination).name)
            if len(calls) == 3:  # the CA and the bundle are in; the key's rename fails
                raise OSError(28, "No space left on device", str(destination))
        return real_replace(source, destination)

    monkeypatch.setattr(certs_job.os, "replace", failing_replace)
    assert main(certs_job.CertsProgram, argv) == 1
    out = capsys.readouterr().out
    assert f"Cannot save the new files (could not move {targets['key.pem']} into place: No space left on device); " \
           "the previous ones are in place" in out
    assert calls[:3] == ["ca.pem", "bundle.pem", "key.pem"]
    assert {name: path.read_text() for name, path in targets.items()} == {n: f"old {n}\n" for n in targets}
    assert sorted(os.listdir(admin / "etc" / "ssl")) == sorted(targets)

    monkeypatch.setattr(certs_job.os, "replace", real_replace)
    assert main(certs_job.CertsProgram, argv) == 0
    assert targets["bundle.pem"].read_bytes() == targets["key.pem"].read_bytes() + pki.rsa_leaf.pem + \
        pki.intermediate.pem
    assert sorted(os.listdir(admin / "etc" / "ssl")) == sorted(targets)


def test_the_job_checks_again_what_it_is_handed(tmp_path, pki, capsys):
    admin = tmp_path / "admin"
    (admin / "etc" / "ssl").mkdir(parents=True)
    (tmp_path / "public.pem").write_bytes(pki.rsa_leaf.pem)
    (tmp_path / "private.key").write_bytes(pki.ec_leaf.key_pem)
    argv = ["--admin-path", str(admin), "--public", str(tmp_path / "public.pem"),
            "--private", str(tmp_path / "private.key"), "--certificate", str(admin / "etc/ssl/cert.pem"),
            "--private-key", str(admin / "etc/ssl/key.pem"), "--ca-file", str(admin / "etc/ssl/ca.pem")]
    assert main(certs_job.CertsProgram, argv) == 1
    assert "Failed: The private key does not match the certificate" in capsys.readouterr().out
    assert os.listdir(admin / "etc" / "ssl") == []


# SIGHUP: a certificate replaced by hand is served after a real SIGHUP to twistd


def test_a_certificate_replaced_by_hand_is_served_after_sighup(twistd, tmp_path, pki):  # noqa: F811
    daemon, admin, port, _ = start_twistd(twistd, tmp_path, https=True)
    before = served(port)
    assert before == der_of(admin / "etc" / "ssl" / "cert.pem")
    (admin / "etc" / "ssl" / "key.pem").write_bytes(pki.ec_leaf.key_pem)
    (admin / "etc" / "ssl" / "cert.pem").write_bytes(pki.ec_leaf.pem)
    assert served(port) == before  # nothing reads the files until told
    daemon.process.send_signal(signal.SIGHUP)
    assert wait_for(lambda: "SIGHUP: " in daemon.text()), daemon.text()
    assert served(port) == pki.ec_leaf.der
    assert hashlib.sha256(served(port)).hexdigest() == certificates.fingerprint(pki.ec_leaf.certificate)


@pytest_twisted.ensureDeferred
async def test_a_ca_with_the_issuers_name_but_not_its_key_is_refused_and_changes_nothing(certs_daemon, pki):
    """Names are not proof: a CA certificate whose subject is the leaf's issuer name, made
    with another key, did not sign the leaf, and is refused before anything changes."""
    daemon = certs_daemon
    impostor = issue("Test Root CA", ca=True)  # the same name as pki.root, another key
    assert impostor.certificate.subject == pki.ec_leaf.certificate.issuer
    before = {path: path.read_bytes() for path in (daemon.admin_path / "etc" / "ssl").iterdir()}
    served_before = await deferToThread(served, daemon.port)
    response = await post_certs(daemon, pki.ec_leaf.pem, pki.ec_leaf.key_pem, impostor.pem)
    assert response.code == 400
    message = (await json_of(response))["Error-Message"]
    assert "CN=Test Root CA" in message and "not" in message, message
    assert {path: path.read_bytes() for path in (daemon.admin_path / "etc" / "ssl").iterdir()} == before
    assert await deferToThread(served, daemon.port) == served_before
    assert os.listdir(daemon.admin_path / "home" / "sftp" / "uploads") == []
    response = await post_certs(daemon, pki.ec_leaf.pem, pki.ec_leaf.key_pem, pki.root.pem)  # the real one
    assert response.code == 202
