"""What the daemon does on SIGHUP, SIGTERM and after kill -9: run as `twistd -n` in a child
(plain functions, which block on the child, never on this process's reactor), and a
reload through the real service object.
"""

import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path

import pytest
import pytest_twisted
from twisted.internet.threads import deferToThread
from twisted.logger import formatEvent, globalLogPublisher

import conftest
from conftest import raw_request, tls_client_context
from jidoteki_admin.tls import ensure_certificate
from conftest import free_port
from test_cli import curl

MiB = 1024 * 1024
TOKEN = "signaltoken"


class Twistd(conftest.Twistd):
    """`twistd -n --pidfile= [twistd options] jidoteki-admin ...` in a child process."""

    def __init__(self, cwd: Path, args: list[str], env: dict | None = None):
        self.cwd, self.args = cwd, list(args)
        self.output = cwd / "twistd.out"
        command = [sys.executable, "-c", "from twisted.scripts.twistd import run; run()", "-n", "--pidfile="]
        with open(self.output, "wb") as out:
            self.process = subprocess.Popen(command + args, cwd=cwd, env=conftest.twistd_env(),
                                            stdout=out, stderr=subprocess.STDOUT)


@pytest.fixture
def twistd(tmp_path):
    started = []

    def start(*args, env=None):
        run = tmp_path / f"run{len(started)}"  # each run keeps its own output
        run.mkdir()
        daemon = Twistd(run, list(args), env)
        started.append(daemon)
        return daemon

    yield start
    for daemon in started:
        daemon.stop()


def admin_tree(tmp_path: Path) -> Path:
    admin = tmp_path / "admin"
    for sub in ("etc", "log", "home/sftp/uploads", "tmp", "bin"):
        (admin / sub).mkdir(parents=True, exist_ok=True)
    (admin / "etc" / "api.token").write_text(TOKEN + "\n")
    (admin / "etc" / "version.txt").write_text("1.2.3\n")
    return admin


def start(twistd, tmp_path: Path, *more: str, config: dict | None = None, https: bool = False):
    """twistd on one port on 127.0.0.1: plain HTTP (HTTPS off), or HTTPS."""
    admin, port = admin_tree(tmp_path), free_port()
    config_path = tmp_path / "config.json"
    config_path.write_text(json.dumps(config or {}))
    listen = ["--https", str(port)] if https else ["--https", "0", "--http", str(port)]
    daemon = twistd(*more, "jidoteki-admin", "--admin-path", str(admin), *listen,
                    "--interface", "127.0.0.1", "--config", str(config_path))
    daemon.wait_listening(port)
    return daemon, admin, port, config_path


def version(port: int) -> tuple[int, str]:
    return curl(f"http://127.0.0.1:{port}/api/v1/admin/version?token={TOKEN}")


