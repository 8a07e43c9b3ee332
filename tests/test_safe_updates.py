"""Safe updates: check a package without changing anything, stage it and apply it later
(across a restart), roll back a failed update.sh, and the history of every attempt."""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path

import pytest
import pytest_twisted

from conftest import Twistd, free_port, json_of
from jidoteki_admin.formats import package, updatehistory
from test_updates import finished, install_keys

UPLOADS = Path("home") / "sftp" / "uploads"


def build_with(tmp_path: Path, keys, version: str, **scripts: str) -> Path:
    """A package of this version with the given scripts (update_sh, precheck_sh, rollback_sh)."""
    src = tmp_path / f"src-{version}-{os.urandom(3).hex()}"
    src.mkdir()
    (src / "version.txt").write_text(version + "\n")
    (src / "changelog.txt").write_text(f"## {version}\n\n  * Better things\n")
    for name, body in scripts.items():
        path = src / name.replace("_sh", ".sh")
        path.write_text("#!/bin/sh\n" + body)
        path.chmod(0o755)
    out = tmp_path / f"software_package-{version}-{os.urandom(3).hex()}.enc"
    package.build_package(src, version, keys["key"], keys["vendor"], out)
    return out


def tree_digest(admin: Path, leave_out: tuple[str, ...] = ()) -> dict[str, str]:
    """Every file of the tree and its SHA-256, but the logs and the check job's own records."""
    found = {}
    for path in sorted(admin.rglob("*")):
        relative = str(path.relative_to(admin))
        if path.is_file() and not relative.startswith("log/") and not any(part in relative for part in leave_out):
            found[relative] = hashlib.sha256(path.read_bytes()).hexdigest()
        elif path.is_dir():
            found[relative + "/"] = ""
    return found


CHECK_RECORDS = ("update_check", "status_update_check")


async def post_package(daemon, path: str, pkg: Path):
    return await daemon.post_form(path, files={"update": (pkg.name, pkg.read_bytes())})


def message_of(response) -> str:
    return (response.headers.getRawHeaders("error-message") or [""])[0]


@pytest.fixture
def updating(daemon, keys):
    install_keys(daemon.admin_path, keys, version="1.0.0")
    return daemon


# Check


@pytest_twisted.ensureDeferred
async def test_a_check_reports_the_package_and_changes_nothing_on_disk(updating, keys, tmp_path):
    daemon = updating
    ran = tmp_path / "update.sh.ran"
    pkg = build_with(tmp_path, keys, "1.2.0", update_sh=f"touch {ran}\n",
                     precheck_sh='echo "free space: plenty"; echo "JIDO_PRECHECK=$JIDO_PRECHECK"\n')
    (daemon.admin_path / "bin").mkdir(exist_ok=True)
    before = tree_digest(daemon.admin_path, CHECK_RECORDS)
    response = await post_package(daemon, "/update/check", pkg)
    assert response.code == 200, message_of(response)
    report = await json_of(response)
    assert report["version"] == "1.2.0" and report["installed"] == "1.0.0"
    assert report["installable"] is True and report["problem"] is None and report["staged"] is False
    assert report["changelog"].startswith("## 1.2.0")
    assert report["precheck"] == ["free space: plenty", "JIDO_PRECHECK=1"]
    assert report["package"] == pkg.name and report["size"] == pkg.stat().st_size
    assert tree_digest(daemon.admin_path, CHECK_RECORDS) == before  # nothing else changed, nothing left
    assert not ran.exists()
    assert (await json_of(await daemon.get("/update")))["status"] is None  # no update ran


@pytest_twisted.ensureDeferred
async def test_a_package_that_is_not_newer_is_checked_and_would_not_install(updating, keys, tmp_path):
    pkg = build_with(tmp_path, keys, "0.9.0", precheck_sh="echo never run\n")
    report = await json_of(await post_package(updating, "/update/check", pkg))
    assert report["installable"] is False and report["version"] == "0.9.0"
    assert report["problem"] == "Update package version '0.9.0' is not newer than the installed version '1.0.0'"
    assert "never run" not in (updating.admin_path / "log" / "update-check.log").read_text()


