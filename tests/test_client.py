"""The client library and the jidoteki-admin-client CLI, against the real daemon over TLS,
and against appliances that misbehave: one that accepts connections and never answers (a
black hole), one whose connections stop moving part-way (a relay that stalls), one with
another certificate, one that is down."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import socket
import stat
import sys
import tarfile
import time
from pathlib import Path

import pytest
import pytest_twisted
from hypothesis import given, strategies as st
from twisted.internet import protocol, reactor, ssl
from twisted.internet.defer import Deferred, DeferredSemaphore, ensureDeferred
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.task import deferLater
from twisted.internet.utils import getProcessOutputAndValue

from jidoteki_admin.http.auth import request_hash
from jidoteki_admin.client import (AdminClient, APIError, JobFailed, Misconfigured, TailFollower, Timeouts, TimedOut,
                                   Unreachable, Untrusted, certificate_fingerprint, log_lines, normal_fingerprint,
                                   presented_fingerprint, secret_key, sign)

from conftest import free_port, wait_until
from test_updates import build, install_keys

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
ZERO = "00" * 32
QUICK = Timeouts(connect=1, handshake=1, read=1, wait=5)  # for appliances that never answer


def fingerprint_of(daemon) -> str:
    return certificate_fingerprint(daemon.service.tree.certificate.read_bytes())


def client_for(daemon, token: str | None = "yourtoken", auth: str = "signature", **trust) -> AdminClient:
    if not trust:
        trust = {"fingerprint": fingerprint_of(daemon)}
    return AdminClient(reactor, daemon.base, token=token, poll_interval=0.1, auth=auth, **trust)


async def cli(*args: str, stdin: bytes | None = None) -> tuple[int, str, str]:
    """Run jidoteki-admin-client as a child process, without blocking the daemon's reactor."""
    out, err, code = await getProcessOutputAndValue(
        sys.executable, ["-m", "jidoteki_admin.client.cli", *args], env={**ENV, "JIDOTEKI_ADMIN_TOKEN": ""})
    return code, out.decode(), err.decode()


class Child(protocol.ProcessProtocol):
    """The CLI as a child process the test can signal while the daemon (in this process)
    serves it."""

    def __init__(self) -> None:
        self.out, self.err = bytearray(), bytearray()
        self.ended: Deferred = Deferred()

    def outReceived(self, data: bytes) -> None:
        self.out += data

    def errReceived(self, data: bytes) -> None:
        self.err += data

    def processEnded(self, reason) -> None:
        self.ended.callback((reason.value.exitCode, self.out.decode(), self.err.decode()))

    def signal(self, signum: int) -> None:
        self.transport.signalProcess({signal.SIGINT: "INT", signal.SIGTERM: "TERM"}[signum])


def spawn_cli(*args: str) -> Child:
    child = Child()
    reactor.spawnProcess(child, sys.executable, [sys.executable, "-m", "jidoteki_admin.client.cli", *args],
                         env={**ENV, "JIDOTEKI_ADMIN_TOKEN": ""})
    return child


# Appliances that misbehave


class _Silent(protocol.Protocol):
    """Takes the connection and every byte sent, and answers nothing."""


