"""The fault matrix: every kind of job that changes state, stopped at every point it passes
(learnt from the job itself), by SIGTERM to the job or kill -9 of the job; and kill -9 of
the daemon, with the next one started after the job would have ended, or after the power
went with the job too. Each time what is on disk is the whole old state or the whole new
one, and what the daemon reports says which.

The points are the job's own checkpoints (jobs/program.py): each step, and between the
moves of a swap. A job is held at one point, the fault is sent, and the job let go.
"""

from __future__ import annotations

import json
import os
import signal
import time
from dataclasses import dataclass, field
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
import pytest_twisted
from twisted.internet import defer

from conftest import Checkpoints, json_of, wait_until
from test_backup import entry, snapshot, tar_of
from test_certs import issue
from test_updates import build, install_keys

SETTINGS_OLD = {"network": {"interface": "eth0", "hostname": "old.example.com", "ip_address": "10.0.0.5",
                            "netmask": "255.255.255.0", "gateway": "10.0.0.1", "dns1": "10.0.0.2"},
                "app": {"name": "old"}}
SETTINGS_NEW = {"network": {"interface": "eth1", "hostname": "new.example.com"}, "app": {"name": "new"}}
STORAGE_NEW = {"storage": {"type": "nfs", "ip": "192.168.1.100", "share": "/nfs/new"}}
CLUSTER_NEW = {"cluster": {"name": "c2", "node": "n2", "role": "primary",
                           "peers": [{"name": "n3", "address": "10.0.0.9", "port": 7000}],
                           "secret": "new-shared-secret-of-the-cluster"}}


@dataclass
class Scenario:
    """One kind of job: how to make its old state, start it, and read its state and outcome."""

    kind: str
    config: dict
    prepare: Callable  # (daemon, tmp_path) -> None: the old state, and what the job needs
    start: Callable[..., Awaitable]  # (daemon, tmp_path) -> the request that starts the job
    state: Callable  # (daemon) -> what is on disk that the job changes
    extra: dict = field(default_factory=dict)


def tree_files(daemon, *names) -> tuple:
    return tuple(_bytes(daemon.admin_path / name) for name in names)


