"""What the daemon does on SIGHUP, SIGTERM and after kill -9, run as `twistd -n` in a child.

These tests block on the child process (never on the reactor of this process), so they
are plain functions.
"""

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

import test_cli
from conftest import tls_client_context
from test_cli import curl, free_port

MiB = 1024 * 1024
TOKEN = "signaltoken"


class Twistd(test_cli.Twistd):
    """`twistd -n --pidfile= [twistd options] jidoteki-admin ...` in a child process."""

    def __init__(self, cwd: Path, args: list[str], env: dict | None = None):
        self.output = cwd / "twistd.out"
        command = [sys.executable, "-c", "from twisted.scripts.twistd import run; run()", "-n", "--pidfile="]
        with open(self.output, "wb") as out:
            self.process = subprocess.Popen(command + args, cwd=cwd, env=test_cli.twistd_env(),
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
