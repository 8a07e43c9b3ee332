"""Listeners from Twisted endpoint descriptions: --listen, and systemd socket activation."""

from __future__ import annotations

import json
import os
import socket
import ssl
import subprocess
import sys
import time

import pytest

from conftest import tls_client_context, twistd_env
from conftest import TWISTD, free_port


def health_status(port: int) -> bytes:
    """The status line of an anonymous GET /health over TLS (a 403: the daemon answered)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        with tls_client_context().wrap_socket(sock) as tls:
            tls.sendall(b"GET /api/v1/admin/health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            return tls.recv(4096).split(b"\r\n", 1)[0]


def test_listen_takes_an_endpoint_description(twistd, tmp_path):
    port = free_port()
    daemon = twistd("--admin-path", str(tmp_path / "admin"), "--listen", f"tcp:{port}:interface=127.0.0.1")
    daemon.wait_listening(port)
    assert health_status(port) == b"HTTP/1.1 403 Forbidden"
    assert daemon.listening_ports() == {port}  # it replaces --https, whose default is 8443


def test_a_bad_endpoint_description_is_refused_in_one_line(twistd, tmp_path):
    daemon = twistd("--admin-path", str(tmp_path / "admin"), "--listen", "nosuchtype:1234")
    assert daemon.process.wait(30) == 1
    lines = daemon.text().strip().splitlines()
    assert len(lines) == 1 and "bad endpoint description 'nosuchtype:1234'" in lines[0], lines


def test_systemd_socket_activation_without_a_socket_is_refused_in_one_line(twistd, tmp_path):
    daemon = twistd("--admin-path", str(tmp_path / "admin"), "--listen", "systemd:domain=INET:index=0")
    assert daemon.process.wait(30) == 1
    lines = daemon.text().strip().splitlines()
    assert len(lines) == 1 and "systemd:domain=INET:index=0" in lines[0], lines


def test_systemd_socket_activation(tmp_path):
    """A unit with a .socket hands the daemon fd 3 and LISTEN_PID/LISTEN_FDS, as systemd does."""
    listening = socket.socket()
    listening.bind(("127.0.0.1", 0))
    listening.listen()
    port = listening.getsockname()[1]
    inherited = listening.fileno()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JIDO_", "LISTEN_"))}
    env.update({"LISTEN_FDS": "1", "LISTEN_FDNAMES": "jidoteki-admin.socket", "PYTHONPATH": twistd_env()["PYTHONPATH"]})
    # LISTEN_PID must be the daemon's own pid, and the socket its fd 3: a bootstrap
    # arranges both, then execs the daemon (exec keeps the pid).
    bootstrap = (
        "import os, sys; os.environ['LISTEN_PID'] = str(os.getpid()); "
        f"os.dup2({inherited}, 3); os.close({inherited}); os.execv(sys.executable, sys.argv[1:])"
    )
    argv = TWISTD + ["--admin-path", str(tmp_path / "admin"), "--listen", "systemd:domain=INET:index=0"]
    output = tmp_path / "twistd.out"
    with open(output, "wb") as out:
        process = subprocess.Popen([sys.executable, "-c", bootstrap, *argv], cwd=tmp_path, env=env,
                                   stdout=out, stderr=subprocess.STDOUT, pass_fds=[inherited])
    listening.close()  # only the daemon holds the socket now
    try:
        for _ in range(150):
            try:
                assert health_status(port) == b"HTTP/1.1 403 Forbidden"
                break
            except (OSError, ssl.SSLError):
                assert process.poll() is None, output.read_text()
                time.sleep(0.1)
        else:
            pytest.fail(f"no answer on the activated socket:\n{output.read_text()}")
    finally:
        process.terminate()
        process.wait(15)


@pytest.mark.parametrize("request_line", [b"GET /api/v1/admin/health HTTP/1.1", b"POST /api/v1/admin/setup HTTP/1.0"])
def test_plain_http_to_the_https_port_is_told_to_use_https(daemon_port, request_line):
    with socket.create_connection(("127.0.0.1", daemon_port), timeout=10) as sock:
        sock.sendall(request_line + b"\r\nHost: x\r\n\r\n")
        answer = b""
        while chunk := sock.recv(4096):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400 Bad Request\r\n")
    assert b"\r\nError-Message: This port speaks HTTPS: use https:// in the URL\r\n" in head
    assert b"\r\nStrict-Transport-Security: " in head
    assert json.loads(body) == {"Status": "400 Bad Request", "Error-Message": "This port speaks HTTPS: use https:// in the URL"}
    # And TLS on the same port is untouched.
    assert health_status(daemon_port) == b"HTTP/1.1 403 Forbidden"


@pytest.fixture
def daemon_port(twistd, tmp_path):
    port = free_port()
    daemon = twistd("--admin-path", str(tmp_path / "admin"), "--https", str(port), "--interface", "127.0.0.1")
    daemon.wait_listening(port)
    return port
