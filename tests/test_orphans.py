"""kill -9 of the daemon in the middle of a job: the job's outcome is what the job did.

A job writes its own status, so one that ends while no daemon runs is reported as it
ended; one that is still running when the next daemon starts is followed to its end; one
killed outright together with its daemon (a power cut) is finished or undone from its
journal at the next start, and reported failed when it could not say otherwise.
"""

from __future__ import annotations

import json
import os
import signal
import ssl
import time

import psutil

from conftest import free_port
from test_cli import curl, empty_config
from test_updates import build, install_keys

SLOW_SCRIPT = 'echo "$$" > "$JIDO_ADMIN_PATH/log/script.pid"\nsleep 2\necho finished > "$JIDO_ADMIN_PATH/log/finished"\n'


def wait_for(predicate, seconds: float = 15.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


def gone(process: psutil.Process) -> bool:
    return not process.is_running() or process.status() == psutil.STATUS_ZOMBIE


def assert_nothing_partial(tree) -> None:
    """After a kill -9: no file the daemon keeps is empty or half-written (each is replaced
    atomically), and no temporary or partial file is left beside them."""
    etc = tree / "etc"
    for name in ("api.token", "status_update.json", "status_update.txt", "version.txt"):
        if (etc / name).exists():
            assert (etc / name).read_bytes().endswith(b"\n") and (etc / name).stat().st_size > 1, name
    json.loads((etc / "status_update.json").read_text())
    for folder in (etc, etc / "jobs", tree / "home" / "sftp" / "uploads", tree / "tmp"):
        assert [n for n in os.listdir(folder) if n.startswith(".")] == [], folder


def test_a_job_left_running_by_a_killed_daemon_is_followed_to_its_end_by_the_next_one(twistd, tmp_path, keys):
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
    assert wait_for(lambda: "Following the update job" in second.text()), second.text()  # logged as it starts
    if not gone(script):
        status = json.loads(curl(url)[1])
        assert status["status"] == "running"
        # Not a second update while it runs, nor any job of its group.
        assert json.loads(curl("-F", f"update=@{build(tmp_path, keys, '1.2.0')}", url)[1])["Error-Message"] == \
            "E1004: An update is already running"
    assert wait_for(lambda: json.loads(curl(url)[1])["status"] != "running")
    status = json.loads(curl(url)[1])
    assert status["status"] == "success", status
    assert (tree / "log" / "finished").exists()
    assert (tree / "etc" / "version.txt").read_text() == "1.1.0\n"
    # The job wrote its log lines itself: none was lost with the daemon.
    log = (tree / "log" / "update.log").read_text()
    assert "Updating system successful" in log
    assert json.loads(curl(url.replace("/update?", "/version?"))[1]) == {"version": "1.1.0"}
    assert_nothing_partial(tree)

    # Nothing is left locked: the next update runs.
    assert curl("-F", f"update=@{build(tmp_path, keys, '1.2.0')}", url)[0] == 202
    assert wait_for(lambda: json.loads(curl(url)[1])["status"] != "running")
    assert json.loads(curl(url)[1])["status"] == "success"
    assert (tree / "etc" / "version.txt").read_text() == "1.2.0\n"


def test_a_backup_killed_with_its_daemon_reads_failed_and_the_next_one_runs(twistd, tmp_path):
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
    job = os.getpgid(tar.pid)
    first.process.send_signal(signal.SIGKILL)  # the power goes: the daemon and its job
    os.killpg(job, signal.SIGKILL)
    first.process.wait(10)
    assert wait_for(lambda: gone(tar))

    second = twistd(*args)  # the real tar this time
    second.wait_listening(port)
    assert json.loads(curl(url)[1]) == {"status": "failed"}
    assert [p.name for p in (tree / "home" / "sftp" / "uploads").iterdir()] == ["backup.json"]
    assert curl(url.replace("/backup?", "/backup/download?"))[0] == 404
    assert curl("-F", "action=START", url)[0] == 202
    assert wait_for(lambda: json.loads(curl(url)[1])["status"] == "success")


def configured_daemon(twistd, tmp_path, config: dict):
    tree, port = tmp_path / "admin", free_port()
    for sub in ("etc", "log", "home/sftp/uploads", "tmp", "bin"):
        (tree / sub).mkdir(parents=True, exist_ok=True)
    (tree / "etc" / "api.token").write_text("yourtoken\n")
    (tmp_path / "config.json").write_text(json.dumps(config))
    args = ["--admin-path", str(tree), "--https", str(free_port()), "--http", str(port), "--interface",
            "127.0.0.1", "--config", str(tmp_path / "config.json")]
    return tree, port, args


def slow_hook(tree, name: str, marker, seconds: float = 1) -> None:
    hook = tree / "bin" / name
    hook.write_text(f'#!/bin/sh\necho "$$" > {marker}\nsleep {seconds}\n')
    hook.chmod(0o755)


SETTINGS = {"network": {"interface": "eth0", "hostname": "site.example.com",
                        "ip_address": "10.0.0.5", "netmask": "24", "gateway": "10.0.0.1"}}


def test_a_settings_apply_that_ends_while_no_daemon_runs_is_reported_as_it_ended(twistd, tmp_path):
    tree, port, args = configured_daemon(twistd, tmp_path, {"endpoints": ["settings"]})
    pid_file = tmp_path / "network.pid"
    slow_hook(tree, "network.sh", pid_file)
    url = f"http://127.0.0.1:{port}/api/v1/admin/settings?token=yourtoken"
    document = tmp_path / "settings.json"
    document.write_text(json.dumps(SETTINGS))
    first = twistd(*args)
    first.wait_listening(port)
    assert curl("-F", f"settings=@{document}", url)[0] == 202
    assert wait_for(lambda: pid_file.exists() and pid_file.read_text().strip())
    hook = psutil.Process(int(pid_file.read_text()))
    first.process.send_signal(signal.SIGKILL)
    first.process.wait(10)
    assert wait_for(lambda: gone(hook))  # network.sh did its work, with no daemon watching
    status = tree / "etc" / "status_settings.json"
    assert wait_for(lambda: json.loads(status.read_text())["status"] == "success")

    second = twistd(*args)
    second.wait_listening(port)
    assert json.loads(status.read_text())["status"] == "success"
    assert json.loads(curl(url)[1])["network"]["ip_address"] == "10.0.0.5"
    assert (tree / "etc" / "network.conf").read_text().startswith("mode=static\n")
    assert "Marked the interrupted" not in second.text()
    document.write_text(json.dumps({"network": {"interface": "eth0", "hostname": "site.example.com"}}))
    assert curl("-F", f"settings=@{document}", url)[0] == 202
    assert wait_for(lambda: json.loads(status.read_text()).get("status") == "success")
    assert json.loads(curl(url)[1])["network"]["mode"] == "dhcp"


def served_subject(port: int) -> str:
    context = ssl.create_default_context()
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    import socket

    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw, context.wrap_socket(raw) as tls:
        der = tls.getpeercert(binary_form=True)
    from cryptography import x509

    return x509.load_der_x509_certificate(der).subject.rfc4514_string()


def https_port(args) -> int:
    return int(args[args.index("--https") + 1])


def test_a_certificate_installed_while_no_daemon_ran_is_served_and_reported(twistd, tmp_path):
    """The issue's case: kill -9 of the daemon 0.3 s into a certificate install. The job
    installs the certificate on its own; the next daemon serves it and says success."""
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
    assert curl("-F", f"public=@{tmp_path / 'leaf.pem'}", "-F", f"private=@{tmp_path / 'leaf.key'}", url)[0] == 202
    assert wait_for(lambda: pid_file.exists() and pid_file.read_text().strip())
    first.process.send_signal(signal.SIGKILL)
    first.process.wait(10)
    status = tree / "etc" / "status_certs.json"
    assert wait_for(lambda: json.loads(status.read_text())["status"] != "running")

    second = twistd(*args)
    second.wait_listening(port)
    report = json.loads(curl(url)[1])
    assert report["status"] == "success" and "kill.example.test" in report["subject"], report
    assert "kill.example.test" in served_subject(https_port(args))
    assert os.listdir(tree / "home" / "sftp" / "uploads") == []  # no private key left


def test_a_certificate_install_killed_with_its_daemon_mid_swap_is_undone_at_the_next_start(
        twistd, tmp_path, monkeypatch):
    """A power cut while the files are swapped in: the next start rolls the swap back from
    its journal, says so, serves the previous certificate, and leaves no key behind."""
    from test_certs import issue

    tree, port, args = configured_daemon(twistd, tmp_path, {"endpoints": ["certs"]})
    checkpoints = tmp_path / "checkpoints"
    checkpoints.mkdir()
    (checkpoints / "certs.move2").touch()  # the CA and the key are in, the certificate is not
    root = issue("Kill Root CA", ca=True)
    leaf = issue("kill.example.test", root)
    (tmp_path / "leaf.pem").write_bytes(leaf.pem)
    (tmp_path / "leaf.key").write_bytes(leaf.key_pem)
    (tmp_path / "ca.pem").write_bytes(root.pem)
    url = f"http://127.0.0.1:{port}/api/v1/admin/certs?token=yourtoken"
    first = twistd(*args, env={"JIDO_JOB_CHECKPOINTS": str(checkpoints)})
    first.wait_listening(port)
    old = {name: (tree / "etc" / "ssl" / name).read_bytes() for name in ("cert.pem", "key.pem")}
    assert curl("-F", f"public=@{tmp_path / 'leaf.pem'}", "-F", f"private=@{tmp_path / 'leaf.key'}",
                "-F", f"ca=@{tmp_path / 'ca.pem'}", url)[0] == 202
    assert wait_for((checkpoints / "certs.move2.reached").exists)
    job = int(json.loads((tree / "etc" / "jobs" / "certs.pid").read_text())["pid"])
    first.process.send_signal(signal.SIGKILL)
    os.killpg(job, signal.SIGKILL)
    first.process.wait(10)
    assert (tree / "etc" / "ssl" / "key.pem").read_bytes() != old["key.pem"]  # a mix on disk, for now
    assert (tree / "etc" / "jobs" / "certs.journal").exists()

    second = twistd(*args)
    second.wait_listening(port)
    assert wait_for(lambda: json.loads(curl(url)[1])["status"] == "failed")
    report = json.loads(curl(url)[1])
    assert report["error-message"] == "Interrupted before it finished; the previous state is back in place"
    assert {name: (tree / "etc" / "ssl" / name).read_bytes() for name in old} == old
    assert not (tree / "etc" / "ssl" / "ca.pem").exists()  # there was none before
    assert "kill.example.test" not in report["subject"]
    assert "kill.example.test" not in served_subject(https_port(args))
    assert os.listdir(tree / "home" / "sftp" / "uploads") == []  # no private key left
    for folder in (tree / "etc", tree / "etc" / "ssl", tree / "etc" / "jobs", tree / "tmp"):
        assert [n for n in os.listdir(folder) if n.startswith(".")] == [], folder


def test_temporary_files_left_by_a_killed_writer_are_removed_at_start_unless_one_may_still_be_writing(
        make_daemon, tmp_path):
    tree = tmp_path / "admin"
    (tree / "etc" / "jobs").mkdir(parents=True)
    stale = [tree / "etc" / ".status_update.json.k3x9q0ab", tree / "etc" / "jobs" / ".certs.journal.a1b2c3d4"]
    fresh = tree / "etc" / ".status_certs.json.zz99yy88"  # a job the previous daemon left may be writing it
    foreign = tree / "etc" / ".version.txt.q1w2e3r4"  # an update script's, not ours to remove
    for path in [*stale, fresh, foreign]:
        path.write_text("partial")
    an_hour_ago = time.time() - 3600
    for path in [*stale, foreign]:
        os.utime(path, (an_hour_ago, an_hour_ago))
    make_daemon()
    assert [path.exists() for path in stale] == [False, False]
    assert fresh.exists() and foreign.exists()
