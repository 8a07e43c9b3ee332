"""The tar reader extraction uses (formats/tarstream.py), held against Python's tarfile.

tarfile is the reference: on any archive tarfile writes (ustar, GNU, pax; long names and
link names, unicode, base-256 numbers; plain or compressed), both must see the same
members with the same data. Where tarfile stops quietly on a damaged archive, the reader
says what is wrong and where, and it never fails in any other way than tarfile.ReadError.
"""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import os
import shutil
import subprocess
import tarfile

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jidoteki_admin.formats import package, tarstream
from jidoteki_admin.formats.package import PackageError

FORMATS = {"ustar": tarfile.USTAR_FORMAT, "gnu": tarfile.GNU_FORMAT, "pax": tarfile.PAX_FORMAT}
COMPRESSIONS = {
    "none": lambda raw: raw,
    "gz": gzip.compress,
    "bz2": bz2.compress,
    "xz": lzma.compress,
}

_segment = st.one_of(
    st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789._-", min_size=1, max_size=70),
    st.text(alphabet=st.characters(blacklist_characters="/\0", blacklist_categories=("Cs",)), min_size=1, max_size=20),
)
_names = st.lists(_segment, min_size=1, max_size=6).map("/".join)  # past 100 bytes: prefix, long names, pax


@st.composite
def _members(draw):
    kind = draw(st.sampled_from(["file", "dir", "symlink", "hardlink", "fifo"]))
    info = tarfile.TarInfo(draw(_names))
    info.mode = draw(st.integers(0, 0o7777))
    info.mtime = draw(st.one_of(st.integers(0, 2**33 - 1), st.integers(2**33, 2**40)))
    data = b""
    if kind == "file":
        data = draw(st.binary(max_size=2000))
        info.size = len(data)
    elif kind == "dir":
        info.type = tarfile.DIRTYPE
    elif kind == "fifo":
        info.type = tarfile.FIFOTYPE
    else:
        info.type = tarfile.SYMTYPE if kind == "symlink" else tarfile.LNKTYPE
        info.linkname = draw(_names)
    return info, data


def _archive(members, tar_format, compression) -> bytes | None:
    out = io.BytesIO()
    try:
        with tarfile.open(fileobj=out, mode="w", format=tar_format) as tar:
            for info, data in members:
                tar.addfile(info, io.BytesIO(data) if data or info.isreg() else None)
    except ValueError:
        return None  # more than this format can hold (a long name in ustar): not an archive
    return COMPRESSIONS[compression](out.getvalue())


def _seen(member: tarfile.TarInfo, data: bytes) -> tuple:
    return member.name, member.type, member.size, member.linkname, member.mode, member.mtime, data


def _by_tarfile(path) -> list[tuple]:
    seen = []
    with tarfile.open(path, mode="r|*") as tar:
        for member in tar:
            source = tar.extractfile(member) if member.isreg() else None
            seen.append(_seen(member, source.read() if source else b""))
    return seen


def _by_stream(path) -> list[tuple]:
    seen = []
    with tarstream.open_archive(path) as stream:
        tar = tarstream.TarStream(stream)
        for member in tar:
            seen.append(_seen(member, b"".join(bytes(c) for c in tar.chunks(size=700))))
    return seen


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(members=st.lists(_members(), max_size=8), tar_format=st.sampled_from(sorted(FORMATS)),
       compression=st.sampled_from(sorted(COMPRESSIONS)))
def test_it_reads_what_tarfile_writes_as_tarfile_reads_it(tmp_path, members, tar_format, compression):
    raw = _archive(members, FORMATS[tar_format], compression)
    if raw is None:
        return
    path = tmp_path / f"a.{tar_format}.{compression}"
    path.write_bytes(raw)
    assert _by_stream(path) == _by_tarfile(path)
    assert len(_by_stream(path)) == len(members)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(members=st.lists(_members(), min_size=1, max_size=4), tar_format=st.sampled_from(sorted(FORMATS)),
       damage=st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), min_size=1, max_size=4),
       cut=st.one_of(st.none(), st.integers(0, 10**6)))
def test_a_damaged_archive_is_a_read_error_or_members_never_anything_else(
        tmp_path, members, tar_format, damage, cut):
    raw = _archive(members, FORMATS[tar_format], "none")
    if raw is None:
        return
    damaged = bytearray(raw)
    for where, value in damage:
        damaged[where % len(damaged)] = value
    if cut is not None:
        del damaged[cut % len(damaged):]
    path = tmp_path / "damaged.tar"
    path.write_bytes(bytes(damaged))
    try:
        _by_stream(path)
    except tarfile.ReadError as e:
        assert str(e)  # says what is wrong


def _plain(*members: tuple[tarfile.TarInfo, bytes], tar_format=tarfile.GNU_FORMAT) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tar_format) as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


def _file(name: str, data: bytes = b"x") -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    return info, data


def _read_error(tmp_path, raw: bytes) -> str:
    path = tmp_path / "a.tar"
    path.write_bytes(raw)
    with pytest.raises(tarfile.ReadError) as refused:
        _by_stream(path)
    return str(refused.value)


