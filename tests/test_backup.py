"""Section 12, Backup: back up, download, stop, restore through the real daemon, with the
jobs as real child processes on a temporary backup root, and a corpus of hostile archives."""

from __future__ import annotations

import datetime
import email.utils
import hashlib
import io
import json
import os
import shutil
import subprocess
import stat
import sys
import tarfile
import threading
import time

import pytest
import pytest_twisted
from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.internet import reactor
from twisted.internet.task import deferLater

from conftest import json_of, tiny_disk, wait_until
from jidoteki_admin.jobs.backup import hash_growing_file

ACTION_PROBLEM = "Missing or invalid option: action. Expected value 'START' or 'STOP'"


@pytest.fixture
def data(tmp_path):
    root = tmp_path / "data"
    (root / "app" / "db").mkdir(parents=True)
    (root / "app" / "db" / "main.db").write_bytes(os.urandom(200_000))
    (root / "app" / "settings.conf").write_text("mode=fast\n")
    (root / "app" / "settings.conf").chmod(0o640)
    (root / "keep.txt").write_text("keep me\n")
    (root / "ignored.txt").write_text("not listed\n")
    return root


@pytest.fixture
def backup_daemon(make_daemon, data, tmp_path):
    daemon = make_daemon(config={"endpoints": ["backup"], "backup-root": str(data),
                                 "restore-max-bytes": 50_000_000})
    (daemon.admin_path / "etc" / "backup.txt").write_text("app keep.*\nmissing/*\n")
    return daemon


def snapshot(root) -> dict[str, tuple[int, bytes]]:
    """Every file under root: its mode and bytes (what a restore must give back exactly)."""
    found = {}
    for directory, _dirs, files in os.walk(root):
        for name in files:
            path = os.path.join(directory, name)
            with open(path, "rb") as f:
                found[os.path.relpath(path, root)] = (os.stat(path).st_mode & 0o7777, f.read())
    return found


def slow_tar(tmp_path, monkeypatch) -> None:
    """A tar on the PATH the jobs get that takes 30 s: a backup that is still running."""
    slow = tmp_path / "slow-bin"
    slow.mkdir()
    (slow / "tar").write_text("#!/bin/sh\nsleep 30\n")
    (slow / "tar").chmod(0o755)
    monkeypatch.setenv("PATH", f"{slow}{os.pathsep}{os.environ['PATH']}")


TRICKLING_TAR = """#!{python}
import os, subprocess, sys, tempfile, time
# tar -C ROOT -cf OUT --null -T -: the real tar's archive, written to OUT in 4 KiB pieces
out = sys.argv[sys.argv.index("-cf") + 1]
with tempfile.TemporaryFile() as whole:
    args = [a if a != out else "-" for a in sys.argv[1:]]
    done = subprocess.run([{tar!r}, *args], stdout=whole)
    whole.seek(0)
    with open(out, "wb", buffering=0) as f:
        while piece := whole.read(4096):
            f.write(piece)
            time.sleep(0.002)
sys.exit(done.returncode)
"""


def trickling_tar(tmp_path, monkeypatch) -> None:
    """A tar on the PATH the jobs get that writes the real archive slowly, in small pieces:
    the job's hash has to follow a file that is still growing."""
    slow = tmp_path / "trickle-bin"
    slow.mkdir()
    (slow / "tar").write_text(TRICKLING_TAR.format(python=sys.executable, tar=shutil.which("tar")))
    (slow / "tar").chmod(0o755)
    monkeypatch.setenv("PATH", f"{slow}{os.pathsep}{os.environ['PATH']}")


async def finished_backup(daemon, seconds: float = 30) -> dict:
    deadline = time.monotonic() + seconds
    while True:
        response = await daemon.get("/backup")
        if response.code == 200:
            body = await json_of(response)
            if body["status"] != "running":
                return body
        assert time.monotonic() < deadline, "the backup did not finish"
        await deferLater(reactor, 0.05, lambda: None)


async def restore(daemon, archive: bytes, name: str = "backup.tar"):
    return await daemon.post_form("/backup/restore", files={"archive": (name, archive)})