@pytest.fixture
def full_backlog():
    """https://127.0.0.1:PORT whose listen queue is full: a new connection is never made
    (the kernel drops its SYN), as with a firewall that swallows packets."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(0)
    port = server.getsockname()[1]
    queued = socket.create_connection(("127.0.0.1", port))
    yield f"https://127.0.0.1:{port}"
    queued.close()
    server.close()


@pytest.fixture
def mute_tls(make_daemon):
    """An appliance that completes the TLS handshake, with the daemon's own certificate,
    and then never answers a request. Returns (URL, fingerprint)."""
    daemon = make_daemon(subdir="mute")
    tree = daemon.service.tree
    pem = tree.private_key.read_bytes() + tree.certificate.read_bytes()
    options = ssl.PrivateCertificate.loadPEM(pem).options()
    port = reactor.listenSSL(0, protocol.Factory.forProtocol(_Silent), options, interface="127.0.0.1")
    yield f"https://127.0.0.1:{port.getHost().port}", fingerprint_of(daemon)
    pytest_twisted.blockon(port.stopListening())


class Relay:
    """A TCP relay to a daemon that stops passing on what the client sends once it has
    passed ``stall_after`` bytes (the daemon stops reading, as a congested link does),
    until released. TLS stays end to end: the client still talks to the daemon."""

    def __init__(self, target_port: int, stall_after: int):
        self.target_port, self.stall_after = target_port, stall_after
        self.passed = 0
        self.stalled: list[protocol.Protocol] = []
        relay = self

        class Server(protocol.Protocol):
            def connectionMade(self):
                self.transport.pauseProducing()
                self.peer = None
                d = connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", relay.target_port), Upstream(self))
                d.addCallback(self.upstream_ready)

            def upstream_ready(self, peer):
                self.peer = peer
                self.transport.resumeProducing()

            def dataReceived(self, data):
                relay.passed += len(data)
                self.peer.transport.write(data)
                if relay.passed >= relay.stall_after and self not in relay.stalled:
                    relay.stalled.append(self)
                    self.transport.pauseProducing()

            def connectionLost(self, reason):
                if self.peer is not None:
                    self.peer.transport.loseConnection()

        class Upstream(protocol.Protocol):
            def __init__(self, server):
                self.server = server

            def dataReceived(self, data):
                self.server.transport.write(data)

            def connectionLost(self, reason):
                self.server.transport.loseConnection()

        self.port = reactor.listenTCP(0, protocol.Factory.forProtocol(Server), interface="127.0.0.1")
        self.url = f"https://127.0.0.1:{self.port.getHost().port}"

    def release(self) -> None:
        for server in self.stalled:
            server.transport.resumeProducing()


# Signing: the same hash as API.md section 2 and the daemon's own check


@given(st.text(min_size=1, max_size=40, alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E)),
       st.sampled_from(["GET", "POST"]), st.sampled_from(["/api/v1/admin/version", "/api/v1/admin/update/log"]))
def test_the_client_signs_as_the_daemon_checks(token, method, path):
    assert sign(secret_key(token), method, path) == request_hash(token, method, path)


def test_api_md_test_vector():
    key = secret_key("yourtoken")
    assert key == b"13e2ff941bbc8692cad141c8d293dda2c4f1c1a3c51b93d54f1a1693e1206107"
    assert sign(key, "GET", "/api/v1/admin/version") == (
        "b714a60732e096ccef06e360eefe0f1ba4fa5d16ef7da726612e2026e5523241")


@pytest.mark.parametrize("text", ["AB:" * 31 + "AB", "ab" * 32, "sha256:" + "Ab" * 32])
def test_fingerprints_in_every_usual_spelling(text):
    assert normal_fingerprint(text) == bytes.fromhex("ab" * 32)


@pytest.mark.parametrize("text", ["", "ab" * 31, "zz" * 32, "ab" * 33])
def test_a_wrong_fingerprint_is_refused_before_any_connection(text):
    with pytest.raises(Misconfigured, match="fingerprint"):
        normal_fingerprint(text)


@pytest.mark.parametrize("url", ["http://10.0.0.1:8443", "https://", "10.0.0.1:8443", "https://h:99999",
                                 "https://h:8443/api/v1/admin"])
def test_a_url_that_is_not_an_appliance_s_is_refused(url):
    with pytest.raises(Misconfigured, match="https://HOST"):
        AdminClient(reactor, url, token="t", fingerprint="ab" * 32)


def test_timeouts_must_be_seconds_above_zero():
    with pytest.raises(Misconfigured, match="read timeout"):
        Timeouts(read=0)
    assert Timeouts().but(read=5, wait=None) == Timeouts(read=5)


# The library through the daemon


@pytest_twisted.ensureDeferred
async def test_typed_answers_over_a_pinned_connection_every_request_signed(make_daemon):
    """With credentials in the query turned off, only signed requests pass: the client's."""
    daemon = make_daemon({"query-credentials": False})
    (daemon.admin_path / "etc" / "version.txt").write_text("2.0.1\n")
    async with client_for(daemon) as client:
        assert await client.version() == "2.0.1"
        assert "/api/v1/admin/version" in await client.endpoints()
        health = await client.health()
        assert health.disk.percentage is not None and health.certificate is not None
        assert health.raw["disk"]["total"] == health.disk.total
        assert {job.name for job in await client.jobs()} >= {"update", "reboot"}
        assert client.presented == fingerprint_of(daemon)
    assert client._clients == {}  # async with closed its connections
    assert "yourtoken" not in repr(vars(client))  # only the derived key is kept


@pytest_twisted.ensureDeferred
async def test_uploads_and_forms_are_signed_with_their_digest(make_daemon, tmp_path):
    daemon = make_daemon({"query-credentials": False})
    async with client_for(daemon) as client:
        answer = await client.request("POST", "/tokens", data={"name": "monitoring", "scope": "read"})
        assert json.loads(answer.body)["name"] == "monitoring"
        package = tmp_path / "software_package-9.enc"
        package.write_bytes(os.urandom(3 * 1024 * 1024 + 17))  # not a package: refused by the job, not the gate
        with pytest.raises(APIError) as refused:
            await client.request("POST", "/update/check", files={"update": package})
        assert refused.value.status == 400 and "cannot be checked" in str(refused.value)
    lines = (daemon.admin_path / "log" / "jidoteki-audit.log").read_text()
    assert '"token":"admin"' in lines and "403" not in lines


@pytest_twisted.ensureDeferred
async def test_the_old_hash_is_there_for_appliances_that_predate_signatures(make_daemon):
    daemon = make_daemon()
    (daemon.admin_path / "etc" / "version.txt").write_text("2.0.1\n")
    async with client_for(daemon, auth="hash") as client:
        assert await client.version() == "2.0.1"
    off = make_daemon({"query-credentials": False}, subdir="off")
    async with client_for(off, auth="hash") as client:
        with pytest.raises(APIError) as refused:
            await client.version()
    assert refused.value.status == 403 and "sign the request" in str(refused.value)


@pytest_twisted.ensureDeferred
async def test_another_certificate_is_untrusted_and_named_with_the_pin(make_daemon):
    daemon = make_daemon()
    other = make_daemon(subdir="other")
    async with client_for(daemon, fingerprint=fingerprint_of(other)) as client:
        with pytest.raises(Untrusted) as refused:
            await client.version()
    assert refused.value.presented == fingerprint_of(daemon)
    assert fingerprint_of(daemon) in str(refused.value) and fingerprint_of(other) in str(refused.value)
    assert not isinstance(refused.value, Unreachable)
    async with client_for(daemon, ca_file=other.service.tree.certificate) as client:
        with pytest.raises(Untrusted, match="not signed by the CA") as refused:
            await client.version()
    assert refused.value.presented == fingerprint_of(daemon)