@pytest_twisted.ensureDeferred
async def test_a_corrupt_package_is_a_400_naming_the_problem_and_changes_nothing(updating, keys, tmp_path):
    daemon = updating
    pkg = build_with(tmp_path, keys, "1.2.0")
    data = bytearray(pkg.read_bytes())
    data[700] ^= 0xFF  # in the first member (the outer tar ends in padding, which nothing reads)
    pkg.write_bytes(bytes(data))
    before = tree_digest(daemon.admin_path, CHECK_RECORDS)
    response = await post_package(daemon, "/update/check", pkg)
    assert response.code == 400
    assert message_of(response).startswith("The update package cannot be checked: ")
    assert tree_digest(daemon.admin_path, CHECK_RECORDS) == before


@pytest.mark.parametrize("precheck, problem", [
    ('echo "not enough disk: 2 GB free, 5 GB needed"; exit 3\n',
     "precheck.sh exited with exit status 3: not enough disk: 2 GB free, 5 GB needed"),
    ("sleep 30 & sleep 30\n", "precheck.sh did not finish within 2 seconds"),
])
@pytest_twisted.ensureDeferred
async def test_a_precheck_that_refuses_or_hangs_makes_the_package_not_installable(make_daemon, keys, tmp_path,
                                                                                 precheck, problem):
    daemon = make_daemon({"precheck-seconds": 2})
    install_keys(daemon.admin_path, keys)
    pkg = build_with(tmp_path, keys, "1.2.0", precheck_sh=precheck)
    started = time.monotonic()
    report = await json_of(await post_package(daemon, "/update/check", pkg))
    assert time.monotonic() - started < 20
    assert report["installable"] is False
    assert report["problem"] == f"The package's precheck refused to install: {problem}"
    assert os.listdir(daemon.admin_path / UPLOADS) == [] and os.listdir(daemon.admin_path / "tmp") == []


@pytest_twisted.ensureDeferred
async def test_a_precheck_that_prints_a_lot_is_read_whole_and_reported_in_part(updating, keys, tmp_path):
    pkg = build_with(tmp_path, keys, "1.2.0",
                     precheck_sh='i=0; while [ $i -lt 20000 ]; do echo "checking item $i of 20000"; i=$((i+1)); done\n')
    report = await json_of(await post_package(updating, "/update/check", pkg))
    assert report["installable"] is True
    assert report["precheck"][-1] == "checking item 19999 of 20000" and len(report["precheck"]) == 50
    log = (updating.admin_path / "log" / "update-check.log").read_text()
    assert log.count("of 20000\n") == 20000


@pytest_twisted.ensureDeferred
async def test_a_precheck_that_refuses_stops_an_install_before_update_sh(updating, keys, tmp_path):
    ran = tmp_path / "update.sh.ran"
    pkg = build_with(tmp_path, keys, "1.2.0", update_sh=f"touch {ran}\n", precheck_sh="echo no; exit 1\n")
    assert (await post_package(updating, "/update", pkg)).code == 202
    body = await finished(updating)
    assert body["status"] == "failed" and body["error-code"] == "E1006"
    assert body["error-message"] == "The package's precheck refused to install: precheck.sh exited with exit status 1: no"
    assert not ran.exists() and (updating.admin_path / "etc" / "version.txt").read_text() == "1.0.0\n"


# Stage and apply