@pytest_twisted.ensureDeferred
async def test_a_backup_round_trip_restores_every_byte_and_mode(backup_daemon, data):
    daemon = backup_daemon
    assert (await daemon.get("/backup")).code == 404  # before any backup
    started = await daemon.post_form("/backup", {"action": "start"})  # any case
    assert started.code == 202
    assert await started.content() == b'{"Status":"202 Accepted","Location":"/api/v1/admin/backup"}'
    body = await finished_backup(daemon)
    archive = daemon.admin_path / "home" / "sftp" / "uploads" / "backup.tar"
    assert body["status"] == "success" and body["sha256"] == hashlib.sha256(archive.read_bytes()).hexdigest()
    assert body["filesize"][-1] in "KM" and (daemon.admin_path / "home/sftp/uploads/backup.json").read_bytes()[-1:] == b"}"
    with tarfile.open(archive) as tar:
        names = set(tar.getnames())
    assert {"app/db/main.db", "app/settings.conf", "keep.txt"} <= names and "ignored.txt" not in names
    log = await (await daemon.get("/backup/log")).content()
    assert b"Skipping 'missing/*': nothing there" in log and b"Backup complete" in log
    download = await daemon.get("/backup/download")
    assert download.headers.getRawHeaders("Filename") == ["backup.tar"]
    saved = await download.content()
    assert saved == archive.read_bytes()

    before = snapshot(data)
    persisted = daemon.admin_path / "log" / "persisted"
    hook = daemon.admin_path / "bin" / "persist.sh"
    hook.write_text(f"#!/bin/sh\necho yes >> {persisted}\n")
    hook.chmod(0o755)
    (data / "app" / "settings.conf").write_text("mode=broken\n")
    (data / "app" / "db" / "main.db").unlink()
    (data / "keep.txt").chmod(0o600)
    response = await restore(daemon, saved)
    assert response.code == 200, await response.content()
    assert await response.content() == b'{"Status":"200 OK"}'
    assert snapshot(data) == before
    assert sorted(os.listdir(data)) == ["app", "ignored.txt", "keep.txt"]  # no staging left
    assert await wait_until(lambda: persisted.exists())  # the restored data survives a reboot


@pytest_twisted.ensureDeferred
async def test_the_sha256_of_an_archive_written_slowly_covers_every_byte(backup_daemon, tmp_path, monkeypatch):
    trickling_tar(tmp_path, monkeypatch)
    assert (await backup_daemon.post_form("/backup", {"action": "START"})).code == 202
    body = await finished_backup(backup_daemon, seconds=60)
    archive = backup_daemon.admin_path / "home" / "sftp" / "uploads" / "backup.tar"
    assert archive.stat().st_size > 200_000
    assert body["status"] == "success" and body["sha256"] == hashlib.sha256(archive.read_bytes()).hexdigest()


@settings(max_examples=25, deadline=None)
@given(st.lists(st.binary(max_size=3000), max_size=8), st.booleans())
def test_hashing_a_growing_file_reads_every_byte_once(tmp_path_factory, pieces, leftover):
    """Pieces appended with pauses in between while it is hashed; a file that was there
    before must have been removed (the job does), so ``leftover`` only creates it late."""
    path = tmp_path_factory.mktemp("growing") / "archive.tar"
    finished = threading.Event()

    def writer() -> None:
        time.sleep(0.01 if leftover else 0)
        with open(path, "wb", buffering=0) as f:
            for piece in pieces:
                f.write(piece)
                time.sleep(0.003)
        finished.set()

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        assert hash_growing_file(path, finished.is_set, pause=0.001) == hashlib.sha256(b"".join(pieces)).hexdigest()
    finally:
        thread.join()


def test_hashing_a_file_that_never_appears_gives_the_empty_digest(tmp_path):
    assert hash_growing_file(tmp_path / "never", lambda: True) == hashlib.sha256(b"").hexdigest()


