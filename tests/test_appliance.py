"""Drop-in on existing appliances: the privileged entry point, the persistence step, and
jobs delegated to the appliance's own bin/wrapper.sh. Real daemon, real child processes,
a temporary admin tree laid out like an original appliance's, scripts that record how they
were called."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import pytest_twisted

from conftest import json_of, wait_until
from jidoteki_admin.layout import AdminTree
from jidoteki_admin.persistence import persistence_commands
from test_updates import accepted, build, finished, install_keys, installed_version

PRIVILEGED = [sys.executable, "-m", "jidoteki_admin.privileged"]


def script(path: Path, body: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)
    return path


def recorder(tree: Path, name: str, exit_status: int = 0) -> Path:
    """bin/<name> that appends its arguments and SSH_ORIGINAL_COMMAND to log/<name>.calls."""
    calls = tree / "log" / f"{name}.calls"
    calls.parent.mkdir(parents=True, exist_ok=True)
    script(tree / "bin" / name,
           f'echo "args=$* command=$SSH_ORIGINAL_COMMAND secret=$SECRET_OF_THE_CALLER" >> {calls}\n'
           f"exit {exit_status}\n")
    return calls


def calls_of(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


# The privileged entry point


@pytest.mark.parametrize("args, why", [
    (["--admin-path", "/t", "os"], "not a job program of jidoteki_admin.jobs: 'os'"),
    (["--admin-path", "/t", "jidoteki_admin.http.gate"], "not a job program"),
    (["--admin-path", "/t", "jidoteki_admin.jobs.program"], "not a job program"),
    (["--admin-path", "/t", "jidoteki_admin.jobs.runner"], "not a job program"),
    (["--admin-path", "/t", "jidoteki_admin.jobs.nosuch"], "no such job program"),
    (["--admin-path", "/t", "jidoteki_admin.jobs.update;id"], "not a job program"),
    (["--admin-path", "t", "jidoteki_admin.jobs.persist"], "--admin-path must be absolute"),
    (["--admin-path", "/t", "jidoteki_admin.jobs.persist", "--admin-path", "/etc"], "set by --admin-path before"),
    (["--admin-path", "/t", "jidoteki_admin.jobs.persist", "--admin-path=/etc"], "set by --admin-path before"),
])
def test_the_privileged_entry_point_runs_nothing_but_a_job_program(args, why):
    done = subprocess.run(PRIVILEGED + args, capture_output=True, text=True, timeout=30)
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and why in done.stderr, done.stderr


def test_of_the_jobs_package_only_the_programs_can_be_run_as_root():
    """The runner, its children, the swap journal and whatever else in jobs/ programs only
    import are refused by name; every module that runs as a program is let through."""
    from jidoteki_admin import jobs
    from jidoteki_admin.privileged import Refused, job_module

    modules = sorted(Path(jobs.__file__).parent.glob("[a-z]*.py"))
    assert {"runner.py", "children.py", "swap.py", "update.py"} <= {path.name for path in modules}
    for path in modules:
        name = f"jidoteki_admin.jobs.{path.stem}"
        if 'if __name__ == "__main__":' in path.read_text():
            assert job_module(name) == name
        else:
            with pytest.raises(Refused, match="not a job program"):
                job_module(name)


def test_the_privileged_entry_point_runs_a_job_program_with_a_clean_environment(tmp_path):
    tree = tmp_path / "admin"
    calls = recorder(tree, "persist.sh")
    env = {**os.environ, "SECRET_OF_THE_CALLER": "x"}
    done = subprocess.run(PRIVILEGED + ["--admin-path", str(tree), "jidoteki_admin.jobs.persist"],
                          capture_output=True, text=True, timeout=30, env=env)
    assert done.returncode == 0, done.stderr
    assert calls_of(calls) == ["args= command= secret="]  # nothing of the caller's reaches root


@pytest_twisted.ensureDeferred
async def test_an_update_through_the_privileged_entry_point_installs_and_reports_progress(make_daemon, keys, tmp_path):
    admin = tmp_path / "admin"
    daemon = make_daemon(config={"privileged-command": [*PRIVILEGED, "--admin-path", str(admin)]})
    install_keys(daemon.admin_path, keys)
    await accepted(daemon, build(tmp_path, keys, "1.1.0"))
    body = await finished(daemon)
    assert body["status"] == "success" and body["percentage"] == 100, body
    assert installed_version(daemon.admin_path) == "1.1.0\n"
    assert "Verifying update package signature" in (admin / "log" / "update.log").read_text()


# The persistence step


@pytest_twisted.ensureDeferred
async def test_a_successful_update_is_persisted_and_a_failed_one_is_not(daemon, keys, tmp_path):
    calls = recorder(daemon.admin_path, "persist.sh")
    install_keys(daemon.admin_path, keys)
    await accepted(daemon, build(tmp_path, keys, "0.9.0"))  # not newer: E1001
    assert (await finished(daemon))["status"] == "failed"
    assert calls_of(calls) == []
    await accepted(daemon, build(tmp_path, keys, "1.2.0"))
    assert (await finished(daemon))["status"] == "success"
    assert len(calls_of(calls)) == 1
    log = (daemon.admin_path / "log" / "update.log").read_text()
    assert log.index("Saving persistent files") < log.index("Updating system successful")


@pytest_twisted.ensureDeferred
async def test_an_update_whose_change_cannot_be_persisted_says_so(daemon, keys, tmp_path):
    recorder(daemon.admin_path, "persist.sh", exit_status=3)
    install_keys(daemon.admin_path, keys)
    await accepted(daemon, build(tmp_path, keys, "1.2.0"))
    body = await finished(daemon)
    assert body["status"] == "failed"
    assert body["error-message"].startswith("The change is made, but it may not survive a reboot")
    assert "exit status 3" in body["error-message"]


@pytest_twisted.ensureDeferred
async def test_a_token_change_is_persisted(daemon):
    calls = recorder(daemon.admin_path, "persist.sh")
    response = await daemon.post_form("/setup", {"newtoken": "another-token"})
    assert response.code == 200
    assert await wait_until(lambda: len(calls_of(calls)) == 1)


@pytest_twisted.ensureDeferred
async def test_token_changes_while_persisting_are_persisted_once_more(daemon):
    calls = daemon.admin_path / "log" / "persist.calls"
    script(daemon.admin_path / "bin" / "persist.sh", f"sleep 0.3\necho done >> {calls}\n")
    for token in ("token-one", "token-two", "token-three"):
        response = await daemon.post_form("/setup", {"newtoken": token})
        assert response.code == 200
        daemon.token = token
    # One run for the first change, one more for the changes made while it ran.
    assert await wait_until(lambda: len(calls_of(calls)) == 2, timeout=10)


def test_symlinktool_is_the_persistence_step_where_the_appliance_has_it(tmp_path):
    tree = AdminTree(tmp_path / "admin")
    tool, device = tmp_path / "symlinktool.sh", tmp_path / "backup_device"
    assert persistence_commands(tree, tool, device) == []
    script(tool, "exit 0\n")
    device.write_text("/dev/sda1\n")
    assert persistence_commands(tree, tool, device) == [
        [str(tool), "-c", "dev/sda1"], [str(tool), "-r", "dev/sda1"]]
    hook = script(tree.bin / "persist.sh", "exit 0\n")
    assert persistence_commands(tree, tool, device) == [[str(hook)]]


# Jobs delegated to the appliance's own scripts


def wrapper(tree: Path, body: str) -> Path:
    """bin/wrapper.sh recording its call, then doing what the appliance's script would."""
    calls = tree / "log" / "wrapper.calls"
    calls.parent.mkdir(parents=True, exist_ok=True)
    script(tree / "bin" / "wrapper.sh", f'echo "args=$* command=$SSH_ORIGINAL_COMMAND" >> {calls}\n' + body)
    return calls


