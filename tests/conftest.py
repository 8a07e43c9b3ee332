"""The real daemon service and a treq client for it: over TLS on 127.0.0.1 and a free port
(the ``daemon`` fixtures), or connected in memory (the ``memory_daemon`` fixtures, see
in_memory.py) for tests about what the daemon answers rather than how TLS carries it."""

from __future__ import annotations

import json
import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import pytest_twisted
from hypothesis import settings as hypothesis_settings
from treq.client import HTTPClient
from twisted.internet import reactor
from twisted.internet.defer import ensureDeferred
from twisted.internet.protocol import Factory, Protocol
from OpenSSL import SSL
from twisted.internet.interfaces import IOpenSSLClientConnectionCreator
from twisted.internet.ssl import Certificate, CertificateOptions, optionsForClientTLS
from twisted.internet.task import Clock
from twisted.web.client import Agent, HTTPConnectionPool
from twisted.web.iweb import IPolicyForHTTPS
from zope.interface import implementer

from in_memory import SERVER_ADDRESS, MemoryNetwork

from jidoteki_admin import API_PREFIX
from jidoteki_admin.config import Settings, parse_config
from jidoteki_admin.daemon import AdminService
from jidoteki_admin.http.auth import request_hash

REPO = Path(__file__).resolve().parent.parent

# CI runs the same examples every time: a property test never fails there by chance. A
# failure found anywhere is kept in its test as an explicit @example.
hypothesis_settings.register_profile("ci", derandomize=True, database=None)
hypothesis_settings.load_profile("ci" if os.environ.get("CI") else "default")


def pytest_collection_modifyitems(items):
    """The contract test's shards first: they are the longest tests, and --dist loadscope
    deals work out in collection order, so starting them first keeps both test processes
    busy to the end instead of leaving them to run last."""
    items.sort(key=lambda item: item.path.name != "test_contract.py")  # stable: the rest keep their order


@implementer(IPolicyForHTTPS)
class TrustDaemonCertificate:
    """Verify the server against the daemon's own self-signed certificate."""

    def __init__(self, pem: bytes):
        self.authority = Certificate.loadPEM(pem)

    def creatorForNetloc(self, hostname, port):
        return optionsForClientTLS(hostname.decode(), trustRoot=self.authority)


@implementer(IOpenSSLClientConnectionCreator)
class _AnyCertificate:
    """TLS without verifying the server, for a client whose daemon swaps its certificate."""

    def __init__(self):
        self.context = CertificateOptions().getContext()  # verify=False

    def clientConnectionForTLS(self, tls_protocol):
        connection = SSL.Connection(self.context, None)
        connection.set_app_data(tls_protocol)
        return connection


@implementer(IPolicyForHTTPS)
class AnyCertificate:
    def creatorForNetloc(self, hostname, port):
        return _AnyCertificate()


def multipart(fields: dict | None = None, files: dict | None = None, boundary: str | None = None):
    """A multipart/form-data body as curl -F builds it: (content type, body bytes)."""
    boundary = boundary or "----jidotest" + secrets.token_hex(8)
    parts = []
    for name, value in (fields or {}).items():
        value = value.encode() if isinstance(value, str) else value
        parts.append(
            f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'.encode()
            + value
            + b"\r\n"
        )
    for name, (filename, content) in (files or {}).items():
        parts.append(
            f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; filename="{filename}"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n".encode()
            + content
            + b"\r\n"
        )
    body = b"".join(parts) + f"--{boundary}--\r\n".encode()
    return f"multipart/form-data; boundary={boundary}", body


