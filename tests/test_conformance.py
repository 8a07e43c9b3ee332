"""Drop-in conformance: the daemon in place of the original, on the original appliance's own
scripts (tests/original-appliance, rendered from the role that installs them on every
appliance), as the appliance's unprivileged user (uid 997, as the role makes it), with the
shipped unit's umask, through real sudo and a sudoers rule for the wrapper, on the role's
owners and modes.

Every row of the fixture's table (tests/original-appliance/README.md, "How the original
daemon calls the appliance") is driven through the daemon, success and failure: the
stand-ins' call log must show exactly the calls the original made (command, arguments,
user), and every GET must answer what the original answered for that script output.
"""

from __future__ import annotations

import importlib.util
import io
import json
import os
import shutil
import signal
import ssl
import socket
import subprocess
import tarfile
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from conftest import free_port, python_for, twistd_env
from jidoteki_admin.formats import package

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root: real sudo and a real unprivileged user")

FIXTURE = Path(__file__).resolve().parent / "original-appliance"
A = "/opt/jidoteki/tinyadmin"
U = A + "/home/sftp/uploads"
UID, GID, STAFF = 997, 997, 50  # the role's admin user and group; update_certs.sh's key group
SUDOERS = Path("/etc/sudoers.d/jidoteki-admin-conformance")
SAVE = [("/usr/bin/sudo", ["/usr/bin/symlinktool.sh", "-c", "sda1tce"], 0),
        ("/usr/bin/symlinktool.sh", ["-c", "sda1tce"], 0),
        ("/usr/bin/sudo", ["/usr/bin/symlinktool.sh", "-r", "sda1tce"], 0),
        ("/usr/bin/symlinktool.sh", ["-r", "sda1tce"], 0)]


def load_fixture():
    spec = importlib.util.spec_from_file_location("original_appliance_install", FIXTURE / "install.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def sudo(script: str, *args: str) -> tuple:
    """The wrapper's call of a script, as root (the wrapper runs through real sudo)."""
    return ("/usr/bin/sudo", [f"{A}/bin/{script}", *args], 0)


@dataclass
class Appliance:
    root: Path
    admin: Path
    port: int
    https: int
    process: subprocess.Popen
    output: Path
    fixture: object
    token: str = "yourtoken"
    seen: int = 0
    extra: dict = field(default_factory=dict)

    def p(self, path: str) -> Path:
        return Path(str(self.root) + path)

    def url(self, path: str, token: str | None = None) -> str:
        return f"http://127.0.0.1:{self.port}/api/v1/admin{path}?token={token or self.token}"

    def curl(self, *args: str) -> tuple[int, dict, bytes]:
        """(status, headers, body) of a request made with curl."""
        done = subprocess.run(["curl", "-s", "-D", "-", "--max-time", "120", *args], capture_output=True, timeout=130)
        head, _, body = done.stdout.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        return int(lines[0].split()[1]), headers, body

    def get(self, path: str, token: str | None = None) -> tuple[int, dict, bytes]:
        return self.curl(self.url(path, token))

    def post(self, path: str, *form: str) -> tuple[int, dict, bytes]:
        args = []
        for item in form:
            args += ["-F", item]
        return self.curl(*args, self.url(path))

    def json(self, path: str) -> dict:
        status, _, body = self.get(path)
        assert status == 200, (path, status, body)
        return json.loads(body)

    def calls(self) -> list[tuple]:
        """The stand-ins' calls since the last look: (tool, arguments, uid)."""
        log = self.fixture.read_log(self.root)
        new, self.seen = log[self.seen:], len(log)
        return [(c["tool"], c["args"], c["uid"]) for c in new]

    def wait_calls(self, count: int, seconds: float = 30) -> list[tuple]:
        """The calls of a job that answered 202: once there are ``count`` of them."""
        deadline = time.monotonic() + seconds
        while len(self.fixture.read_log(self.root)) - self.seen < count and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.2)  # and none after them
        return self.calls()

    def finished(self, path: str, seconds: float = 60) -> dict:
        deadline = time.monotonic() + seconds
        while True:
            body = self.json(path)
            if body.get("status") not in ("running", None) or time.monotonic() > deadline:
                return body
            time.sleep(0.05)

    def write(self, path: str, data: bytes | str, mode: int = 0o644, owner: tuple[int, int] = (0, 0)) -> Path:
        target = self.p(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data.encode() if isinstance(data, str) else data)
        os.chown(target, *owner)
        target.chmod(mode)
        return target


