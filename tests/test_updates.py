"""Section 3, Updates: POST /update, GET /update and GET /update/log through the real daemon."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import pytest_twisted
from twisted.internet import reactor
from twisted.internet.task import deferLater

from conftest import json_of
from jidoteki_admin.formats import package
from jidoteki_admin.jobs import children

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
LOCATION = "/api/v1/admin/update"
POLL_SECONDS = 30


def run(*args) -> subprocess.CompletedProcess:
    return subprocess.run([str(a) for a in args], check=True, capture_output=True, env=ENV, timeout=60)


def install_keys(admin_path: Path, keys, version: str = "1.0.0") -> None:
    etc = admin_path / "etc"
    etc.mkdir(parents=True, exist_ok=True)
    (etc / "updates.key").write_bytes(keys["key"].read_bytes())
    (etc / "updates.key").chmod(0o600)
    (etc / "updates.pub").write_bytes(keys["pub"].read_bytes())
    (etc / "version.txt").write_text(version + "\n")


def source(tmp_path: Path, version: str, update_sh: str | None = None, payload: int = 0) -> Path:
    src = tmp_path / f"src-{version}-{os.urandom(4).hex()}"
    src.mkdir()
    (src / "version.txt").write_text(version + "\n")
    (src / "changelog.txt").write_text(f"# Changelog\n\n## {version}\n\n  * Better things\n")
    if update_sh is not None:
        (src / "update.sh").write_text(update_sh)
    if payload:
        (src / "payload.bin").write_bytes(os.urandom(payload))
    return src


def build(tmp_path: Path, keys, version: str, update_sh: str | None = None, *, key: str = "key",
          signer: str = "vendor", payload: int = 0) -> Path:
    out = tmp_path / f"software_package-{version}-{os.urandom(4).hex()}.enc"
    package.build_package(source(tmp_path, version, update_sh, payload), version, keys[key], keys[signer], out)
    return out


def openssl_build(tmp_path: Path, keys, version: str, update_sh: str | None = None, *,
                  legacy_md5: bool = False) -> Path:
    """The commands of docs/packages.md, "Building a package with openssl and tar"."""
    src = source(tmp_path, version, update_sh)
    work = tmp_path / f"openssl-{version}"
    work.mkdir()
    build_dir = work / "build"
    build_dir.mkdir()
    run("tar", "-C", src, "-czf", build_dir / "software_package.tar.gz", ".")
    run("openssl", "dgst", "-sha256", "-sign", keys["vendor"],
        "-out", build_dir / "software_package.tar.gz.sign", build_dir / "software_package.tar.gz")
    run("tar", "-C", build_dir, "-cf", build_dir / "software_package.tar",
        "software_package.tar.gz", "software_package.tar.gz.sign")
    enc = ["-md", "md5"] if legacy_md5 else ["-md", "sha256", "-pbkdf2"]
    out = work / f"software_package-{version}.enc"
    run("openssl", "enc", "-aes-256-cbc", *enc, "-salt", "-pass", f"file:{keys['key']}",
        "-in", build_dir / "software_package.tar", "-out", out)
    return out


async def upload(daemon, pkg: Path, name: str | None = None):
    return await daemon.post_form("/update", files={"update": (name or pkg.name, pkg.read_bytes())})


async def pause():
    await deferLater(reactor, 0.05, lambda: None)


async def update_status(daemon) -> dict:
    response = await daemon.get("/update")
    assert response.code == 200
    return await json_of(response)


async def wait_for(daemon, done, seconds: float = POLL_SECONDS) -> dict:
    deadline = time.monotonic() + seconds
    while True:
        body = await update_status(daemon)
        if done(body):
            return body
        assert time.monotonic() < deadline, f"no such update status within {seconds}s: {body}"
        await pause()


async def finished(daemon, seconds: float = POLL_SECONDS) -> dict:
    return await wait_for(daemon, lambda body: body["status"] in ("success", "failed"), seconds)


async def accepted(daemon, pkg: Path, name: str | None = None) -> None:
    response = await upload(daemon, pkg, name)
    body = await response.content()
    assert response.code == 202, body
    assert json.loads(body) == {"Status": "202 Accepted", "Location": LOCATION}


def installed_version(admin_path: Path) -> str:
    return (admin_path / "etc" / "version.txt").read_text()


def assert_cleaned_up(admin_path: Path) -> None:
    assert os.listdir(admin_path / "home" / "sftp" / "uploads") == []
    assert os.listdir(admin_path / "tmp") == []


def assert_log_tail(admin_path: Path, body: dict) -> None:
    """The original's form: tail -n 10, each newline written as backslash and n."""
    lines = (admin_path / "log" / "update.log").read_text().splitlines()
    assert body["log"] == "".join(line + "\\n" for line in lines[-10:])
    out = subprocess.run(["tail", "-n", "10", str(admin_path / "log" / "update.log")], capture_output=True, text=True)
    assert body["log"] == out.stdout.replace("\n", "\\n")