@pytest_twisted.ensureDeferred
async def test_a_ca_file_is_trusted_too(make_daemon):
    daemon = make_daemon()
    (daemon.admin_path / "etc" / "version.txt").write_text("3.0.0\n")
    async with client_for(daemon, ca_file=daemon.service.tree.certificate) as client:
        assert await client.version() == "3.0.0"
        assert client.presented == fingerprint_of(daemon)


@pytest_twisted.ensureDeferred
async def test_errors_carry_status_and_error_message_once(make_daemon):
    daemon = make_daemon()
    async with client_for(daemon, token="not-the-token") as wrong, client_for(daemon) as client:
        with pytest.raises(APIError) as refused:
            await wrong.health()
        assert refused.value.status == 403 and str(refused.value) == (
            "403 The signature does not match this request (its method, target URI or body) or the key it names")
        with pytest.raises(APIError) as missing:
            await client.get_document("/nosuch")
        assert str(missing.value) == "404 Not Found"  # not "404 404 Not Found"


@pytest_twisted.ensureDeferred
async def test_setup_then_change_the_token(fresh_daemon):
    async with client_for(fresh_daemon, token=None) as client:
        await client.setup("first-token")
        assert (await client.health()).disk.total
        await client.setup("second-token")
        assert fresh_daemon.service.tree.token_file.read_text().strip() == "second-token"
        assert (await client.health()).disk.total


@pytest_twisted.ensureDeferred
async def test_follow_reads_every_line_once_and_only_this_run_s(make_daemon, keys, tmp_path):
    """A job that writes faster than anyone polls: its log read from a position, every
    line once, none of the run before."""
    daemon = make_daemon()
    install_keys(daemon.admin_path, keys, "1.0.0")
    chatty = "#!/bin/sh\ni=0\nwhile [ $i -lt 3000 ]; do echo \"line $i\"; i=$((i+1)); done\n"
    first_package = build(tmp_path, keys, "1.1.0", update_sh=chatty, payload=300_000)
    second_package = build(tmp_path, keys, "1.2.0", update_sh=chatty)
    seen: list[tuple[int, int]] = []
    async with client_for(daemon) as client:
        client.poll_interval = 0.5
        started = await client.update(first_package, progress=lambda done, total: seen.append((done, total)))
        first: list[str] = []
        state = await client.follow(started, on_line=first.append, timeout=60)
        second: list[str] = []
        state2 = await client.follow(await client.update(second_package), on_line=second.append, timeout=60)
        whole = (await client.get_text("/update/log")).splitlines()
    assert state.status == "success" and state2.status == "success" and state.run != state2.run
    assert seen[-1] == (first_package.stat().st_size, first_package.stat().st_size)
    assert [line for line in first if line.startswith("line ")] == [f"line {i}" for i in range(3000)]
    assert first + second == whole  # each line once, each in its own run
    assert (daemon.admin_path / "etc" / "version.txt").read_text().strip() == "1.2.0"


@pytest_twisted.ensureDeferred
async def test_a_failed_update_raises_with_its_code(make_daemon, keys, tmp_path):
    daemon = make_daemon()
    install_keys(daemon.admin_path, keys, "2.0.0")
    package = build(tmp_path, keys, "1.0.0")
    async with client_for(daemon) as client:
        started = await client.update(package)
        with pytest.raises(JobFailed) as failed:
            await client.follow(started, timeout=60)
    assert failed.value.code == "E1001"


def backup_daemon(make_daemon, tmp_path, size: int, **more):
    """A daemon backing up app/ (one random file of ``size`` bytes) under tmp_path/data."""
    data = tmp_path / "data"
    (data / "app").mkdir(parents=True)
    (data / "app" / "db").write_bytes(os.urandom(size))
    daemon = make_daemon(config={"endpoints": ["backup", "settings"], "backup-root": str(data)}, **more)
    (daemon.admin_path / "etc" / "backup.txt").write_text("app\n")
    return daemon, data


@pytest_twisted.ensureDeferred
async def test_backup_download_0600_restore_and_settings_as_a_document(make_daemon, tmp_path):
    daemon, data = backup_daemon(make_daemon, tmp_path, 100_000)
    archive = tmp_path / "backup.tar"
    async with client_for(daemon) as client:
        await client.follow(await client.start_backup(), timeout=60)
        report = await client.backup_status()
        size = await client.download_backup(archive)
        (data / "app" / "db").write_bytes(b"changed")
        await client.restore(archive)
        wanted = {"network": {"interface": "eth0", "hostname": "site1.example.com"}, "app": {"name": "x"}}
        state = await client.follow(await client.set_settings(wanted), timeout=60)
        assert (await client.settings())["network"]["hostname"] == "site1.example.com"
        with pytest.raises(Misconfigured, match="no folder"):
            await client.download_backup(tmp_path / "nowhere" / "b.tar")
    assert state.status == "success"
    assert size == archive.stat().st_size and report.status == "success"
    assert hashlib.sha256(archive.read_bytes()).hexdigest() == report.sha256
    assert stat.S_IMODE(archive.stat().st_mode) == 0o600
    assert tarfile.open(archive).getnames() == ["app", "app/db"]
    assert len((data / "app" / "db").read_bytes()) == 100_000
    assert not list(tmp_path.glob(".backup.tar.partial"))


# Timeouts: a hung appliance costs seconds