def ensure_user() -> None:
    """uid and gid 997 exist (a system account takes them on many hosts: any name will do)."""
    if subprocess.run(["getent", "group", str(GID)], capture_output=True).returncode != 0:
        subprocess.run(["groupadd", "--system", "--gid", str(GID), "jidoteki-admin-test"], check=True)
    if subprocess.run(["getent", "passwd", str(UID)], capture_output=True).returncode != 0:
        subprocess.run(["useradd", "--system", "--uid", str(UID), "--gid", str(GID), "--no-create-home",
                        "--shell", "/usr/sbin/nologin", "jidoteki-admin-test"], check=True)


def tls_pair(directory: Path, name: str) -> tuple[Path, Path]:
    key, cert = directory / f"{name}.key", directory / f"{name}.crt"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "30", "-subj", f"/CN={name}",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    return cert, key


@pytest.fixture(scope="module")
def appliance():
    if shutil.which("sudo") is None or shutil.which("visudo") is None:
        pytest.fail("the conformance test needs sudo (apt-get install sudo)")
    ensure_user()
    fixture = load_fixture()
    base = Path(tempfile.mkdtemp(prefix="jidoteki-conformance-"))
    base.chmod(0o711)  # uid 997 (and sudo -u '#997') reach what is below
    root = base / "root"
    layout = fixture.install(str(root), owners=True)
    admin = Path(layout["admin_path"])
    app = Appliance(root, admin, free_port(), free_port(), None, base / "twistd.out", fixture)

    # What an appliance in the field has beside the role's files: a token (0660 0:997),
    # the certificate update_certs.sh installs (0640 root:staff), the update keys, data.
    app.write(A + "/etc/api.token", "yourtoken\n", 0o660, (0, GID))
    pki = root / "usr/local/etc/pki/tls"
    for sub in ("certs", "private", "cacerts"):
        (pki / sub).mkdir(parents=True, exist_ok=True)
    cert, key = tls_pair(base, "appliance.example.test")
    for source, target in ((cert, pki / "certs/enterprise.crt"), (key, pki / "private/enterprise.key")):
        shutil.copy(source, target)
        os.chown(target, 0, STAFF)
        target.chmod(0o640)
    (root / "data").mkdir(exist_ok=True)
    app.write("/data/app.db", "db-v1\n", 0o644, (UID, GID))
    os.chown(root / "data", UID, GID)
    app.write(A + "/etc/backup.txt", "app.db\n")
    app.write("/usr/local/etc/storage-options.json", json.dumps({"options": ["local", "nfs"]}))
    app.write("/var/log/app/app.log", "hello from the app\n")
    app.write(A + "/etc/logs.txt", str(root / "var/log/app") + "\n")
    app.write(A + "/etc/debug.txt", "uname -s;\necho debug-ok; # a comment\n")
    app.write(A + "/etc/version.txt", "1.0.0\n", 0o644)
    vendor = base / "vendor"
    vendor.mkdir()
    subprocess.run(["openssl", "genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out",
                    str(vendor / "vendor.key")], check=True, capture_output=True)
    subprocess.run(["openssl", "pkey", "-in", str(vendor / "vendor.key"), "-pubout", "-out",
                    str(admin / "etc/updates.pub")], check=True, capture_output=True)
    (admin / "etc/updates.key").write_text(os.urandom(32).hex() + "\n")
    (admin / "etc/updates.key").chmod(0o600)
    app.extra["vendor"] = vendor

    # The shipped sudoers drop-in (docs/migration.md), for the fixture's wrapper and uid: the
    # daemon's user may run the wrapper as root, which keeps SSH_ORIGINAL_COMMAND.
    wrapper = layout["wrapper"]
    shipped = (Path(__file__).resolve().parents[1] / "etc/sudoers.d/jidoteki-admin-appliance").read_text()
    rule = shipped.replace("/opt/jidoteki/tinyadmin/bin/wrapper.sh", wrapper).replace("\njidoteki ALL", f"\n#{UID} ALL")
    SUDOERS.write_text(rule)
    SUDOERS.chmod(0o440)
    checked = subprocess.run(["visudo", "-cf", str(SUDOERS)], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stdout + checked.stderr

    config = {
        "jobs": "appliance",
        "privileged-command": ["/usr/bin/sudo", "-n", wrapper],
        "appliance-lock-dir": layout["lock_dir"],
        "endpoints": ["settings", "certs", "license", "storage", "backup"],
        "services": [],
        "services-file": str(root / "usr/local/etc/allservices.txt"),
        "init-directory": str(root / "usr/local/etc/init.d"),
        "network-conf": str(root / "usr/local/etc/network.conf"),
        "storage-conf": str(root / "usr/local/etc/storage.conf"),
        "storage-options-file": str(root / "usr/local/etc/storage-options.json"),
        "backup-root": str(root / "data"),
        "tls-certificate": str(pki / "certs/enterprise.crt"),
        "tls-private-key": str(pki / "private/enterprise.key"),
    }
    (base / "config.json").write_text(json.dumps(config))
    python = python_for(UID, base, GID)
    twistd = [python, "-c", "from twisted.scripts.twistd import run; run()", "-n", "--pidfile=", "jidoteki-admin",
              "--admin-path", str(admin), "--config", str(base / "config.json"), "--https", str(app.https),
              "--http", str(app.port), "--interface", "127.0.0.1"]
    env = {**twistd_env(), "HOME": "/"}
    env.pop("JIDO_ADMIN_PATH", None)

    def as_the_appliances_user():  # the shipped unit: User=, its groups, UMask=0027
        os.setgroups([GID, STAFF])
        os.setgid(GID)
        os.setuid(UID)
        os.umask(0o027)

    with open(app.output, "wb") as out:
        app.process = subprocess.Popen(twistd, cwd=str(base), env=env, stdout=out, stderr=subprocess.STDOUT,
                                       preexec_fn=as_the_appliances_user)
    deadline = time.monotonic() + 30
    while "Serving the admin tree" not in app.output.read_text(errors="replace"):
        assert app.process.poll() is None, app.output.read_text()
        assert time.monotonic() < deadline, app.output.read_text()
        time.sleep(0.1)
    app.calls()
    yield app
    app.process.send_signal(signal.SIGTERM)
    try:
        app.process.wait(15)
    except subprocess.TimeoutExpired:
        app.process.kill()
    SUDOERS.unlink(missing_ok=True)
    shutil.rmtree(base, ignore_errors=True)


def served_subject(port: int) -> str:
    context = ssl.create_default_context()
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw, context.wrap_socket(raw) as tls:
        der = tls.getpeercert(binary_form=True)
    from cryptography import x509

    return x509.load_der_x509_certificate(der).subject.rfc4514_string()


# ------------------------------------------------------------------------------------------


def test_the_daemon_runs_as_the_appliances_user(appliance):
    import psutil

    process = psutil.Process(appliance.process.pid)
    assert process.uids().effective == UID and process.gids().effective == GID
    assert appliance.get("/health")[0] == 200


def test_get_services_is_the_scripts_output(appliance):
    appliance.write("/services.down", "nginx\n")
    status, headers, body = appliance.get("/services")
    assert status == 200 and headers["content-type"] == "application/json"
    assert body == b'{"services":[{"jidoteki-admin-api":"running"},{"nginx":"not running"},{"myapp":"running"}]}'
    assert appliance.calls() == [sudo("update_services.sh", "FETCH")] + [
        (f"/usr/local/etc/init.d/{name}", ["status"], 0) for name in ("jidoteki-admin-api", "nginx", "myapp")]
    appliance.p("/services.down").unlink()


def test_post_storage(appliance):
    document = {"storage": {"type": "nfs", "ip": "192.168.1.100", "share": "/nfs/storage"}}
    (appliance.root / "storage.json").write_text(json.dumps(document))
    status, headers, body = appliance.post("/storage", f"settings=@{appliance.root / 'storage.json'}")
    assert status == 202 and headers["location"] == "/api/v1/admin/storage"
    assert json.loads(body) == {"Status": "202 Accepted", "Location": "/api/v1/admin/storage"}
    assert appliance.wait_calls(8) == [sudo("update_storage.sh"),
                                       ("/usr/bin/chown", ["0:997", A + "/etc/storage.json"], 0),
                                       ("/usr/bin/chown", ["0:997", "/usr/local/etc/storage.conf"], 0),
                                       (A + "/bin/storage.sh", [], 0)] + SAVE
    assert appliance.p("/usr/local/etc/storage.conf").read_text() == \
        'type="nfs"\nip="192.168.1.100"\nshare="/nfs/storage"\n'
    shown = appliance.json("/storage")
    assert shown["storage"]["share"] == "/nfs/storage" and shown["options"] == ["local", "nfs"]
    assert os.listdir(appliance.p(U)) == []


def test_post_settings_static_and_dhcp(appliance):
    document = {"network": {"interface": "eth0", "hostname": "site.example.com", "ip_address": "10.0.0.5",
                            "netmask": "255.255.255.0", "gateway": "10.0.0.1", "dns1": "10.0.0.2"},
                "app": {"name": "app"}}
    (appliance.root / "settings.json").write_text(json.dumps(document))
    status, headers, _ = appliance.post("/settings", f"settings=@{appliance.root / 'settings.json'}")
    assert status == 202 and headers["location"] == "/api/v1/admin/settings"
    assert appliance.wait_calls(9) == [sudo("update_settings.sh", "static"),
                                       ("/usr/bin/chown", ["0:997", A + "/etc/app.json"], 0),
                                       ("/usr/bin/chown", ["0:997", A + "/etc/network.json"], 0),
                                       ("/usr/bin/chown", ["0:997", "/usr/local/etc/network.conf"], 0),
                                       (A + "/bin/network.sh", ["static"], 0)] + SAVE
    shown = appliance.json("/settings")
    assert shown["network"]["mode"] == "static" and shown["network"]["ip_address"] == "10.0.0.5"
    assert shown["app"] == {"name": "app"}
    conf = appliance.p("/usr/local/etc/network.conf").read_text()
    assert conf.startswith("mode=static\ninterface=eth0\nip=10.0.0.5\n")
    # A failing network.sh: the script says so by its exit status, which the status reports.
    appliance.write("/stubs.fail", "network.sh\n")
    (appliance.root / "settings.json").write_text(json.dumps({"network": {"interface": "eth0",
                                                                          "hostname": "site.example.com"}}))
    assert appliance.post("/settings", f"settings=@{appliance.root / 'settings.json'}")[0] == 202
    calls = appliance.wait_calls(5)
    assert calls[0] == sudo("update_settings.sh", "dhcp") and calls[-1] == (A + "/bin/network.sh", ["dhcp"], 0)
    status = json.loads((appliance.admin / "etc/status_settings.json").read_text())
    deadline = time.monotonic() + 10
    while status["status"] == "running" and time.monotonic() < deadline:
        time.sleep(0.05)
        status = json.loads((appliance.admin / "etc/status_settings.json").read_text())
    message = (appliance.admin / "etc/status_settings_error_message.txt").read_text()
    assert status["status"] == "failed" and message == "The appliance's wrapper.sh settings ended with exit status 1\n"
    appliance.p("/stubs.fail").unlink()


def test_post_setup_newtoken_goes_through_update_token_sh(appliance):
    status, _, body = appliance.post("/setup", "newtoken=the-new-token")
    assert status == 200 and json.loads(body) == {"Status": "200 OK"}
    assert appliance.calls() == [sudo("update_token.sh"), ("/usr/bin/chown", ["0:997", A + "/etc/api.token"], 0)] + SAVE
    token = appliance.admin / "etc/api.token"
    assert token.read_text() == "the-new-token\n"
    assert (token.stat().st_uid, token.stat().st_gid, token.stat().st_mode & 0o777) == (0, GID, 0o660)
    assert appliance.get("/health", "the-new-token")[0] == 200  # at once
    assert appliance.get("/health")[0] == 403
    appliance.token = "the-new-token"
    assert not (appliance.p(U) / "api.token").exists()


def test_post_license_through_update_license_sh(appliance):
    (appliance.root / "license.asc").write_text("-----BEGIN PGP MESSAGE-----\nfixture\n")
    status, _, body = appliance.post("/license", f"license=@{appliance.root / 'license.asc'}")
    assert status == 200, (body, appliance.output.read_text())
    assert json.loads(body)["app"] == "enterprise"
    calls = appliance.calls()
    assert calls[:len(SAVE) + 3] == [sudo("update_license.sh"),
                                     ("/usr/bin/chown", ["0:997", A + "/etc/license.asc"], 0),
                                     (A + "/bin/license.sh", [], 0)] + SAVE
    # GET /license runs bin/license.sh itself, as the original: as the daemon's own user.
    assert calls[len(SAVE) + 3:] == [(A + "/bin/license.sh", [], UID)]
    assert appliance.json("/license")["app"] == "enterprise"
    assert appliance.calls() == [(A + "/bin/license.sh", [], UID)]
    # An invalid one: license.sh refuses it, update_license.sh fails, the answer is 400.
    (appliance.root / "license.asc").write_text("INVALID\n")
    status, _, body = appliance.post("/license", f"license=@{appliance.root / 'license.asc'}")
    assert status in (400, 404), body
    assert appliance.calls()[:3] == [sudo("update_license.sh"),
                                     ("/usr/bin/chown", ["0:997", A + "/etc/license.asc"], 0),
                                     (A + "/bin/license.sh", [], 0)]


def test_backup_start_download_restore_stop(appliance):
    status, headers, _ = appliance.post("/backup", "action=START")
    assert status == 202 and headers["location"] == "/api/v1/admin/backup"
    assert appliance.wait_calls(6) == [sudo("update_backup.sh", "START"),
                                       ("/usr/bin/chgrp", ["997", U + "/backup.json"], 0)] + SAVE
    body = appliance.finished("/backup")
    assert body["status"] == "success" and set(body) == {"status", "filesize", "sha256"}
    assert (appliance.p(U) / "backup.json").read_bytes() == json.dumps(body, separators=(",", ":")).encode()
    status, headers, archive = appliance.get("/backup/download")
    assert status == 200 and headers["content-type"] == "application/x-tar"
    import hashlib

    assert hashlib.sha256(archive).hexdigest() == body["sha256"]
    # Restore, as the data's owner (sudo -u '#997' in update_backup.sh).
    appliance.write("/data/app.db", "db-v2\n", 0o644, (UID, GID))
    (appliance.root / "backup.tar").write_bytes(archive)
    status, _, body = appliance.post("/backup/restore", f"archive=@{appliance.root / 'backup.tar'}")
    assert status == 200 and json.loads(body) == {"Status": "200 OK"}
    assert appliance.calls() == [sudo("update_backup.sh", "RESTORE"),
                                 ("/usr/bin/sudo", ["-u", "#997", "/bin/tar", "-C", "/data", "-xf",
                                                    U + "/backup-archive.tar"], 0)] + SAVE
    restored = appliance.p("/data/app.db")
    assert restored.read_text() == "db-v1\n" and restored.stat().st_uid == UID
    # A bad archive: 400 "Unable to extract backup archive", as the original said.
    (appliance.root / "bad.tar").write_bytes(b"not a tar archive\n" * 100)
    status, _, body = appliance.post("/backup/restore", f"archive=@{appliance.root / 'bad.tar'}")
    assert status == 400 and json.loads(body)["Error-Message"] == "Unable to extract backup archive"
    appliance.calls()
    assert not (appliance.p(U) / "backup-archive.tar").exists()
    # STOP: the script deletes the archive and its status itself.
    status, _, _ = appliance.post("/backup", "action=STOP")
    assert status == 202
    assert appliance.wait_calls(5) == [sudo("update_backup.sh", "STOP")] + SAVE
    assert not (appliance.p(U) / "backup.tar").exists()
    assert appliance.get("/backup")[0] == 404


def test_post_certs_under_the_names_update_certs_sh_expects(appliance):
    work = appliance.root / "certs-work"
    work.mkdir()
    run = lambda *args: subprocess.run(["openssl", *args], cwd=work, check=True, capture_output=True)  # noqa: E731
    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "30", "-subj", "/CN=Conformance CA",
        "-keyout", "ca.key", "-out", "ca.pem", "-addext", "basicConstraints=critical,CA:TRUE")
    run("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=new.example.test", "-keyout", "leaf.key", "-out", "leaf.csr")
    run("x509", "-req", "-in", "leaf.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial", "-days", "30",
        "-out", "leaf.pem")
    status, headers, _ = appliance.post("/certs", f"public=@{work / 'leaf.pem'}", f"private=@{work / 'leaf.key'}",
                                        f"ca=@{work / 'ca.pem'}")
    assert status == 202 and headers["location"] == "/api/v1/admin/certs"
    body = appliance.finished("/certs")
    assert body["status"] == "success", body
    assert body["log"].endswith("[LIVE IMAGE] Add TLS certificates successful\\n")
    assert "\n" not in body["log"]
    assert appliance.calls() == [sudo("update_certs.sh"), ("/usr/bin/chgrp", ["997", A + "/etc/status_certs.txt"], 0),
                                 ("/usr/bin/dos2unix", ["ca.pem"], 0), ("/usr/bin/dos2unix", ["appliance.pem"], 0),
                                 ("/usr/bin/dos2unix", ["appliance.key"], 0),
                                 ("/usr/bin/stunnel", ["/opt/jidoteki/api/stunnel.conf"], 0),
                                 ("/usr/bin/chown", ["0:50", "enterprise.key", "enterprise.crt"], 0),
                                 ("/usr/bin/chown", ["0:997", "enterprise.pem"], 0),
                                 ("/usr/bin/chown", ["0:50", "enterprise-ca.crt"], 0),
                                 ("/usr/bin/pidof", ["nginx"], 0), ("/usr/bin/pidof", ["stunnel"], 0),
                                 ("/usr/bin/pidof", ["stunnel4"], 0)] + SAVE
    # The daemon serves what update_certs.sh installed (root:staff 0640), at once.
    assert body["subject"] == "CN=new.example.test"
    assert served_subject(appliance.https) == "CN=new.example.test"
    assert os.listdir(appliance.p(U)) == []


