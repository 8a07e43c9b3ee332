"""The moment a job is reported finished, every answer shows what it wrote.

For each kind of job: run it, poll its status every few milliseconds, and read the answer
the first moment the status is final. It must show the new content every time, in a loop
of several runs (a cache that looked at the file once a second showed the old version
right after "success" in 4 of 5 updates).
"""

from __future__ import annotations

import hashlib
import json
import os

import pytest_twisted
from twisted.internet import reactor
from twisted.internet.task import deferLater
from twisted.internet.threads import deferToThread

from conftest import json_of
from test_certs import issue, served
from test_updates import build, install_keys

RUNS = 5
POLL = 0.003


async def first_final(daemon, path: str, key: str = "status") -> dict:
    """Poll a status answer until it is final; the answer that first says so."""
    for _ in range(int(60 / POLL)):
        body = await json_of(await daemon.get(path))
        if body.get(key) in ("success", "failed"):
            return body
        await deferLater(reactor, POLL, lambda: None)
    raise AssertionError(f"{path} never ended")


async def runner_final(daemon, kind_name: str):
    runner = daemon.service.runner
    kind = runner.kinds[kind_name]
    for _ in range(int(60 / POLL)):
        status = runner.status(kind)
        if status.status in ("success", "failed"):
            return status
        await deferLater(reactor, POLL, lambda: None)
    raise AssertionError(f"{kind_name} never ended")


@pytest_twisted.ensureDeferred
async def test_version_and_changelog_are_new_the_moment_an_update_says_success(daemon, keys, tmp_path):
    install_keys(daemon.admin_path, keys)
    assert (await json_of(await daemon.get("/version")))["version"] == "1.0.0"  # cached from now on
    for run in range(1, RUNS + 1):
        version = f"1.{run}.0"
        package = build(tmp_path, keys, version)
        response = await daemon.post_form("/update", files={"update": (package.name, package.read_bytes())})
        assert response.code == 202
        assert (await first_final(daemon, "/update"))["status"] == "success"
        assert (await json_of(await daemon.get("/version")))["version"] == version, f"run {run}"
        assert f"## {version}" in (await (await daemon.get("/changelog")).content()).decode()


@pytest_twisted.ensureDeferred
async def test_the_certificate_in_service_is_new_the_moment_its_install_says_success(make_daemon):
    daemon = make_daemon(config={"endpoints": ["certs"]})
    daemon.accept_any_certificate()
    root = issue("Consistency Root CA", ca=True)
    for run in range(RUNS):
        leaf = issue(f"run{run}.example.test", root)
        response = await daemon.post_form("/certs", files={"public": ("p.pem", leaf.pem),
                                                           "private": ("k.pem", leaf.key_pem),
                                                           "ca": ("ca.pem", root.pem)})
        assert response.code == 202
        body = await first_final(daemon, "/certs")
        assert body["status"] == "success"
        assert body["subject"] == f"CN=run{run}.example.test"
        assert await deferToThread(served, daemon.port) == leaf.der, f"run {run}"


@pytest_twisted.ensureDeferred
async def test_the_settings_documents_are_new_the_moment_their_job_says_success(make_daemon, tmp_path):
    options = tmp_path / "storage-options.json"
    options.write_text(json.dumps({"options": ["local", "nfs"]}))
    daemon = make_daemon(config={"endpoints": ["settings", "storage", "cluster"],
                                 "storage-options-file": str(options)})
    for name in ("network.sh", "storage.sh", "cluster.sh"):
        hook = daemon.admin_path / "bin" / name
        hook.write_text("#!/bin/sh\nexit 0\n")
        hook.chmod(0o755)
    for run in range(RUNS):
        settings = {"network": {"interface": "eth0", "hostname": f"run{run}.example.com"}, "app": {"run": run}}
        assert (await daemon.post_form("/settings", files={"settings": ("s.json", json.dumps(settings).encode())}
                                       )).code == 202
        assert (await runner_final(daemon, "settings")).status == "success"
        shown = await json_of(await daemon.get("/settings"))
        assert shown["network"]["hostname"] == f"run{run}.example.com" and shown["app"] == {"run": run}

        storage = {"storage": {"type": "nfs", "ip": "192.168.1.100", "share": f"/nfs/run{run}"}}
        assert (await daemon.post_form("/storage", files={"settings": ("s.json", json.dumps(storage).encode())}
                                       )).code == 202
        assert (await runner_final(daemon, "storage")).status == "success"
        assert (await json_of(await daemon.get("/storage")))["storage"]["share"] == f"/nfs/run{run}"

        cluster = {"cluster": {"name": f"c{run}", "node": "n1", "role": "primary", "peers": [],
                               "secret": "a-shared-secret-of-the-cluster"}}
        assert (await daemon.post_form("/cluster", files={"settings": ("s.json", json.dumps(cluster).encode())}
                                       )).code == 202
        body = await first_final(daemon, "/cluster")
        assert body["status"] == "success" and body["cluster"]["name"] == f"c{run}", f"run {run}"


@pytest_twisted.ensureDeferred
async def test_a_license_and_a_token_are_in_use_the_moment_their_answer_says_so(make_daemon):
    daemon = make_daemon(config={"endpoints": ["license"]})
    script = daemon.admin_path / "bin" / "license.sh"
    script.write_text("#!/bin/sh\nprintf '{\"name\":\"%s\"}' \"$(head -c 40 \"$(dirname \"$0\")/../etc/license.asc\")\"\n")
    script.chmod(0o755)
    for run in range(RUNS):
        response = await daemon.post_form("/license", files={"license": ("l.asc", f"license-{run}".encode())})
        assert response.code == 200 and (await json_of(response))["name"] == f"license-{run}"
        assert (await json_of(await daemon.get("/license")))["name"] == f"license-{run}", f"run {run}"
        token = f"token-number-{run}"
        assert (await daemon.post_form("/setup", {"newtoken": token})).code == 200
        daemon.token = token
        assert (await daemon.get("/health")).code == 200, f"run {run}"


@pytest_twisted.ensureDeferred
async def test_a_backup_is_downloadable_the_moment_its_status_says_success(make_daemon, tmp_path):
    data = tmp_path / "data"
    (data / "app").mkdir(parents=True)
    daemon = make_daemon(config={"endpoints": ["backup"], "backup-root": str(data)})
    (daemon.admin_path / "etc" / "backup.txt").write_text("app\n")
    for run in range(RUNS):
        (data / "app" / "file").write_bytes(os.urandom(50_000 + run))
        assert (await daemon.post_form("/backup", {"action": "START"})).code == 202
        body = await first_final(daemon, "/backup")
        assert body["status"] == "success"
        download = await daemon.get("/backup/download")
        assert download.code == 200
        assert hashlib.sha256(await download.content()).hexdigest() == body["sha256"], f"run {run}"