@dataclass
class Daemon:
    """A running AdminService and a client that talks to it over TLS."""

    service: AdminService
    admin_path: Path
    client: HTTPClient
    pool: HTTPConnectionPool
    token: str | None = None
    extra: dict = field(default_factory=dict)

    @property
    def port(self) -> int:
        return self.service.port_of("https")

    @property
    def base(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def url(self, path: str, auth: str | None = "token", method: str = "GET", **query) -> str:
        """The URL of an API path (under /api/v1/admin unless it starts with //),
        authenticated by "token", "hash" or nothing."""
        full = path[1:] if path.startswith("//") else API_PREFIX + path
        if auth == "token" and self.token is not None:
            query.setdefault("token", self.token)
        elif auth == "hash" and self.token is not None:
            query.setdefault("hash", request_hash(self.token, method, full))
        if query:
            from urllib.parse import urlencode

            return self.base + full + "?" + urlencode(query)
        return self.base + full

    def accept_any_certificate(self) -> None:
        """For a test that swaps the certificate in service under this client. The pool
        opens a new connection whenever its last one is busy or closed, and that one meets a
        certificate for another name, from another root: the daemon's own would no longer
        verify it. What is served is checked apart (test_certs.served)."""
        self.client = HTTPClient(Agent(reactor, contextFactory=AnyCertificate(), pool=self.pool))

    def set_token(self, token: str) -> None:
        """Change the token outside the daemon, and have it seen by the next request
        (without waiting for the daemon's next look at the file)."""
        tree = self.service.tree
        tree.token_file.write_text(token + "\n")
        self.service.tokens.invalidate()
        self.token = token

    def request(self, method: str, url: str, **kwargs):
        return self.client.request(method, url, **kwargs)

    def get(self, path: str, auth: str | None = "token", **query):
        return self.client.get(self.url(path, auth, "GET", **query))

    def post_form(self, path: str, fields=None, files=None, auth: str | None = "token", **query):
        content_type, body = multipart(fields, files)
        return self.client.post(
            self.url(path, auth, "POST", **query), data=body, headers={"Content-Type": [content_type]}
        )

    def curl(self, *args: str):
        """Run curl against the daemon without blocking the reactor; fires (out, err, code)."""
        from twisted.internet.utils import getProcessOutputAndValue

        return getProcessOutputAndValue(
            "curl", ["-s", "--cacert", str(self.service.tree.certificate), *args], env=dict(os.environ)
        )


@dataclass
class MemoryDaemon(Daemon):
    """A Daemon whose client reaches the site in memory: no listener, no TLS, and a Clock
    the test moves (``answer_after``) in place of the reactor's time for the daemon's delays."""

    clock: Clock | None = None
    network: MemoryNetwork | None = None
    idle_calls: set = field(default_factory=set)  # on the clock once started: the CPU sampler's

    @property
    def port(self) -> int:
        raise AttributeError("an in-memory daemon has no port: tests over TLS take the daemon fixture")

    @property
    def base(self) -> str:
        return f"http://{SERVER_ADDRESS.host}:{SERVER_ADDRESS.port}"

    def curl(self, *args: str):
        raise AttributeError("curl needs a daemon over TLS: take the daemon fixture")

    def waiting_on_clock(self) -> bool:
        """The daemon has asked its clock for a call since it started (a delayed answer)."""
        return any(call not in self.idle_calls for call in self.clock.getDelayedCalls())

    async def answer_after(self, pending, at_least: float):
        """The answer to a request the daemon holds back on its clock (``pending``, a
        Deferred or coroutine). Once the daemon waits on the clock, there must be no
        answer ``at_least`` seconds later; then time moves on until there is one."""
        pending = ensureDeferred(pending)
        answered = []  # not pending.called: that is also true while it waits on another Deferred
        pending.addBoth(lambda result: answered.append(True) or result)
        assert await wait_until(lambda: answered or self.waiting_on_clock(), timeout=5, interval=0.001), \
            "the daemon never waited on its clock"
        self.clock.advance(at_least)
        await self.network.settle()
        assert not answered, f"answered within {at_least}s of the daemon's clock"
        for _ in range(600):
            if answered:
                break
            self.clock.advance(0.1)
            await self.network.settle()
        return await pending


def start_daemon(tmp_path: Path, config: dict | None = None, token: str | None = "yourtoken",
                 memory: bool = False, **settings) -> Daemon:
    """Start the service on a new admin tree: listening over TLS, or (``memory``) with no
    listener, its site reached in memory and its delays on a Clock of its own."""
    admin_path = tmp_path / "admin"
    clock = None
    if memory:
        settings.setdefault("https_port", None)
        clock = Clock()
        clock.advance(reactor.seconds())  # audit times and job log lines read as now
    else:
        settings.setdefault("https_port", 0)
    service = AdminService(
        Settings(admin_path=admin_path, config=parse_config(config or {}), interface="127.0.0.1", **settings),
        reactor,
        clock=clock,
    )
    if token is not None:
        service.tree.lay_out()
        service.tree.token_file.write_text(token + "\n")
    service.startService()
    pool = HTTPConnectionPool(reactor, persistent=True)
    if memory:
        service.site.doStart()  # what a listening port does for its factory
        network = MemoryNetwork(service.site)
        agent = Agent.usingEndpointFactory(reactor, network, pool=pool)
        return MemoryDaemon(service, admin_path, HTTPClient(agent), pool, token,
                            clock=clock, network=network, idle_calls=set(clock.getDelayedCalls()))
    pem = service.tls.certificate.read_bytes()  # where the config says, else the tree's
    agent = Agent(reactor, contextFactory=TrustDaemonCertificate(pem), pool=pool)
    return Daemon(service, admin_path, HTTPClient(agent), pool, token)


def stop_daemon(daemon: Daemon) -> None:
    pytest_twisted.blockon(daemon.pool.closeCachedConnections())
    if isinstance(daemon, MemoryDaemon):
        pytest_twisted.blockon(ensureDeferred(daemon.network.close()))
    pytest_twisted.blockon(daemon.service.stopService())
    if isinstance(daemon, MemoryDaemon):
        daemon.service.site.doStop()


@pytest.fixture
def daemon(tmp_path):
    """A daemon over TLS whose API token is "yourtoken" (API.md's example token)."""
    d = start_daemon(tmp_path)
    yield d
    stop_daemon(d)


@pytest.fixture
def fresh_daemon(tmp_path):
    """A daemon over TLS on a new admin tree, before any token was set."""
    d = start_daemon(tmp_path, token=None)
    yield d
    stop_daemon(d)


def _started_daemons(tmp_path, memory: bool):
    """A make function for daemons with a given config, and the list of those it started."""
    started = []

    def make(config=None, token="yourtoken", subdir="", **settings):
        d = start_daemon(tmp_path / subdir if subdir else tmp_path, config, token, memory=memory, **settings)
        started.append(d)
        return d

    return make, started


@pytest.fixture
def make_daemon(tmp_path):
    """Start daemons over TLS with a given config; all are stopped after the test."""
    make, started = _started_daemons(tmp_path, memory=False)
    yield make
    for d in started:
        stop_daemon(d)


@pytest.fixture
def memory_daemon(tmp_path):
    """As ``daemon``, connected in memory."""
    d = start_daemon(tmp_path, memory=True)
    yield d
    stop_daemon(d)


@pytest.fixture
def fresh_memory_daemon(tmp_path):
    """As ``fresh_daemon``, connected in memory."""
    d = start_daemon(tmp_path, token=None, memory=True)
    yield d
    stop_daemon(d)


@pytest.fixture
def make_memory_daemon(tmp_path):
    """As ``make_daemon``, connected in memory."""
    make, started = _started_daemons(tmp_path, memory=True)
    yield make
    for d in started:
        if d.service.running:  # a test may have stopped one itself
            stop_daemon(d)


async def json_of(response) -> dict:
    return json.loads(await response.content())


def twistd_env() -> dict:
    """Environment for running `twistd jidoteki-admin` from this source tree."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    return env




# Raw HTTP over TLS, for requests a normalising client would not send as written.

import socket as _socket
import ssl as _ssl


@dataclass
class RawResponse:
    status: int
    reason: str
    headers: dict
    body: bytes

    def header(self, name: str, default=None):
        return self.headers.get(name.lower(), default)


def tls_client_context(minimum=None, maximum=None, ciphers=None) -> _ssl.SSLContext:
    """A client context that skips verification (the tests know whom they talk to)."""
    ctx = _ssl.SSLContext(_ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = _ssl.CERT_NONE
    if ciphers:
        ctx.set_ciphers(ciphers)
    if minimum:
        ctx.minimum_version = minimum
    if maximum:
        ctx.maximum_version = maximum
    return ctx


def raw_exchange(port: int, data: bytes, timeout: float = 5.0) -> bytes:
    """Send bytes over TLS and return everything received until the server closes."""
    chunks = []
    with _socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        with tls_client_context().wrap_socket(sock) as tls:
            tls.sendall(data)
            while True:
                try:
                    chunk = tls.recv(65536)
                except (_ssl.SSLZeroReturnError, ConnectionResetError, _ssl.SSLEOFError):
                    break
                except TimeoutError:
                    raise AssertionError(
                        f"the server neither finished its answer nor closed within {timeout}s;"
                        f" received {b''.join(chunks)[:300]!r}"
                    ) from None
                if not chunk:
                    break
                chunks.append(chunk)
    return b"".join(chunks)


def parse_responses(data: bytes, head: bool = False) -> list[RawResponse]:
    """Split a byte stream into HTTP/1.1 responses (bodies delimited by Content-Length)."""
    responses = []
    while data:
        head_bytes, sep, rest = data.partition(b"\r\n\r\n")
        assert sep, f"incomplete response head: {data[:200]!r}"
        lines = head_bytes.decode("latin-1").split("\r\n")
        _, code, *reason = lines[0].split(" ", 2)
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        length = 0 if head else int(headers.get("content-length", len(rest)))
        responses.append(RawResponse(int(code), " ".join(reason), headers, rest[:length]))
        data = rest[length:]
    return responses


def raw_request_bytes(method: bytes, target: bytes, headers: dict | None = None, body: bytes = b"", close: bool = True) -> bytes:
    lines = [method + b" " + target + b" HTTP/1.1", b"Host: 127.0.0.1"]
    if close:
        lines.append(b"Connection: close")
    for name, value in (headers or {}).items():
        lines.append(f"{name}: {value}".encode())
    if body:
        lines.append(f"Content-Length: {len(body)}".encode())
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


def raw_conversation(daemon, data: bytes, head: bool = False, timeout: float = 5.0):
    """Send bytes on one connection (TLS, or in memory for a MemoryDaemon); fires with every
    response read until the server closes it."""
    from twisted.internet.threads import deferToThread

    if isinstance(daemon, MemoryDaemon):
        d = ensureDeferred(daemon.network.exchange(data, timeout))
    else:
        d = deferToThread(raw_exchange, daemon.port, data, timeout)
    d.addCallback(parse_responses, head=head)
    return d


async def raw_request(daemon, method, target, headers: dict | None = None, body: bytes = b"", timeout: float = 5.0) -> RawResponse:
    """One request written exactly as given (no normalisation); its one response."""
    method = method.encode() if isinstance(method, str) else method
    target = target.encode() if isinstance(target, str) else target
    data = raw_request_bytes(method, target, headers, body)
    responses = await raw_conversation(daemon, data, head=method == b"HEAD", timeout=timeout)
    assert len(responses) == 1, f"expected one response to {method!r} {target!r}, got {responses!r}"
    return responses[0]


async def wait_until(predicate, timeout: float = 10.0, interval: float = 0.05) -> bool:
    """Poll ``predicate`` without blocking the reactor; True once it holds, False on timeout."""
    from twisted.internet.task import deferLater

    for _ in range(int(timeout / interval)):
        if predicate():
            return True
        await deferLater(reactor, interval, lambda: None)
    return predicate()


# An appliance that never answers, for the clients' timeouts.


class _Silent(Protocol):
    """Takes the connection and every byte sent, and answers nothing."""


@pytest.fixture
def black_hole():
    """https://127.0.0.1:PORT that accepts connections and never answers: a hung appliance."""
    port = reactor.listenTCP(0, Factory.forProtocol(_Silent), interface="127.0.0.1")
    yield f"https://127.0.0.1:{port.getHost().port}"
    pytest_twisted.blockon(port.stopListening())


# twistd as a real child process, for the command-line contract and signals.

import signal as _signal
import socket
import subprocess
import sys
import time

import psutil


TWISTD = [sys.executable, "-c", "from twisted.scripts.twistd import run; run()", "-n", "jidoteki-admin"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Twistd:
    def __init__(self, cwd: Path, args: list[str], env: dict | None = None, twistd_options=()):
        self.cwd, self.args = cwd, list(twistd_options) + list(args)
        self.output = cwd / "twistd.out"
        environment = twistd_env()
        environment.pop("JIDO_ADMIN_PATH", None)
        environment.pop("JIDO_API_PORT", None)
        environment.update(env or {})
        with open(self.output, "wb") as out:
            self.process = subprocess.Popen(
                TWISTD[:-1] + list(twistd_options) + TWISTD[-1:] + args, cwd=cwd, env=environment, stdout=out, stderr=subprocess.STDOUT
            )

    def text(self) -> str:
        return self.output.read_text(errors="replace")

    def logfile_text(self) -> str:
        """What twistd wrote to a --logfile=FILE given on its command line, if any."""
        for arg in self.args:
            if arg.startswith("--logfile=") and arg != "--logfile=-":
                path = self.cwd / arg.split("=", 1)[1]
                return path.read_text(errors="replace") if path.exists() else ""
        return ""

    def wait_listening(self, port: int, timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"twistd exited with {self.process.returncode}:\n{self.text()}")
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            except OSError:
                time.sleep(0.05)
                continue
            # The port is bound before the service starts (twistd binds, then switches
            # users, then starts it): wait for the line that says it is serving.
            if "Serving the admin tree" in self.text() + self.logfile_text():
                return
            time.sleep(0.05)
        pytest.fail(f"twistd did not listen on {port}:\n{self.text()}")

    def listening_ports(self) -> set[int]:
        connections = psutil.Process(self.process.pid).net_connections(kind="tcp")
        return {c.laddr.port for c in connections if c.status == psutil.CONN_LISTEN}

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(_signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode


@pytest.fixture
def twistd(tmp_path):
    started = []

    def start(*args, env=None, twistd_options=()):
        daemon = Twistd(tmp_path, list(args), env, twistd_options)
        started.append(daemon)
        return daemon

    yield start
    for daemon in started:
        daemon.stop()


# Vendor keys, shared by every test that builds update packages.


def _run(*args) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    return subprocess.run([str(a) for a in args], check=True, capture_output=True, env=env, timeout=60)


@pytest.fixture(scope="session")
def keys(tmp_path_factory):
    """Vendor keys from `jidoteki-admin-vendor keygen`, plus a foreign signing key and passphrase."""
    d = tmp_path_factory.mktemp("update-keys")
    _run(sys.executable, "-m", "jidoteki_admin.vendor", "keygen", "--out", d / "vendor")
    _run("openssl", "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256",
        "-out", d / "other_vendor.key")
    (d / "other_updates.key").write_text(os.urandom(32).hex() + "\n")
    return {
        "key": d / "vendor" / "updates.key",
        "vendor": d / "vendor" / "vendor.key",
        "pub": d / "vendor" / "updates.pub",
        "other_vendor": d / "other_vendor.key",
        "other_key": d / "other_updates.key",
    }




# A full disk, for real: the fault tests put a folder of the tree on a 1 MiB file system.

from contextlib import contextmanager


@contextmanager
def tiny_disk(folder: Path, work: Path):
    """Mount a 1 MiB file system on ``folder`` for the duration: tmpfs where mounting it is
    allowed, else an ext2 image on a loop device (both need root, which CI has;
    RLIMIT_FSIZE would not do, as it limits this whole process rather than a disk)."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small filesystem needs root")
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(folder)],
                      capture_output=True).returncode:
        image = work / "tiny.img"
        with open(image, "wb") as f:
            f.truncate(1024 * 1024)
        subprocess.run(["mkfs.ext2", "-q", "-F", "-m", "0", str(image)], check=True, capture_output=True)
        mounted = subprocess.run(["mount", "-o", "loop", str(image), str(folder)], capture_output=True)
        assert mounted.returncode == 0, f"neither tmpfs nor a loop device can be mounted: {mounted.stderr!r}"
        folder.chmod(0o755)
        (folder / "lost+found").rmdir()  # the folder holds nothing but what the test puts there
    try:
        yield folder
    finally:
        subprocess.run(["umount", str(folder)], check=True)


# Holding a job at a named point (jobs/program.py's checkpoint), for the fault tests.


class Checkpoints:
    """$JIDO_JOB_CHECKPOINTS for the jobs this test starts: ``hold(name)`` stops the next
    job that gets to that point there, until released."""

    def __init__(self, folder: Path):
        self.folder = folder

    def hold(self, name: str) -> "Hold":
        (self.folder / name).touch()
        return Hold(self.folder, name)


@dataclass
class Hold:
    folder: Path
    name: str

    def reached(self) -> bool:
        return (self.folder / f"{self.name}.reached").exists()

    def release(self) -> None:
        (self.folder / self.name).unlink(missing_ok=True)


@pytest.fixture
def checkpoints(tmp_path, monkeypatch):
    folder = tmp_path / "checkpoints"
    folder.mkdir()
    monkeypatch.setenv("JIDO_JOB_CHECKPOINTS", str(folder))
    yield Checkpoints(folder)
    for hold in folder.iterdir():  # no job stays held after its test
        hold.unlink(missing_ok=True)


# A Python another user can run, with the daemon's packages (the tests that switch users).

import sysconfig  # noqa: E402
import shutil as _shutil  # noqa: E402


def python_usable_by(python: str, uid: int, gid: int | None = None) -> bool:
    """Whether that user can run this Python with the daemon's packages."""
    probe = "import encodings.idna, cryptography.hazmat.backends, OpenSSL, twisted, jidoteki_admin"
    gid = uid if gid is None else gid
    try:
        done = subprocess.run([python, "-c", probe], capture_output=True, timeout=60, env=twistd_env(),
                              cwd="/", preexec_fn=lambda: (os.setgroups([]), os.setgid(gid), os.setuid(uid)))
    except PermissionError:
        return False
    return done.returncode == 0


def python_for(uid: int, open_dir: Path, gid: int | None = None) -> str:
    """A Python the user ``uid`` can run, with the daemon's packages: this one, or, when it
    lives where that user cannot read (pyenv in root's home), the system's Python of the
    same version in a virtual environment in ``open_dir`` that reads the same packages."""
    if python_usable_by(sys.executable, uid, gid):
        return sys.executable
    system = _shutil.which(f"python{sys.version_info[0]}.{sys.version_info[1]}", path="/usr/bin:/usr/local/bin")
    if system is None:
        pytest.skip(f"no Python of this version that the user {uid} can run")
    venv = open_dir / "venv"
    subprocess.run([system, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=60)
    site = next((venv / "lib").glob("python*/site-packages"))
    (site / "daemon.pth").write_text("\n".join(sorted(set(sysconfig.get_paths()[k] for k in ("purelib", "platlib"))))
                                    + f"\n{REPO}\n")
    python = str(venv / "bin" / "python")
    if not python_usable_by(python, uid, gid):
        pytest.skip(f"the daemon's packages cannot be read by the user {uid}")
    return python