def test_get_logs_and_debug_through_the_wrapper(appliance):
    status, headers, body = appliance.get("/logs")
    assert status == 200 and headers["content-type"] == "application/octet-stream"
    with tarfile.open(fileobj=io.BytesIO(body), mode="r:gz") as tar:
        names = tar.getnames()
    assert any(name.endswith("var/log/app/app.log") for name in names), names
    assert appliance.calls() == [sudo("update_logs.sh", "/var/log/app"),
                                 ("/usr/bin/chown", ["0:997", "/tmp/logs.tar.gz"], 0)]
    status, headers, body = appliance.get("/debug")
    assert status == 200
    with tarfile.open(fileobj=io.BytesIO(body)) as tar:
        assert sorted(tar.getnames()) == ["debug.key.enc", "debug.tar.gz.enc"]
    assert appliance.calls() == [sudo("update_logs.sh", "/var/log/app"),
                                 ("/usr/bin/chown", ["0:997", "/tmp/logs.tar.gz"], 0),
                                 sudo("update_debug.sh", "uname -s;\necho debug-ok; # a comment"),
                                 ("/usr/bin/chown", ["0:997", "debug-bundle.tar"], 0)]
    assert os.listdir(appliance.p(U)) == []


def build_package(appliance, version: str) -> Path:
    source = appliance.root / f"package-{version}"
    source.mkdir()
    (source / "update.sh").write_text(f"#!/bin/sh\ncp version.txt {appliance.admin}/etc/version.txt\n")
    out = appliance.root / f"software_package-{version}.enc"
    package.build_package(source, version, appliance.admin / "etc/updates.key",
                          appliance.extra["vendor"] / "vendor.key", out)
    return out