def test_an_archive_cut_inside_a_member_or_a_header_is_refused_where_tarfile_may_stop_quietly(tmp_path):
    raw = _plain(_file("a.txt", b"a" * 1000), _file("b.txt", b"b" * 10))
    assert "unexpected end of data" in _read_error(tmp_path, raw[:1200])
    assert "truncated header at byte 1536" in _read_error(tmp_path, raw[:1536 + 100])
    # Right after a member: tarfile reads one member and stops; this says it is cut short.
    path = tmp_path / "one.tar"
    path.write_bytes(raw[:1536])
    assert len(_by_tarfile(path)) == 1
    assert "ends at byte 1536 without its end-of-archive blocks" in _read_error(tmp_path, raw[:1536])
    path.write_bytes(raw[:1536 + 512 + 512 + 512])  # one zero block is an end, as in tar
    assert len(_by_stream(path)) == 2


def test_garbage_after_the_members_is_refused_by_the_byte_it_starts_at(tmp_path):
    raw = _plain(_file("a.txt"))[:1024] + b"this is not a tar header".ljust(512, b"!")
    assert _read_error(tmp_path, raw) == "bad checksum in the header at byte 1024"


def test_an_archive_ending_after_an_extended_header_is_refused(tmp_path):
    raw = _plain(_file("n" * 150), tar_format=tarfile.PAX_FORMAT)
    assert "ends after an extended header" in _read_error(tmp_path, raw[:1024] + bytes(1024))


def test_an_empty_file_is_refused_and_an_archive_of_nothing_holds_nothing(tmp_path):
    assert _read_error(tmp_path, b"") == "empty file"
    path = tmp_path / "nothing.tar"
    path.write_bytes(_plain())
    assert _by_stream(path) == _by_tarfile(path) == []


def test_sparse_files_are_refused_by_name(tmp_path):
    info, data = _file("holes.bin")
    info.type = tarfile.GNUTYPE_SPARSE
    block = bytearray(info.tobuf(format=tarfile.GNU_FORMAT))
    assert "'holes.bin' at byte 0 is a sparse file" in _read_error(tmp_path, bytes(block) + bytes(2048))
    pax = tarfile.TarInfo("holes.bin")
    pax.pax_headers = {"GNU.sparse.major": "1", "GNU.sparse.minor": "0"}
    assert "sparse file" in _read_error(tmp_path, _plain((pax, b""), tar_format=tarfile.PAX_FORMAT))


def test_an_extended_header_over_a_mebibyte_is_refused_before_it_is_read(tmp_path):
    long_name = tarfile.TarInfo("././@LongLink")
    long_name.type = tarfile.GNUTYPE_LONGNAME
    long_name.size = tarstream.EXTENDED_MAX + 1
    message = _read_error(tmp_path, long_name.tobuf(format=tarfile.GNU_FORMAT) + bytes(1024))
    assert f"more than the {tarstream.EXTENDED_MAX} allowed" in message


def test_global_pax_records_apply_to_every_member_after_them(tmp_path):
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT,
                      pax_headers={"mtime": "1234.5", "path": "global"}) as tar:
        for info, data in (_file("a.txt"), _file("ü" * 120, b"long")):
            tar.addfile(info, io.BytesIO(data))
    path = tmp_path / "global.tar"
    path.write_bytes(out.getvalue())
    assert _by_stream(path) == _by_tarfile(path)
    # The path too, as tarfile reads it: to every member without a pax header of its own.
    assert [(m[0][:3], m[5]) for m in _by_stream(path)] == [("glo", 1234.5), ("üüü", 1234.5)]


def test_extraction_refuses_a_cut_or_damaged_archive_by_what_is_wrong(tmp_path):
    raw = _plain(_file("a.txt", b"a" * 600), _file("b.txt", b"b" * 600))
    path = tmp_path / "cut.tar"
    path.write_bytes(raw[:2300])
    with pytest.raises(PackageError, match="Cannot extract cut.tar: unexpected end of data"):
        package.extract_safely(path, tmp_path / "out")
    gz = tmp_path / "bad.tar.gz"
    gz.write_bytes(gzip.compress(raw)[:-30] + b"\xff" * 30)
    with pytest.raises(PackageError, match="Cannot extract bad.tar.gz"):
        package.extract_safely(gz, tmp_path / "out2")


def test_the_first_of_several_extended_headers_gives_the_name_as_in_tarfile(tmp_path):
    """A pax header, then a GNU long name, then the member: tarfile applies the nearest
    first, so the pax path wins."""
    pax = tarfile.TarInfo("p" * 120)
    pax.pax_headers = {"path": "from/pax"}
    raw = _plain((pax, b""), tar_format=tarfile.PAX_FORMAT)
    extended_end = 1024  # the pax header and its records
    long_name = _plain(_file("l" * 120, b"data"), tar_format=tarfile.GNU_FORMAT)
    crafted = raw[:extended_end] + long_name
    path = tmp_path / "both.tar"
    path.write_bytes(crafted)
    assert [m[0] for m in _by_stream(path)] == [m[0] for m in _by_tarfile(path)] == ["from/pax"]


