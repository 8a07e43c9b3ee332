"""The update package format, against the openssl command line in both directions."""

from __future__ import annotations

import io
import os
import subprocess
import tarfile
import tempfile
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from hypothesis import example, given, settings
from hypothesis import strategies as st

from jidoteki_admin.formats import package
from jidoteki_admin.formats.package import PackageError, Version

OPENSSL_ENC = ["openssl", "enc", "-aes-256-cbc", "-md", "sha256", "-pbkdf2", "-salt"]
OPENSSL_ENC_MD5 = ["openssl", "enc", "-aes-256-cbc", "-md", "md5", "-salt"]


# ----------------------------------------------------------------------------------------
# Keys and helpers


def _write_private(path: Path, key) -> Path:
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    return path


def _write_public(path: Path, key) -> Path:
    path.write_bytes(key.public_key().public_bytes(serialization.Encoding.PEM,
                                                   serialization.PublicFormat.SubjectPublicKeyInfo))
    return path


@pytest.fixture(scope="session")
def keys(tmp_path_factory):
    d = tmp_path_factory.mktemp("keys")
    vendor = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ec_vendor = ec.generate_private_key(ec.SECP256R1())
    ec_other = ec.generate_private_key(ec.SECP256R1())
    (d / "updates.key").write_text(os.urandom(32).hex() + "\n")
    (d / "other.key").write_text(os.urandom(32).hex() + "\n")
    return {
        "key": d / "updates.key",
        "other_key": d / "other.key",
        "vendor": _write_private(d / "vendor.key", vendor),
        "pub": _write_public(d / "updates.pub", vendor),
        "other_vendor": _write_private(d / "other_vendor.key", other),
        "ec_vendor": _write_private(d / "ec_vendor.key", ec_vendor),
        "ec_pub": _write_public(d / "ec_updates.pub", ec_vendor),
        "ec_other": _write_private(d / "ec_other.key", ec_other),
    }


@pytest.fixture
def src(tmp_path):
    d = tmp_path / "src"
    (d / "sub" / "deeper").mkdir(parents=True)
    (d / "changelog.txt").write_text("1.2.3: everything is better\n")
    (d / "update.sh").write_text("#!/bin/sh\necho updating\n")
    (d / "update.sh").chmod(0o755)
    (d / "sub" / "payload.bin").write_bytes(os.urandom(3 * package.CHUNK + 123))
    (d / "sub" / "deeper" / "empty.txt").write_bytes(b"")
    return d