def test_post_update_through_update_vm_sh(appliance):
    package_file = build_package(appliance, "1.0.1")
    status, headers, body = appliance.post("/update", f"update=@{package_file}")
    assert status == 202 and headers["location"] == "/api/v1/admin/update", body
    assert appliance.wait_calls(7) == [sudo("update_vm.sh"),
                                       ("/usr/bin/chgrp", ["997", A + "/etc/status_update.txt"], 0),
                                       ("/usr/bin/chown", ["0:997", A + "/log/update.log"], 0)] + SAVE
    body = appliance.finished("/update")
    assert body["status"] == "success" and body["percentage"] == 100, body
    assert set(body) == {"status", "percentage", "log"}
    tail = subprocess.run(["tail", "-n", "10", str(appliance.admin / "log/update.log")], capture_output=True,
                          text=True).stdout
    assert body["log"] == tail.replace("\n", "\\n")  # the original's form, a trailing one included
    assert appliance.json("/version") == {"version": "1.0.1"}
    # The same version again: update_vm.sh's own refusal, E1001, in its own words.
    assert appliance.post("/update", f"update=@{build_package(appliance, '1.0.0')}")[0] == 202
    body = appliance.finished("/update")
    assert body["status"] == "failed" and body["error-code"] == "E1001"
    assert body["error-message"] == "software update package v1.0.0 is too old."
    appliance.calls()
    # While update_vm.sh's lock is held (an update started outside the daemon): E1004, at once.
    lock = appliance.write("/tmp/update_vm.sh.task", "12345\n")
    status, _, body = appliance.post("/update", f"update=@{build_package(appliance, '1.0.2')}")
    assert status == 400 and json.loads(body)["Error-Message"] == "E1004: An update is already running"
    assert appliance.calls() == []
    lock.unlink()
    assert not [name for name in os.listdir(appliance.p(U)) if name.startswith("software_package")]