def test_ustar_prefix_and_name_are_joined(tmp_path):
    name = "d" * 90 + "/" + "e" * 60 + "/" + "f" * 90
    path = tmp_path / "ustar.tar"
    path.write_bytes(_plain(_file(name), tar_format=tarfile.USTAR_FORMAT))
    assert [m[0] for m in _by_stream(path)] == [m[0] for m in _by_tarfile(path)] == [name]


def test_an_old_style_directory_a_file_named_with_a_slash_is_a_directory(tmp_path):
    info = tarfile.TarInfo("olddir/")
    info.type = tarfile.AREGTYPE
    path = tmp_path / "v7.tar"
    path.write_bytes(info.tobuf(format=tarfile.USTAR_FORMAT) + _plain(_file("olddir/a.txt")))
    seen = _by_stream(path)
    assert seen == _by_tarfile(path)
    assert [(m[0], m[1]) for m in seen] == [("olddir", tarfile.DIRTYPE), ("olddir/a.txt", tarfile.REGTYPE)]


def test_extraction_memory_grows_by_names_only_not_by_members(tmp_path):
    """tarfile kept every member it had read (about 570 bytes each, 11 MiB for these
    20,000); extraction now keeps only their names, to move them into place."""
    import tracemalloc

    archive = tmp_path / "many.tar"
    with tarfile.open(archive, "w", format=tarfile.GNU_FORMAT) as tar:
        for n in range(20_000):
            info = tarfile.TarInfo(f"d{n // 100}/f{n}.txt")
            info.size = 10
            tar.addfile(info, io.BytesIO(b"0123456789"))
    tracemalloc.start()
    try:
        names = package.extract_safely(archive, tmp_path / "out")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert len(names) == 20_000
    assert peak < 6 * 2**20, f"{peak / 2**20:.1f} MiB"


def _tree(root, ustar: bool = False):
    """Names past 100 bytes (and, but for ustar, which cannot hold them, past 255 and a
    link target past 100), unicode, links, an empty folder, modes."""
    deep = root / ("d" * 60) / ("e" * 60)  # ustar holds 155 + 100 bytes, split at a "/"
    if not ustar:
        deep = deep / ("f" * 60)
    deep.mkdir(parents=True)
    (deep / ("long-" * (8 if ustar else 30) + ".txt")).write_bytes(b"long\n" * 300)
    (root / "ünïcödé.txt").write_text("ü\n")
    (root / "empty").mkdir()
    tool = root / "tool.sh"
    tool.write_text("#!/bin/sh\n")
    tool.chmod(0o755)
    (root / "link").symlink_to("ünïcödé.txt")
    (root / ("l" * (90 if ustar else 120))).symlink_to("d" * 60 if ustar else ("d" * 60) + "/" + ("e" * 60))
    os.link(tool, root / "hard.sh")
    big = root / "big.bin"
    big.write_bytes(os.urandom(3 * tarstream.BUFFER + 17))  # past one read


GNU_TAR_FORMATS = ["gnu", "oldgnu", "posix", "ustar"]


@pytest.mark.skipif(shutil.which("tar") is None, reason="needs GNU tar")
@pytest.mark.parametrize("tar_format", GNU_TAR_FORMATS)
@pytest.mark.parametrize("compression", ["", "-z", "-j", "-J"])
def test_what_gnu_tar_writes_reads_and_extracts_as_gnu_tar_extracts_it(tmp_path, tar_format, compression):
    """The tar appliances make their backups with, in each of its formats: the reader sees
    what tarfile sees, and extraction gives what `tar -x` gives, byte for byte."""
    source = tmp_path / "source"
    source.mkdir()
    _tree(source, ustar=tar_format == "ustar")
    archive = tmp_path / "archive.tar"
    command = ["tar", f"--format={tar_format}", "-cf", str(archive), "-C", str(source), "."]
    if compression:
        command.insert(1, compression)
    subprocess.run(command, check=True)
    assert _by_stream(archive) == _by_tarfile(archive)

    by_tar, by_us = tmp_path / "by-tar", tmp_path / "by-us"
    by_tar.mkdir()
    subprocess.run(["tar", "-xpf", str(archive), "-C", str(by_tar)], check=True)  # modes whatever the umask
    package.extract_safely(archive, by_us)
    assert _contents(by_us) == _contents(by_tar)


def _contents(root) -> dict:
    found = {}
    for path in sorted(root.rglob("*")):
        info = path.lstat()
        name = str(path.relative_to(root))
        if path.is_symlink():
            found[name] = ("link", os.readlink(path))
        elif path.is_dir():
            found[name] = ("dir",)
        else:
            found[name] = ("file", path.read_bytes(), info.st_mode & 0o777, int(info.st_mtime), info.st_nlink)
    return found