@pytest_twisted.ensureDeferred
async def test_a_black_hole_costs_the_handshake_timeout(black_hole):
    async with AdminClient(reactor, black_hole, token="t", fingerprint=ZERO, timeouts=QUICK) as client:
        begun = time.monotonic()
        with pytest.raises(TimedOut, match="no TLS handshake .* within 1 s") as stopped:
            await client.version()
        assert stopped.value.what == "handshake"
        with pytest.raises(TimedOut):
            await client.update(Path(__file__))
    assert time.monotonic() - begun < 5
    with pytest.raises(TimedOut):
        await presented_fingerprint(reactor, black_hole, QUICK)


@pytest_twisted.ensureDeferred
async def test_an_appliance_that_never_answers_after_the_handshake_costs_the_read_timeout(mute_tls):
    url, fingerprint = mute_tls
    async with AdminClient(reactor, url, token="t", fingerprint=fingerprint, timeouts=QUICK) as client:
        begun = time.monotonic()
        with pytest.raises(TimedOut, match="sent nothing for 1 s") as stopped:
            await client.health()
    assert stopped.value.what == "read" and time.monotonic() - begun < 5


@pytest_twisted.ensureDeferred
async def test_a_connection_that_is_never_made_costs_the_connect_timeout(full_backlog):
    async with AdminClient(reactor, full_backlog, token="t", fingerprint=ZERO, timeouts=QUICK) as client:
        with pytest.raises(TimedOut, match="could not connect .* within 1 s") as stopped:
            await client.version()
    assert stopped.value.what == "connect"


@pytest_twisted.ensureDeferred
async def test_an_upload_that_stops_moving_costs_the_read_timeout_not_its_length(make_daemon, tmp_path):
    daemon = make_daemon()
    relay = Relay(daemon.port, stall_after=1 << 20)
    package = tmp_path / "software_package-9.9.9.enc"
    package.write_bytes(os.urandom(24 << 20))
    async with AdminClient(reactor, relay.url, token="yourtoken", fingerprint=fingerprint_of(daemon),
                           timeouts=Timeouts(read=1)) as client:
        with pytest.raises(TimedOut, match="sent nothing for 1 s"):
            await client.update(package)
    relay.release()
    await relay.port.stopListening()
    assert await wait_until(lambda: not list(daemon.service.tree.uploads.iterdir()), timeout=10)


# The CLI


def hosts_file(tmp_path: Path, daemon, token: str = "yourtoken", name: str = "site-12", **more) -> Path:
    token_file = tmp_path / f"{name}.token"
    token_file.write_text(token + "\n")
    hosts = tmp_path / "hosts.toml"
    url = daemon if isinstance(daemon, str) else daemon.base
    pin = more.pop("fingerprint", None) or (ZERO if isinstance(daemon, str) else fingerprint_of(daemon))
    extra = "".join(f"{key} = {json.dumps(value)}\n" for key, value in more.items())
    with open(hosts, "a") as f:
        f.write(f'[{name}]\nurl = "{url}"\ntoken-file = "{token_file}"\nfingerprint = "{pin}"\n{extra}\n')
    return hosts


def site(hosts: Path, name: str = "site-12") -> tuple[str, ...]:
    return ("--hosts-file", str(hosts), "--host", name)


@pytest_twisted.ensureDeferred
async def test_cli_by_host_name(make_daemon, tmp_path):
    daemon = make_daemon()
    (daemon.admin_path / "etc" / "version.txt").write_text("4.5.6\n")
    hosts = hosts_file(tmp_path, daemon)
    code, out, err = await cli(*site(hosts), "version")
    assert (code, out.strip()) == (0, "4.5.6"), err
    code, out, err = await cli(*site(hosts), "health", "--json")  # options after the command too
    assert code == 0 and "disk" in json.loads(out), err
    code, out, err = await cli(*site(hosts), "job", "update", "--follow")
    assert (code, out) == (0, "The update has not run on this appliance.\n"), err


@pytest_twisted.ensureDeferred
async def test_cli_update_wait_follows_the_log_and_json_without_wait(make_daemon, keys, tmp_path):
    daemon = make_daemon()
    install_keys(daemon.admin_path, keys, "1.0.0")
    package = build(tmp_path, keys, "1.2.0")
    hosts = hosts_file(tmp_path, daemon)
    code, out, err = await cli(*site(hosts), "--json", "update", str(package), "--wait")
    assert code == 0, err
    assert json.loads(out)["status"] == "success"
    assert (daemon.admin_path / "etc" / "version.txt").read_text().strip() == "1.2.0"
    code, out, err = await cli(*site(hosts), "--json", "update", str(build(tmp_path, keys, "1.3.0")))
    assert code == 0, err
    assert json.loads(out) == {"Status": "202 Accepted", "Location": "/api/v1/admin/update", "job": "update"}
    code, out, err = await cli(*site(hosts), "job", "update", "--follow")
    assert code == 0 and "Updating system successful" in out and out.count("Please wait") == 1, err


@pytest_twisted.ensureDeferred
async def test_cli_failed_update_exits_5_with_the_code(make_daemon, keys, tmp_path):
    daemon = make_daemon()
    install_keys(daemon.admin_path, keys, "3.0.0")
    package = build(tmp_path, keys, "1.0.0")
    hosts = hosts_file(tmp_path, daemon)
    code, out, err = await cli(*site(hosts), "--json", "update", str(package), "--wait")
    assert code == 5 and "E1001" in err and len(err.strip().splitlines()) == 1, err
    assert json.loads(out)["error-code"] == "E1001"