def run(*args, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([str(a) for a in args], check=True, capture_output=True, **kwargs)


def openssl_package(tmp_path: Path, src: Path, key: Path, signing_key: Path,
                    enc=OPENSSL_ENC) -> Path:
    """A package made with nothing but tar and openssl, as docs/packages.md shows."""
    build = tmp_path / "openssl-build"
    build.mkdir()
    run("tar", "-C", src, "-czf", build / "software_package.tar.gz", ".")
    run("openssl", "dgst", "-sha256", "-sign", signing_key,
        "-out", build / "software_package.tar.gz.sign", build / "software_package.tar.gz")
    run("tar", "-C", build, "-cf", build / "outer.tar",
        "software_package.tar.gz", "software_package.tar.gz.sign")
    out = tmp_path / "software_package-openssl.enc"
    run(*enc, "-pass", f"file:{key}", "-in", build / "outer.tar", "-out", out)
    return out


def openssl_open(tmp_path: Path, pkg: Path, key: Path, pub: Path, enc=OPENSSL_ENC) -> Path:
    """Open a package with openssl and tar alone; returns the directory holding it."""
    out = tmp_path / "openssl-open"
    out.mkdir()
    run(*enc, "-d", "-pass", f"file:{key}", "-in", pkg, "-out", out / "outer.tar")
    run("tar", "-C", out, "-xf", out / "outer.tar")
    verified = run("openssl", "dgst", "-sha256", "-verify", pub,
                   "-signature", out / "software_package.tar.gz.sign", out / "software_package.tar.gz")
    assert verified.stdout.strip() == b"Verified OK"
    return out


def assert_same_tree(extracted: Path, src: Path) -> None:
    for path in src.rglob("*"):
        twin = extracted / path.relative_to(src)
        if path.is_file():
            assert twin.read_bytes() == path.read_bytes(), path
        else:
            assert twin.is_dir(), path


def make_tar_gz(path: Path, members: list[tuple[tarfile.TarInfo, bytes]]) -> Path:
    with tarfile.open(path, "w:gz", format=tarfile.GNU_FORMAT) as tar:
        for info, data in members:
            info.size = len(data) if info.isreg() else 0
            tar.addfile(info, io.BytesIO(data) if info.isreg() else None)
    return path


def file_info(name: str) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.mode = 0o644
    return info


# ----------------------------------------------------------------------------------------
# Round trips and openssl compatibility


def test_round_trip(tmp_path, src, keys):
    pkg = tmp_path / "software_package-1.2.3.enc"
    assert package.build_package(src, "1.2.3", keys["key"], keys["vendor"], pkg) == Version("1.2.3")
    work = tmp_path / "work"
    work.mkdir()
    schemes = []
    inner = package.decrypt_and_verify(pkg, keys["key"], keys["pub"], work, on_decrypted=schemes.append)
    assert schemes == ["pbkdf2"]
    names = package.extract_safely(inner, tmp_path / "x")
    assert names[0] == "version.txt"
    assert {"changelog.txt", "update.sh", "sub", "sub/payload.bin", "sub/deeper/empty.txt"} <= set(names)
    assert (tmp_path / "x" / "version.txt").read_text() == "1.2.3\n"
    assert os.access(tmp_path / "x" / "update.sh", os.X_OK)
    assert_same_tree(tmp_path / "x", src)


def test_openssl_built_package_opens(tmp_path, src, keys):
    (src / "version.txt").write_text("2.0.0\n")
    pkg = openssl_package(tmp_path, src, keys["key"], keys["vendor"])
    work = tmp_path / "work"
    work.mkdir()
    inner = package.decrypt_and_verify(pkg, keys["key"], keys["pub"], work)
    package.extract_safely(inner, tmp_path / "x")
    assert_same_tree(tmp_path / "x", src)


def test_outer_tar_of_a_directory_opens(tmp_path, src, keys):
    # `tar -C build -cf outer.tar .` adds a "./" entry and "./"-prefixed names.
    inner = make_tar_gz(tmp_path / "software_package.tar.gz", [(file_info("version.txt"), b"1.0.0\n")])
    build = tmp_path / "build"
    build.mkdir()
    (build / "software_package.tar.gz").write_bytes(inner.read_bytes())
    run("openssl", "dgst", "-sha256", "-sign", keys["vendor"], "-out", build / "software_package.tar.gz.sign",
        build / "software_package.tar.gz")
    run("tar", "-C", build, "-cf", tmp_path / "outer.tar", ".")
    assert b"./software_package.tar.gz" in run("tar", "-tf", tmp_path / "outer.tar").stdout
    run(*OPENSSL_ENC, "-pass", f"file:{keys['key']}", "-in", tmp_path / "outer.tar", "-out", tmp_path / "p.enc")
    work = tmp_path / "work"
    work.mkdir()
    opened = package.decrypt_and_verify(tmp_path / "p.enc", keys["key"], keys["pub"], work)
    assert opened.read_bytes() == inner.read_bytes()


def test_vendor_built_package_opens_with_openssl(tmp_path, src, keys):
    pkg = tmp_path / "software_package-1.0.0.enc"
    package.build_package(src, "1.0.0", keys["key"], keys["vendor"], pkg)
    opened = openssl_open(tmp_path, pkg, keys["key"], keys["pub"])
    run("tar", "-C", opened, "-xzf", opened / "software_package.tar.gz")
    assert (opened / "version.txt").read_text() == "1.0.0\n"
    assert_same_tree(opened, src)


def test_legacy_md5_package_opens_both_ways(tmp_path, src, keys):
    (src / "version.txt").write_text("0.9.0\n")
    legacy = openssl_package(tmp_path, src, keys["key"], keys["vendor"], enc=OPENSSL_ENC_MD5)
    work = tmp_path / "work"
    work.mkdir()
    schemes = []
    package.decrypt_and_verify(legacy, keys["key"], keys["pub"], work, on_decrypted=schemes.append)
    assert schemes == ["md5"]

    ours = tmp_path / "software_package-0.9.1.enc"
    package.build_package(src, "0.9.1", keys["key"], keys["vendor"], ours, legacy_md5=True)
    openssl_open(tmp_path, ours, keys["key"], keys["pub"], enc=OPENSSL_ENC_MD5)


@pytest.mark.parametrize("length", [0, 1, 15, 16, 17, 4095, package.CHUNK + 5])
@pytest.mark.parametrize("legacy", [False, True])
def test_encrypt_and_decrypt_match_openssl(tmp_path, keys, length, legacy):
    # Any plaintext starting with a tar header: every padding length gets exercised.
    header = tarfile.TarInfo("x").tobuf(format=tarfile.GNU_FORMAT)
    plain = header + os.urandom(length)
    (tmp_path / "plain").write_bytes(plain)
    enc = OPENSSL_ENC_MD5 if legacy else OPENSSL_ENC

    package.encrypt(tmp_path / "plain", tmp_path / "ours.enc", keys["key"], legacy_md5=legacy)
    assert (tmp_path / "ours.enc").read_bytes()[:8] == b"Salted__"
    decrypted = run(*enc, "-d", "-pass", f"file:{keys['key']}", "-in", tmp_path / "ours.enc").stdout
    assert decrypted == plain

    run(*enc, "-pass", f"file:{keys['key']}", "-in", tmp_path / "plain", "-out", tmp_path / "theirs.enc")
    scheme = package.decrypt(tmp_path / "theirs.enc", tmp_path / "back", keys["key"])
    assert scheme == ("md5" if legacy else "pbkdf2")
    assert (tmp_path / "back").read_bytes() == plain


@pytest.mark.parametrize("content", [b"secret\r\n", b"secret", b"secret\nsecond line\n", b"x" * 1500 + b"\n"])
def test_passphrase_is_read_as_openssl_reads_it(tmp_path, content):
    key = tmp_path / "updates.key"
    key.write_bytes(content)
    (tmp_path / "plain").write_bytes(tarfile.TarInfo("x").tobuf() + b"data")
    run(*OPENSSL_ENC, "-pass", f"file:{key}", "-in", tmp_path / "plain", "-out", tmp_path / "p.enc")
    package.decrypt(tmp_path / "p.enc", tmp_path / "back", key)
    assert (tmp_path / "back").read_bytes() == (tmp_path / "plain").read_bytes()


# ----------------------------------------------------------------------------------------
# Refusals


@pytest.fixture
def good_package(tmp_path, src, keys):
    pkg = tmp_path / "software_package-1.2.3.enc"
    package.build_package(src, "1.2.3", keys["key"], keys["vendor"], pkg)
    work = tmp_path / "work"
    work.mkdir()
    return pkg, work


def assert_refused(work: Path, call, message: str) -> None:
    with pytest.raises(PackageError) as caught:
        call()
    assert caught.value.code == "E1005"
    assert message in caught.value.message
    assert list(work.iterdir()) == []  # no partial tar.gz left behind


def test_wrong_key(good_package, keys):
    pkg, work = good_package
    assert_refused(work, lambda: package.decrypt_and_verify(pkg, keys["other_key"], keys["pub"], work),
                   "wrong key")


@pytest.mark.parametrize("where,message", [
    ("middle", "Invalid update package signature"),  # decrypts, but not what was signed
    ("last block", "bad padding"),
    ("first block", "wrong key or damaged package"),
])
def test_tampered_ciphertext(good_package, keys, where, message):
    pkg, work = good_package
    data = bytearray(pkg.read_bytes())
    data[{"middle": len(data) // 2, "last block": -1, "first block": 20}[where]] ^= 0x01
    pkg.write_bytes(data)
    assert_refused(work, lambda: package.decrypt_and_verify(pkg, keys["key"], keys["pub"], work), message)


def test_truncated_package(good_package, keys):
    pkg, work = good_package
    data = pkg.read_bytes()
    pkg.write_bytes(data[:len(data) - 32])
    assert_refused(work, lambda: package.decrypt_and_verify(pkg, keys["key"], keys["pub"], work), "bad padding")
    pkg.write_bytes(data[:len(data) - 5])
    assert_refused(work, lambda: package.decrypt_and_verify(pkg, keys["key"], keys["pub"], work), "truncated")


def test_not_a_package(tmp_path, keys):
    (tmp_path / "junk.enc").write_bytes(os.urandom(4096))
    work = tmp_path / "work"
    work.mkdir()
    assert_refused(work, lambda: package.unpack(tmp_path / "junk.enc", keys["key"], work), "Salted__")


@pytest.mark.parametrize("signer", ["other_vendor", "ec_other", "ec_vendor"])
def test_signed_by_another_key(tmp_path, src, keys, signer):
    (src / "version.txt").write_text("1.0.0\n")
    pkg = openssl_package(tmp_path, src, keys["key"], keys[signer])
    work = tmp_path / "work"
    work.mkdir()
    assert_refused(work, lambda: package.decrypt_and_verify(pkg, keys["key"], keys["pub"], work),
                   "Invalid update package signature")


def test_ec_signed_package_verifies_with_ec_key(tmp_path, src, keys):
    (src / "version.txt").write_text("1.0.0\n")
    pkg = openssl_package(tmp_path, src, keys["key"], keys["ec_vendor"])
    work = tmp_path / "work"
    work.mkdir()
    assert package.decrypt_and_verify(pkg, keys["key"], keys["ec_pub"], work).is_file()
    ours = tmp_path / "software_package-ec.enc"
    package.build_package(src, None, keys["key"], keys["ec_vendor"], ours)
    openssl_open(tmp_path, ours, keys["key"], keys["ec_pub"])


def seal_outer(tmp_path: Path, keys, members: list[tuple[str, bytes]]) -> Path:
    """An encrypted outer tar with arbitrary members."""
    (tmp_path / "outer.tar").unlink(missing_ok=True)
    with tarfile.open(tmp_path / "outer.tar", "w") as tar:
        for name, data in members:
            info = file_info(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    out = tmp_path / "software_package-odd.enc"
    package.encrypt(tmp_path / "outer.tar", out, keys["key"])
    return out


@pytest.mark.parametrize("members, message", [
    ([("software_package.tar.gz", b"x")], "Missing software_package.tar.gz.sign"),
    ([("software_package.tar.gz.sign", b"x")], "Missing software_package.tar.gz"),
    ([("software_package.tar.gz", b"x"), ("software_package.tar.gz", b"y")], "Duplicate"),
    ([("software_package.tar.gz.sign", b"s" * (package.SIGNATURE_MAX + 1))], "too large"),
])
def test_outer_tar_must_hold_the_two_members_once(tmp_path, keys, members, message):
    pkg = seal_outer(tmp_path, keys, members)
    work = tmp_path / "work"
    work.mkdir()
    assert_refused(work, lambda: package.decrypt_and_verify(pkg, keys["key"], keys["pub"], work), message)


def test_extra_outer_members_are_ignored(tmp_path, keys):
    # The appliance untarred the outer tar whole and used only the two files it needed.
    inner = make_tar_gz(tmp_path / "software_package.tar.gz", [(file_info("version.txt"), b"3.0\n")])
    signature = run("openssl", "dgst", "-sha256", "-sign", keys["vendor"], inner).stdout
    with tarfile.open(tmp_path / "outer.tar", "w") as tar:
        tar.addfile(_directory("./"))
        for name, data in [("README", b"notes"), ("./software_package.tar.gz", inner.read_bytes()),
                           ("extra/deeper.bin", os.urandom(5000)), ("software_package.tar.gz.sign", signature)]:
            info = file_info(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        tar.addfile(_symlink("link", "/etc/passwd"))
        tar.addfile(_special("fifo", tarfile.FIFOTYPE))
    pkg = tmp_path / "software_package-3.0.enc"
    package.encrypt(tmp_path / "outer.tar", pkg, keys["key"])
    work = tmp_path / "work"
    work.mkdir()
    opened = package.decrypt_and_verify(pkg, keys["key"], keys["pub"], work)
    assert opened.read_bytes() == inner.read_bytes()
    assert [p.name for p in work.iterdir()] == ["software_package.tar.gz"]


def test_a_wanted_outer_member_must_be_a_regular_file(tmp_path, keys):
    with tarfile.open(tmp_path / "outer.tar", "w") as tar:
        tar.addfile(_symlink("software_package.tar.gz", "/etc/passwd"))
    pkg = tmp_path / "software_package-odd.enc"
    package.encrypt(tmp_path / "outer.tar", pkg, keys["key"])
    work = tmp_path / "work"
    work.mkdir()
    assert_refused(work, lambda: package.decrypt_and_verify(pkg, keys["key"], keys["pub"], work),
                   "software_package.tar.gz in update package is not a regular file")


def test_seal_signs_what_it_encrypts(tmp_path, keys):
    inner = make_tar_gz(tmp_path / "software_package.tar.gz", [(file_info("version.txt"), b"3.0.0\n")])
    pkg = tmp_path / "software_package-3.0.0.enc"
    package.seal(inner, keys["vendor"], keys["key"], pkg)
    work = tmp_path / "work"
    work.mkdir()
    opened = package.decrypt_and_verify(pkg, keys["key"], keys["pub"], work)
    assert opened.read_bytes() == inner.read_bytes()


# ----------------------------------------------------------------------------------------
# Safe extraction


def _symlink(name, target):
    info = tarfile.TarInfo(name)
    info.type, info.linkname = tarfile.SYMTYPE, target
    return info


def _hardlink(name, target):
    info = tarfile.TarInfo(name)
    info.type, info.linkname = tarfile.LNKTYPE, target
    return info


def _special(name, kind):
    info = tarfile.TarInfo(name)
    info.type, info.devmajor, info.devminor = kind, 1, 3
    return info


def _directory(name):
    info = tarfile.TarInfo(name)
    info.type, info.mode = tarfile.DIRTYPE, 0o755
    return info


# Each case's last member is the one refused; everything before it is extracted.
UNSAFE = {
    "dot-dot": lambda root: [(file_info("../evil"), b"evil")],
    "nested dot-dot": lambda root: [(file_info("a/../../evil"), b"evil")],
    "absolute": lambda root: [(file_info(f"{root}/evil"), b"evil")],
    "absolute symlink": lambda root: [(_symlink("link", str(root)), b"")],
    "symlink to the parent": lambda root: [(_symlink("link", ".."), b"")],
    "symlink climbing too far": lambda root: [(_symlink("a/b/link", "../../../victim"), b"")],
    "file through a symlink inside": lambda root: [(_directory("sub"), b""), (_symlink("link", "sub"), b""),
                                                   (file_info("link/evil"), b"evil")],
    "symlink through a symlink inside": lambda root: [(_symlink("link", "."), b""),
                                                      (_symlink("link/up", ".."), b"")],
    # a/x points to b, one level up; "x/../.." would climb from b, out of the root.
    "dot-dot after a name": lambda root: [(_symlink("a/x", "../b"), b""), (_symlink("a/w", "x/../.."), b"")],
    "hardlink absolute": lambda root: [(_hardlink("evil", f"{root}/victim"), b"")],
    "hardlink dot-dot": lambda root: [(_hardlink("evil", "../victim"), b"")],
    "hardlink to a later member": lambda root: [(_hardlink("evil", "later"), b""), (file_info("later"), b"x")],
    # A hard link to a symlink is a symlink elsewhere, its target read from a new place.
    "hardlink to a symlink": lambda root: [(_symlink("a/b/link", "../../fine.txt"), b""),
                                           (_hardlink("evil", "a/b/link"), b"")],
    "file replacing a directory": lambda root: [(_directory("d"), b""), (file_info("d"), b"x")],
    "file below a file": lambda root: [(file_info("f"), b"x"), (file_info("f/evil"), b"evil")],
    "character device": lambda root: [(_special("evil", tarfile.CHRTYPE), b"")],
    "block device": lambda root: [(_special("evil", tarfile.BLKTYPE), b"")],
    "fifo": lambda root: [(_special("evil", tarfile.FIFOTYPE), b"")],
    # A backslash is a separator to Windows tools and to whoever copies the tree there.
    "backslash in a name": lambda root: [(file_info("..\\evil"), b"evil")],
    "symlink with no name": lambda root: [(_symlink("./", "fine.txt"), b"")],
    "hardlink with no name": lambda root: [(_hardlink(".", "fine.txt"), b"")],
}


@pytest.mark.parametrize("case", sorted(UNSAFE))
def test_unsafe_members_are_refused(tmp_path, case):
    root = tmp_path / "root"
    root.mkdir()
    (root / "victim").write_text("untouched")
    unsafe = UNSAFE[case](root)
    if case == "hardlink to a later member":
        unsafe = unsafe[:1]
    members = [(file_info("fine.txt"), b"fine")] + unsafe
    tar_gz = make_tar_gz(tmp_path / "evil.tar.gz", members)
    dest = root / "dest"

    with pytest.raises(PackageError) as caught:
        package.extract_safely(tar_gz, dest)
    assert caught.value.code == "E1005"
    assert caught.value.message.startswith(f"Refusing {members[-1][0].name!r}")
    assert sorted(p.name for p in root.iterdir()) == ["dest", "victim"]
    assert (root / "victim").read_text() == "untouched"
    assert not (tmp_path / "evil").exists()
    extracted = {info.name.split("/")[0] for info, _ in members[:-1]}
    assert {p.name for p in dest.iterdir()} == extracted  # only what came before
    assert_inside(dest)
    with pytest.raises(PackageError):
        package.read_contents(tar_gz)


def assert_inside(dest: Path) -> None:
    """Everything under dest, links followed, resolves to dest or below it."""
    real = os.path.realpath(dest)
    for directory, dirs, files in os.walk(dest):
        for name in dirs + files:
            resolved = os.path.realpath(os.path.join(directory, name))
            assert resolved == real or resolved.startswith(real + os.sep), (name, resolved)


def test_modes_are_tamed_and_ownership_is_never_taken_from_the_archive(tmp_path):
    setuid = file_info("bin/tool")
    setuid.mode, setuid.uid, setuid.gid, setuid.uname, setuid.gname = 0o6777, 1234, 1234, "nobody", "nogroup"
    private = file_info("etc/secret")
    private.mode = 0o000
    folder = tarfile.TarInfo("shared")
    folder.type, folder.mode, folder.uid = tarfile.DIRTYPE, 0o1777, 1234
    tar_gz = make_tar_gz(tmp_path / "modes.tar.gz", [(setuid, b"#!/bin/sh\n"), (private, b"x"), (folder, b"")])
    dest = tmp_path / "dest"
    package.extract_safely(tar_gz, dest)
    assert (dest / "bin/tool").stat().st_mode & 0o7777 == 0o755  # no setuid/setgid, no group/other write
    assert (dest / "etc/secret").stat().st_mode & 0o7777 == 0o600  # always the owner's to read and write
    umask = os.umask(0o022)
    os.umask(umask)
    assert (dest / "shared").stat().st_mode & 0o7777 == 0o777 & ~umask  # a new directory's mode is the umask's
    for name in ("bin/tool", "etc/secret", "shared"):
        assert (dest / name).stat().st_uid == os.geteuid()  # never chowned, even as root


def test_links_that_stay_inside_are_extracted(tmp_path):
    members = [
        (file_info("version.txt"), b"2.0\n"),
        (_directory("lib"), b""),
        (file_info("lib/libx.so.1"), b"library"),
        (_symlink("lib/libx.so", "libx.so.1"), b""),
        (_symlink("bin/tool", "../lib/./libx.so"), b""),  # bin/ is made on the way
        (_symlink("here", "."), b""),
        (_symlink("dangling", "lib/not-yet"), b""),
        (_hardlink("copy", "./lib/libx.so.1"), b""),
        (file_info("lib/not-yet"), b"arrived"),
        (file_info("lib/libx.so"), b"a file replaces the link"),  # as tar does: never through it
    ]
    tar_gz = make_tar_gz(tmp_path / "links.tar.gz", members)
    dest = tmp_path / "dest"
    names = package.extract_safely(tar_gz, dest)
    assert names == ["version.txt", "lib", "lib/libx.so.1", "lib/libx.so", "bin/tool", "here", "dangling",
                     "copy", "lib/not-yet", "lib/libx.so"]
    assert os.readlink(dest / "bin/tool") == "../lib/./libx.so"
    assert (dest / "bin/tool").read_bytes() == b"a file replaces the link"
    assert not (dest / "lib/libx.so").is_symlink()
    assert (dest / "lib/libx.so.1").read_bytes() == b"library"
    assert os.readlink(dest / "here") == "." and (dest / "here").resolve() == dest.resolve()
    assert (dest / "dangling").read_bytes() == b"arrived"
    assert (dest / "copy").stat().st_ino == (dest / "lib/libx.so.1").stat().st_ino
    assert_inside(dest)
    listed, version = package.read_contents(tar_gz)
    assert [m.name for m in listed] == [m.name for m, _ in members] and version == "2.0"


def test_a_symlink_already_in_dest_is_never_written_through(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / "pre").symlink_to(outside)
    tar_gz = make_tar_gz(tmp_path / "p.tar.gz", [(file_info("pre/evil"), b"evil")])
    with pytest.raises(PackageError, match="goes through 'pre'"):
        package.extract_safely(tar_gz, dest)
    assert list(outside.iterdir()) == []


def test_gnu_tar_links_extract(tmp_path):
    # What a vendor's `tar -C src -czf` makes of links that stay inside.
    src = tmp_path / "src"
    (src / "lib").mkdir(parents=True)
    (src / "lib" / "libx.so.1").write_text("library")
    (src / "lib" / "libx.so").symlink_to("libx.so.1")
    (src / "bin").mkdir()
    (src / "bin" / "tool").symlink_to("../lib/libx.so")
    os.link(src / "lib" / "libx.so.1", src / "hard")
    run("tar", "-C", src, "-czf", tmp_path / "inner.tar.gz", ".")
    dest = tmp_path / "dest"
    package.extract_safely(tmp_path / "inner.tar.gz", dest)
    assert (dest / "bin" / "tool").read_text() == "library"
    assert (dest / "hard").stat().st_ino == (dest / "lib" / "libx.so.1").stat().st_ino


def test_check_member_accepts_plain_names():
    assert package.check_member(file_info("./a/b.txt")) == "a/b.txt"
    assert package.check_member(_directory("./")) == ""
    assert package.check_member(_symlink("a/b/link", "../../c")) == "a/b/link"
    assert package.check_member(_hardlink("a/h", "./b/c")) == "a/h"


# Archives made of a few names, links among them, "..", "." and absolute targets: whatever
# extract_safely accepts or refuses, nothing outside the root changes and nothing under it
# resolves outside it; read_contents decides as extract_safely does.
_member_names = st.one_of(
    st.lists(st.sampled_from(["a", "b"]), min_size=1, max_size=2).map("/".join),
    st.lists(st.sampled_from(["a", "b", "..", "."]), min_size=1, max_size=3).map("/".join),
)
_targets = st.one_of(
    st.lists(st.sampled_from(["a", "b", ".."]), min_size=1, max_size=3).map("/".join),
    st.sampled_from(["", ".", "/", "ABSOLUTE", "ABSOLUTE/victim", "../outside/victim"]),
)
_members = st.tuples(st.sampled_from(["symlink", "symlink", "hardlink", "dir", "file"]), _member_names, _targets)


def _archive_member(kind: str, name: str, target: str, outside: Path):
    target = target.replace("ABSOLUTE", str(outside))
    if kind == "file":
        return file_info(name), name.encode()
    if kind == "dir":
        return _directory(name), b""
    return (_symlink if kind == "symlink" else _hardlink)(name, target), b""


@settings(max_examples=300, deadline=None)
@given(st.lists(_members, min_size=1, max_size=8))
# Escapes that random archives rarely hit: ".." after a link, a hard link to a symlink.
@example([("symlink", "a/a", "../b"), ("symlink", "a/b", "a/../..")])
@example([("symlink", "a/b", "../.."), ("hardlink", "b", "a/b")])
@example([("symlink", "a", "."), ("symlink", "a/b", ".."), ("file", "a/b/x", "")])
@example([("file", "a", ""), ("hardlink", "a", "a")])  # a hard link to itself
def test_nothing_leaves_the_root(archive):
    with tempfile.TemporaryDirectory() as work:
        sandbox = Path(work)
        outside = sandbox / "outside"
        outside.mkdir()
        (outside / "victim").write_text("untouched")
        tar_gz = make_tar_gz(sandbox / "p.tar.gz",
                             [_archive_member(*member, outside) for member in archive])
        dest = sandbox / "root" / "dest"
        try:
            package.extract_safely(tar_gz, dest)
            extracted = True
        except PackageError:
            extracted = False
        assert sorted(p.name for p in sandbox.iterdir()) == ["outside", "p.tar.gz", "root"]
        assert [p.name for p in (sandbox / "root").iterdir()] == ["dest"]
        assert [p.name for p in outside.iterdir()] == ["victim"]
        assert (outside / "victim").read_text() == "untouched"
        assert_inside(dest)
        try:
            package.read_contents(tar_gz)
            assert extracted
        except PackageError:
            assert not extracted


def test_build_refuses_bad_versions(tmp_path, src, keys):
    out = tmp_path / "software_package-x.enc"
    with pytest.raises(ValueError, match="empty"):
        package.build_package(src, " ", keys["key"], keys["vendor"], out)
    with pytest.raises(ValueError, match="No version"):
        package.build_package(src, None, keys["key"], keys["vendor"], out)
    assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["src"]  # no temporary left


def test_built_packages_give_the_files_the_tool_writes_mode_0644(tmp_path, src, keys):
    """0644 for the files the tool writes itself (version.txt, the signature, the tar.gz);
    the vendor's own files keep theirs (update.sh stays executable)."""
    pkg = tmp_path / "software_package-2.enc"
    package.build_package(src, "2.0", keys["key"], keys["vendor"], pkg)
    outer = tmp_path / "outer.tar"
    assert package.decrypt(pkg, outer, keys["key"]) == "pbkdf2"  # the legacy md5 scheme only when asked for
    assert pkg.stat().st_mode & 0o777 == 0o644  # a file to hand out, not a secret
    with tarfile.open(outer) as tar:
        assert {m.name: m.mode for m in tar.getmembers()} == {
            "software_package.tar.gz": 0o644, "software_package.tar.gz.sign": 0o644}
        inner = tar.extractfile("software_package.tar.gz").read()
    with tarfile.open(fileobj=io.BytesIO(inner)) as tar:
        modes = {m.name: m.mode for m in tar.getmembers()}
        # whoever built it, the files belong to root on the appliance
        assert {(m.uid, m.gid, m.uname, m.gname) for m in tar.getmembers()} == {(0, 0, "root", "root")}
    assert modes["version.txt"] == 0o644 and modes["update.sh"] == 0o755
    assert modes["changelog.txt"] == (src / "changelog.txt").stat().st_mode & 0o777


def test_errors_name_files_relative_to_the_tree_and_never_carry_an_absolute_path(tmp_path):
    assert package.shown(tmp_path / "home" / "x.enc", tmp_path) == "home/x.enc"
    assert package.shown(Path("/elsewhere/x.enc"), tmp_path) == "/elsewhere/x.enc"  # outside: as given
    assert package._reason(OSError(28, "No space left on device", str(tmp_path / "secret"))) == "No space left on device"
    assert package._reason(OSError("no number")) == "no number"
    assert package._reason(tarfile.ReadError("not a gzip file")) == "not a gzip file"


@pytest.mark.parametrize("size", [0, 1, 2, package.CHUNK - 1, package.CHUNK, package.CHUNK + 1, 2 * package.CHUNK + 1])
def test_the_inner_archive_is_copied_and_hashed_to_its_last_byte(tmp_path, size):
    """Sizes around the copy's chunk: the last chunk may be a single byte."""
    import hashlib

    data = os.urandom(size)
    out = tmp_path / "software_package.tar.gz"
    digest = package._copy_hashing(io.BytesIO(data + b"trailing bytes that are not part of it"), size, out)
    assert out.read_bytes() == data and digest == hashlib.sha256(data).digest()
    assert out.stat().st_mode & 0o777 == 0o600


def test_build_packages_links_that_stay_inside(tmp_path, src, keys):
    (src / "link").symlink_to("changelog.txt")
    (src / "sub" / "up").symlink_to("../update.sh")
    (src / "sub" / "alias").symlink_to("deeper")
    os.link(src / "changelog.txt", src / "sub" / "hard")
    pkg = tmp_path / "software_package-2.enc"
    package.build_package(src, "2", keys["key"], keys["vendor"], pkg)
    work = tmp_path / "work"
    work.mkdir()
    dest = tmp_path / "x"
    package.extract_safely(package.decrypt_and_verify(pkg, keys["key"], keys["pub"], work), dest)
    assert os.readlink(dest / "link") == "changelog.txt"
    assert os.readlink(dest / "sub" / "up") == "../update.sh"
    assert (dest / "sub" / "alias" / "empty.txt").is_file()
    assert (dest / "sub" / "hard").stat().st_ino == (dest / "changelog.txt").stat().st_ino


@pytest.mark.parametrize("make", [
    lambda src: (src / "link").symlink_to("/etc/passwd"),
    lambda src: (src / "sub" / "link").symlink_to("../../outside"),
    lambda src: os.mkfifo(src / "fifo"),
])
def test_build_refuses_what_the_appliance_would(tmp_path, src, keys, make):
    make(src)
    out = tmp_path / "software_package-x.enc"
    with pytest.raises(ValueError, match="Refusing|Only regular"):
        package.build_package(src, "1.2.3", keys["key"], keys["vendor"], out)
    assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["src"]  # no temporary left


# ----------------------------------------------------------------------------------------
# Versions: exactly the order of GNU sort -V, which appliances in the field used


def gnu_sort_v(lines: list[str]) -> list[str]:
    """The lines in the order `LC_ALL=C sort -V` gives them."""
    data = "".join(line + "\n" for line in lines).encode()
    done = subprocess.run(["sort", "-V"], input=data, capture_output=True, check=True, env={"LC_ALL": "C"})
    return done.stdout.decode().split("\n")[:-1]


# What version strings and file names are made of, with the characters filevercmp treats
# specially (digits, ".", "~", letters, suffixes like ".tar.gz") much more often than others.
VERSION_PIECES = st.one_of(
    st.sampled_from(["0", "00", "1", "01", "2", "9", "10", "123", "2021", ".", "-", "~", "+", "_",
                     "a", "b", "Z", "rc", "alpha", ".tar", ".gz", ".tgz", ".enc", ".~", ". ", " "]),
    st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x17F, blacklist_characters="\x7f"),
            max_size=3),
)
version_texts = st.lists(VERSION_PIECES, max_size=6).map("".join)


@settings(max_examples=150, deadline=None)
@given(st.lists(version_texts, min_size=20, max_size=20))
def test_order_is_exactly_gnu_sort_v(texts):
    assert sorted(texts, key=package.sort_v_key) == gnu_sort_v(texts)


@settings(max_examples=50, deadline=None)
@given(st.lists(st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=12),
                min_size=20, max_size=20))
def test_order_of_any_printable_ascii_is_gnu_sort_v(texts):
    assert sorted(texts, key=package.sort_v_key) == gnu_sort_v(texts)


def test_sort_v_examples():
    chain = ["", ".", "..", ".hidden", "1.0~rc1", "1.0", "1.0.0", "1.0.0-1", "1.0.0-alpha", "1.1",
             "1.2", "1.2.3", "1.2.3-1", "1.2.3.4", "1.9", "1.10", "2021.03.01", "2021.3.2", "v1"]
    assert sorted(reversed(chain), key=package.sort_v_key) == chain == gnu_sort_v(chain)
    # Equal to filevercmp, told apart by the bytes as sort does.
    assert package.filevercmp("1.02", "1.2") == 0
    assert gnu_sort_v(["1.2", "1.02"]) == sorted(["1.2", "1.02"], key=package.sort_v_key) == ["1.02", "1.2"]
    # Suffixes like .tar.gz only count when the rest ties.
    assert package.filevercmp("1.2.tar.gz", "1.2.tgz") != 0
    assert package.filevercmp("1.2.tar.gz", "1.3.tgz") < 0
    # Prefixes that tie (1.02 and 1.2), one with a suffix: the whole names decide, not the
    # bytes (which would put "1.02..." first).
    for pair in (["1.2", "1.02.a"], ["1.02", "1.2.tar.gz"], ["1.2.a", "1.02"]):
        assert sorted(pair, key=package.sort_v_key) == gnu_sort_v(pair), pair


@pytest.mark.parametrize("new, installed, newer", [
    ("1.2.3-1", "1.2.3", True),
    ("1.2.3.4", "1.2.3", True),
    ("1.2", "1.1.9", True),
    ("2021.03.01", "2020.12.31", True),
    ("1.10", "1.9", True),
    ("1.0", "1.0~rc1", True),
    ("1.0", "1.0", False),
    ("1.0~rc1", "1.0", False),
    ("1.2", "1.2.0", False),
    ("1.02", "1.2", False),
    ("1.2", "1.02", True),  # sort -V ties them, then the bytes decide, as in the update script
])
def test_newer_is_what_sort_v_puts_last(new, installed, newer):
    assert (Version.parse(new) > Version.parse(installed)) is newer
    assert (gnu_sort_v([new, installed])[-1] == new and new != installed) is newer


@pytest.mark.parametrize("text", ["1.2", "1.2.3.4", "2021.03.01", "1.2.3-1", "v1", "latest build"])
def test_any_line_is_a_version(text):
    assert str(Version.parse(f" {text} \n")) == text


@pytest.mark.parametrize("text", ["", "  ", "\n", "1.0\x002", "1.0\n2.0", "1.0\x7f", "1.0\x1b[2J"])
def test_empty_or_multiline_versions_are_refused(text):
    with pytest.raises(ValueError):
        Version.parse(text)


@pytest.mark.parametrize("text", ["1.0-é", "2.0 beta", "1.0~rc1", "ünïcode-7"])
def test_any_other_printable_text_is_a_version(text):
    assert Version.parse(f"  {text}\n").text == text


@given(version_texts, version_texts)
def test_version_comparison_is_a_total_order_on_text(a, b):
    va, vb = Version(a), Version(b)
    assert (va == vb) == (a == b)
    assert [va < vb, va == vb, va > vb].count(True) == 1
    assert (va < vb) == (vb > va)
    assert (va <= vb) == (va < vb or va == vb) and (va >= vb) == (va > vb or va == vb)


@given(version_texts, version_texts)
@example("1.2", "1.02")  # filevercmp ties them: the bytes decide, either way round
@example("1.0", "1.0")
def test_sort_v_compare_is_antisymmetric_and_zero_only_for_the_same_text(a, b):
    forward, backward = package.sort_v_compare(a, b), package.sort_v_compare(b, a)
    assert (forward > 0) - (forward < 0) == -((backward > 0) - (backward < 0))
    assert (forward == 0) == (a == b)


# ----------------------------------------------------------------------------------------
# Choosing the uploaded package


def test_newest_package_by_sort_v(tmp_path):
    labels = ["1.9.0", "1.10.0", "1.2.3", "v1.9.9", "1.10.0-rc.1", "1.10.0~rc1", "nightly-7",
              "nightly-12", "1.2", "2021.03.01", "1.2.3-1"]
    for label in labels:
        (tmp_path / f"software_package-{label}.enc").write_bytes(b"")
    (tmp_path / "software_package-99.0.0.enc.part").write_bytes(b"")
    (tmp_path / "other-99.0.0.enc").write_bytes(b"")
    (tmp_path / "software_package-.enc").write_bytes(b"")
    found = [p.name for p in package.find_packages(tmp_path)]
    assert found == gnu_sort_v([f"software_package-{label}.enc" for label in labels])
    assert found.index("software_package-1.2.3-1.enc") > found.index("software_package-1.2.3.enc")
    assert package.newest_package(tmp_path).name == "software_package-v1.9.9.enc"


def test_newest_package_missing(tmp_path):
    with pytest.raises(PackageError) as caught:
        package.newest_package(tmp_path)
    assert (caught.value.code, caught.value.message) == ("E1003", "Missing update package")


def test_a_package_gone_before_it_is_opened_is_e1003_naming_it(tmp_path):
    """Found, then removed before the job opens it (a second upload replacing it, an
    operator cleaning up): missing, not a decryption failure."""
    key = tmp_path / "etc" / "updates.key"
    key.parent.mkdir()
    key.write_text("k" * 64 + "\n")
    gone = tmp_path / "home" / "sftp" / "uploads" / "software_package-2.0.enc"
    with pytest.raises(PackageError) as caught:
        package.unpack(gone, key, tmp_path, root=tmp_path)
    assert (caught.value.code, caught.value.message) == (
        "E1003", "Missing update package: home/sftp/uploads/software_package-2.0.enc")
    assert list(tmp_path.iterdir()) == [tmp_path / "etc"]
    with pytest.raises(PackageError):
        package.newest_package(tmp_path / "absent")


def test_a_member_thousands_of_directories_deep_is_refused_not_a_crash(tmp_path):
    """The shared extraction code of packages and backups: 2000 directories deep used to
    end in a RecursionError."""
    deep = "/".join(["d"] * 2000) + "/version.txt"
    tar_gz = make_tar_gz(tmp_path / "deep.tar.gz", [(file_info(deep), b"1.0\n")])
    for read in (lambda: package.extract_safely(tar_gz, tmp_path / "out"), lambda: package.read_contents(tar_gz)):
        with pytest.raises(package.UnsafeMember) as refused:
            read()
        assert refused.value.why == "it is more than 128 directories deep"
        assert len(str(refused.value)) < 400  # the name shown by its ends
    assert not (tmp_path / "out" / "d").exists()


def test_limits_stop_reading_as_soon_as_they_are_passed(tmp_path):
    members = [(file_info(f"f{n}"), b"x" * 100) for n in range(10)]
    tar_gz = make_tar_gz(tmp_path / "ten.tar.gz", members)
    with pytest.raises(package.ArchiveTooLarge, match="more than the 5 members allowed"):
        package.read_contents(tar_gz, package.ArchiveLimits(max_members=5))
    with pytest.raises(package.ArchiveTooLarge, match="at least 400 bytes, more than the 350 allowed"):
        package.extract_safely(tar_gz, tmp_path / "out", package.ArchiveLimits(max_bytes=350))
    assert sorted(os.listdir(tmp_path / "out")) == ["f0", "f1", "f2"]  # the caller removes what it got
    assert len(package.extract_safely(tar_gz, tmp_path / "all", package.ArchiveLimits(1000, 10))) == 10


def test_a_directory_swapped_for_a_link_mid_extraction_is_never_written_through(tmp_path, monkeypatch):
    """Someone with the job's rights replaces a directory already extracted by a link to
    elsewhere while the extraction runs: later members still land inside dest (written
    relative to the directory opened before), or are refused, and nothing lands outside."""
    outside = tmp_path / "outside"
    outside.mkdir()
    dest = tmp_path / "dest"
    members = [(_directory("a"), b""), (file_info("a/1"), b"one"), (file_info("a/2"), b"two"),
               (file_info("a/b/3"), b"three")]
    tar_gz = make_tar_gz(tmp_path / "race.tar.gz", members)
    write = package._Writer.write
    written = []

    def write_then_swap(self, tar, member, name):
        write(self, tar, member, name)
        written.append(name)
        if name == "a/1":
            os.rename(dest / "a", dest / "moved")
            os.symlink(outside, dest / "a")
        if name == "a/2":
            for fd in self.dirs.values():
                os.close(fd)
            self.dirs.clear()  # as if the descriptor had been let go: the name is looked up again

    monkeypatch.setattr(package._Writer, "write", write_then_swap)
    with pytest.raises(PackageError, match="goes through 'a', which is not a directory"):
        package.extract_safely(tar_gz, dest)
    assert written == ["a", "a/1", "a/2"]
    assert (dest / "moved" / "2").read_bytes() == b"two"  # where the directory went, not outside
    assert list(outside.iterdir()) == []


def test_more_directories_than_are_kept_open_and_a_deep_path_extract_and_leave_no_descriptor(tmp_path):
    """Past _Writer.OPEN_DIRS directories, the least recently used are closed and opened
    again when a later member needs them; a member 100 directories deep is reached by a
    loop; every descriptor is closed at the end."""
    wide = package._Writer.OPEN_DIRS * 3
    deep = "/".join(f"l{n}" for n in range(100))
    members = [(file_info(f"a/d{n}/first"), f"{n}".encode()) for n in range(wide)]
    members += [(file_info(f"a/d{n}/second"), f"{n}!".encode()) for n in range(wide)]
    members += [(file_info(f"{deep}/bottom"), b"deep")]
    tar_gz = make_tar_gz(tmp_path / "wide.tar.gz", members)
    before = len(os.listdir("/proc/self/fd"))
    package.extract_safely(tar_gz, tmp_path / "out")
    assert len(os.listdir("/proc/self/fd")) == before
    for n in range(wide):
        assert (tmp_path / "out" / f"a/d{n}/first").read_bytes() == f"{n}".encode()
        assert (tmp_path / "out" / f"a/d{n}/second").read_bytes() == f"{n}!".encode()
    assert (tmp_path / "out" / deep / "bottom").read_bytes() == b"deep"


def test_a_hard_link_whose_target_is_deeper_than_the_directories_kept_open_lands_beside_its_name(tmp_path):
    """Its own directory is open first, then its target's (100 deep, none of it open any
    more): nothing may be let go in between, or the link would be made in whichever
    directory took the freed descriptor's number."""
    deep = "/".join(f"l{n}" for n in range(100))
    members = [(file_info(f"{deep}/target"), b"shared")]
    members += [(file_info(f"w/d{n}/f"), b"x") for n in range(package._Writer.OPEN_DIRS * 2)]
    members += [(file_info("a/first"), b"a"), (_hardlink("a/link", f"{deep}/target"), b"")]
    tar_gz = make_tar_gz(tmp_path / "link.tar.gz", members)
    out = tmp_path / "out"
    package.extract_safely(tar_gz, out)
    assert (out / "a/link").stat().st_ino == (out / deep / "target").stat().st_ino
    assert sorted(p.name for p in (out / "a").iterdir()) == ["first", "link"]