def wait_for(predicate, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


def partials(admin: Path) -> list[str]:
    return sorted(n for n in os.listdir(admin / "home" / "sftp" / "uploads") if n.startswith(".partial-"))


def start_upload(port: int, admin: Path, https: bool = False) -> socket.socket:
    """Send the first MiBs of a large upload and return once its partial file is on disk."""
    boundary = "XyZ"
    sock = socket.create_connection(("127.0.0.1", port))
    if https:
        sock = tls_client_context().wrap_socket(sock)
    sock.sendall(
        f"POST /api/v1/admin/update?token={TOKEN} HTTP/1.1\r\nHost: x\r\nContent-Length: {100 * MiB}\r\n"
        f"Content-Type: multipart/form-data; boundary={boundary}\r\n\r\n"
        f'--{boundary}\r\nContent-Disposition: form-data; name="update"; filename="p.enc"\r\n\r\n'.encode())
    for _ in range(8):
        sock.sendall(b"z" * (256 * 1024))
    assert wait_for(lambda: partials(admin)), "the upload should be streaming to disk"
    return sock


# SIGTERM and kill -9 during an upload


@pytest.mark.parametrize("https", [True, False], ids=["https", "http"])
def test_sigterm_during_an_upload_leaves_no_partial_file(twistd, tmp_path, https):
    daemon, admin, port, _ = start(twistd, tmp_path, https=https)
    sock = start_upload(port, admin, https)
    try:
        daemon.process.send_signal(signal.SIGTERM)
        daemon.process.wait(10)
    finally:
        sock.close()
    assert partials(admin) == []
    assert "Traceback" not in daemon.text()


def test_a_partial_file_left_by_kill_9_is_removed_at_start(twistd, tmp_path):
    daemon, admin, port, _ = start(twistd, tmp_path)
    sock = start_upload(port, admin)
    daemon.process.kill()
    daemon.process.wait(10)
    sock.close()
    assert partials(admin), "kill -9 gives the daemon no chance to clean up"
    (admin / "home" / "sftp" / "uploads" / "software_package-1.enc").write_bytes(b"kept")
    again, _, port, _ = start(twistd, tmp_path)
    assert partials(admin) == []
    assert (admin / "home" / "sftp" / "uploads" / "software_package-1.enc").read_bytes() == b"kept"
    assert "Removed 1 partial upload" in again.text()
    assert (admin / "etc" / "api.token").read_text() == TOKEN + "\n"


def test_after_kill_9_during_an_upload_the_next_update_runs(twistd, tmp_path, keys):
    from test_orphans import assert_nothing_partial
    from test_updates import build, install_keys

    daemon, admin, port, _ = start(twistd, tmp_path)
    install_keys(admin, keys)
    (admin / "etc" / "api.token").write_text(TOKEN + "\n")
    sock = start_upload(port, admin)
    daemon.process.kill()
    daemon.process.wait(10)
    sock.close()
    again, _, port, _ = start(twistd, tmp_path)
    url = f"http://127.0.0.1:{port}/api/v1/admin/update?token={TOKEN}"
    assert curl("-F", f"update=@{build(tmp_path, keys, '9.0.0')}", url)[0] == 202
    assert wait_for(lambda: json.loads(curl(url)[1])["status"] != "running")
    status = json.loads(curl(url)[1])
    assert status["status"] == "success", status
    assert (admin / "etc" / "version.txt").read_text() == "9.0.0\n"
    assert_nothing_partial(admin)
    assert os.listdir(admin / "home" / "sftp" / "uploads") == []


# SIGHUP, through twistd


def sighup_lines(daemon) -> list[str]:
    return [line for line in daemon.text().splitlines() if "SIGHUP: " in line]


def test_sighup_keeps_the_daemon_serving_and_says_what_it_did(twistd, tmp_path):
    daemon, admin, port, config_path = start(twistd, tmp_path, config={"job-timeout": 100})
    config_path.write_text(json.dumps({"job-timeout": 200, "endpoints": ["backup"]}))
    for n in range(1, 3):
        daemon.process.send_signal(signal.SIGHUP)
        assert wait_for(lambda n=n: len(sighup_lines(daemon)) == n), daemon.text()
        assert daemon.process.poll() is None
        assert version(port) == (200, '{"version":"1.2.3"}')
    first, second = sighup_lines(daemon)
    assert "reopened the job logs" in first
    assert "loaded the TLS certificate etc/ssl/cert.pem" in first
    assert "applied job-timeout" in first and "endpoints changed and will apply after a restart" in first
    assert "no change to apply" in second
    assert "Traceback" not in daemon.text()


def test_sighup_reopens_the_twistd_log_file_after_logrotate_moved_it(twistd, tmp_path):
    logfile = tmp_path / "twistd.log"
    daemon, admin, port, _ = start(twistd, tmp_path, f"--logfile={logfile}")
    # Under load the first lines can take a while to reach the file: 30 s, as for a start.
    assert wait_for(lambda: logfile.exists() and "Starting factory" in logfile.read_text(), 30), daemon.text()
    logfile.rename(tmp_path / "twistd.log.1")
    daemon.process.send_signal(signal.SIGHUP)
    assert wait_for(lambda: logfile.exists() and "SIGHUP: " in logfile.read_text(), 30), daemon.text()
    assert f"reopened {logfile}" in logfile.read_text()
    assert version(port)[0] == 200
    assert "SIGHUP" not in (tmp_path / "twistd.log.1").read_text()


def test_a_bad_config_on_sighup_keeps_the_old_one(twistd, tmp_path):
    daemon, admin, port, config_path = start(twistd, tmp_path)
    config_path.write_text("{not json")
    daemon.process.send_signal(signal.SIGHUP)
    assert wait_for(lambda: sighup_lines(daemon)), daemon.text()
    assert "kept the config in use" in sighup_lines(daemon)[0] and "line 1 column 2" in sighup_lines(daemon)[0]
    assert daemon.process.poll() is None and version(port)[0] == 200


def test_the_multipart_parser_logs_through_twisted_at_debug_level(twistd, tmp_path):
    daemon, admin, port, _ = start(twistd, tmp_path)
    body = b"--BOUNDARO\r\n"
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(f"POST /api/v1/admin/update?token={TOKEN} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                     f"Content-Type: multipart/form-data; boundary=BOUNDARY\r\n"
                     f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 400 ")
    assert wait_for(lambda: '"POST /api/v1/admin/update' in daemon.text())
    parser_lines = [line for line in daemon.text().splitlines() if "boundary character" in line]
    assert parser_lines, "the parser's message is kept, at debug level"
    assert all("[jidoteki_admin.uploads.parser#debug] multipart parser: " in line for line in parser_lines)


# What a reload does, through the real service object


def served_certificate(port: int) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
        with tls_client_context().wrap_socket(raw) as tls:
            return tls.getpeercert(binary_form=True)


def pem_to_der(path: Path) -> bytes:
    return ssl.PEM_cert_to_DER_cert(path.read_text())


@pytest.fixture
def log_lines():
    lines = []

    def observe(event):
        lines.append(formatEvent(event) or "")

    globalLogPublisher.addObserver(observe)
    yield lines
    globalLogPublisher.removeObserver(observe)


@pytest_twisted.ensureDeferred
async def test_a_reload_serves_a_new_certificate_and_keeps_it_when_the_next_is_bad(daemon, tmp_path, log_lines):
    tree = daemon.service.tree
    assert await deferToThread(served_certificate, daemon.port) == pem_to_der(tree.certificate)
    fresh, other = tmp_path / "fresh", tmp_path / "other"
    for pair in (fresh, other):
        pair.mkdir()
        ensure_certificate(pair / "cert.pem", pair / "key.pem")
    shutil.copy(fresh / "cert.pem", tree.certificate)
    shutil.copy(fresh / "key.pem", tree.private_key)
    daemon.service.reload()
    assert await deferToThread(served_certificate, daemon.port) == pem_to_der(fresh / "cert.pem")
    assert any("SIGHUP: " in line and "loaded the TLS certificate etc/ssl/cert.pem" in line for line in log_lines)

    shutil.copy(other / "cert.pem", tree.certificate)  # a certificate without its key
    daemon.service.reload()
    assert await deferToThread(served_certificate, daemon.port) == pem_to_der(fresh / "cert.pem")
    said = [line for line in log_lines if "SIGHUP: " in line][-1]
    assert "kept the TLS certificate in use" in said, said
    response = await raw_request(daemon, "GET", "/api/v1/admin/health?token=yourtoken")
    assert response.status == 200


@pytest_twisted.ensureDeferred
async def test_a_reload_applies_the_reloadable_config_keys(make_daemon, tmp_path, log_lines):
    config_path = tmp_path / "config.json"
    config_path.write_text("{}")
    daemon = make_daemon(config_path=config_path)
    config_path.write_text(json.dumps({
        "job-timeout": 5, "services": ["reloaded-service"], "upload-limits": {"update": 1000},
        "connections": {"max": 7, "header-timeout": 3}, "auth-throttle": {"burst": 2},
        "log-rotate": {"bytes": 5000, "keep": 1}, "build-file": str(tmp_path / "b.json"),
    }))
    daemon.service.reload()
    service = daemon.service
    assert service.runner.timeout == 5
    assert (service.site.limits.max, service.site.limits.header_timeout) == (7, 3)
    assert service.api.throttle.settings.burst == 2
    assert service.api.audit.rotate.bytes == service.runner.log_rotate.bytes == 5000
    services = json.loads(await (await daemon.get("/services")).content())["services"]
    assert {"reloaded-service": "not running"} in services or {"reloaded-service": "running"} in services
    response = await daemon.post_form("/update", files={"update": ("p.enc", b"x" * 2000)})
    assert response.code == 413
    said = [line for line in log_lines if "SIGHUP: " in line][-1]
    assert ("applied services, upload-limits, job-timeout, connections, log-rotate, auth-throttle" in said
            and "build-file changed and will apply after a restart" in said), said
    assert service.settings.config.build_file != tmp_path / "b.json"  # kept until a restart