@pytest_twisted.ensureDeferred
async def test_cli_refused_unreachable_untrusted_and_usage_each_one_line(make_daemon, tmp_path):
    daemon = make_daemon()
    other = make_daemon(subdir="other")
    hosts = hosts_file(tmp_path, daemon, token="wrong")
    token = tmp_path / "site-12.token"
    down = f"https://127.0.0.1:{free_port()}"
    cases = [
        ((*site(hosts), "health"), 1, "403 The signature does not match this request"),
        (("--url", down, "--token-file", str(token), "--fingerprint", "ab" * 32, "health"), 3, "connection refused"),
        (("--url", daemon.base, "--token-file", str(token), "--fingerprint", fingerprint_of(other), "health"), 4,
         f"presents the certificate {fingerprint_of(daemon)}, not the one pinned ({fingerprint_of(other)})"),
        (("--url", daemon.base, "--fingerprint", "ab" * 32, "health"), 2, "no API token"),
        ((*site(hosts, "nowhere"), "health"), 2, "not in"),
        (("--url", daemon.base, "--token-file", str(token), "health"), 2, "fingerprint"),
        ((*site(hosts), "update", "nosuch.enc"), 2, "cannot read the update package nosuch.enc"),
        (("--url", daemon.base, "--token-file", str(token), "--fingerprint", ZERO, "update", str(token), "--wait"), 4,
         f"presents the certificate {fingerprint_of(daemon)}, not the one pinned"),
        ((*site(hosts), "settings", "set", str(token)), 2, "is not JSON"),
        ((*site(hosts), "nosuch"), 2, "invalid choice"),
        ((*site(hosts), "--timeout", "0", "version"), 2, "above 0"),
    ]
    for args, expected, said in cases:
        code, out, err = await cli(*args, "--json")
        assert code == expected and said in err, (args, code, err)
        assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
        assert json.loads(out)["exit"] == expected, out


@pytest_twisted.ensureDeferred
async def test_cli_logs_checks_where_to_save_before_the_appliance_builds_the_bundle(make_daemon, tmp_path):
    daemon = make_daemon()
    (daemon.admin_path / "etc" / "logs.txt").write_text("")
    (daemon.admin_path / "log" / "app.log").write_text("started\n")
    hosts = hosts_file(tmp_path, daemon)
    code, out, err = await cli(*site(hosts), "logs", "/nonexist/x.tgz")
    assert code == 2 and "no folder /nonexist" in err and "Traceback" not in err, err
    async with client_for(daemon) as client:
        assert (await client.job("logs")).run is None  # nothing was asked of the appliance
    target = tmp_path / "logs.tar.gz"
    code, out, err = await cli(*site(hosts), "logs", str(target))
    assert code == 0, err
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert any(name.endswith("log/app.log") for name in tarfile.open(target).getnames())


@pytest_twisted.ensureDeferred
async def test_cli_fingerprint_names_the_presented_and_says_whether_it_is_the_pin(make_daemon, tmp_path):
    daemon = make_daemon()
    code, out, err = await cli("--url", daemon.base, "fingerprint")
    assert (code, out.strip()) == (0, fingerprint_of(daemon)), err
    code, out, err = await cli("--url", daemon.base, "--fingerprint", ZERO, "fingerprint")
    assert code == 4 and fingerprint_of(daemon) in err and ":".join(["00"] * 32) in err, err


@pytest_twisted.ensureDeferred
async def test_cli_reboot_without_a_reboot_command_fails_and_says_why(make_daemon, tmp_path):
    daemon = make_daemon()
    hosts = hosts_file(tmp_path, daemon)
    begun = time.monotonic()
    code, out, err = await cli(*site(hosts), "reboot", "--wait")
    assert code == 5 and "No reboot command configured" in err, err
    assert "rebooting" not in out and time.monotonic() - begun < 30


