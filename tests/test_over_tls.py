"""What only the real daemon over TLS shows: HEAD and nested paths authenticated by hash,
POST /update in the audit trail, every upload cap, and a hung service-status hook."""

from __future__ import annotations

import json
import os
import time

import pytest
import pytest_twisted

from conftest import json_of, raw_request
from jidoteki_admin import API_PREFIX
from jidoteki_admin.http.auth import request_hash
from jidoteki_admin.sections import services as services_module
from test_auth import audit_entries
from test_information import write_hook
from test_updates import accepted, build, finished, install_keys


@pytest_twisted.ensureDeferred
async def test_head_is_authenticated_by_the_hash_of_get(daemon):
    """HEAD is answered as GET, so the hash a client makes for it is the one for GET."""
    (daemon.admin_path / "etc" / "version.txt").write_text("1.2.3\n")
    target = API_PREFIX + "/version"
    good = await raw_request(daemon, "HEAD", f"{target}?hash={request_hash('yourtoken', 'GET', target)}")
    assert good.status == 200 and good.body == b""
    assert int(good.header("content-length")) == len(b'{"version":"1.2.3"}')
    wrong = await raw_request(daemon, "HEAD", f"{target}?hash={request_hash('yourtoken', 'POST', target)}")
    assert wrong.status == 403


@pytest_twisted.ensureDeferred
async def test_a_nested_path_is_authenticated_by_the_hash_of_the_whole_path(daemon):
    (daemon.admin_path / "log" / "update.log").write_text("[1][UPDATE] line\n")
    good = await daemon.get("/update/log", auth="hash")
    assert good.code == 200
    assert await good.content() == b"[1][UPDATE] line\n"
    parent_hash = request_hash("yourtoken", "GET", API_PREFIX + "/update")
    refused = await daemon.client.get(daemon.base + API_PREFIX + "/update/log?hash=" + parent_hash)
    assert refused.code == 403


@pytest_twisted.ensureDeferred
async def test_an_update_upload_is_audited(daemon, keys, tmp_path):
    install_keys(daemon.admin_path, keys)
    await accepted(daemon, build(tmp_path, keys, "1.0.1"))
    assert (await finished(daemon))["status"] == "success"
    entries = [e for e in audit_entries(daemon) if e["target"] == API_PREFIX + "/update"]
    assert [(e["action"], e["outcome"][:3]) for e in entries] == [("POST", "202")]
    assert "yourtoken" not in json.dumps(audit_entries(daemon))


@pytest.mark.parametrize("field,default_cap", [("newtoken", 4096), ("update", None)])
@pytest_twisted.ensureDeferred
async def test_each_upload_cap_is_enforced_through_the_daemon(make_daemon, field, default_cap):
    """The 4 KiB text cap as shipped; the 8 GiB update cap made small with upload-limits (the
    same code path, at a size a test can send). The 1 MiB fields belong to sections this
    version does not serve."""
    cap = default_cap or 2048
    config = {} if default_cap else {"upload-limits": {field: cap}}
    daemon = make_daemon(config)
    path = {"newtoken": "/setup", "update": "/update"}[field]
    if field == "newtoken":
        answer = await daemon.post_form(path, {field: "a" * (cap + 1)})
    else:
        answer = await daemon.post_form(path, files={field: ("f.bin", os.urandom(cap + 1))})
    assert answer.code == 413
    assert (await json_of(answer))["Error-Message"] == f"Parameter {field} is larger than its limit of {cap} bytes"
    assert os.listdir(daemon.admin_path / "home" / "sftp" / "uploads") == []
    assert (await daemon.get("/health")).code == 200


def test_the_default_caps_are_the_documented_ones():
    from jidoteki_admin.config import parse_config

    limits = parse_config({}).upload_limits
    assert limits["update"] == 8 * 1024**3
    assert limits["license"] == 1024**2
    assert limits["text"] == 4 * 1024


@pytest_twisted.ensureDeferred
async def test_a_hung_service_status_hook_is_timed_out(make_daemon, monkeypatch):
    monkeypatch.setattr(services_module, "QUERY_TIMEOUT", 0.5)
    daemon = make_daemon(config={"services": ["stuck", "fine"]})
    pid_file = daemon.admin_path / "hook.pid"
    write_hook(daemon, f'[ "$1" = stuck ] && echo $$ > {pid_file} && exec sleep 300\nexit 0\n')
    started = time.monotonic()
    response = await daemon.get("/services")
    assert time.monotonic() - started < 5
    assert await json_of(response) == {
        "services": [{"stuck": "not running"}, {"fine": "running"}, {"jidoteki-admin-api": "running"}]}
    pid = int(pid_file.read_text())
    deadline = time.monotonic() + 5
    while os.path.exists(f"/proc/{pid}") and time.monotonic() < deadline:
        state = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0]
        if state in ("Z", "X"):
            break
        time.sleep(0.05)
    else:
        assert not os.path.exists(f"/proc/{pid}"), "the hung hook should have been killed"
