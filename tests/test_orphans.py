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


def configured_daemon(twistd, tmp_path, config: dict):
    tree, port = tmp_path / "admin", free_port()
    for sub in ("etc", "log", "home/sftp/uploads", "tmp", "bin"):
        (tree / sub).mkdir(parents=True, exist_ok=True)
    (tree / "etc" / "api.token").write_text("yourtoken\n")
    (tmp_path / "config.json").write_text(json.dumps(config))
    args = ["--admin-path", str(tree), "--https", "0", "--http", str(port), "--interface", "127.0.0.1",
            "--config", str(tmp_path / "config.json")]
    return tree, port, args


def slow_hook(tree, name: str, marker) -> None:
    hook = tree / "bin" / name
    hook.write_text(f'#!/bin/sh\necho "$$" > {marker}\nsleep 30\n')
    hook.chmod(0o755)


def test_a_settings_apply_interrupted_by_kill_9_reads_failed_and_the_next_one_runs(twistd, tmp_path):
    tree, port, args = configured_daemon(twistd, tmp_path, {"endpoints": ["settings"]})
    pid_file = tmp_path / "network.pid"
    slow_hook(tree, "network.sh", pid_file)
    url = f"http://127.0.0.1:{port}/api/v1/admin/settings?token=yourtoken"
    document = tmp_path / "settings.json"
    document.write_text(json.dumps({"network": {"interface": "eth0", "hostname": "site.example.com",
                                                "ip_address": "10.0.0.5", "netmask": "24", "gateway": "10.0.0.1"}}))
    first = twistd(*args)
    first.wait_listening(port)
    assert curl("-F", f"settings=@{document}", url)[0] == 202
    assert wait_for(lambda: pid_file.exists() and pid_file.read_text().strip())
    hook = psutil.Process(int(pid_file.read_text()))
    first.process.send_signal(signal.SIGKILL)
    first.process.wait(10)

    (tree / "bin" / "network.sh").write_text("#!/bin/sh\nexit 0\n")  # the appliance, rebooted
    second = twistd(*args)
    second.wait_listening(port)
    assert wait_for(lambda: not hook.is_running() or hook.status() == psutil.STATUS_ZOMBIE)
    status = tree / "etc" / "status_settings.json"
    assert wait_for(lambda: json.loads(status.read_text()).get("status") == "failed")
    # What was written before the hook is whole: each file was replaced atomically.
    assert json.loads((tree / "etc" / "network.json").read_text())["mode"] == "static"
    assert (tree / "etc" / "network.conf").read_text().startswith("mode=static\n")
    for folder in (tree / "etc", tree / "tmp", tree / "home" / "sftp" / "uploads"):
        assert [n for n in os.listdir(folder) if n.startswith(".")] == [], folder
    document.write_text(json.dumps({"network": {"interface": "eth0", "hostname": "site.example.com"}}))
    assert curl("-F", f"settings=@{document}", url)[0] == 202
    assert wait_for(lambda: json.loads(status.read_text()).get("status") == "success")
    assert json.loads(curl(url)[1])["network"]["mode"] == "dhcp"


def test_a_certificate_install_interrupted_by_kill_9_keeps_the_old_one_and_leaves_no_key_behind(twistd, tmp_path):
    from test_certs import issue

    tree, port, args = configured_daemon(twistd, tmp_path, {"endpoints": ["certs"]})
    pid_file = tmp_path / "certs.pid"
    slow_hook(tree, "certs.sh", pid_file)
    root = issue("Kill Root CA", ca=True)
    leaf = issue("kill.example.test", root)
    (tmp_path / "leaf.pem").write_bytes(leaf.pem)
    (tmp_path / "leaf.key").write_bytes(leaf.key_pem)
    url = f"http://127.0.0.1:{port}/api/v1/admin/certs?token=yourtoken"
    first = twistd(*args)
    first.wait_listening(port)
    old_certificate = (tree / "etc" / "ssl" / "cert.pem").read_bytes()
    assert curl("-F", f"public=@{tmp_path / 'leaf.pem'}", "-F", f"private=@{tmp_path / 'leaf.key'}", url)[0] == 202
    assert wait_for(lambda: pid_file.exists() and pid_file.read_text().strip())
    hook = psutil.Process(int(pid_file.read_text()))
    first.process.send_signal(signal.SIGKILL)
    first.process.wait(10)

    second = twistd(*args)
    second.wait_listening(port)
    assert wait_for(lambda: not hook.is_running() or hook.status() == psutil.STATUS_ZOMBIE)
    report = {}
    assert wait_for(lambda: report.update(json.loads(curl(url)[1])) or report["status"] == "failed")
    # Interrupted before it finished: the previous certificate is back on disk and, once
    # the left-over job is gone, served again.
    assert wait_for(lambda: (tree / "etc" / "ssl" / "cert.pem").read_bytes() == old_certificate)
    assert wait_for(lambda: "kill.example.test" not in json.loads(curl(url)[1])["subject"]), second.text()
    assert "Loaded the TLS certificate again after stopping an interrupted install" in second.text()
    assert wait_for(lambda: os.listdir(tree / "home" / "sftp" / "uploads") == [])  # no private key left
    for folder in (tree / "etc", tree / "etc" / "ssl", tree / "tmp"):
        assert [n for n in os.listdir(folder) if n.startswith(".")] == [], folder