@pytest_twisted.ensureDeferred
async def test_a_staged_package_survives_a_restart_and_applies(tmp_path, keys):
    admin, port = tmp_path / "admin", free_port()
    install_keys(admin, keys)
    (admin / "etc" / "api.token").write_text("yourtoken\n")
    pkg = build_with(tmp_path, keys, "2.0.0", update_sh="echo installing\n")
    args = ["--admin-path", str(admin), "--https", "0", "--http", str(port),
            "--interface", "127.0.0.1"]
    base = f"http://127.0.0.1:{port}/api/v1/admin"
    daemon = Twistd(tmp_path, args)
    try:
        daemon.wait_listening(port)
        staged = curl_json("-F", f"update=@{pkg}", f"{base}/update/stage?token=yourtoken")
        assert staged["staged"] is True and staged["version"] == "2.0.0"
        second = curl_json("-F", f"update=@{pkg}", f"{base}/update/stage?token=yourtoken", expect=400)
        assert second["Error-Message"].startswith("A package is staged already (version 2.0.0")
    finally:
        daemon.stop()
    (tmp_path / "second").mkdir()
    daemon = Twistd(tmp_path / "second", args)
    try:
        daemon.wait_listening(port)
        note = curl_json(f"{base}/update/staged?token=yourtoken")["staged"]
        assert note["version"] == "2.0.0" and note["installed"] == "1.0.0" and note["uploaded-as"] == pkg.name
        assert curl_json("-X", "POST", f"{base}/update/apply?token=yourtoken", expect=202)
        deadline = time.monotonic() + 60
        while (status := curl_json(f"{base}/update?token=yourtoken"))["status"] == "running":
            assert time.monotonic() < deadline
            time.sleep(0.2)
        assert status["status"] == "success", status
        assert (admin / "etc" / "version.txt").read_text() == "2.0.0\n"
        assert curl_json(f"{base}/update/staged?token=yourtoken") == {"staged": None}
        again = curl_json("-X", "POST", f"{base}/update/apply?token=yourtoken", expect=400)
        assert again["Error-Message"] == "No package is staged: stage one first (POST /update/stage)"
        history = curl_json(f"{base}/update/history?token=yourtoken")["history"]
        assert [(h["from"], h["to"], h["outcome"]) for h in history] == [("1.0.0", "2.0.0", "success")]
        assert os.listdir(admin / UPLOADS / "staged") == []
    finally:
        daemon.stop()


def curl_json(*args: str, expect: int = 200):
    import subprocess

    done = subprocess.run(["curl", "-s", "-w", "\n%{http_code}", *args], capture_output=True, timeout=120, text=True)
    body, _, code = done.stdout.rpartition("\n")
    assert int(code) == expect, (code, body)
    return json.loads(body)


@pytest_twisted.ensureDeferred
async def test_a_package_that_would_not_install_is_not_staged(updating, keys, tmp_path):
    pkg = build_with(tmp_path, keys, "0.1.0")
    response = await post_package(updating, "/update/stage", pkg)
    assert response.code == 400
    assert message_of(response) == ("Not staged: Update package version '0.1.0' is not newer than the installed "
                                     "version '1.0.0'")
    assert (await json_of(await updating.get("/update/staged"))) == {"staged": None}


@pytest_twisted.ensureDeferred
async def test_a_staged_package_is_discarded(updating, keys, tmp_path):
    daemon = updating
    assert (await post_package(daemon, "/update/stage", build_with(tmp_path, keys, "1.5.0"))).code == 200
    assert len(os.listdir(daemon.admin_path / UPLOADS / "staged")) == 1
    assert (await daemon.post_form("/update/discard", {})).code == 200
    assert os.listdir(daemon.admin_path / UPLOADS / "staged") == []
    assert (await json_of(await daemon.get("/update/staged"))) == {"staged": None}
    nothing = await daemon.post_form("/update/discard", {})
    assert nothing.code == 400 and message_of(nothing) == "No package is staged"
    assert (await daemon.post_form("/update/apply", {})).code == 400


# Roll back


def own_files() -> str:
    """An update.sh that changes the appliance's own files, then fails."""
    return ('echo "9.9.9" > "$JIDO_ADMIN_PATH/etc/version.txt"\n'
            'echo "new hook" > "$JIDO_ADMIN_PATH/bin/status-hook"\n'
            'echo "added" > "$JIDO_ADMIN_PATH/etc/added-by-update.txt"\n'
            'echo "update.sh: the database migration failed"; exit 4\n')


