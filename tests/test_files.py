"""Whole-file writes: atomic, and through the symbolic links appliances persist files with."""

from __future__ import annotations

import os
import time

import pytest
import pytest_twisted

from jidoteki_admin.files import atomic_write


@pytest.fixture
def persisted(tmp_path):
    """etc/api.token as a symbolic link into a persistent mount, as appliances have it."""
    mount = tmp_path / "mnt" / "sda1" / "mydata"
    mount.mkdir(parents=True)
    (mount / "api.token").write_text("old\n")
    etc = tmp_path / "admin" / "etc"
    etc.mkdir(parents=True)
    (etc / "api.token").symlink_to(mount / "api.token")
    return etc / "api.token", mount / "api.token"


def test_writes_a_new_file(tmp_path):
    atomic_write(tmp_path / "f", b"data", 0o640)
    assert (tmp_path / "f").read_bytes() == b"data"
    assert (tmp_path / "f").stat().st_mode & 0o777 == 0o640
    assert os.listdir(tmp_path) == ["f"]


def test_replaces_the_file_a_link_points_to(persisted):
    link, real = persisted
    atomic_write(link, b"new\n", 0o600)
    assert link.is_symlink() and os.readlink(link) == str(real)
    assert real.read_bytes() == b"new\n"
    assert real.stat().st_mode & 0o777 == 0o600
    assert sorted(os.listdir(link.parent)) == ["api.token"]  # no temporary left beside the link
    assert sorted(os.listdir(real.parent)) == ["api.token"]


def test_follows_a_chain_of_relative_links(tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "file").write_text("old")
    (tmp_path / "middle").symlink_to("data/file")
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "name").symlink_to("../middle")
    atomic_write(tmp_path / "etc" / "name", b"new")
    assert (tmp_path / "etc" / "name").is_symlink() and (tmp_path / "middle").is_symlink()
    assert (tmp_path / "data" / "file").read_bytes() == b"new"


def test_a_dangling_link_gets_its_file(tmp_path):
    (tmp_path / "mount").mkdir()
    (tmp_path / "name").symlink_to(tmp_path / "mount" / "file")
    atomic_write(tmp_path / "name", b"created")
    assert (tmp_path / "name").is_symlink()
    assert (tmp_path / "mount" / "file").read_bytes() == b"created"


def test_a_link_loop_is_an_error_and_stays(tmp_path):
    (tmp_path / "a").symlink_to("b")
    (tmp_path / "b").symlink_to("a")
    with pytest.raises(OSError):
        atomic_write(tmp_path / "a", b"x")
    assert os.readlink(tmp_path / "a") == "b" and os.readlink(tmp_path / "b") == "a"
    assert sorted(os.listdir(tmp_path)) == ["a", "b"]


def test_a_reader_of_the_old_file_keeps_it(persisted):
    link, real = persisted
    with open(link, "rb") as before:
        atomic_write(link, b"new\n")
        assert before.read() == b"old\n"
    assert link.read_bytes() == b"new\n"


def test_group_is_set_when_asked(tmp_path):
    group = os.getgroups()[0] if os.getgroups() else os.getgid()
    atomic_write(tmp_path / "f", b"x", 0o660, group=group)
    assert (tmp_path / "f").stat().st_gid == group
    assert (tmp_path / "f").stat().st_mode & 0o777 == 0o660


@pytest_twisted.ensureDeferred
async def test_setting_a_token_keeps_the_persisted_link(daemon, tmp_path):
    mount = tmp_path / "mnt" / "mydata"
    mount.mkdir(parents=True)
    token_file = daemon.admin_path / "etc" / "api.token"
    (mount / "api.token").write_bytes(token_file.read_bytes())
    token_file.unlink()
    token_file.symlink_to(mount / "api.token")

    response = await daemon.post_form("/setup", {"newtoken": "persisted"})
    assert response.code == 200
    assert token_file.is_symlink() and os.readlink(token_file) == str(mount / "api.token")
    assert (mount / "api.token").read_text() == "persisted\n"
    daemon.token = "persisted"
    assert (await daemon.get("/version", auth="hash")).code != 403


def test_a_start_removes_the_temporary_files_a_killed_daemon_left_in_etc(make_memory_daemon, tmp_path):
    """kill -9 between atomic_write's mkstemp and its rename leaves a dotfile beside the
    target; the next daemon removes those of the files only the daemon and its jobs write,
    once untouched for a minute (a job it follows may be writing one), and leaves the
    temporaries of files an update script may be writing, and anything else, alone."""
    etc = tmp_path / "admin" / "etc"
    etc.mkdir(parents=True)
    left = [".status_update.txt.elg14h0p", ".api.token.a1b2_c3d", ".status_error_code.txt.zzzzzzzz"]
    kept = [".version.txt.abcdefgh", ".hidden", ".api.token.TOOLONGNAME", "status_update.txt"]
    for name in left + kept:
        (etc / name).write_text("x\n")
        os.utime(etc / name, (time.time() - 120, time.time() - 120))
    make_memory_daemon()
    remaining = set(os.listdir(etc))
    assert remaining.isdisjoint(left)
    assert set(kept) <= remaining


def test_write_all_writes_everything_in_pieces_the_page_cache_takes_fast(tmp_path, monkeypatch):
    """At most WRITE_PIECE bytes a call, and a short write is carried on from where it stopped."""
    from jidoteki_admin import files

    calls = []
    real_write = os.write

    def short_write(fd, data):
        calls.append(len(data))
        return real_write(fd, bytes(data)[:max(1, len(data) - 1000)])  # always a little short

    monkeypatch.setattr(files.os, "write", short_write)
    data = os.urandom(3 * files.WRITE_PIECE + 123)
    fd = os.open(tmp_path / "out", os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        files.write_all(fd, data)
    finally:
        os.close(fd)
    assert (tmp_path / "out").read_bytes() == data
    assert max(calls) == files.WRITE_PIECE and len(calls) > 4