def test_cli_reboot_wait_returns_once_the_api_answers_again(twistd, tmp_path):
    """The reboot command here only leaves a mark; the test then stops the daemon and starts
    another on the same port and tree, as an appliance's reboot would."""
    import subprocess

    admin, port = tmp_path / "admin", free_port()
    (admin / "etc").mkdir(parents=True)
    (admin / "etc" / "api.token").write_text("yourtoken\n")
    mark = tmp_path / "rebooted"
    command = tmp_path / "reboot.sh"
    command.write_text(f"#!/bin/sh\ntouch {mark}\n")
    command.chmod(0o755)
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"reboot-command": [str(command)]}))
    args = ["--admin-path", str(admin), "--config", str(config), "--https", str(port), "--interface", "127.0.0.1"]
    first = twistd(*args)
    first.wait_listening(port)
    token = tmp_path / "token"
    token.write_text("yourtoken\n")
    fingerprint = certificate_fingerprint((admin / "etc" / "ssl" / "cert.pem").read_bytes())
    client = subprocess.Popen([sys.executable, "-m", "jidoteki_admin.client.cli", "--url", f"https://127.0.0.1:{port}",
                               "--token-file", str(token), "--fingerprint", fingerprint, "reboot", "--wait",
                               "--timeout", "60"], env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 30
    while not mark.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert mark.exists(), first.text()
    time.sleep(1.5)  # the client sees the API still answering, and keeps waiting
    assert client.poll() is None
    first.stop()
    time.sleep(1.5)  # ...and then not answering
    assert client.poll() is None
    second = twistd(*args)
    second.wait_listening(port)
    out, err = client.communicate(timeout=30)
    assert client.returncode == 0, err
    assert "The appliance answers again." in out


@pytest_twisted.ensureDeferred
async def test_cli_settings_set_wait_then_get(make_daemon, tmp_path):
    daemon = make_daemon(config={"endpoints": ["settings"]})
    hosts = hosts_file(tmp_path, daemon)
    wanted = {"network": {"interface": "eth0", "hostname": "site12.example.com", "ntpserver": "pool.ntp.org"},
              "app": {"name": "testapp"}}
    document = tmp_path / "settings.json"
    document.write_text(json.dumps(wanted))
    code, out, err = await cli(*site(hosts), "settings", "set", str(document), "--wait")
    assert code == 0 and out.strip() == "The new network and application settings are applied.", err
    code, out, err = await cli(*site(hosts), "--json", "settings", "get")
    assert code == 0, err
    assert json.loads(out) == {"network": {"mode": "dhcp", **wanted["network"]}, "app": wanted["app"]}
    document.write_text(json.dumps({"network": {"interface": "eth0", "hostname": "x"}}))
    code, out, err = await cli(*site(hosts), "settings", "set", str(document))
    assert code == 1 and "hostname" in err


@pytest_twisted.ensureDeferred
async def test_cli_certs_install_names_the_new_fingerprint_and_the_old_pin_is_untrusted(make_daemon, tmp_path):
    from test_certs import issue

    root = issue("CLI Root CA", ca=True)
    leaf = issue("site12.example.test", root)
    (tmp_path / "site.crt").write_bytes(leaf.pem)
    (tmp_path / "site.key").write_bytes(leaf.key_pem)
    daemon = make_daemon(config={"endpoints": ["certs"]})
    old, new = fingerprint_of(daemon), certificate_fingerprint(leaf.pem)
    hosts = hosts_file(tmp_path, daemon)
    code, out, err = await cli(*site(hosts), "certs", "install", "--public", str(tmp_path / "site.crt"),
                               "--private", str(tmp_path / "site.key"), "--wait")
    assert code == 0, err
    assert f'fingerprint = "{new}"' in out
    code, out, err = await cli("--url", daemon.base, "fingerprint")
    assert out.strip() == new, err
    code, out, err = await cli(*site(hosts), "health")
    assert code == 4 and f"presents the certificate {new}, not the one pinned ({old})" in err


@pytest_twisted.ensureDeferred
async def test_cli_backup_start_json_wait_download_then_restore(make_daemon, tmp_path):
    daemon, data = backup_daemon(make_daemon, tmp_path, 80_000)
    hosts = hosts_file(tmp_path, daemon)
    code, out, err = await cli(*site(hosts), "--json", "backup", "start")
    assert code == 0 and json.loads(out)["job"] == "backup", err
    code, out, err = await cli(*site(hosts), "job", "backup", "--follow", "--json")
    assert code == 0 and json.loads(out)["status"] == "success", err
    code, out, err = await cli(*site(hosts), "--json", "backup", "start", "--wait")
    assert code == 0, err
    report = json.loads(out)
    archive = tmp_path / "site-12.tar"
    code, out, err = await cli(*site(hosts), "backup", "download", str(archive))
    assert code == 0, err
    assert hashlib.sha256(archive.read_bytes()).hexdigest() == report["sha256"]
    assert stat.S_IMODE(archive.stat().st_mode) == 0o600
    (data / "app" / "db").write_bytes(b"lost")
    code, out, err = await cli(*site(hosts), "restore", str(archive))
    assert code == 0, err
    assert len((data / "app" / "db").read_bytes()) == 80_000
    code, out, err = await cli(*site(hosts), "restore", str(tmp_path / "site-12.token"))  # not an archive
    assert code == 1 and "400" in err


@pytest_twisted.ensureDeferred
async def test_cli_debug_bundle_download_opens_with_the_vendor_key(make_daemon, keys, tmp_path):
    daemon = make_daemon()
    (daemon.admin_path / "etc" / "updates.pub").write_bytes(keys["pub"].read_bytes())
    (daemon.admin_path / "etc" / "debug.txt").write_text("uname -s\n")
    hosts = hosts_file(tmp_path, daemon)
    bundle = tmp_path / "debug-bundle.tar"
    code, out, err = await cli(*site(hosts), "debug", str(bundle), "--mode", "0640")
    assert code == 0, err
    assert stat.S_IMODE(bundle.stat().st_mode) == 0o640
    with tarfile.open(bundle) as tar:
        assert sorted(tar.getnames()) == ["debug.key.enc", "debug.tar.gz.enc"]
    opened = tmp_path / "debug.tar.gz"
    done, _, code = await getProcessOutputAndValue(
        sys.executable, ["-m", "jidoteki_admin.vendor", "open-debug-bundle", str(bundle), "--key", str(keys["vendor"]),
                         "--out", str(opened)], env=ENV)
    assert code == 0
    with tarfile.open(opened) as tar:
        assert "debug-1.log" in tar.getnames()


# Every command against a hung appliance, interrupts, many appliances


def every_command(tmp_path: Path) -> list[tuple[str, ...]]:
    """Each command of the CLI, with inputs that pass its own checks."""
    document = tmp_path / "doc.json"
    document.write_text('{"network": {}}')
    pem = tmp_path / "c.pem"
    from test_certs import issue

    leaf = issue("black.hole.test")
    pem.write_bytes(leaf.pem)
    new_token = tmp_path / "new.token"
    new_token.write_text("another\n")
    out = str(tmp_path / "{host}.out")
    return [("fingerprint",), ("setup", "--new-token-file", str(new_token)), ("version",), ("health",),
            ("services",), ("endpoints",), ("build",), ("changelog",), ("update", str(document), "--wait"),
            ("update-status",), ("settings", "get"), ("settings", "set", str(document), "--wait"), ("storage", "get"),
            ("storage", "set", str(document)), ("cluster", "get"), ("cluster", "set", str(document)),
            ("certs", "status"), ("certs", "install", "--public", str(pem), "--private", str(pem), "--wait"),
            ("license", "get"), ("license", "set", str(pem)), ("backup", "start", "--wait"), ("backup", "stop"),
            ("backup", "status"), ("backup", "download", out), ("restore", str(document)), ("logs", out),
            ("debug", out), ("reboot", "--wait"), ("jobs",), ("job", "update", "--follow")]


@pytest_twisted.ensureDeferred
async def test_every_cli_command_against_a_black_hole_ends_within_its_timeout_with_3(black_hole, tmp_path):
    hosts = hosts_file(tmp_path, black_hole, name="hung", **{"tls-timeout": 0.5})
    begun = time.monotonic()
    few_at_once = DeferredSemaphore(6)
    runs = [(command, few_at_once.run(lambda c=command: ensureDeferred(cli(*site(hosts, "hung"), "--json", *c))))
            for command in every_command(tmp_path)]
    for command, run in runs:
        code, out, err = await run
        assert code == 3, (command, code, err)
        assert "no TLS handshake with" in err and "within 0.5 s" in err and len(err.splitlines()) == 1, (command, err)
        assert json.loads(out)["error"] == "unreachable"
    assert time.monotonic() - begun < 60  # all of them, on two busy cores


@pytest_twisted.ensureDeferred
async def test_sigint_ends_fingerprint_against_a_black_hole_at_once(black_hole):
    child = spawn_cli("--url", black_hole, "--tls-timeout", "60", "fingerprint")
    await deferLater(reactor, 1.5, lambda: None)
    begun = time.monotonic()
    child.signal(signal.SIGINT)
    code, out, err = await child.ended
    assert code == 130 and time.monotonic() - begun < 5, err
    assert err == f"jidoteki-admin-client: {black_hole}: interrupted\n"


def test_status_logs_are_split_on_the_two_characters_and_followed_once_each():
    """An appliance without GET /jobs: the status answer's last ten lines, each newline
    written as backslash and n (API.md section 3)."""
    seen: list[str] = []
    follow = TailFollower(seen.append)
    follow({"log": "a\\nb\\n"})
    follow({"log": "a\\nb\\nc\\n"})
    follow({"log": "b\\nc\\nd\\n"})
    follow({"log": None})
    assert seen == ["a", "b", "c", "d"]
    assert log_lines("x\\ny") == ["x", "y"] and log_lines("") == []


@pytest_twisted.ensureDeferred
async def test_sigint_during_an_upload_says_nothing_started_and_exits_130(make_daemon, tmp_path):
    daemon = make_daemon()
    relay = Relay(daemon.port, stall_after=1 << 20)
    package = tmp_path / "software_package-9.9.9.enc"
    package.write_bytes(os.urandom(24 << 20))
    hosts = hosts_file(tmp_path, relay.url, fingerprint=fingerprint_of(daemon))
    child = spawn_cli(*site(hosts), "update", str(package), "--wait")
    assert await wait_until(lambda: relay.stalled, timeout=20), child.err
    child.signal(signal.SIGINT)
    code, out, err = await child.ended
    relay.release()
    await relay.port.stopListening()
    assert code == 130, err
    assert err.strip() == ("jidoteki-admin-client: site-12: interrupted during the upload: the appliance keeps "
                           "nothing of a partial upload, and nothing started")
    async with client_for(daemon) as client:
        assert (await client.job("update")).run is None
    assert await wait_until(lambda: not list(daemon.service.tree.uploads.iterdir()), timeout=10)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
@pytest_twisted.ensureDeferred
async def test_an_interrupt_during_a_wait_says_the_job_goes_on_and_how_to_follow_it(make_daemon, keys, tmp_path,
                                                                                  signum):
    daemon = make_daemon()
    install_keys(daemon.admin_path, keys, "1.0.0")
    go = tmp_path / "go"
    package = build(tmp_path, keys, "1.1.0",
                    update_sh=f"#!/bin/sh\necho waiting\nwhile [ ! -e {go} ]; do sleep 0.1; done\necho done\n")
    hosts = hosts_file(tmp_path, daemon)
    child = spawn_cli(*site(hosts), "update", str(package), "--wait")
    assert await wait_until(lambda: b"waiting" in child.err, timeout=30), child.err
    child.signal(signum)
    code, out, err = await child.ended
    assert code == 130, err
    assert err.splitlines()[-1] == (
        f"jidoteki-admin-client: site-12: interrupted: the update goes on on the appliance; follow it with: "
        f"jidoteki-admin-client --hosts-file {hosts} --host site-12 job update --follow")
    async with client_for(daemon) as client:
        assert (await client.job("update")).status == "running"
    go.touch()
    code, out, err = await cli(*site(hosts), "job", "update", "--follow")
    assert code == 0 and out.count("waiting\n") == 1 and "done\n" in out, err


@pytest_twisted.ensureDeferred
async def test_many_appliances_at_once_one_hung_one_down_one_refusing(make_daemon, black_hole, keys, tmp_path):
    daemon = make_daemon()
    install_keys(daemon.admin_path, keys, "1.0.0")
    refusing = make_daemon(subdir="refusing")
    hosts = hosts_file(tmp_path, daemon, name="site-1", groups=["eu"])
    hosts_file(tmp_path, black_hole, name="site-2", groups=["eu"], **{"tls-timeout": 1})
    hosts_file(tmp_path, refusing, token="wrong", name="site-3", groups=["eu"])
    hosts_file(tmp_path, f"https://127.0.0.1:{free_port()}", name="site-4", groups=["eu"])
    hosts_file(tmp_path, daemon, name="elsewhere", groups=["us"])
    package = build(tmp_path, keys, "1.1.0")
    begun = time.monotonic()
    code, out, err = await cli("--hosts-file", str(hosts), "--group", "eu", "update", str(package), "--wait")
    assert code == 3, err  # the highest of 0, 3, 1 and 3
    table = {line.split()[0]: line.split()[1:4] for line in out.splitlines()[1:-1]}
    assert table["site-1"][:2] == ["ok", "1.1.0"]
    assert table["site-2"][:2] == ["unreachable", "-"]
    assert table["site-3"][:2] == ["refused", "-"]
    assert table["site-4"][:2] == ["unreachable", "-"]
    assert "elsewhere" not in table and out.splitlines()[-1] == "1 of 4 succeeded, 3 did not"
    assert {line.split(":")[1].strip() for line in err.splitlines() if line.startswith("jidoteki-admin-client")} \
        == {"site-2", "site-3", "site-4"}
    assert time.monotonic() - begun < 30
    code, out, err = await cli("--hosts-file", str(hosts), "--group", "all", "--parallel", "2", "--json", "version")
    summary = json.loads(out)
    assert code == summary["exit"] == 3
    assert [(h["host"], h["outcome"], h["version"]) for h in summary["hosts"]] == [
        ("site-1", "ok", "1.1.0"), ("site-2", "unreachable", None), ("site-3", "refused", None),
        ("site-4", "unreachable", None), ("elsewhere", "ok", "1.1.0")]
    assert summary["hosts"][2]["status"] == 403


@pytest_twisted.ensureDeferred
async def test_cli_checks_stages_applies_and_lists_the_history(make_daemon, keys, tmp_path):
    daemon = make_daemon({"query-credentials": False})  # every request the CLI makes is signed
    install_keys(daemon.admin_path, keys, "1.0.0")
    hosts = hosts_file(tmp_path, daemon)
    old = build(tmp_path, keys, "0.9.0")
    code, out, err = await cli(*site(hosts), "update-check", str(old))
    assert code == 1 and "it would not install: Update package version '0.9.0' is not newer" in err, err
    new = build(tmp_path, keys, "1.4.0")
    code, out, err = await cli(*site(hosts), "update-check", str(new))
    assert (code, out.strip()) == (0, "1.4.0 would install over 1.0.0"), err
    code, out, err = await cli(*site(hosts), "update-stage", str(new))
    assert code == 0 and out.startswith("1.4.0 is staged; install it with: "), err
    code, out, err = await cli(*site(hosts), "--json", "update-staged")
    assert code == 0 and json.loads(out)["staged"]["version"] == "1.4.0", err
    code, out, err = await cli(*site(hosts), "update-apply", "--wait")
    assert code == 0 and out.strip() == "The update succeeded.", err
    code, out, err = await cli(*site(hosts), "update-history")
    assert code == 0 and out.splitlines()[1].split()[1:4] == ["1.0.0", "1.4.0", "success"], out


@pytest_twisted.ensureDeferred
async def test_cli_makes_lists_and_revokes_named_tokens_and_uses_one(make_daemon, tmp_path):
    daemon = make_daemon({"query-credentials": False})
    hosts = hosts_file(tmp_path, daemon)
    code, out, err = await cli(*site(hosts), "tokens", "create", "monitoring", "--scope", "read")
    assert code == 0 and len(out.strip()) > 30, err
    token = out.strip()
    (tmp_path / "reader").mkdir()
    reader = hosts_file(tmp_path / "reader", daemon, token=token, name="reader", **{"token-name": "monitoring"})
    code, out, err = await cli(*site(reader, "reader"), "health", "--json")
    assert code == 0 and "disk" in json.loads(out), err
    code, out, err = await cli(*site(reader, "reader"), "reboot")
    assert code == 1 and "may only read" in err, err
    code, out, err = await cli(*site(hosts), "tokens", "list")
    assert code == 0 and out.splitlines()[1].split()[:2] == ["monitoring", "read"] and token not in out, out
    code, out, err = await cli(*site(hosts), "tokens", "revoke", "monitoring")
    assert code == 0, err
    code, out, err = await cli(*site(reader, "reader"), "health")
    assert code == 1 and "names no token" in err, err


@pytest_twisted.ensureDeferred
async def test_a_client_whose_clock_is_an_hour_off_signs_again_at_the_appliances_time(make_daemon, monkeypatch):
    import jidoteki_admin.client as library

    daemon = make_daemon({"query-credentials": False})
    (daemon.admin_path / "etc" / "version.txt").write_text("2.0.1\n")
    monkeypatch.setattr(library, "_now", lambda: time.time() - 3600)
    async with client_for(daemon) as client:
        assert await client.version() == "2.0.1"  # refused once for its time, then signed at theirs
        assert await client.version() == "2.0.1"
        assert 3590 < client._skew < 3610
    refusals = [line for line in (daemon.admin_path / "log" / "jidoteki-audit.log").read_text().splitlines()
                if "403" in line]
    assert len(refusals) == 1 and "check the client's clock" in refusals[0]