@pytest.mark.parametrize("with_rollback", [True, False])
@pytest_twisted.ensureDeferred
async def test_a_failed_update_sh_is_rolled_back_and_the_version_stays(updating, keys, tmp_path, with_rollback):
    daemon = updating
    admin = daemon.admin_path
    (admin / "bin").mkdir(exist_ok=True)
    (admin / "bin" / "status-hook").write_text("old hook\n")
    marker = tmp_path / "rolled-back"
    scripts = {"update_sh": own_files()}
    if with_rollback:
        scripts["rollback_sh"] = f'echo "rolling back after $JIDO_UPDATE_ERROR_CODE from $JIDO_INSTALLED_VERSION" > {marker}\n'
    pkg = build_with(tmp_path, keys, "1.3.0", **scripts)
    assert (await post_package(daemon, "/update", pkg)).code == 202
    body = await finished(daemon)
    assert body["status"] == "failed" and body["error-code"] == "E1002"
    how = ("rolled back by the package's rollback.sh" if with_rollback
           else "not rolled back: the package has no rollback.sh")
    assert body["error-message"] == f"Update script failed with exit status 4; {how}"
    # Whether or not the package rolled back, the appliance's own files are as before.
    assert (admin / "etc" / "version.txt").read_text() == "1.0.0\n"
    assert (await json_of(await daemon.get("/version"))) == {"version": "1.0.0"}
    assert (admin / "bin" / "status-hook").read_text() == "old hook\n"
    assert not (admin / "etc" / "added-by-update.txt").exists()
    assert marker.exists() == with_rollback
    if with_rollback:
        assert marker.read_text() == "rolling back after E1002 from 1.0.0\n"
    history = (await json_of(await daemon.get("/update/history")))["history"]
    assert len(history) == 1
    entry = history[0]
    assert (entry["from"], entry["to"], entry["outcome"], entry["error-code"], entry["rolled-back"]) == (
        "1.0.0", "1.3.0", "failed", "E1002", with_rollback)
    assert entry["seconds"] >= 0 and entry["started"].endswith("Z") and entry["package"] == pkg.name


# History


@pytest_twisted.ensureDeferred
async def test_the_history_has_each_attempt_newest_first(updating, keys, tmp_path):
    daemon = updating
    for version in ("1.1.0", "1.0.5", "1.2.0"):
        assert (await post_package(daemon, "/update", build_with(tmp_path, keys, version))).code == 202
        await finished(daemon)
    history = (await json_of(await daemon.get("/update/history")))["history"]
    assert [(h["from"], h["to"], h["outcome"], h["error-code"]) for h in history] == [
        ("1.1.0", "1.2.0", "success", None), ("1.1.0", "1.0.5", "failed", "E1001"), ("1.0.0", "1.1.0", "success", None)]
    assert len({h["run"] for h in history}) == 3


def test_the_history_is_bounded_and_never_holds_a_run_twice(tmp_path):
    path = tmp_path / "history.json"
    for n in range(120):
        assert updatehistory.add(path, {"run": f"r{n}", "outcome": "success"}, limit=100)
    assert not updatehistory.add(path, {"run": "r119", "outcome": "failed"})
    history = updatehistory.entries(path)
    assert len(history) == 100 and history[0]["run"] == "r119" and history[-1]["run"] == "r20"


def test_an_update_that_ended_while_no_daemon_ran_is_in_the_next_daemons_history(tmp_path, keys):
    """The daemon is killed (-9) while update.sh runs; the update ends alone; the next
    daemon puts it in the history."""
    admin, port = tmp_path / "admin", free_port()
    install_keys(admin, keys)
    (admin / "etc" / "api.token").write_text("yourtoken\n")
    pkg = build_with(tmp_path, keys, "3.0.0", update_sh="sleep 2; echo done\n")
    args = ["--admin-path", str(admin), "--https", "0", "--http", str(port),
            "--interface", "127.0.0.1"]
    base = f"http://127.0.0.1:{port}/api/v1/admin"
    daemon = Twistd(tmp_path, args)
    daemon.wait_listening(port)
    curl_json("-F", f"update=@{pkg}", f"{base}/update?token=yourtoken", expect=202)
    deadline = time.monotonic() + 30
    while "Running the update script" not in (admin / "log" / "update.log").read_text():
        assert time.monotonic() < deadline
        time.sleep(0.05)
    daemon.process.kill()  # kill -9: the job, in a session of its own, goes on
    daemon.process.wait()
    deadline = time.monotonic() + 30
    while json.loads((admin / "etc" / "status_update.json").read_text())["status"] == "running":
        assert time.monotonic() < deadline
        time.sleep(0.1)
    (tmp_path / "second").mkdir()
    daemon = Twistd(tmp_path / "second", args)
    try:
        daemon.wait_listening(port)
        history = curl_json(f"{base}/update/history?token=yourtoken")["history"]
        assert [(h["from"], h["to"], h["outcome"]) for h in history] == [("1.0.0", "3.0.0", "success")]
        assert history[0]["seconds"] >= 2
        assert not (admin / "etc" / "jobs" / "update.attempt.json").exists()
    finally:
        daemon.stop()
