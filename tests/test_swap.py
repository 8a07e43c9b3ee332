"""Replacing files and directories together (swap.py): whatever stops it, and wherever, the
old state or the new one, never a mix."""

from __future__ import annotations

import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jidoteki_admin.jobs import swap


class Stop(BaseException):
    """A process that stops dead at a checkpoint (kill -9): nothing after it runs."""


def snapshot(root):
    """Every file (its bytes), directory and link under root, by relative path; the
    swap's own bookkeeping (journal, staging) excluded."""
    seen = {}
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            path = os.path.join(folder, name)
            relative = os.path.relpath(path, root)
            if relative.startswith("journal") or relative.startswith("staging"):
                continue
            if os.path.islink(path):
                seen[relative] = ("link", os.readlink(path))
            elif os.path.isdir(path):
                seen[relative] = ("dir",)
            else:
                with open(path, "rb") as f:
                    seen[relative] = ("file", f.read())
    return seen


def make(root, spec):
    """spec: name -> bytes (a file), a dict (a directory of such), or None (absent)."""
    for name, content in spec.items():
        path = root / name
        if content is None:
            continue
        if isinstance(content, dict):
            path.mkdir(parents=True)
            make(path, content)
        else:
            path.write_bytes(content)


def plan(root, old, new):
    """A swap of every entry of ``new`` into root, staged as the jobs stage them, and what
    root held before."""
    make(root, old)
    before = snapshot(root)
    staging = root / "staging"
    staging.mkdir()
    moves = swap.Swap(root / "journal" / "x.journal")
    for name, content in new.items():
        if isinstance(content, dict):
            make(staging, {name: content})
            moves.add(root / name, staging / name)
        else:
            moves.stage_file(root / name, content, 0o644)
    return moves, before


contents = st.binary(min_size=0, max_size=20)
entries = st.one_of(contents, st.dictionaries(st.sampled_from(["a", "b"]), contents, max_size=2), st.none())
names = st.sampled_from(["one", "two", "three"])


@st.composite
def swaps(draw):
    chosen = draw(st.lists(names, min_size=1, max_size=3, unique=True))
    old = {name: draw(entries) for name in chosen}
    new = {name: draw(entries.filter(lambda e: e is not None)) for name in chosen}
    return old, new


@settings(max_examples=150, deadline=None)
@given(swaps(), st.integers(min_value=0, max_value=20))
def test_a_swap_stopped_dead_anywhere_is_recovered_to_the_old_or_the_new_state(tmp_path_factory, case, stop_at):
    old, new = case
    root = tmp_path_factory.mktemp("swap")
    moves, before = plan(root, old, new)
    reached = []

    def checkpoint(name):
        reached.append(name)
        if len(reached) > stop_at:
            raise Stop(name)

    moves.checkpoint = checkpoint
    try:
        moves.install()
        moves.commit()
    except Stop:
        pass
    committed = "committed" in reached
    done = swap.recover(root / "journal" / "x.journal")
    assert done in (None, swap.COMPLETED, swap.ROLLED_BACK)
    assert (done == swap.COMPLETED) == committed
    swap.forget(root / "journal" / "x.journal")  # what the job does once it has said it succeeded
    after = snapshot(root)
    expected = dict(before)
    if committed:
        expected = {k: v for k, v in before.items() if not any(k == n or k.startswith(n + "/") for n in new)}
        expected.update(snapshot_of(new))
    assert after == expected, (reached, done)
    assert not (root / "journal" / "x.journal").exists()
    assert not [n for n in os.listdir(root) if n.startswith(".")], os.listdir(root)


def snapshot_of(spec, prefix=""):
    seen = {}
    for name, content in spec.items():
        if isinstance(content, dict):
            seen[prefix + name] = ("dir",)
            seen.update(snapshot_of(content, prefix + name + "/"))
        elif content is not None:
            seen[prefix + name] = ("file", content)
    return seen


def test_a_roll_back_puts_every_previous_entry_back_and_removes_new_ones(tmp_path):
    moves, before = plan(tmp_path, {"one": b"old", "two": None, "three": {"a": b"old a"}},
                         {"one": b"new", "two": b"new two", "three": {"b": b"new b"}})
    moves.install()
    assert (tmp_path / "one").read_bytes() == b"new" and (tmp_path / "three" / "b").exists()
    moves.roll_back()
    assert snapshot(tmp_path) == before
    assert not (tmp_path / "journal" / "x.journal").exists()


def test_a_file_is_never_missing_while_it_is_replaced(tmp_path):
    """A reader sees the old file or the new one: the previous is kept aside as a link."""
    moves, _ = plan(tmp_path, {"one": b"old"}, {"one": b"new"})
    seen = []
    moves.checkpoint = lambda name: seen.append((name, (tmp_path / "one").read_bytes()))
    moves.install()
    moves.commit()
    assert [content for _, content in seen] == [b"old", b"old", b"new", b"new"]
    assert (tmp_path / "one").read_bytes() == b"new"


def test_a_recovery_cut_short_can_be_run_again(tmp_path, monkeypatch):
    moves, before = plan(tmp_path, {"one": {"a": b"old"}, "two": b"old two"},
                         {"one": {"a": b"new"}, "two": b"new two"})
    moves.install()
    real_rename, calls = os.rename, []

    def failing(source, destination):
        calls.append(destination)
        if len(calls) == 2:
            raise Stop("the power goes again")
        return real_rename(source, destination)

    monkeypatch.setattr(swap.os, "rename", failing)
    with pytest.raises(Stop):
        swap.recover(tmp_path / "journal" / "x.journal")
    monkeypatch.setattr(swap.os, "rename", real_rename)
    assert swap.recover(tmp_path / "journal" / "x.journal") == swap.ROLLED_BACK
    assert snapshot(tmp_path) == before


def test_a_failed_move_puts_back_what_was_moved(tmp_path, monkeypatch):
    moves, before = plan(tmp_path, {"one": b"old one", "two": b"old two"}, {"one": b"new one", "two": b"new two"})
    real_replace = os.replace

    def failing(source, destination):
        if str(destination).endswith("/two"):
            raise OSError(28, "No space left on device", str(destination))
        return real_replace(source, destination)

    monkeypatch.setattr(swap.os, "replace", failing)
    with pytest.raises(swap.SwapError, match="could not move .*/two into place: No space left on device"):
        moves.install()
    monkeypatch.setattr(swap.os, "replace", real_replace)
    assert snapshot(tmp_path) == before


def test_no_journal_means_nothing_to_recover_and_a_damaged_one_is_set_aside(tmp_path):
    journal = tmp_path / "x.journal"
    assert swap.recover(journal) is None
    journal.write_text("{not json")
    logged = []
    assert swap.recover(journal, logged.append) is None
    assert not journal.exists() and logged == [f"Ignoring the unreadable journal {journal}"]


def test_a_target_that_is_a_link_into_a_persistent_mount_stays_a_link(tmp_path):
    mount = tmp_path / "mnt"
    mount.mkdir()
    (mount / "one").write_bytes(b"old")
    (tmp_path / "one").symlink_to(mount / "one")
    moves = swap.Swap(tmp_path / "x.journal")
    moves.stage_file(tmp_path / "one", b"new", 0o644)
    moves.install()
    moves.commit()
    assert (tmp_path / "one").is_symlink() and (mount / "one").read_bytes() == b"new"