async def assert_failed(daemon, code: str) -> dict:
    body = await finished(daemon)
    assert body["status"] == "failed", body
    assert body["error-code"] == code
    assert body["error-message"]
    assert_log_tail(daemon.admin_path, body)
    assert installed_version(daemon.admin_path) == "1.0.0\n"
    return body


@pytest_twisted.ensureDeferred
async def test_status_and_log_before_any_update(memory_daemon):
    response = await memory_daemon.get("/update")
    assert response.code == 200
    assert await json_of(response) == {"status": None, "log": None}

    response = await memory_daemon.get("/update/log")
    assert response.code == 404
    assert response.headers.getRawHeaders("Content-Type")[0].startswith("application/json")
    assert (await json_of(response))["Status"] == "404 Not Found"


@pytest_twisted.ensureDeferred
async def test_vendor_tool_package_installs(daemon, keys, tmp_path):
    install_keys(daemon.admin_path, keys)
    src = source(tmp_path, "0.0.0", 'echo "ran $JIDO_UPDATE_VERSION" > "$JIDO_ADMIN_PATH/update-ran.txt"\n')
    pkg = tmp_path / "software_package-1.2.0.enc"
    run(sys.executable, "-m", "jidoteki_admin.vendor", "package", src, "--version", "1.2.0",
        "--key", keys["key"], "--signing-key", keys["vendor"], "--out", pkg)

    response = await upload(daemon, pkg)
    assert response.code == 202
    assert response.headers.getRawHeaders("Location") == [LOCATION]
    assert (await response.content()) == b'{"Status":"202 Accepted","Location":"/api/v1/admin/update"}'

    body = await finished(daemon)
    assert body["status"] == "success", body
    assert body["percentage"] == 100
    assert body["log"].endswith("Updating system successful\\n")
    assert_log_tail(daemon.admin_path, body)

    response = await daemon.get("/version")
    assert await json_of(response) == {"version": "1.2.0"}
    response = await daemon.get("/changelog")
    assert response.code == 200
    assert await response.content() == (src / "changelog.txt").read_bytes()
    assert (daemon.admin_path / "update-ran.txt").read_text() == "ran 1.2.0\n"
    assert_cleaned_up(daemon.admin_path)

    response = await daemon.get("/update/log")
    assert response.code == 200
    assert response.headers.getRawHeaders("Content-Type")[0].startswith("text/plain")
    assert await response.content() == (daemon.admin_path / "log" / "update.log").read_bytes()


@pytest_twisted.ensureDeferred
async def test_openssl_built_package_installs(memory_daemon, keys, tmp_path):
    install_keys(memory_daemon.admin_path, keys)
    pkg = openssl_build(tmp_path, keys, "1.0.1", 'touch "$JIDO_ADMIN_PATH/update-ran.txt"\n')

    await accepted(memory_daemon, pkg)
    body = await finished(memory_daemon)
    assert body["status"] == "success", body
    assert installed_version(memory_daemon.admin_path) == "1.0.1\n"
    assert (memory_daemon.admin_path / "update-ran.txt").exists()
    assert_cleaned_up(memory_daemon.admin_path)


