"""The daemon as an unprivileged user: twistd --uid/--gid, and a warning when it runs as root."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
import tempfile
from pathlib import Path

import pytest

from conftest import free_port, python_for, twistd_env
from test_listen import health_status

NOBODY = 65534
as_root = pytest.mark.skipif(os.geteuid() != 0, reason="switching users needs root")


@pytest.fixture
def open_dir():
    """A directory another user can work in (pytest's tmp_path is private to root)."""
    path = Path(tempfile.mkdtemp(prefix="jidoteki-uid-"))
    path.chmod(0o755)
    os.chown(path, NOBODY, NOBODY)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def python_for_nobody(open_dir):
    return python_for(NOBODY, open_dir)


@as_root
def test_twistd_uid_and_gid_lay_out_the_tree_as_that_user(open_dir, python_for_nobody):
    port = free_port()
    output = open_dir / "twistd.out"
    command = [python_for_nobody, "-c", "from twisted.scripts.twistd import run; run()", "-n", "--pidfile=",
               "--uid", str(NOBODY), "--gid", str(NOBODY), "jidoteki-admin", "--admin-path", str(open_dir / "admin"),
               "--https", str(port), "--interface", "127.0.0.1"]
    with open(output, "wb") as out:
        process = subprocess.Popen(command, cwd=open_dir, env=twistd_env(), stdout=out, stderr=subprocess.STDOUT)
    try:
        for _ in range(300):
            if "Serving the admin tree" in output.read_text() or process.poll() is not None:
                break
            time.sleep(0.05)
        assert health_status(port) == b"HTTP/1.1 403 Forbidden", output.read_text()
        for path in [open_dir / "admin", open_dir / "admin/etc/ssl/key.pem", open_dir / "admin/etc/jidoteki-admin.lock"]:
            assert (path.stat().st_uid, path.stat().st_gid) == (NOBODY, NOBODY), path
        assert "Running as root" not in output.read_text()
    finally:
        process.terminate()
        process.wait(15)


@as_root
def test_running_as_root_is_warned_about_in_one_line(twistd, tmp_path):
    port = free_port()
    daemon = twistd("--admin-path", str(tmp_path / "admin"), "--https", str(port), "--interface", "127.0.0.1")
    daemon.wait_listening(port)
    assert health_status(port) == b"HTTP/1.1 403 Forbidden"
    warnings = [line for line in daemon.text().splitlines() if "Running as root" in line]
    assert len(warnings) == 1 and "privileged-command" in warnings[0]
