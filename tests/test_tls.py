"""TLS: versions, ciphers, renegotiation, keep-alive, and the generated certificate."""

import datetime
import socket
import ssl
import stat
import subprocess
import warnings

import pytest
import pytest_twisted
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from OpenSSL import SSL
from twisted.internet.threads import deferToThread
from twisted.internet.utils import getProcessOutputAndValue

from conftest import tls_client_context
from jidoteki_admin.tls import build_context, ensure_certificate

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    OLD_VERSIONS = {"TLSv1": ssl.TLSVersion.TLSv1, "TLSv1.1": ssl.TLSVersion.TLSv1_1}


def handshake(port: int, ctx: ssl.SSLContext):
    """(protocol version, cipher name) of a completed handshake."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        with ctx.wrap_socket(sock) as tls:
            return tls.version(), tls.cipher()[0]


def pinned(version, ciphers=None) -> ssl.SSLContext:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return tls_client_context(minimum=version, maximum=version, ciphers=ciphers)


def refusal(port: int, ctx: ssl.SSLContext) -> ssl.SSLError:
    with pytest.raises(ssl.SSLError) as caught:
        handshake(port, ctx)
    return caught.value


CLIENT_SIDE_REFUSALS = ("NO_PROTOCOLS_AVAILABLE", "UNSUPPORTED_PROTOCOL", "NO_CIPHERS_AVAILABLE")


@pytest.mark.parametrize("name", ["TLSv1", "TLSv1.1"])
@pytest_twisted.ensureDeferred
async def test_old_tls_versions_are_refused_by_the_server(daemon, name):
    ctx = pinned(OLD_VERSIONS[name], "DEFAULT:@SECLEVEL=0")
    error = await deferToThread(refusal, daemon.port, ctx)
    if (error.reason or "") not in CLIENT_SIDE_REFUSALS:
        assert error.reason == "TLSV1_ALERT_PROTOCOL_VERSION", error
        return
    flag = {"TLSv1": "-tls1", "TLSv1.1": "-tls1_1"}[name]
    out, err, code = await getProcessOutputAndValue(
        "openssl",
        ["s_client", flag, "-cipher", "DEFAULT@SECLEVEL=0", "-connect", f"127.0.0.1:{daemon.port}"],
        stdinBytes=b"",
    )
    assert code != 0
    assert b"alert protocol version" in out + err


@pytest.mark.parametrize(
    "version,expected", [(ssl.TLSVersion.TLSv1_2, "TLSv1.2"), (ssl.TLSVersion.TLSv1_3, "TLSv1.3")]
)
@pytest_twisted.ensureDeferred
async def test_modern_tls_versions_work(daemon, version, expected):
    negotiated, _ = await deferToThread(handshake, daemon.port, pinned(version))
    assert negotiated == expected


@pytest_twisted.ensureDeferred
async def test_tls12_cipher_is_forward_secret_aead(daemon):
    _, cipher = await deferToThread(handshake, daemon.port, pinned(ssl.TLSVersion.TLSv1_2))
    assert cipher.startswith("ECDHE-")
    assert "GCM" in cipher or "CHACHA20" in cipher


def rsa_daemon(make_daemon, tmp_path):
    """A daemon whose admin tree already holds an RSA certificate: the ciphers that need an
    RSA certificate can only be refused for themselves by such a server (a P-256 one could
    never agree to them anyway)."""
    ssl_dir = tmp_path / "rsa" / "admin" / "etc" / "ssl"
    ssl_dir.mkdir(parents=True)
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=127.0.0.1",
                    "-keyout", str(ssl_dir / "key.pem"), "-out", str(ssl_dir / "cert.pem")],
                   check=True, capture_output=True)
    daemon = make_daemon(subdir="rsa")
    assert b"RSA" in subprocess.run(["openssl", "x509", "-noout", "-text", "-in", str(ssl_dir / "cert.pem")],
                                    capture_output=True).stdout
    return daemon


@pytest.mark.parametrize(
    "certificate,cipher",
    [
        ("ec", "ECDHE-ECDSA-AES128-SHA"),
        ("ec", "ECDHE-ECDSA-AES256-SHA384"),
        ("rsa", "ECDHE-RSA-AES128-SHA256"),
        ("rsa", "AES128-GCM-SHA256"),
        ("rsa", "AES256-SHA"),
        ("rsa", "DHE-RSA-AES128-SHA"),
    ],
)
@pytest_twisted.ensureDeferred
async def test_tls12_without_forward_secret_aead_is_refused(make_daemon, tmp_path, certificate, cipher):
    daemon = rsa_daemon(make_daemon, tmp_path) if certificate == "rsa" else make_daemon()
    ctx = pinned(ssl.TLSVersion.TLSv1_2, cipher + ":@SECLEVEL=0")
    error = await deferToThread(refusal, daemon.port, ctx)
    assert "HANDSHAKE_FAILURE" in (error.reason or "") or "handshake failure" in str(error)
    if certificate == "rsa":  # the same server agrees to a forward-secret AEAD RSA suite
        _, agreed = await deferToThread(handshake, daemon.port,
                                        pinned(ssl.TLSVersion.TLSv1_2, "ECDHE-RSA-AES128-GCM-SHA256"))
        assert agreed == "ECDHE-RSA-AES128-GCM-SHA256"


@pytest_twisted.ensureDeferred
async def test_every_offered_tls12_cipher_is_ecdhe_aead(daemon):
    accepted = []
    probe = tls_client_context().get_ciphers()
    names = sorted({c["name"] for c in probe if c["protocol"] == "TLSv1.2"})

    def try_each():
        for name in names:
            try:
                accepted.append(handshake(daemon.port, pinned(ssl.TLSVersion.TLSv1_2, name))[1])
            except ssl.SSLError:
                pass

    await deferToThread(try_each)
    assert accepted
    for name in accepted:
        assert name.startswith("ECDHE-") and ("GCM" in name or "CHACHA20" in name), name


def test_renegotiation_is_disabled(memory_daemon):
    context = memory_daemon.service.tls.getContext()
    assert context.set_options(0) & SSL.OP_NO_RENEGOTIATION
    assert context.set_options(0) & SSL.OP_NO_COMPRESSION


def test_a_fresh_context_disables_renegotiation(tmp_path):
    ensure_certificate(tmp_path / "cert.pem", tmp_path / "key.pem")
    context = build_context(tmp_path / "cert.pem", tmp_path / "key.pem")
    assert context.set_options(0) & SSL.OP_NO_RENEGOTIATION


# Keep-alive


def read_response(reader) -> tuple[int, dict, bytes]:
    status = int(reader.readline().split()[1])
    headers = {}
    while (line := reader.readline()) not in (b"\r\n", b""):
        name, _, value = line.decode().partition(":")
        headers[name.strip().lower()] = value.strip()
    return status, headers, reader.read(int(headers["content-length"]))


def sequential_requests(port: int, targets: list[str], pipelined: bool):
    requests = [f"GET {t} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode() for t in targets]
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        with tls_client_context().wrap_socket(sock) as tls:
            reader = tls.makefile("rb")
            answers = []
            if pipelined:
                tls.sendall(b"".join(requests))
                answers = [read_response(reader) for _ in requests]
            else:
                for request in requests:
                    tls.sendall(request)
                    answers.append(read_response(reader))
            reader.close()
            return answers


@pytest.mark.parametrize("pipelined", [False, True], ids=["sequential", "pipelined"])
@pytest_twisted.ensureDeferred
async def test_several_requests_on_one_connection(daemon, pipelined):
    (daemon.admin_path / "etc" / "version.txt").write_text("1.0.0\n")
    targets = [
        "/api/v1/admin/version?token=yourtoken",
        "/api/v1/admin/nothing",
        "/api/v1/admin/health?token=yourtoken",
        "/api/v1/admin/version?token=wrong",
        "/docs",
    ]
    answers = await deferToThread(sequential_requests, daemon.port, targets, pipelined)
    assert [status for status, _, _ in answers] == [200, 404, 200, 403, 200]
    assert answers[0][2] == b'{"version":"1.0.0"}'
    assert all(headers.get("connection", "").lower() != "close" for _, headers, _ in answers)


@pytest_twisted.ensureDeferred
async def test_treq_reuses_one_connection(daemon):
    (daemon.admin_path / "etc" / "version.txt").write_text("1.0.0\n")
    for _ in range(3):
        response = await daemon.get("/version")
        assert response.code == 200
        await response.content()
    cached = [conn for conns in daemon.pool._connections.values() for conn in conns]
    assert len(cached) == 1


# The generated certificate


def test_generated_certificate_names_localhost_and_the_host(memory_daemon):
    certificate = x509.load_pem_x509_certificate(memory_daemon.service.tree.certificate.read_bytes())
    names = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    dns = names.get_values_for_type(x509.DNSName)
    assert "localhost" in dns
    assert socket.gethostname() in dns


def test_generated_key_is_p256_or_rsa2048(memory_daemon):
    certificate = x509.load_pem_x509_certificate(memory_daemon.service.tree.certificate.read_bytes())
    key = certificate.public_key()
    if isinstance(key, ec.EllipticCurvePublicKey):
        assert key.curve.name == "secp256r1"
    else:
        assert isinstance(key, rsa.RSAPublicKey) and key.key_size >= 2048


def test_generated_key_file_is_private(memory_daemon):
    key = memory_daemon.service.tree.private_key
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert b"PRIVATE KEY" in key.read_bytes()


def test_generated_certificate_is_currently_valid(memory_daemon):
    certificate = x509.load_pem_x509_certificate(memory_daemon.service.tree.certificate.read_bytes())
    now = datetime.datetime.now(datetime.timezone.utc)
    assert certificate.not_valid_before_utc <= now < certificate.not_valid_after_utc


def test_an_existing_certificate_is_kept(tmp_path):
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    assert ensure_certificate(cert, key) is True
    before = cert.read_bytes(), key.read_bytes()
    assert ensure_certificate(cert, key) is False
    assert (cert.read_bytes(), key.read_bytes()) == before


@pytest_twisted.ensureDeferred
async def test_client_verifying_the_certificate_by_name_connects(daemon):
    ctx = ssl.create_default_context(cafile=str(daemon.service.tree.certificate))

    def connect():
        with socket.create_connection(("127.0.0.1", daemon.port), timeout=5) as sock:
            with ctx.wrap_socket(sock, server_hostname="localhost") as tls:
                return tls.version()

    assert await deferToThread(connect) in ("TLSv1.2", "TLSv1.3")