@pytest_twisted.ensureDeferred
async def test_legacy_md5_package_installs(memory_daemon, keys, tmp_path):
    install_keys(memory_daemon.admin_path, keys)
    pkg = openssl_build(tmp_path, keys, "1.1.0", legacy_md5=True)
    assert pkg.read_bytes()[:8] == b"Salted__"

    await accepted(memory_daemon, pkg)
    body = await finished(memory_daemon)
    assert body["status"] == "success", body
    assert (await json_of(await memory_daemon.get("/version"))) == {"version": "1.1.0"}


@pytest.mark.parametrize("version", ["1.0.0", "0.9.9"])
@pytest_twisted.ensureDeferred
async def test_package_not_newer_fails_E1001(memory_daemon, keys, tmp_path, version):
    install_keys(memory_daemon.admin_path, keys)
    pkg = build(tmp_path, keys, version, 'touch "$JIDO_ADMIN_PATH/update-ran.txt"\n')

    await accepted(memory_daemon, pkg)
    await assert_failed(memory_daemon, "E1001")
    assert not (memory_daemon.admin_path / "update-ran.txt").exists()
    assert_cleaned_up(memory_daemon.admin_path)


@pytest_twisted.ensureDeferred
async def test_failing_update_script_fails_E1002(memory_daemon, keys, tmp_path):
    install_keys(memory_daemon.admin_path, keys)
    pkg = build(tmp_path, keys, "1.0.1", "echo about to fail\nexit 3\n")

    await accepted(memory_daemon, pkg)
    body = await assert_failed(memory_daemon, "E1002")
    assert "about to fail" in body["log"]
    assert_cleaned_up(memory_daemon.admin_path)


