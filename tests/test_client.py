"""The client library and the jidoteki-admin-client CLI, against the real daemon over TLS."""

from __future__ import annotations

import hashlib
import json
import os
import sys
import tarfile
from pathlib import Path

import pytest
import pytest_twisted
from hypothesis import given, strategies as st
from twisted.internet import reactor
from twisted.internet.task import deferLater
from twisted.internet.utils import getProcessOutputAndValue

from jidoteki_admin.auth import request_hash
from jidoteki_admin.client import (AdminClient, APIError, JobFailed, Unreachable, certificate_fingerprint,
                                   normal_fingerprint, secret_key, sign)
from jidoteki_admin.client.cli import LogFollower, Output

from test_updates import build, install_keys

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}


def fingerprint_of(daemon) -> str:
    return certificate_fingerprint(daemon.service.tree.certificate.read_bytes())


def client_for(daemon, token: str | None = "yourtoken", **trust) -> AdminClient:
    if not trust:
        trust = {"fingerprint": fingerprint_of(daemon)}
    client = AdminClient(reactor, daemon.base, token=token, **trust)
    client.poll_interval = 0.1
    return client


async def cli(*args: str, stdin: bytes | None = None) -> tuple[int, str, str]:
    """Run jidoteki-admin-client as a child process, without blocking the daemon's reactor."""
    out, err, code = await getProcessOutputAndValue(
        sys.executable, ["-m", "jidoteki_admin.client.cli", *args], env={**ENV, "JIDOTEKI_ADMIN_TOKEN": ""})
    return code, out.decode(), err.decode()


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
    with pytest.raises(Exception, match="fingerprint"):
        normal_fingerprint(text)


# The library through the daemon


@pytest_twisted.ensureDeferred
async def test_pinned_fingerprint_and_hash_only(make_daemon):
    daemon = make_daemon()
    (daemon.admin_path / "etc" / "version.txt").write_text("2.0.1\n")
    client = client_for(daemon)
    try:
        assert await client.version() == "2.0.1"
        assert "/api/v1/admin/version" in await client.endpoints()
        assert (await client.health())["disk"]
    finally:
        await client.close()
    assert "yourtoken" not in repr(vars(client))  # only the derived key is kept


@pytest_twisted.ensureDeferred
async def test_a_different_certificate_is_refused(make_daemon):
    daemon = make_daemon()
    other = make_daemon(subdir="other")
    client = client_for(daemon, fingerprint=fingerprint_of(other))
    try:
        with pytest.raises(Unreachable):
            await client.version()
    finally:
        await client.close()


@pytest_twisted.ensureDeferred
async def test_a_ca_file_is_trusted_too(make_daemon):
    daemon = make_daemon()
    (daemon.admin_path / "etc" / "version.txt").write_text("3.0.0\n")
    client = client_for(daemon, ca_file=daemon.service.tree.certificate)
    try:
        assert await client.version() == "3.0.0"
    finally:
        await client.close()


@pytest_twisted.ensureDeferred
async def test_errors_carry_status_and_error_message(make_daemon):
    daemon = make_daemon()
    wrong = client_for(daemon, token="not-the-token")
    client = client_for(daemon)
    try:
        with pytest.raises(APIError) as refused:
            await wrong.health()
        assert refused.value.status == 403 and refused.value.message == "Authentication error"
        with pytest.raises(APIError) as missing:
            await client.version()
        assert missing.value.status == 404
    finally:
        await wrong.close()
        await client.close()


@pytest_twisted.ensureDeferred
async def test_setup_then_change_the_token(fresh_daemon):
    client = client_for(fresh_daemon, token=None)
    try:
        await client.setup("first-token")
        assert (await client.health())["disk"]
        await client.setup("second-token")
        assert fresh_daemon.service.tree.token_file.read_text().strip() == "second-token"
        assert (await client.health())["disk"]
    finally:
        await client.close()