def _bytes(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None


def settings_form(document) -> dict:
    return {"settings": ("settings.json", json.dumps(document).encode())}


# -- the kinds ------------------------------------------------------------------------------


def prepare_update(daemon, tmp_path, keys):
    install_keys(daemon.admin_path, keys)
    (daemon.admin_path / "etc" / "changelog.txt").write_text("1.0.0: the installed changelog\n")
    daemon.extra["package"] = build(tmp_path, keys, "1.1.0", update_sh="echo update.sh ran\n")


async def start_update(daemon, tmp_path):
    package = daemon.extra["package"]
    copy = tmp_path / f"copy-{os.urandom(4).hex()}.enc"
    copy.write_bytes(package.read_bytes())
    return await daemon.post_form("/update", files={"update": ("software_package-1.1.0.enc", copy.read_bytes())})


def prepare_settings(daemon, tmp_path):
    hook = daemon.admin_path / "bin" / "network.sh"
    hook.write_text("#!/bin/sh\nexit 0\n")
    hook.chmod(0o755)
    etc = daemon.admin_path / "etc"
    (etc / "network.json").write_text(json.dumps({"mode": "static", **SETTINGS_OLD["network"]}) + "\n")
    (etc / "app.json").write_text(json.dumps(SETTINGS_OLD["app"]) + "\n")
    (etc / "network.conf").write_text("mode=static\ninterface=eth0\nip=10.0.0.5\n")


def prepare_storage(daemon, tmp_path):
    hook = daemon.admin_path / "bin" / "storage.sh"
    hook.write_text("#!/bin/sh\nexit 0\n")
    hook.chmod(0o755)
    (daemon.admin_path / "etc" / "storage.json").write_text('{"storage":{"type":"local"}}\n')
    (daemon.admin_path / "etc" / "storage.conf").write_text('type="local"\n')


def prepare_cluster(daemon, tmp_path):
    hook = daemon.admin_path / "bin" / "cluster.sh"
    hook.write_text("#!/bin/sh\nexit 0\n")
    hook.chmod(0o755)
    (daemon.admin_path / "etc" / "cluster.json").write_text(json.dumps(
        {"cluster": {"name": "c1", "node": "n1", "role": "replica", "peers": [],
                     "secret": "old-shared-secret-of-the-cluster"}}) + "\n")


_PKI: list = []


def prepare_certs(daemon, tmp_path):
    if not _PKI:  # one certificate for every daemon of the test: the new state is the same
        root = issue("Fault Root CA", ca=True)
        _PKI.extend([root, issue("fault.example.test", root)])
    root, leaf = _PKI
    daemon.extra["certs"] = {"public": ("public.pem", leaf.pem), "private": ("private.key", leaf.key_pem),
                             "ca": ("ca.pem", root.pem)}


def prepare_license(daemon, tmp_path):
    script = daemon.admin_path / "bin" / "license.sh"
    script.write_text("#!/bin/sh\nif grep -q '^VALID' \"$(dirname \"$0\")/../etc/license.asc\"; then\n"
                      "  printf '{\"app\":\"x\"}'\nfi\n")
    script.chmod(0o755)
    (daemon.admin_path / "etc" / "license.asc").write_text("VALID old license\n")


def prepare_backup(daemon, tmp_path):
    data = tmp_path / "data"
    (data / "app").mkdir(parents=True, exist_ok=True)
    (data / "app" / "file").write_bytes(os.urandom(100_000))
    (daemon.admin_path / "etc" / "backup.txt").write_text("app\n")


def backup_state(daemon):
    """Whether an archive is there, and whether backup.json says it is: the previous
    archive goes when a backup starts, so the old state is "none", the new "this one"."""
    uploads = daemon.admin_path / "home" / "sftp" / "uploads"
    status = _bytes(uploads / "backup.json")
    return (_bytes(uploads / "backup.tar") is not None, json.loads(status)["status"] == "success" if status else False)


def prepare_restore(daemon, tmp_path):
    data = tmp_path / "data"
    (data / "app" / "db").mkdir(parents=True, exist_ok=True)
    (data / "app" / "db" / "main.db").write_bytes(b"old db\n")
    (data / "keep.txt").write_text("old keep\n")
    (data / "zzz").mkdir(exist_ok=True)
    (data / "zzz" / "old.txt").write_text("old\n")


RESTORED = tar_of(entry("app/db/main.db", content=b"restored db\n"), entry("keep.txt", content=b"restored keep\n"),
                  entry("new.txt", content=b"new\n"), entry("zzz/new.txt", content=b"restored zzz\n"))


def scenarios(keys) -> dict[str, Scenario]:
    backup_config = {"endpoints": ["backup"]}
    return {
        "update": Scenario(
            "update", {}, lambda d, t: prepare_update(d, t, keys), start_update,
            lambda d: tree_files(d, "etc/version.txt", "etc/changelog.txt")),
        "settings": Scenario(
            "settings", {"endpoints": ["settings"]}, prepare_settings,
            lambda d, t: d.post_form("/settings", files=settings_form(SETTINGS_NEW)),
            lambda d: tree_files(d, "etc/network.json", "etc/app.json", "etc/network.conf")),
        "storage": Scenario(
            "storage", {"endpoints": ["storage"], "storage-options-file": "OPTIONS"}, prepare_storage,
            lambda d, t: d.post_form("/storage", files=settings_form(STORAGE_NEW)),
            lambda d: tree_files(d, "etc/storage.json", "etc/storage.conf")),
        "cluster": Scenario(
            "cluster", {"endpoints": ["cluster"]}, prepare_cluster,
            lambda d, t: d.post_form("/cluster", files=settings_form(CLUSTER_NEW)),
            lambda d: tree_files(d, "etc/cluster.json")),
        "certs": Scenario(
            "certs", {"endpoints": ["certs"]}, prepare_certs,
            lambda d, t: d.post_form("/certs", files=d.extra["certs"]),
            lambda d: tree_files(d, "etc/ssl/cert.pem", "etc/ssl/key.pem", "etc/ssl/ca.pem")),
        "license": Scenario(
            "license", {"endpoints": ["license"]}, prepare_license,
            lambda d, t: d.post_form("/license", files={"license": ("license.asc", b"VALID new license\n")}),
            lambda d: tree_files(d, "etc/license.asc")),
        "backup": Scenario(
            "backup", backup_config, prepare_backup,
            lambda d, t: d.post_form("/backup", {"action": "START"}), backup_state),
        "restore": Scenario(
            "restore", backup_config, prepare_restore,
            lambda d, t: d.post_form("/backup/restore", files={"archive": ("backup.tar", RESTORED)}),
            lambda d: snapshot(d.extra["data"])),
    }


# -- running one ------------------------------------------------------------------------------


def start_daemon_for(make_daemon, tmp_path, scenario, subdir):
    data = tmp_path / subdir / "data"
    data.mkdir(parents=True)
    options = tmp_path / subdir / "storage-options.json"
    options.write_text(json.dumps({"options": ["local", "nfs"]}))
    config = {key: str(options) if value == "OPTIONS" else value for key, value in scenario.config.items()}
    config["backup-root"] = str(data)
    daemon = make_daemon(config=config, subdir=subdir)
    daemon.extra["data"] = data
    scenario.prepare(daemon, tmp_path / subdir)
    return daemon


async def run_to_the_end(daemon, scenario, tmp_path) -> tuple:
    """The job run whole, undisturbed: its new state."""
    response = await scenario.start(daemon, tmp_path)
    assert response.code in (200, 202), await response.content()
    runner = daemon.service.runner
    assert await wait_until(lambda: not runner.is_running(runner.kinds[scenario.kind]), timeout=30)
    assert runner.status(runner.kinds[scenario.kind]).status == "success", runner.status(runner.kinds[scenario.kind])
    return scenario.state(daemon)


async def settled(daemon, scenario) -> str:
    runner = daemon.service.runner
    kind = runner.kinds[scenario.kind]
    assert await wait_until(lambda: not runner.is_running(kind) and not runner.is_running(runner.kinds.get(
        "persist", kind)), timeout=40), f"the {scenario.kind} job did not end"
    return runner.status(kind).status


async def reported_agrees(daemon, scenario, status: str, state) -> None:
    """What the API says of what is on disk agrees with it."""
    if scenario.kind == "update":
        body = await json_of(await daemon.get("/update"))
        assert body["status"] == status
        version = await json_of(await daemon.get("/version"))
        assert version["version"] + "\n" == state[0].decode()
    elif scenario.kind == "certs":
        body = await json_of(await daemon.get("/certs"))
        assert body["status"] == status
        assert ("fault.example.test" in body["subject"]) == (status == "success")
    elif scenario.kind == "backup":
        body = await json_of(await daemon.get("/backup"))
        assert body["status"] == status
        download = await daemon.get("/backup/download")
        assert (download.code == 200) == (status == "success")
        await download.content()
    elif scenario.kind == "license":
        body = await json_of(await daemon.get("/license"))
        assert body == {"app": "x"}  # the old one and the new one are both valid


KINDS = ["update", "settings", "storage", "cluster", "certs", "license", "backup", "restore"]


@pytest.mark.parametrize("kind", KINDS)
@pytest_twisted.ensureDeferred
async def test_a_job_stopped_at_any_point_leaves_the_old_or_the_new_state_and_says_which(
        make_daemon, tmp_path, keys, checkpoints: Checkpoints, kind):
    scenario = scenarios(keys)[kind]
    # First the job undisturbed, tracing the points it passes: the new state, and the points.
    trace = checkpoints.folder / "trace"
    trace.touch()
    clean = start_daemon_for(make_daemon, tmp_path, scenario, "clean")
    before = scenario.state(clean)
    new = await run_to_the_end(clean, scenario, tmp_path / "clean")
    points = [p for p in dict.fromkeys(trace.read_text().split()) if p.startswith(f"{kind}.")]
    trace.unlink()
    assert before != new and len(points) >= 3, points
    seen = {"success": 0, "failed": 0}
    for number, point in enumerate(points):
        for fault in (signal.SIGTERM, signal.SIGKILL):
            subdir = f"{number}-{fault.name}"
            daemon = start_daemon_for(make_daemon, tmp_path, scenario, subdir)
            old = scenario.state(daemon)  # each daemon makes its own certificate
            hold = checkpoints.hold(point)
            request = defer.ensureDeferred(scenario.start(daemon, tmp_path / subdir))
            assert await wait_until(hold.reached, timeout=20), (point, fault)
            job = daemon.service.runner._running[kind]
            os.killpg(job.child.pid, fault)
            hold.release()
            (checkpoints.folder / f"{point}.reached").unlink()
            await request
            status = await settled(daemon, scenario)
            state = scenario.state(daemon)
            where = f"{kind} at {point} by {fault.name}"
            assert state in (old, new), f"{where}: a mix on disk"
            assert status == ("success" if state == new else "failed"), f"{where}: reported {status}"
            await reported_agrees(daemon, scenario, status, state)
            assert not (daemon.admin_path / "etc" / "jobs" / f"{kind}.journal").exists(), where
            seen[status] += 1
    assert seen["failed"] > 0  # the matrix reached points before the change counts


# -- kill -9 of the daemon: real twistd processes ---------------------------------------------

from conftest import free_port  # noqa: E402
from test_cli import curl  # noqa: E402


@dataclass
class Tree:
    """What a scenario's prepare needs of a daemon, before twistd runs on the tree."""

    admin_path: Path
    extra: dict = field(default_factory=dict)


def curl_form(port: int, path: str, fields: dict, files: dict, work: Path) -> int:
    args = []
    for name, value in fields.items():
        args += ["-F", f"{name}={value}"]
    for name, (filename, content) in files.items():
        upload = work / f"upload-{name}"
        upload.write_bytes(content)
        args += ["-F", f"{name}=@{upload};filename={filename}"]
    return curl(*args, "--max-time", "60", f"http://127.0.0.1:{port}/api/v1/admin{path}?token=yourtoken")[0]


def form_of(kind: str, tree: Tree) -> tuple[str, dict, dict]:
    """The request that starts a scenario's job, as (path, fields, files)."""
    return {
        "update": lambda: ("/update", {}, {"update": ("software_package-1.1.0.enc",
                                                      tree.extra["package"].read_bytes())}),
        "settings": lambda: ("/settings", {}, settings_form(SETTINGS_NEW)),
        "storage": lambda: ("/storage", {}, settings_form(STORAGE_NEW)),
        "cluster": lambda: ("/cluster", {}, settings_form(CLUSTER_NEW)),
        "certs": lambda: ("/certs", {}, tree.extra["certs"]),
        "license": lambda: ("/license", {}, {"license": ("license.asc", b"VALID new license\n")}),
        "backup": lambda: ("/backup", {"action": "START"}, {}),
        "restore": lambda: ("/backup/restore", {}, {"archive": ("backup.tar", RESTORED)}),
    }[kind]()


def wait_for(predicate, seconds: float = 30.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


def alive(pid: int) -> bool:
    import psutil

    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


# A point in the middle of each job: after the first step, and within its swap.
MIDDLE = {"update": "update.move0", "settings": "settings.move1", "storage": "storage.move1",
          "cluster": "cluster.move0", "certs": "certs.move1", "license": "license.move0",
          "backup": "backup.20", "restore": "restore.move1"}


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("power_cut", [False, True], ids=["job-goes-on", "power-cut"])
def test_a_job_whose_daemon_is_killed_is_reported_as_it_ended_by_the_next_daemon(twistd, tmp_path, keys, kind,
                                                                                   power_cut):
    """kill -9 of the daemon at a point in the middle of the job; the job goes on (and ends
    before the next daemon starts), or the power goes with it. The next daemon reports
    what is on disk, which is the old state or the new one."""
    scenario = scenarios(keys)[kind]
    tree = Tree(tmp_path / "admin")
    for sub in ("etc", "log", "home/sftp/uploads", "tmp", "bin"):
        (tree.admin_path / sub).mkdir(parents=True, exist_ok=True)
    (tree.admin_path / "etc" / "api.token").write_text("yourtoken\n")
    data = tmp_path / "data"
    data.mkdir()
    tree.extra["data"] = data
    scenario.prepare(tree, tmp_path)
    options = tmp_path / "storage-options.json"
    options.write_text(json.dumps({"options": ["local", "nfs"]}))
    config = {key: str(options) if value == "OPTIONS" else value for key, value in scenario.config.items()}
    config["backup-root"] = str(data)
    (tmp_path / "config.json").write_text(json.dumps(config))
    port = free_port()
    args = ["--admin-path", str(tree.admin_path), "--https", str(free_port()), "--http", str(port),
            "--interface", "127.0.0.1", "--config", str(tmp_path / "config.json")]
    checkpoints = tmp_path / "checkpoints"
    checkpoints.mkdir()
    point = MIDDLE[kind]
    (checkpoints / point).touch()
    first = twistd(*args, env={"JIDO_JOB_CHECKPOINTS": str(checkpoints)})
    first.wait_listening(port)
    old = scenario.state(tree)
    path, fields, files = form_of(kind, tree)
    import threading

    answered = []
    request = threading.Thread(target=lambda: answered.append(curl_form(port, path, fields, files, tmp_path)))
    request.start()
    assert wait_for((checkpoints / f"{point}.reached").exists), first.text()
    job = int(json.loads((tree.admin_path / "etc" / "jobs" / f"{kind}.pid").read_text())["pid"])
    first.process.send_signal(signal.SIGKILL)
    first.process.wait(10)
    if power_cut:
        os.killpg(job, signal.SIGKILL)
    (checkpoints / point).unlink()
    request.join(70)
    assert wait_for(lambda: not alive(job))  # the job ended (or died) with no daemon watching

    second = twistd(*args)
    second.wait_listening(port)
    status_file = tree.admin_path / "etc" / f"status_{kind}.json"
    if kind == "update":
        status_file = tree.admin_path / "etc" / "status_update.json"

    answered = {"update": "/update", "certs": "/certs", "backup": "/backup"}.get(kind)

    def settled() -> bool:
        if answered is not None:  # the API's word, which waits for the daemon to take the outcome in
            return json.loads(curl(f"http://127.0.0.1:{port}/api/v1/admin{answered}?token=yourtoken")[1]
                              )["status"] != "running"
        return json.loads(status_file.read_text())["status"] != "running" and not (
            tree.admin_path / "etc" / "jobs" / f"{kind}.journal").exists()

    assert wait_for(settled), second.text()
    state = scenario.state(tree)
    status = json.loads(status_file.read_text())["status"]
    assert status == ("failed" if power_cut else "success"), status  # the change was half-way at the cut
    if status == "success":
        assert NEW[kind](tree), f"{kind}: reported success, and not all of the change is on disk"
    else:
        assert state == old, f"{kind}: reported failed, and the state on disk is not the old one"
    if kind == "update":
        body = json.loads(curl(f"http://127.0.0.1:{port}/api/v1/admin/update?token=yourtoken")[1])
        assert body["status"] == status
        version = json.loads(curl(f"http://127.0.0.1:{port}/api/v1/admin/version?token=yourtoken")[1])
        assert version["version"] + "\n" == state[0].decode()
    if kind == "backup":
        body = json.loads(curl(f"http://127.0.0.1:{port}/api/v1/admin/backup?token=yourtoken")[1])
        assert body["status"] == status
    if kind == "certs":
        body = json.loads(curl(f"http://127.0.0.1:{port}/api/v1/admin/certs?token=yourtoken")[1])
        assert body["status"] == status and ("fault.example.test" in body["subject"]) == (status == "success")
    def leftovers() -> list[Path]:
        return [p for p in (tree.admin_path / "etc", tree.admin_path / "etc" / "jobs", tree.admin_path / "tmp",
                            data) for p in p.iterdir() if p.name.startswith(".")]

    # A file being written atomically this instant (the persistence step a restore asks for
    # may be starting) has its temporary name for a moment; one that stays is a leftover.
    assert wait_for(lambda: leftovers() == []), leftovers()


def _text(tree, name) -> str:
    return (tree.admin_path / name).read_text()


# The whole change of each kind is on disk (every file of it, not some).
NEW = {
    "update": lambda t: _text(t, "etc/version.txt") == "1.1.0\n" and "## 1.1.0" in _text(t, "etc/changelog.txt"),
    "settings": lambda t: json.loads(_text(t, "etc/network.json"))["hostname"] == "new.example.com"
    and json.loads(_text(t, "etc/app.json")) == {"name": "new"} and "interface=eth1" in _text(t, "etc/network.conf"),
    "storage": lambda t: "/nfs/new" in _text(t, "etc/storage.json") and "/nfs/new" in _text(t, "etc/storage.conf"),
    "cluster": lambda t: json.loads(_text(t, "etc/cluster.json"))["cluster"]["name"] == "c2",
    "certs": lambda t: (t.admin_path / "etc/ssl/cert.pem").read_bytes().startswith(_PKI[1].pem)
    and (t.admin_path / "etc/ssl/ca.pem").read_bytes() == _PKI[0].pem,
    "license": lambda t: _text(t, "etc/license.asc") == "VALID new license\n",
    "backup": lambda t: backup_state(t) == (True, True),
    "restore": lambda t: snapshot(t.extra["data"])["new.txt"] == (0o644, b"new\n")
    and snapshot(t.extra["data"])["zzz/new.txt"] == (0o644, b"restored zzz\n")
    and "zzz/old.txt" not in snapshot(t.extra["data"]),
}


@pytest.mark.parametrize("power_cut", [False, True], ids=["job-goes-on", "power-cut"])
def test_a_token_change_is_whole_and_saved_for_the_next_boot_whatever_dies(twistd, tmp_path, power_cut):
    """The token is one file replaced atomically; saving it for the next boot (the
    persistence step, a job of its own) is asked for on disk, so a daemon killed before
    it ran, or with it, leaves it to the next one."""
    admin = tmp_path / "admin"
    for sub in ("etc", "log", "home/sftp/uploads", "tmp", "bin"):
        (admin / sub).mkdir(parents=True, exist_ok=True)
    (admin / "etc" / "api.token").write_text("yourtoken\n")
    persisted = admin / "log" / "persisted"
    hook = admin / "bin" / "persist.sh"
    hook.write_text(f"#!/bin/sh\necho \"$(cat {admin}/etc/api.token)\" >> {persisted}\n")
    hook.chmod(0o755)
    checkpoints = tmp_path / "checkpoints"
    checkpoints.mkdir()
    (checkpoints / "persist.start").touch()
    port = free_port()
    args = ["--admin-path", str(admin), "--https", str(free_port()), "--http", str(port), "--interface",
            "127.0.0.1", "--config", str(tmp_path / "config.json")]
    (tmp_path / "config.json").write_text("{}")
    first = twistd(*args, env={"JIDO_JOB_CHECKPOINTS": str(checkpoints)})
    first.wait_listening(port)
    url = f"http://127.0.0.1:{port}/api/v1/admin"
    assert curl("-F", "newtoken=the-new-token", f"{url}/setup?token=yourtoken")[0] == 200
    assert wait_for((checkpoints / "persist.start.reached").exists)
    job = int(json.loads((admin / "etc" / "jobs" / "persist.pid").read_text())["pid"])
    first.process.send_signal(signal.SIGKILL)
    first.process.wait(10)
    if power_cut:
        os.killpg(job, signal.SIGKILL)
    (checkpoints / "persist.start").unlink()
    assert wait_for(lambda: not alive(job))
    assert (admin / "etc" / "api.token").read_text() == "the-new-token\n"

    second = twistd(*args)
    second.wait_listening(port)
    assert wait_for(lambda: persisted.exists() and persisted.read_text().splitlines() == ["the-new-token"])
    assert curl(f"{url}/health?token=the-new-token")[0] == 200
    assert curl(f"{url}/health?token=yourtoken")[0] == 403
    assert not (admin / "etc" / "jobs" / "persist.requested").exists()
    assert wait_for(lambda: not (admin / "etc" / "jobs" / "persist.requested.taken").exists())