@pytest.fixture
def appliance(make_daemon, tmp_path):
    locks = tmp_path / "locks"
    locks.mkdir()
    daemon = make_daemon(config={"jobs": "appliance", "appliance-lock-dir": str(locks)})
    daemon.extra["locks"] = locks
    return daemon


UPDATE_SCRIPT = """\
tree="$(dirname "$(dirname "$0")")"
printf '{"status":"running","percentage":50}' > "$tree/etc/status_update.json"
echo "[1][SYSTEM] Updating from the appliance's script" >> "$tree/log/update.log"
printf '{"status":"success","percentage":100}' > "$tree/etc/status_update.json"
"""


@pytest_twisted.ensureDeferred
async def test_an_update_is_delegated_to_the_wrapper_as_the_original_did(appliance, keys, tmp_path):
    calls = wrapper(appliance.admin_path, UPDATE_SCRIPT)
    await accepted(appliance, build(tmp_path, keys, "1.3.0"))
    body = await finished(appliance)
    assert body == {"status": "success", "percentage": 100,
                    "log": "[1][SYSTEM] Updating from the appliance's script\\n"}
    assert calls_of(calls) == ["args= command=update"]
    # The package waits in the uploads folder for the appliance's script, named as the
    # original named every upload, so that the script's sort -V picks it.
    assert os.listdir(appliance.admin_path / "home" / "sftp" / "uploads") == ["software_package-zzz.enc"]


