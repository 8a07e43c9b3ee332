"""The daemon as an unprivileged user: twistd --uid/--gid, and a warning when it runs as root."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import time
import tempfile
from pathlib import Path

import pytest

from conftest import REPO, free_port, twistd_env
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


def python_usable_by(python: str, uid: int) -> bool:
    """Whether that user can run this Python with the daemon's packages."""
    probe = "import encodings.idna, cryptography.hazmat.backends, OpenSSL, twisted, jidoteki_admin"
    try:
        done = subprocess.run([python, "-c", probe], capture_output=True, timeout=60, env=twistd_env(),
                              cwd="/", preexec_fn=lambda: (os.setgid(uid), os.setuid(uid)))
    except PermissionError:
        return False
    return done.returncode == 0


@pytest.fixture
def python_for_nobody(open_dir):
    """A Python the user nobody can run, with the daemon's packages: this one, or, when it
    lives where nobody cannot read (pyenv in root's home), the system's Python of the same
    version in a virtual environment that reads the same packages."""
    if python_usable_by(sys.executable, NOBODY):
        return sys.executable
    system = shutil.which(f"python{sys.version_info[0]}.{sys.version_info[1]}", path="/usr/bin:/usr/local/bin")
    if system is None:
        pytest.skip("no Python of this version that the user nobody can run")
    venv = open_dir / "venv"
    subprocess.run([system, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=60)
    site = next((venv / "lib").glob("python*/site-packages"))
    (site / "daemon.pth").write_text("\n".join(sorted(set(sysconfig.get_paths()[k] for k in ("purelib", "platlib"))))
                                    + f"\n{REPO}\n")
    python = str(venv / "bin" / "python")
    if not python_usable_by(python, NOBODY):
        pytest.skip("the daemon's packages cannot be read by the user nobody")
    return python


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