def test_check_stage_and_apply_with_the_appliances_update_vm_sh(appliance):
    """What an appliance gets (docs/migration.md): the check and the stage are the daemon's
    own, as its user, so they need etc/updates.key readable by it; apply hands the staged
    package to update_vm.sh as an upload would; the history is the daemon's."""
    key = appliance.admin / "etc/updates.key"
    package_file = build_package(appliance, "1.0.5")
    status, _, body = appliance.post("/update/check", f"update=@{package_file}")
    assert status == 400
    message = json.loads(body)["Error-Message"]
    assert message == "The update package cannot be checked: Cannot read the package key etc/updates.key: Permission denied"
    os.chown(key, 0, GID)
    key.chmod(0o640)  # what docs/migration.md asks of an appliance that wants check and stage
    try:
        report = json.loads(appliance.post("/update/check", f"update=@{package_file}")[2])
        installed = appliance.json("/version")["version"]
        assert report["version"] == "1.0.5" and report["installed"] == installed and report["installable"] is True
        assert appliance.calls() == []  # no script of the appliance ran: nothing changed
        staged = json.loads(appliance.post("/update/stage", f"update=@{package_file}")[2])
        assert staged["staged"] is True
        assert appliance.json("/update/staged")["staged"]["version"] == "1.0.5"
        status, headers, _ = appliance.curl("-X", "POST", appliance.url("/update/apply"))
        assert status == 202 and headers["location"] == "/api/v1/admin/update"
        assert appliance.wait_calls(7)[0] == sudo("update_vm.sh")
        body = appliance.finished("/update")
        assert body["status"] == "success", body
        assert appliance.json("/version") == {"version": "1.0.5"}
        assert appliance.json("/update/staged") == {"staged": None}
        latest = appliance.json("/update/history")["history"][0]
        assert (latest["from"], latest["to"], latest["outcome"]) == (installed, "1.0.5", "success")
    finally:
        key.chmod(0o600)
        os.chown(key, 0, 0)


def test_reboot_goes_through_the_wrapper_and_answers_202_with_location(appliance):
    status, headers, body = appliance.get("/reboot")
    assert status == 202 and headers["location"] == "/api/v1/admin/reboot"
    assert json.loads(body) == {"Status": "202 Accepted", "Location": "/api/v1/admin/reboot"}
    assert appliance.wait_calls(6) == SAVE + [("/usr/bin/sudo", ["reboot"], 0), ("/usr/sbin/reboot", [], 0)]


def test_no_lock_is_left_and_nothing_failed_with_a_500(appliance):
    leftover = sorted(name for name in os.listdir(appliance.p("/tmp")) if name.endswith(".task"))
    assert leftover == []
    assert " 500 " not in appliance.output.read_text()
    assert "Traceback" not in appliance.output.read_text()