@pytest_twisted.ensureDeferred
async def test_the_appliance_scripts_lock_refuses_a_second_update(appliance, keys, tmp_path):
    calls = wrapper(appliance.admin_path, UPDATE_SCRIPT)
    (appliance.extra["locks"] / "update_vm.sh.task").write_text("")
    response = await appliance.post_form("/update", files={"update": ("p.enc", b"x" * 100)})
    assert response.code == 400
    assert json.loads(await response.content())["Error-Message"] == "E1004: An update is already running"
    assert calls_of(calls) == []
    assert os.listdir(appliance.admin_path / "home" / "sftp" / "uploads") == []


@pytest_twisted.ensureDeferred
async def test_a_wrapper_that_fails_without_a_word_is_reported_failed(appliance, keys, tmp_path):
    wrapper(appliance.admin_path, "exit 7\n")
    await accepted(appliance, build(tmp_path, keys, "1.3.0"))
    body = await finished(appliance)
    assert body["status"] == "failed" and body["error-code"] == "E1000"
    assert "exit status 7" in body["error-message"]


@pytest_twisted.ensureDeferred
async def test_the_status_of_older_appliances_is_read_from_status_update_txt(appliance):
    (appliance.admin_path / "etc" / "status_update.txt").write_text("success\n")
    body = await json_of(await appliance.get("/update"))
    assert body["status"] == "success"


@pytest_twisted.ensureDeferred
async def test_on_a_tree_of_links_into_a_persistent_mount_changes_land_in_the_mount(daemon, keys, tmp_path):
    """Persisted files are symlinks into /mnt/<device>/mydata on appliances in the field:
    an update and a token change must write through them, never replace them."""
    install_keys(daemon.admin_path, keys)
    etc, mount = daemon.admin_path / "etc", tmp_path / "mnt" / "sda1" / "mydata"
    mount.mkdir(parents=True)
    for name in ("version.txt", "changelog.txt", "api.token"):
        (mount / name).write_bytes((etc / name).read_bytes() if (etc / name).exists() else b"")
        (etc / name).unlink(missing_ok=True)
        (etc / name).symlink_to(mount / name)
    calls = recorder(daemon.admin_path, "persist.sh")
    await accepted(daemon, build(tmp_path, keys, "1.4.0"))
    assert (await finished(daemon))["status"] == "success"
    assert (await daemon.post_form("/setup", {"newtoken": "persisted-token"})).code == 200
    for name in ("version.txt", "changelog.txt", "api.token"):
        assert (etc / name).is_symlink(), name
    assert (mount / "version.txt").read_text() == "1.4.0\n"
    assert "1.4.0" in (mount / "changelog.txt").read_text()
    assert (mount / "api.token").read_text() == "persisted-token\n"
    assert await wait_until(lambda: len(calls_of(calls)) == 2)  # after the update and the token


@pytest_twisted.ensureDeferred
async def test_the_config_decrypt_dir_is_where_packages_are_unpacked(make_daemon, keys, tmp_path):
    work = tmp_path / "disk"
    daemon = make_daemon(config={"decrypt-dir": str(work)})
    install_keys(daemon.admin_path, keys)
    where = daemon.admin_path / "log" / "where.txt"
    await accepted(daemon, build(tmp_path, keys, "1.5.0", update_sh=f"pwd > {where}\n"))
    assert (await finished(daemon))["status"] == "success"
    assert where.read_text().startswith(f"{work}/update-")
    assert list((daemon.admin_path / "tmp").iterdir()) == []