@pytest.mark.parametrize("fields", [{}, {"action": "RESTART"}, {"action": ""}])
@pytest_twisted.ensureDeferred
async def test_action_must_be_start_or_stop(backup_daemon, fields):
    response = await backup_daemon.post_form("/backup", fields)
    assert response.code == 400
    assert json.loads(await response.content())["Error-Message"] == ACTION_PROBLEM


@pytest_twisted.ensureDeferred
async def test_a_running_backup_says_how_much_it_has_written(backup_daemon, tmp_path, monkeypatch):
    """An addition: "written" lets a client show a running backup grow."""
    slow = tmp_path / "slow-bin"
    slow.mkdir()
    (slow / "tar").write_text('#!/bin/sh\nfor a; do [ "$prev" = -cf ] && out="$a"; prev="$a"; done\n'
                              'head -c 12345 /dev/zero > "$out"\nsleep 30\n')
    (slow / "tar").chmod(0o755)
    monkeypatch.setenv("PATH", f"{slow}{os.pathsep}{os.environ['PATH']}")
    daemon = backup_daemon
    assert (await daemon.post_form("/backup", {"action": "START"})).code == 202
    body: dict = {}
    for _ in range(200):
        body = await json_of(await daemon.get("/backup"))
        if body.get("written") == 12345:
            break
        await deferLater(reactor, 0.05, lambda: None)
    assert body == {"status": "running", "written": 12345}
    assert (await daemon.post_form("/backup", {"action": "STOP"})).code == 202


@pytest_twisted.ensureDeferred
async def test_stop_stops_a_running_backup_and_deletes_it(backup_daemon, tmp_path, monkeypatch):
    slow_tar(tmp_path, monkeypatch)
    daemon = backup_daemon
    assert (await daemon.post_form("/backup", {"action": "START"})).code == 202
    assert (await json_of(await daemon.get("/backup")))["status"] == "running"
    again = await daemon.post_form("/backup", {"action": "START"})
    assert again.code == 400 and json.loads(await again.content())["Error-Message"] == "A backup is already running"
    stopped = await daemon.post_form("/backup", {"action": "Stop"})
    assert stopped.code == 202
    for _ in range(200):
        if not daemon.service.runner.is_running(daemon.service.runner.kinds["backup"]):
            break
        await deferLater(reactor, 0.05, lambda: None)
    await deferLater(reactor, 0.1, lambda: None)
    assert (await daemon.get("/backup")).code == 404
    assert [n for n in os.listdir(daemon.admin_path / "home/sftp/uploads")] == []
    assert (await daemon.post_form("/backup", {"action": "STOP"})).code == 202  # nothing to stop: fine


@pytest_twisted.ensureDeferred
async def test_a_backup_that_would_fill_the_disk_is_refused_before_writing(backup_daemon, data):
    with open(data / "app" / "huge.img", "wb") as f:
        f.truncate(1 << 42)  # sparse: 4 TiB on paper, more than any test disk has free
    assert (await backup_daemon.post_form("/backup", {"action": "START"})).code == 202
    assert (await finished_backup(backup_daemon))["status"] == "failed"
    log = (await (await backup_daemon.get("/backup/log")).content()).decode()
    assert "Not enough free space for the backup: it needs about" in log and "are free" in log
    assert not (backup_daemon.admin_path / "home/sftp/uploads/backup.tar").exists()


# Hostile archives: each is refused whole, naming what is wrong, and nothing changes.

def tar_of(*members, gz: bool = False) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz" if gz else "w", format=tarfile.GNU_FORMAT) as tar:
        for info, content in members:
            tar.addfile(info, io.BytesIO(content) if content is not None else None)
    return out.getvalue()


def entry(name: str, kind=tarfile.REGTYPE, content: bytes = b"x", linkname: str = ""):
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = linkname
    info.size = len(content) if kind == tarfile.REGTYPE else 0
    return info, (content if kind == tarfile.REGTYPE else None)


def bomb() -> bytes:
    info = tarfile.TarInfo("zeros.bin")
    info.size = 60_000_000  # over the 50 MB cap the fixture sets
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz") as tar:
        tar.addfile(info, io.BytesIO(bytes(info.size)))
    return out.getvalue()


