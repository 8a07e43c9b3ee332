"""jidoteki-admin-vendor through its command line, checked against openssl."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}


def vendor(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "jidoteki_admin.vendor", *map(str, args)],
                          env=ENV, capture_output=True, text=True, timeout=60)


def assert_one_line_error(done: subprocess.CompletedProcess, fragment: str) -> None:
    assert done.returncode == 1
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
    assert done.stderr.startswith("jidoteki-admin-vendor: error: ")
    assert fragment in done.stderr


@pytest.fixture(scope="module")
def keydir(tmp_path_factory):
    d = tmp_path_factory.mktemp("vendor") / "keys"
    done = vendor("keygen", "--out", d)
    assert done.returncode == 0, done.stderr
    return d


@pytest.fixture
def src(tmp_path):
    d = tmp_path / "src"
    (d / "bin").mkdir(parents=True)
    (d / "changelog.txt").write_text("what changed\n")
    (d / "update.sh").write_text("echo hi\n")
    (d / "bin" / "tool").write_bytes(os.urandom(70000))
    return d


def test_keygen(keydir):
    assert sorted(p.name for p in keydir.iterdir()) == ["updates.key", "updates.pub", "vendor.key"]
    assert re.fullmatch(r"[0-9a-f]{64}\n", (keydir / "updates.key").read_text())
    assert (keydir / "updates.key").stat().st_mode & 0o777 == 0o600
    assert (keydir / "vendor.key").stat().st_mode & 0o777 == 0o600
    private = serialization.load_pem_private_key((keydir / "vendor.key").read_bytes(), None)
    assert isinstance(private, rsa.RSAPrivateKey) and private.key_size == 3072
    public = serialization.load_pem_public_key((keydir / "updates.pub").read_bytes())
    assert public.public_numbers() == private.public_key().public_numbers()


def test_keygen_never_overwrites(keydir):
    before = {p.name: p.read_bytes() for p in keydir.iterdir()}
    assert_one_line_error(vendor("keygen", "--out", keydir), "refusing to overwrite")
    assert {p.name: p.read_bytes() for p in keydir.iterdir()} == before


@pytest.mark.parametrize("legacy", [False, True])
def test_package_then_inspect(tmp_path, keydir, src, legacy):
    out = tmp_path / "software_package-1.4.0.enc"
    done = vendor("package", src, "--version", "1.4.0", "--key", keydir / "updates.key",
                  "--signing-key", keydir / "vendor.key", "--out", out, *(["--legacy-md5"] if legacy else []))
    assert done.returncode == 0, done.stderr
    assert f"wrote {out} (version 1.4.0" in done.stdout

    done = vendor("inspect", out, "--key", keydir / "updates.key", "--public-key", keydir / "updates.pub")
    assert done.returncode == 0, done.stderr
    fields = dict(re.findall(r"^(\w+): +(.*)$", done.stdout, re.M))
    assert fields["version"] == "1.4.0"
    assert fields["signature"].startswith("valid")
    assert ("legacy MD5" in fields["encryption"]) == legacy
    listed = re.findall(r"^  \S+ +\d+ (.+)$", done.stdout, re.M)
    assert listed == ["version.txt", "bin", "changelog.txt", "update.sh", "bin/tool"]
    assert re.search(r"^  -rw-r--r-- +70000 bin/tool$", done.stdout, re.M)


def test_package_opens_with_plain_openssl(tmp_path, keydir, src):
    out = tmp_path / "software_package-1.5.0.enc"
    assert vendor("package", src, "--version", "1.5.0", "--key", keydir / "updates.key",
                  "--signing-key", keydir / "vendor.key", "--out", out).returncode == 0
    plain = subprocess.run(["openssl", "enc", "-d", "-aes-256-cbc", "-md", "sha256", "-pbkdf2",
                            "-pass", f"file:{keydir / 'updates.key'}", "-in", str(out)],
                           check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(tmp_path)], input=plain, check=True)
    verified = subprocess.run(["openssl", "dgst", "-sha256", "-verify", str(keydir / "updates.pub"),
                               "-signature", str(tmp_path / "software_package.tar.gz.sign"),
                               str(tmp_path / "software_package.tar.gz")], capture_output=True, text=True)
    assert verified.stdout.strip() == "Verified OK"


def test_version_from_src_when_not_given(tmp_path, keydir, src):
    (src / "version.txt").write_text("v3.1.4\n")
    out = tmp_path / "software_package-3.1.4.enc"
    done = vendor("package", src, "--key", keydir / "updates.key", "--signing-key", keydir / "vendor.key",
                  "--out", out)
    assert done.returncode == 0, done.stderr
    assert "(version v3.1.4," in done.stdout


@pytest.mark.parametrize("version", ["1.2", "1.2.3.4", "2021.03.01", "1.2.3-1", "1.0~rc1", "latest"])
def test_package_takes_any_version_the_appliance_compares(tmp_path, keydir, src, version):
    # Appliances compare versions with sort -V, so vendors number as they like.
    out = tmp_path / "software_package-x.enc"
    done = vendor("package", src, "--version", version, "--key", keydir / "updates.key",
                  "--signing-key", keydir / "vendor.key", "--out", out)
    assert done.returncode == 0, done.stderr
    done = vendor("inspect", out, "--key", keydir / "updates.key", "--public-key", keydir / "updates.pub")
    assert done.returncode == 0, done.stderr
    assert re.search(r"^version: +(.*)$", done.stdout, re.M)[1] == version


@pytest.mark.parametrize("version", ["", "  ", "1.0\x01"])
def test_package_refuses_an_empty_or_odd_version(tmp_path, keydir, src, version):
    out = tmp_path / "software_package-bad.enc"
    done = vendor("package", src, "--version", version, "--key", keydir / "updates.key",
                  "--signing-key", keydir / "vendor.key", "--out", out)
    assert_one_line_error(done, "version")
    assert not out.exists()


def test_package_and_inspect_links(tmp_path, keydir, src):
    (src / "bin" / "alias").symlink_to("tool")
    os.link(src / "changelog.txt", src / "notes.txt")
    out = tmp_path / "software_package-2.0.enc"
    done = vendor("package", src, "--version", "2.0", "--key", keydir / "updates.key",
                  "--signing-key", keydir / "vendor.key", "--out", out)
    assert done.returncode == 0, done.stderr
    done = vendor("inspect", out, "--key", keydir / "updates.key", "--public-key", keydir / "updates.pub")
    assert done.returncode == 0, done.stderr
    assert re.search(r"^  l\S+ +0 bin/alias -> tool$", done.stdout, re.M)
    assert re.search(r"^  -\S+ +0 notes.txt link to changelog.txt$", done.stdout, re.M)


def test_package_refuses_a_link_leaving_the_package(tmp_path, keydir, src):
    (src / "bin" / "passwd").symlink_to("/etc/passwd")
    out = tmp_path / "software_package-2.0.enc"
    done = vendor("package", src, "--version", "2.0", "--key", keydir / "updates.key",
                  "--signing-key", keydir / "vendor.key", "--out", out)
    assert_one_line_error(done, "Refusing 'bin/passwd'")
    assert not out.exists()


def test_inspect_a_package_without_version(tmp_path, keydir):
    from jidoteki_admin import package

    (tmp_path / "payload").mkdir()
    (tmp_path / "payload" / "update.sh").write_text("echo hi\n")
    inner = tmp_path / "software_package.tar.gz"
    subprocess.run(["tar", "-C", str(tmp_path / "payload"), "-czf", str(inner), "."], check=True)
    out = tmp_path / "software_package-none.enc"
    package.seal(inner, keydir / "vendor.key", keydir / "updates.key", out)
    done = vendor("inspect", out, "--key", keydir / "updates.key", "--public-key", keydir / "updates.pub")
    assert done.returncode == 0, done.stderr
    assert re.search(r"^version: +none ", done.stdout, re.M)


def test_package_warns_about_a_name_the_appliance_ignores(tmp_path, keydir, src):
    done = vendor("package", src, "--version", "1.0.0", "--key", keydir / "updates.key",
                  "--signing-key", keydir / "vendor.key", "--out", tmp_path / "update.bin")
    assert done.returncode == 0
    assert "software_package-*.enc" in done.stderr


def test_inspect_errors(tmp_path, keydir, src):
    out = tmp_path / "software_package-1.0.0.enc"
    vendor("package", src, "--version", "1.0.0", "--key", keydir / "updates.key",
           "--signing-key", keydir / "vendor.key", "--out", out)
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    (tmp_path / "other.pub").write_bytes(other.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    (tmp_path / "other.key").write_text("another passphrase\n")

    assert_one_line_error(vendor("inspect", out, "--key", keydir / "updates.key",
                                 "--public-key", tmp_path / "other.pub"), "Invalid update package signature (E1005)")
    assert_one_line_error(vendor("inspect", out, "--key", tmp_path / "other.key",
                                 "--public-key", keydir / "updates.pub"), "wrong key")
    assert_one_line_error(vendor("inspect", tmp_path / "absent.enc", "--key", keydir / "updates.key",
                                 "--public-key", keydir / "updates.pub"), "Missing update package")
    assert_one_line_error(vendor("inspect", out, "--key", keydir / "updates.key",
                                 "--public-key", keydir / "updates.key"), "Not a PEM public key")