@pytest_twisted.ensureDeferred
async def test_update_with_progress_and_wait(make_daemon, keys, tmp_path):
    daemon = make_daemon()
    install_keys(daemon.admin_path, keys, "1.0.0")
    package = build(tmp_path, keys, "1.1.0", payload=300_000)
    client = client_for(daemon)
    seen: list[tuple[int, int]] = []
    reports: list[dict] = []
    try:
        await client.update(package, progress=lambda done, total: seen.append((done, total)))
        report = await client.wait_for("/update", "The update", reports.append, timeout=60)
    finally:
        await client.close()
    assert report["status"] == "success"
    assert seen[-1] == (package.stat().st_size, package.stat().st_size)
    assert all(b <= a for (b, _), (a, _) in zip(seen, seen[1:]))
    assert (daemon.admin_path / "etc" / "version.txt").read_text().strip() == "1.1.0"


@pytest_twisted.ensureDeferred
async def test_a_failed_update_raises_with_its_code(make_daemon, keys, tmp_path):
    daemon = make_daemon()
    install_keys(daemon.admin_path, keys, "2.0.0")
    package = build(tmp_path, keys, "1.0.0")
    client = client_for(daemon)
    try:
        await client.update(package)
        with pytest.raises(JobFailed) as failed:
            await client.wait_for("/update", "The update", timeout=60)
    finally:
        await client.close()
    assert failed.value.code == "E1001"


def backup_daemon(make_daemon, tmp_path, size: int):
    """A daemon backing up app/ (one random file of ``size`` bytes) under tmp_path/data."""
    data = tmp_path / "data"
    (data / "app").mkdir(parents=True)
    (data / "app" / "db").write_bytes(os.urandom(size))
    daemon = make_daemon(config={"endpoints": ["backup"], "backup-root": str(data)})
    (daemon.admin_path / "etc" / "backup.txt").write_text("app\n")
    return daemon, data


@pytest_twisted.ensureDeferred
async def test_backup_download_and_restore(make_daemon, tmp_path):
    daemon, data = backup_daemon(make_daemon, tmp_path, 100_000)
    client = client_for(daemon)
    archive = tmp_path / "backup.tar"
    try:
        await client.start_backup()
        report = await client.wait_for("/backup", "The backup", timeout=60)
        size = await client.download("/backup/download", archive)
        (data / "app" / "db").write_bytes(b"changed")
        await client.restore(archive)
    finally:
        await client.close()
    assert size == archive.stat().st_size and report["status"] == "success"
    assert tarfile.open(archive).getnames() == ["app", "app/db"]
    assert len((data / "app" / "db").read_bytes()) == 100_000
    assert not list(tmp_path.glob(".backup.tar.partial"))


# The CLI


def hosts_file(tmp_path: Path, daemon, token: str = "yourtoken") -> Path:
    token_file = tmp_path / "site.token"
    token_file.write_text(token + "\n")
    hosts = tmp_path / "hosts.toml"
    hosts.write_text(f'[site-12]\nurl = "{daemon.base}"\ntoken-file = "{token_file}"\n'
                     f'fingerprint = "{fingerprint_of(daemon)}"\n')
    return hosts


@pytest_twisted.ensureDeferred
async def test_cli_by_host_name(make_daemon, tmp_path):
    daemon = make_daemon()
    (daemon.admin_path / "etc" / "version.txt").write_text("4.5.6\n")
    hosts = hosts_file(tmp_path, daemon)
    code, out, err = await cli("--hosts-file", str(hosts), "--host", "site-12", "version")
    assert (code, out.strip()) == (0, "4.5.6"), err
    code, out, err = await cli("--hosts-file", str(hosts), "--host", "site-12", "--json", "health")
    assert code == 0 and "disk" in json.loads(out), err


@pytest_twisted.ensureDeferred
async def test_cli_update_wait_follows_the_log(make_daemon, keys, tmp_path):
    daemon = make_daemon()
    install_keys(daemon.admin_path, keys, "1.0.0")
    package = build(tmp_path, keys, "1.2.0")
    hosts = hosts_file(tmp_path, daemon)
    code, out, err = await cli("--hosts-file", str(hosts), "--host", "site-12", "--json", "update", str(package), "--wait")
    assert code == 0, err
    assert json.loads(out)["status"] == "success"
    assert (daemon.admin_path / "etc" / "version.txt").read_text().strip() == "1.2.0"