HOSTILE = {
    "absolute name": (tar_of(entry("/etc/evil")), "'/etc/evil'"),
    "dot-dot": (tar_of(entry("app/../../evil")), "'app/../../evil'"),
    "symlink out": (tar_of(entry("app/link", tarfile.SYMTYPE, linkname="/etc/passwd")), "'app/link'"),
    "symlink up": (tar_of(entry("up", tarfile.SYMTYPE, linkname="../../outside")), "'up'"),
    "write through a symlink": (tar_of(entry("d", tarfile.SYMTYPE, linkname="app"), entry("d/x")), "'d/x'"),
    "hard link out": (tar_of(entry("h", tarfile.LNKTYPE, linkname="../outside")), "'h'"),
    "device": (tar_of(entry("dev", tarfile.CHRTYPE)), "'dev'"),
    "fifo": (tar_of(entry("pipe", tarfile.FIFOTYPE)), "'pipe'"),
    "tar bomb": (bomb(), "Refusing the backup archive: it expands to at least 60000000 bytes, more than the "
                         "50000000 allowed"),
    "truncated": (tar_of(entry("keep.txt", content=b"y" * 5000))[:1500], "Unable to extract backup archive"),
    # Cut right after its first member: tarfile read it as a complete archive of one.
    "cut after a member": (tar_of(entry("keep.txt", content=b"replaced\n"), entry("new.txt"))[:1024],
                           "Unable to extract backup archive: the archive ends at byte 1024 without its "
                           "end-of-archive blocks"),
    "not a tar": (b"just some text, not an archive at all\n" * 40, "Unable to extract backup archive"),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
@pytest_twisted.ensureDeferred
async def test_a_hostile_archive_is_refused_whole_and_changes_nothing(backup_daemon, data, case):
    archive, named = HOSTILE[case]
    before = snapshot(data)
    response = await restore(backup_daemon, archive)
    assert response.code == 400
    message = json.loads(await response.content())["Error-Message"]
    assert named in message, message
    assert snapshot(data) == before
    assert sorted(os.listdir(data)) == ["app", "ignored.txt", "keep.txt"]
    assert "outside" not in os.listdir(data.parent) and not os.path.exists("/etc/evil")


@pytest_twisted.ensureDeferred
async def test_a_bad_member_after_good_ones_refuses_the_whole_archive(backup_daemon, data):
    before = snapshot(data)
    archive = tar_of(entry("keep.txt", content=b"replaced\n"), entry("new.txt"), entry("/abs"))
    response = await restore(backup_daemon, archive)
    assert response.code == 400
    assert snapshot(data) == before and not (data / "new.txt").exists()


@pytest_twisted.ensureDeferred
async def test_no_restore_while_a_backup_runs(backup_daemon, tmp_path, monkeypatch):
    slow_tar(tmp_path, monkeypatch)
    assert (await backup_daemon.post_form("/backup", {"action": "START"})).code == 202
    response = await restore(backup_daemon, tar_of(entry("keep.txt")))
    assert response.code == 400
    assert json.loads(await response.content())["Error-Message"] == "Cannot start a restore while a backup is running"
    assert (await backup_daemon.post_form("/backup", {"action": "STOP"})).code == 202


@pytest_twisted.ensureDeferred
async def test_a_backup_left_running_by_a_dead_daemon_reads_as_failed(backup_daemon):
    status = backup_daemon.admin_path / "home" / "sftp" / "uploads" / "backup.json"
    status.write_text('{"status":"running"}')  # what a daemon killed mid-backup leaves
    body = await json_of(await backup_daemon.get("/backup"))
    assert body == {"status": "failed"}
    assert status.read_text() == '{"status":"failed"}'
    assert (await backup_daemon.post_form("/backup", {"action": "START"})).code == 202  # and the next one runs
    assert (await finished_backup(backup_daemon))["status"] == "success"


@pytest_twisted.ensureDeferred
async def test_a_tar_that_ends_before_reading_its_list_fails_the_backup_with_its_words(
        backup_daemon, data, tmp_path, monkeypatch):
    """The list of paths is larger than a pipe holds, so the job is still writing it when
    tar goes: the backup fails with tar's status and message, not a broken pipe."""
    many = data / "app" / "many"
    many.mkdir()
    for n in range(1200):
        (many / f"{n:04d}-{'x' * 80}").write_bytes(b"")
    (backup_daemon.admin_path / "etc" / "backup.txt").write_text("app/many/*\n")
    refusing = tmp_path / "refusing-bin"
    refusing.mkdir()
    (refusing / "tar").write_text("#!/bin/sh\necho 'tar: this tar refuses' >&2\nexit 2\n")
    (refusing / "tar").chmod(0o755)
    monkeypatch.setenv("PATH", f"{refusing}{os.pathsep}{os.environ['PATH']}")
    assert (await backup_daemon.post_form("/backup", {"action": "START"})).code == 202
    assert (await finished_backup(backup_daemon))["status"] == "failed"
    log = (await (await backup_daemon.get("/backup/log")).content()).decode()
    assert "tar: this tar refuses" in log and "tar ended with exit status 2" in log
    assert "BrokenPipe" not in log
    assert [p.name for p in (backup_daemon.admin_path / "home/sftp/uploads").iterdir()] == ["backup.json"]


@pytest_twisted.ensureDeferred
async def test_a_backup_on_a_full_disk_fails_clearly_leaves_nothing_and_the_daemon_serves(backup_daemon, tmp_path):
    uploads = backup_daemon.admin_path / "home" / "sftp" / "uploads"
    with tiny_disk(uploads, tmp_path):
        assert (await backup_daemon.post_form("/backup", {"action": "START"})).code == 202
        assert (await finished_backup(backup_daemon))["status"] == "failed"
        log = (await (await backup_daemon.get("/backup/log")).content()).decode()
        assert "Not enough free space for the backup" in log
        assert os.listdir(uploads) == ["backup.json"]  # no partial archive
        assert (await backup_daemon.get("/health")).code == 200


def gzip_bomb(declared: int) -> bytes:
    """A tar.gz of one member of ``declared`` zero bytes, made without compressing them:
    gzip allows members back to back, so one compressed MiB of zeros is repeated."""
    import gzip

    info = tarfile.TarInfo("zeros.bin")
    info.size = declared
    mib = gzip.compress(bytes(1 << 20), compresslevel=9)
    return gzip.compress(info.tobuf(format=tarfile.GNU_FORMAT)) + mib * (declared >> 20) + gzip.compress(bytes(1024))


@pytest_twisted.ensureDeferred
async def test_a_bomb_is_refused_as_soon_as_it_passes_the_cap_not_after_expanding_it(backup_daemon, data):
    archive = gzip_bomb(2 << 30)  # 2 MB that expand to 2 GiB
    assert len(archive) < 3_000_000
    before = snapshot(data)
    started = time.monotonic()
    response = await restore(backup_daemon, archive)
    assert response.code == 400
    assert json.loads(await response.content())["Error-Message"] == (
        "Refusing the backup archive: it expands to at least 2147483648 bytes, more than the 50000000 allowed")
    assert time.monotonic() - started < 5  # it took 63 s when all of it was expanded first
    assert snapshot(data) == before
    assert [n for n in os.listdir(data) if n.startswith(".")] == []


@pytest_twisted.ensureDeferred
async def test_an_archive_of_more_members_than_allowed_is_refused_whole(make_daemon, data, tmp_path):
    daemon = make_daemon(config={"endpoints": ["backup"], "backup-root": str(data), "restore-max-members": 100})
    before = snapshot(data)
    response = await restore(daemon, tar_of(*[entry(f"many/{n}.txt") for n in range(150)]))
    assert response.code == 400
    assert json.loads(await response.content())["Error-Message"] == (
        "Refusing the backup archive: it holds more than the 100 members allowed")
    assert snapshot(data) == before


@pytest_twisted.ensureDeferred
async def test_a_member_thousands_of_directories_deep_is_refused_cleanly(backup_daemon, data):
    deep = "/".join(["d"] * 2000) + "/file.txt"
    response = await restore(backup_daemon, tar_of(entry(deep)))
    assert response.code == 400
    message = json.loads(await response.content())["Error-Message"]
    assert message.startswith("Refusing 'd/d/d/") and message.endswith("in the backup archive: it is more than 128 "
                                                                         "directories deep")
    assert "Traceback" not in (backup_daemon.admin_path / "log" / "update_restore.log").read_text()


@pytest_twisted.ensureDeferred
async def test_a_failed_backup_leaves_no_older_archive_looking_current(backup_daemon):
    daemon = backup_daemon
    uploads = daemon.admin_path / "home" / "sftp" / "uploads"
    assert (await daemon.post_form("/backup", {"action": "START"})).code == 202
    first = await finished_backup(daemon)
    assert first["status"] == "success"
    archive = uploads / "backup.tar"
    assert stat.S_IMODE(archive.stat().st_mode) == 0o600  # the appliance's data
    created = datetime.datetime.strptime(first["created"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=datetime.timezone.utc)
    download = await daemon.get("/backup/download")
    assert download.code == 200
    assert download.headers.getRawHeaders("content-type") == ["application/x-tar"]
    modified = email.utils.parsedate_to_datetime(download.headers.getRawHeaders("last-modified")[0])
    assert modified == created
    assert hashlib.sha256(await download.content()).hexdigest() == first["sha256"]

    (daemon.admin_path / "etc" / "backup.txt").unlink()  # the next backup fails
    assert (await daemon.post_form("/backup", {"action": "START"})).code == 202
    assert (await finished_backup(daemon)) == {"status": "failed"}
    response = await daemon.get("/backup/download")
    assert response.code == 404
    assert json.loads(await response.content())["Error-Message"] == "No backup archive: the last backup failed"
    assert not archive.exists()


@pytest_twisted.ensureDeferred
async def test_no_archive_is_downloaded_while_a_backup_runs(backup_daemon, tmp_path, monkeypatch):
    daemon = backup_daemon
    assert (await daemon.post_form("/backup", {"action": "START"})).code == 202
    assert (await finished_backup(daemon))["status"] == "success"
    slow_tar(tmp_path, monkeypatch)
    assert (await daemon.post_form("/backup", {"action": "START"})).code == 202
    response = await daemon.get("/backup/download")
    assert response.code == 404
    assert json.loads(await response.content())["Error-Message"] == "No backup archive: a backup is running"
    assert (await daemon.post_form("/backup", {"action": "STOP"})).code == 202


@pytest_twisted.ensureDeferred
async def test_a_restore_whose_move_into_place_fails_part_way_puts_the_previous_data_back_byte_for_byte(
        backup_daemon, data, tmp_path):
    """The last entry cannot be moved (a mount point: the kernel refuses to rename it), after
    the others were: they are put back as they were, every byte and mode."""
    if os.geteuid() != 0:
        pytest.skip("mounting needs root")
    (data / "zzz").mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(data / "zzz")], check=True)
    try:
        (data / "zzz" / "inside.txt").write_text("on the mount\n")
        before = snapshot(data)
        archive = tar_of(entry("app/db/main.db", content=b"restored db\n"), entry("keep.txt", content=b"new\n"),
                         entry("zzz/inside.txt", content=b"restored\n"))
        response = await restore(backup_daemon, archive)
        assert response.code == 400
        message = json.loads(await response.content())["Error-Message"]
        assert message.startswith("Could not move the restored files into place (could not move ") and \
            message.endswith("the previous data is back as it was"), message
        assert snapshot(data) == before
        assert [n for n in os.listdir(data) if n.startswith(".")] == []
        assert not (backup_daemon.admin_path / "etc" / "jobs" / "restore.journal").exists()
    finally:
        subprocess.run(["umount", str(data / "zzz")], check=True)