def tampered(pkg: Path) -> Path:
    data = bytearray(pkg.read_bytes())
    data[len(data) // 2] ^= 0x01
    pkg.write_bytes(bytes(data))
    return pkg


@pytest.mark.parametrize("how", ["tampered", "other signer", "other updates.key"])
@pytest_twisted.ensureDeferred
async def test_unopenable_package_fails_E1005(memory_daemon, keys, tmp_path, how):
    install_keys(memory_daemon.admin_path, keys)
    script = 'touch "$JIDO_ADMIN_PATH/update-ran.txt"\n'
    if how == "tampered":
        pkg = tampered(build(tmp_path, keys, "1.0.1", script, payload=32 * 1024))
    elif how == "other signer":
        pkg = build(tmp_path, keys, "1.0.1", script, signer="other_vendor")
    else:
        pkg = build(tmp_path, keys, "1.0.1", script, key="other_key")

    await accepted(memory_daemon, pkg)
    await assert_failed(memory_daemon, "E1005")
    assert not (memory_daemon.admin_path / "update-ran.txt").exists()
    assert_cleaned_up(memory_daemon.admin_path)


@pytest_twisted.ensureDeferred
async def test_second_upload_while_running_is_refused_E1004(memory_daemon, keys, tmp_path):
    install_keys(memory_daemon.admin_path, keys)
    go = memory_daemon.admin_path / "go"
    waiting = 'i=0; while [ ! -e "$JIDO_ADMIN_PATH/go" ] && [ $i -lt 600 ]; do sleep 0.05; i=$((i+1)); done\n'
    first = build(tmp_path, keys, "1.0.1", waiting)
    second = build(tmp_path, keys, "2.0.0")

    await accepted(memory_daemon, first, "software_package-1.0.1.enc")
    running = await wait_for(memory_daemon, lambda body: body["percentage"] == 70 or body["status"] != "running")
    assert running["status"] == "running", running
    status_file = (memory_daemon.admin_path / "etc" / "status_update.json").read_bytes()

    response = await upload(memory_daemon, second, "software_package-2.0.0.enc")
    body = await json_of(response)
    assert response.code == 400
    assert "E1004" in response.headers.getRawHeaders("Error-Message")[0]
    assert "E1004" in body["Error-Message"]
    await pause()
    assert os.listdir(memory_daemon.admin_path / "home" / "sftp" / "uploads") == ["software_package-1.0.1.enc"]
    assert await update_status(memory_daemon) == running
    assert (memory_daemon.admin_path / "etc" / "status_update.json").read_bytes() == status_file

    go.touch()
    body = await finished(memory_daemon)
    assert body["status"] == "success", body
    assert installed_version(memory_daemon.admin_path) == "1.0.1\n"
    assert_cleaned_up(memory_daemon.admin_path)


@pytest_twisted.ensureDeferred
async def test_update_running_when_the_daemon_stopped_is_reported_failed(make_memory_daemon, keys, tmp_path):
    admin_path = tmp_path / "admin"
    install_keys(admin_path, keys)
    (admin_path / "etc" / "status_update.json").write_text('{"status":"running","percentage":40}')
    pkg = build(tmp_path, keys, "1.0.1")

    daemon = make_memory_daemon()
    body = await update_status(daemon)
    assert body["status"] == "failed", body
    assert body["error-code"] == "E1002"  # the update kind's interrupted_code
    assert body["error-message"]
    assert body["percentage"] == 40

    await accepted(daemon, pkg)
    body = await finished(daemon)
    assert body["status"] == "success", body
    assert installed_version(admin_path) == "1.0.1\n"


@pytest_twisted.ensureDeferred
async def test_update_running_past_the_job_timeout_fails(make_daemon, keys, tmp_path, monkeypatch):
    monkeypatch.setattr(children, "KILL_GRACE_SECONDS", 0.5)
    daemon = make_daemon({"job-timeout": 1})
    install_keys(daemon.admin_path, keys)
    pkg = build(tmp_path, keys, "1.0.1", 'sleep 30\ntouch "$JIDO_ADMIN_PATH/update-ran.txt"\n')

    started = time.monotonic()
    await accepted(daemon, pkg)
    body = await finished(daemon, seconds=10)
    assert time.monotonic() - started < 10
    assert body["status"] == "failed", body
    assert body["error-code"] == "E1002"
    assert "longer than 1 seconds" in body["error-message"]
    assert "longer than 1 seconds" in (daemon.admin_path / "log" / "update.log").read_text()
    assert installed_version(daemon.admin_path) == "1.0.0\n"
    assert not (daemon.admin_path / "update-ran.txt").exists()


@pytest_twisted.ensureDeferred
async def test_the_uploaded_package_is_installed_not_a_leftover_with_a_version_in_its_name(memory_daemon, keys, tmp_path):
    install_keys(memory_daemon.admin_path, keys)
    uploads = memory_daemon.admin_path / "home" / "sftp" / "uploads"
    leftover = uploads / "software_package-1.5.0.enc"
    leftover.write_bytes(build(tmp_path, keys, "1.5.0").read_bytes())
    await accepted(memory_daemon, build(tmp_path, keys, "2.0.0"), name="myupdate-2.0.enc")
    body = await finished(memory_daemon)
    assert body["status"] == "success", body
    assert installed_version(memory_daemon.admin_path) == "2.0.0\n"
    # Only the upload is consumed; the leftover is someone else's business.
    assert os.listdir(uploads) == [leftover.name]


@pytest.mark.parametrize("name", ["software_package-.enc", "update.bin", "software_package.enc"])
@pytest_twisted.ensureDeferred
async def test_every_name_the_daemon_stores_an_upload_under_is_found_by_the_job(daemon, keys, tmp_path, name):
    """The job must find what the daemon stored: a package it cannot find is reported as
    missing and stays in the uploads folder for good."""
    install_keys(daemon.admin_path, keys)
    await accepted(daemon, build(tmp_path, keys, "1.0.1"), name)
    body = await finished(daemon)
    assert body["status"] == "success", body
    assert_cleaned_up(daemon.admin_path)


def _signing_pair(tmp_path: Path, algorithm: str, name: str) -> tuple[Path, Path]:
    """A private signing key (PEM) and its public key (PEM) of the given algorithm."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import dsa, ec

    key = ec.generate_private_key(ec.SECP256R1()) if algorithm == "EC" else dsa.generate_private_key(2048)
    private, public = tmp_path / f"{name}.key", tmp_path / f"{name}.pub"
    private.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))
    public.write_bytes(key.public_key().public_bytes(serialization.Encoding.PEM,
                                                     serialization.PublicFormat.SubjectPublicKeyInfo))
    return private, public


@pytest.mark.parametrize("algorithm", ["EC", "DSA"])
@pytest_twisted.ensureDeferred
async def test_an_ec_or_dsa_updates_pub_accepts_its_signer_and_refuses_another(memory_daemon, keys, tmp_path,
                                                                             algorithm):
    """Each verification branch is exercised through the daemon: an appliance whose
    updates.pub is an EC or DSA key installs what that key signed, and nothing else."""
    vendor, vendor_pub = _signing_pair(tmp_path, algorithm, "vendor")
    other, _ = _signing_pair(tmp_path, algorithm, "other")
    mine = {**keys, "vendor": vendor, "other_vendor": other, "pub": vendor_pub}
    install_keys(memory_daemon.admin_path, mine)
    script = 'touch "$JIDO_ADMIN_PATH/update-ran.txt"\n'

    await accepted(memory_daemon, build(tmp_path, mine, "1.0.1", script, signer="other_vendor"))
    body = await assert_failed(memory_daemon, "E1005")
    assert body["error-message"] == "Invalid update package signature"
    assert not (memory_daemon.admin_path / "update-ran.txt").exists()
    assert installed_version(memory_daemon.admin_path) == "1.0.0\n"
    assert_cleaned_up(memory_daemon.admin_path)

    await accepted(memory_daemon, build(tmp_path, mine, "1.0.2", script))
    assert (await finished(memory_daemon))["status"] == "success"
    assert (memory_daemon.admin_path / "update-ran.txt").exists()
    assert installed_version(memory_daemon.admin_path) == "1.0.2\n"


@pytest_twisted.ensureDeferred
async def test_an_update_that_fails_unexpectedly_is_E1000_at_the_step_it_reached(memory_daemon, keys, tmp_path):
    install_keys(memory_daemon.admin_path, keys)
    version = memory_daemon.admin_path / "etc" / "version.txt"
    version.unlink()
    version.mkdir()  # unreadable in a way the job does not expect
    await accepted(memory_daemon, build(tmp_path, keys, "1.0.1"))
    body = await finished(memory_daemon)
    assert (body["status"], body["error-code"]) == ("failed", "E1000"), body
    assert body["error-message"].startswith("Unexpected error: IsADirectoryError")
    assert body["percentage"] == 60  # "Checking the update package version"
    assert_cleaned_up(memory_daemon.admin_path)


@pytest_twisted.ensureDeferred
async def test_a_refused_signature_fails_at_the_verification_step(memory_daemon, keys, tmp_path):
    install_keys(memory_daemon.admin_path, keys)
    await accepted(memory_daemon, build(tmp_path, keys, "1.0.1", signer="other_vendor"))
    body = await assert_failed(memory_daemon, "E1005")
    assert body["percentage"] == 40  # "Verifying update package signature"


@pytest_twisted.ensureDeferred
async def test_a_package_gone_before_the_job_opens_it_is_E1003(make_memory_daemon, keys, tmp_path):
    """The package is removed between the upload and the job (here by a privileged entry
    point that deletes it, then runs the job as jidoteki-admin-privileged would)."""
    admin_path = tmp_path / "admin"
    entry = tmp_path / "privileged"
    entry.write_text(f'#!/bin/sh\nprogram=$1; shift\nrm -f "$2"\n'
                     f'exec {sys.executable} -m "$program" --admin-path {admin_path} "$@"\n')
    entry.chmod(0o755)
    daemon = make_memory_daemon({"privileged-command": [str(entry)]})
    install_keys(admin_path, keys)
    await accepted(daemon, build(tmp_path, keys, "1.0.1"))
    body = await assert_failed(daemon, "E1003")
    assert body["error-message"] == "Missing update package"
    assert body["percentage"] == 10  # "Looking for the update package"