@pytest_twisted.ensureDeferred
async def test_cli_failed_update_exits_non_zero_with_the_code(make_daemon, keys, tmp_path):
    daemon = make_daemon()
    install_keys(daemon.admin_path, keys, "3.0.0")
    package = build(tmp_path, keys, "1.0.0")
    hosts = hosts_file(tmp_path, daemon)
    code, out, err = await cli("--hosts-file", str(hosts), "--host", "site-12", "update", str(package), "--wait")
    assert code == 1
    assert "E1001" in err


@pytest_twisted.ensureDeferred
async def test_cli_wrong_token_and_unreachable_and_bad_usage(make_daemon, tmp_path):
    daemon = make_daemon()
    hosts = hosts_file(tmp_path, daemon, token="wrong")
    code, _, err = await cli("--hosts-file", str(hosts), "--host", "site-12", "health")
    assert code == 1 and "403 Authentication error" in err
    token = tmp_path / "site.token"
    code, _, err = await cli("--url", "https://127.0.0.1:1", "--token-file", str(token), "--fingerprint", "ab" * 32,
                             "health")
    assert code == 3 and "cannot reach" in err
    code, _, err = await cli("--url", daemon.base, "--fingerprint", "ab" * 32, "health")
    assert code == 2 and "no API token" in err
    code, _, err = await cli("--hosts-file", str(hosts), "--host", "nowhere", "health")
    assert code == 2 and "not in" in err
    code, _, err = await cli("--url", daemon.base, "--token-file", str(token), "health")
    assert code == 2 and "fingerprint" in err


@pytest_twisted.ensureDeferred
async def test_cli_fingerprint_prints_what_the_daemon_presents(make_daemon):
    daemon = make_daemon()
    code, out, err = await cli("--url", daemon.base, "fingerprint")
    assert (code, out.strip()) == (0, fingerprint_of(daemon)), err


@pytest_twisted.ensureDeferred
async def test_cli_logs_download(make_daemon, tmp_path):
    daemon = make_daemon()
    (daemon.admin_path / "etc" / "logs.txt").write_text("")
    (daemon.admin_path / "log" / "app.log").write_text("started\n")
    hosts = hosts_file(tmp_path, daemon)
    target = tmp_path / "logs.tar.gz"
    code, out, err = await cli("--hosts-file", str(hosts), "--host", "site-12", "logs", str(target))
    assert code == 0, err
    assert any(name.endswith("log/app.log") for name in tarfile.open(target).getnames())


def test_log_follower_prints_each_line_once(capsys):
    follow = LogFollower(Output(as_json=False, quiet=True))
    follow({"log": "a\nb"})
    follow({"log": "a\nb\nc"})
    follow({"log": "b\nc\nd"})
    assert capsys.readouterr().err.splitlines() == ["a", "b", "c", "d"]


def test_cli_reboot_wait_returns_once_the_api_answers_again(twistd, tmp_path):
    """The reboot command here only leaves a mark; the test then stops the daemon and starts
    another on the same port and tree, as an appliance's reboot would."""
    import subprocess
    import time

    from conftest import free_port

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
async def test_cli_settings_set_then_get(make_daemon, tmp_path):
    daemon = make_daemon(config={"endpoints": ["settings"]})
    hosts = hosts_file(tmp_path, daemon)
    wanted = {"network": {"interface": "eth0", "hostname": "site12.example.com", "ntpserver": "pool.ntp.org"},
              "app": {"name": "testapp"}}
    document = tmp_path / "settings.json"
    document.write_text(json.dumps(wanted))
    code, out, err = await cli("--hosts-file", str(hosts), "--host", "site-12", "settings", "set", str(document))
    assert code == 0, err
    settings_json = daemon.admin_path / "etc" / "network.json"
    for _ in range(100):
        if settings_json.exists():
            break
        await deferLater(reactor, 0.1, lambda: None)
    code, out, err = await cli("--hosts-file", str(hosts), "--host", "site-12", "--json", "settings", "get")
    assert code == 0, err
    assert json.loads(out) == {"network": {"mode": "dhcp", **wanted["network"]}, "app": wanted["app"]}
    document.write_text(json.dumps({"network": {"interface": "eth0", "hostname": "x"}}))
    code, out, err = await cli("--hosts-file", str(hosts), "--host", "site-12", "settings", "set", str(document))
    assert code == 1 and "hostname" in err


