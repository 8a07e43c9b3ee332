"""kill -9 of the daemon in the middle of a job: the job must not finish unwatched."""

from __future__ import annotations

import json
import os
import signal
import time

import psutil

from conftest import free_port
from test_cli import curl, empty_config
from test_updates import build, install_keys

SLOW_SCRIPT = 'echo "$$" > "$JIDO_ADMIN_PATH/log/script.pid"\nsleep 20\necho finished > "$JIDO_ADMIN_PATH/log/finished"\n'


def wait_for(predicate, seconds: float = 15.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


def assert_nothing_partial(tree) -> None:
    """After a kill -9: no file the daemon keeps is empty or half-written (each is replaced
    atomically), and no temporary or partial file is left beside them."""
    etc = tree / "etc"
    for name in ("api.token", "status_update.json", "status_update.txt", "version.txt"):
        if (etc / name).exists():
            assert (etc / name).read_bytes().endswith(b"\n") and (etc / name).stat().st_size > 1, name
    json.loads((etc / "status_update.json").read_text())
    for folder in (etc, tree / "home" / "sftp" / "uploads", tree / "tmp"):
        assert [n for n in os.listdir(folder) if n.startswith(".")] == [], folder


def test_a_job_left_by_a_killed_daemon_is_stopped_by_the_next_one(twistd, tmp_path, keys):
    tree, port = tmp_path / "admin", free_port()
    install_keys(tree, keys)
    (tree / "etc" / "api.token").write_text("yourtoken\n")
    args = ["--admin-path", str(tree), "--https", "0", "--http", str(port), "--interface", "127.0.0.1",
            "--config", empty_config(tmp_path)]
    url = f"http://127.0.0.1:{port}/api/v1/admin/update?token=yourtoken"
    first = twistd(*args)
    first.wait_listening(port)
    package = build(tmp_path, keys, "1.1.0", update_sh=SLOW_SCRIPT)
    assert curl("-F", f"update=@{package}", url)[0] == 202
    script_pid = tree / "log" / "script.pid"
    assert wait_for(lambda: script_pid.exists() and script_pid.read_text().strip())
    script = psutil.Process(int(script_pid.read_text()))

    first.process.send_signal(signal.SIGKILL)
    first.process.wait(10)
    assert script.is_running()  # the job is in its own session: it outlived the daemon

    second = twistd(*args)
    second.wait_listening(port)
    assert wait_for(lambda: not script.is_running() or script.status() == psutil.STATUS_ZOMBIE)
    status = json.loads(curl(url)[1])
    assert status["status"] == "failed" and status["error-code"] == "E1002"
    assert "Stopping the update job" in second.text()
    time.sleep(0.5)
    assert not (tree / "log" / "finished").exists()
    assert (tree / "etc" / "version.txt").read_text() == "1.0.0\n"  # not installed behind its back
    assert list((tree / "tmp").glob("update-*")) == []  # the job cleaned up on its SIGTERM
    assert status["error-message"] and (tree / "etc" / "api.token").read_text() == "yourtoken\n"
    # The status files are written one after the other: wait for the last one.
    assert wait_for(lambda: (tree / "etc" / "status_update.txt").read_text() == "failed\n")
    assert_nothing_partial(tree)

    # Nothing is left locked: the next update runs.
    assert curl("-F", f"update=@{build(tmp_path, keys, '1.2.0')}", url)[0] == 202
    assert wait_for(lambda: json.loads(curl(url)[1])["status"] != "running")
    assert json.loads(curl(url)[1])["status"] == "success"
    assert (tree / "etc" / "version.txt").read_text() == "1.2.0\n"


def test_a_backup_interrupted_by_kill_9_reads_failed_and_the_next_one_runs(twistd, tmp_path):
    tree, port, data = tmp_path / "admin", free_port(), tmp_path / "data"
    (data / "app").mkdir(parents=True)
    (data / "app" / "file").write_text("data\n")
    for sub in ("etc", "log", "home/sftp/uploads", "tmp", "bin"):
        (tree / sub).mkdir(parents=True, exist_ok=True)
    (tree / "etc" / "api.token").write_text("yourtoken\n")
    (tree / "etc" / "backup.txt").write_text("app\n")
    slow = tmp_path / "slow-bin"
    slow.mkdir()
    (slow / "tar").write_text(f'#!/bin/sh\necho "$$" > {tmp_path}/tar.pid\nsleep 30\n')
    (slow / "tar").chmod(0o755)
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"endpoints": ["backup"], "backup-root": str(data)}))
    args = ["--admin-path", str(tree), "--https", "0", "--http", str(port), "--interface", "127.0.0.1",
            "--config", str(config)]
    url = f"http://127.0.0.1:{port}/api/v1/admin/backup?token=yourtoken"
    first = twistd(*args, env={"PATH": f"{slow}:{os.environ['PATH']}"})
    first.wait_listening(port)
    assert curl("-F", "action=START", url)[0] == 202
    tar_pid = tmp_path / "tar.pid"
    assert wait_for(lambda: tar_pid.exists() and tar_pid.read_text().strip())
    tar = psutil.Process(int(tar_pid.read_text()))
    first.process.send_signal(signal.SIGKILL)
    first.process.wait(10)

    second = twistd(*args)  # the real tar this time
    second.wait_listening(port)
    assert wait_for(lambda: not tar.is_running() or tar.status() == psutil.STATUS_ZOMBIE)
    assert json.loads(curl(url)[1]) == {"status": "failed"}
    assert [p.name for p in (tree / "home" / "sftp" / "uploads").iterdir()] == ["backup.json"]
    assert curl("-F", "action=START", url)[0] == 202
    assert wait_for(lambda: json.loads(curl(url)[1])["status"] == "success")
