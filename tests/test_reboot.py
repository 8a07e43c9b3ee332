"""Section 5, Administration: GET /reboot through the real daemon, with a reboot command
that records it ran (the only fake: a real reboot is what only an appliance may do)."""

from __future__ import annotations

import json

import pytest_twisted

from conftest import wait_until
from jidoteki_admin.jobs.reboot import REBOOT
from jidoteki_admin.jobs.runner import SUCCESS
from test_updates import accepted, build, install_keys


def recorder(path, name: str, body: str = "") -> str:
    """An executable that appends its name and arguments to path/calls, then runs body."""
    script = path / name
    script.write_text(f'#!/bin/sh\necho "{name} $*" >> {path}/calls\n{body}')
    script.chmod(0o755)
    return str(script)


def calls(path) -> list[str]:
    file = path / "calls"
    return file.read_text().splitlines() if file.exists() else []


def reboot_daemon(make_daemon, tmp_path, body: str = ""):
    command = recorder(tmp_path, "reboot", body)
    daemon = make_daemon(config={"reboot-command": [command, "now"]})
    recorder(daemon.admin_path / "bin", "persist.sh")
    return daemon


@pytest_twisted.ensureDeferred
async def test_reboot_answers_202_then_persists_then_runs_the_reboot_command(make_daemon, tmp_path):
    daemon = reboot_daemon(make_daemon, tmp_path)
    (daemon.admin_path / "bin" / "persist.sh").write_text(f'#!/bin/sh\necho "persist.sh" >> {tmp_path}/calls\n')
    response = await daemon.get("/reboot", auth="hash")
    assert response.code == 202
    # As the original answered every 202: the body and the header say where to look.
    assert await response.content() == b'{"Status":"202 Accepted","Location":"/api/v1/admin/reboot"}'
    assert response.headers.getRawHeaders("Location") == ["/api/v1/admin/reboot"]
    assert await wait_until(lambda: len(calls(tmp_path)) == 2)
    assert calls(tmp_path) == ["persist.sh", "reboot now"]
    assert await wait_until(lambda: daemon.service.runner.status(REBOOT).status == SUCCESS)
    audit = [json.loads(line) for line in (daemon.admin_path / "log" / "jidoteki-audit.log").read_text().splitlines()]
    assert {"action": "GET", "target": "/api/v1/admin/reboot", "outcome": "202"}.items() <= audit[-1].items()


@pytest_twisted.ensureDeferred
async def test_a_second_reboot_while_one_is_pending_is_refused(make_daemon, tmp_path):
    daemon = reboot_daemon(make_daemon, tmp_path, body="sleep 5\n")
    assert (await daemon.get("/reboot")).code == 202
    again = await daemon.get("/reboot")
    assert again.code == 400
    assert json.loads(await again.content())["Error-Message"] == "A reboot is already running"


@pytest_twisted.ensureDeferred
async def test_without_a_reboot_command_nothing_reboots_and_the_job_says_why(daemon):
    response = await daemon.get("/reboot")
    assert response.code == 202
    assert await wait_until(lambda: daemon.service.runner.status(REBOOT).status == "failed")
    status = daemon.service.runner.status(REBOOT)
    assert status.error_message == "No reboot command configured (config key reboot-command)"
    assert "No reboot command configured" in (daemon.admin_path / "log" / "reboot.log").read_text()


@pytest_twisted.ensureDeferred
async def test_a_reboot_interrupted_by_the_daemon_going_down_succeeded(make_daemon, tmp_path):
    daemon = reboot_daemon(make_daemon, tmp_path, body="sleep 30\n")
    assert (await daemon.get("/reboot")).code == 202
    assert await wait_until(lambda: "reboot now" in calls(tmp_path))
    await daemon.pool.closeCachedConnections()
    await daemon.service.stopService()  # what the reboot does to the daemon
    assert daemon.service.runner.status(REBOOT).status == SUCCESS


@pytest_twisted.ensureDeferred
async def test_no_reboot_while_an_update_runs(make_daemon, keys, tmp_path):
    daemon = reboot_daemon(make_daemon, tmp_path)
    install_keys(daemon.admin_path, keys)
    await accepted(daemon, build(tmp_path, keys, "1.1.0", update_sh="sleep 3\n"))
    refused = await daemon.get("/reboot")
    assert refused.code == 400
    assert json.loads(await refused.content())["Error-Message"] == "Cannot start a reboot while an update is running"
    assert calls(tmp_path) == []