@pytest_twisted.ensureDeferred
async def test_cli_certs_install_wait_then_the_new_fingerprint_is_presented(make_daemon, tmp_path):
    from test_certs import issue

    root = issue("CLI Root CA", ca=True)
    leaf = issue("site12.example.test", root)
    (tmp_path / "site.crt").write_bytes(leaf.pem)
    (tmp_path / "site.key").write_bytes(leaf.key_pem)
    daemon = make_daemon(config={"endpoints": ["certs"]})
    hosts = hosts_file(tmp_path, daemon)
    code, out, err = await cli("--hosts-file", str(hosts), "--host", "site-12", "--json", "certs", "install",
                               "--public", str(tmp_path / "site.crt"), "--private", str(tmp_path / "site.key"),
                               "--wait")
    assert code == 0, err
    assert json.loads(out)["status"] == "success"
    code, out, err = await cli("--url", daemon.base, "fingerprint")
    assert out.strip() == certificate_fingerprint(leaf.pem), err
    code, out, err = await cli("--hosts-file", str(hosts), "--host", "site-12", "health")
    assert code == 3 and "cannot reach" in err  # the old pin no longer matches: refused, never trusted


@pytest_twisted.ensureDeferred
async def test_cli_backup_start_wait_download_then_restore(make_daemon, tmp_path):
    daemon, data = backup_daemon(make_daemon, tmp_path, 80_000)
    hosts = hosts_file(tmp_path, daemon)
    site = ("--hosts-file", str(hosts), "--host", "site-12")
    code, out, err = await cli(*site, "--json", "backup", "start", "--wait")
    assert code == 0, err
    report = json.loads(out)
    archive = tmp_path / "site-12.tar"
    code, out, err = await cli(*site, "backup", "download", str(archive))
    assert code == 0, err
    assert hashlib.sha256(archive.read_bytes()).hexdigest() == report["sha256"]
    (data / "app" / "db").write_bytes(b"lost")
    code, out, err = await cli(*site, "restore", str(archive))
    assert code == 0, err
    assert len((data / "app" / "db").read_bytes()) == 80_000
    code, out, err = await cli(*site, "restore", str(tmp_path / "site.token"))  # not an archive
    assert code == 1 and "400" in err


@pytest_twisted.ensureDeferred
async def test_cli_debug_bundle_download_opens_with_the_vendor_key(make_daemon, keys, tmp_path):
    daemon = make_daemon()
    (daemon.admin_path / "etc" / "updates.pub").write_bytes(keys["pub"].read_bytes())
    (daemon.admin_path / "etc" / "debug.txt").write_text("uname -s\n")
    hosts = hosts_file(tmp_path, daemon)
    bundle = tmp_path / "debug-bundle.tar"
    code, out, err = await cli("--hosts-file", str(hosts), "--host", "site-12", "debug", str(bundle))
    assert code == 0, err
    with tarfile.open(bundle) as tar:
        assert sorted(tar.getnames()) == ["debug.key.enc", "debug.tar.gz.enc"]
    opened = tmp_path / "debug.tar.gz"
    done, _, code = await getProcessOutputAndValue(
        sys.executable, ["-m", "jidoteki_admin.vendor", "open-debug-bundle", str(bundle), "--key", str(keys["vendor"]),
                         "--out", str(opened)], env=ENV)
    assert code == 0
    with tarfile.open(opened) as tar:
        assert "debug-1.log" in tar.getnames()
