"""jidoteki-admin-vendor through its command line, checked against openssl."""

from __future__ import annotations

import argparse
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
    from jidoteki_admin.formats import package

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
                                 "--public-key", keydir / "updates.key"),
                          "--public-key wants the vendor's PEM public key (updates.pub)")


# Key files of the wrong kind are refused before any work, naming the option


@pytest.fixture(scope="module")
def certificate(tmp_path_factory):
    d = tmp_path_factory.mktemp("cert")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                    "-nodes", "-subj", "/CN=x", "-keyout", str(d / "cert.key"), "-out", str(d / "cert.pem")],
                   check=True, capture_output=True)
    return d / "cert.pem"


@pytest.mark.parametrize("wrong,holds", [("updates.pub", "PUBLIC KEY"), ("vendor.key", "PRIVATE KEY")])
def test_package_refuses_a_pem_key_as_the_passphrase_file(tmp_path, keydir, src, wrong, holds):
    out = tmp_path / "software_package-1.0.0.enc"
    done = vendor("package", src, "--version", "1.0.0", "--key", keydir / wrong,
                  "--signing-key", keydir / "vendor.key", "--out", out)
    assert_one_line_error(done, f"--key wants the passphrase file (updates.key), but {keydir / wrong} "
                                f"holds a PEM {holds}")
    assert list(tmp_path.iterdir()) == [src]


@pytest.mark.parametrize("wrong", ["updates.pub", "updates.key", "cert"])
def test_package_refuses_a_signing_key_that_is_not_a_private_key(tmp_path, keydir, src, certificate, wrong):
    path = certificate if wrong == "cert" else keydir / wrong
    done = vendor("package", src, "--version", "1.0.0", "--key", keydir / "updates.key",
                  "--signing-key", path, "--out", tmp_path / "software_package-1.0.0.enc")
    assert_one_line_error(done, f"--signing-key wants the vendor's PEM private key (vendor.key), but {path}")


@pytest.mark.parametrize("wrong", ["vendor.key", "cert"])
def test_inspect_refuses_a_public_key_that_is_not_one(tmp_path, keydir, certificate, wrong):
    path = certificate if wrong == "cert" else keydir / wrong
    done = vendor("inspect", tmp_path / "any.enc", "--key", keydir / "updates.key", "--public-key", path)
    assert_one_line_error(done, f"--public-key wants the vendor's PEM public key (updates.pub), but {path}")


def test_inspect_refuses_a_pem_key_as_the_passphrase_file(tmp_path, keydir):
    done = vendor("inspect", tmp_path / "any.enc", "--key", keydir / "updates.pub",
                  "--public-key", keydir / "updates.pub")
    assert_one_line_error(done, "--key wants the passphrase file (updates.key)")


def test_package_accepts_an_ec_key_written_with_its_parameters(tmp_path, keydir, src):
    """openssl ecparam -genkey writes an EC PARAMETERS block before the private key."""
    signing = tmp_path / "ec.key"
    subprocess.run(["openssl", "ecparam", "-name", "prime256v1", "-genkey", "-out", str(signing)], check=True)
    assert signing.read_text().startswith("-----BEGIN EC PARAMETERS-----")
    done = vendor("package", src, "--version", "1.0.0", "--key", keydir / "updates.key",
                  "--signing-key", signing, "--out", tmp_path / "software_package-1.0.0.enc")
    assert done.returncode == 0, done.stderr


# Version, help and exit statuses (docs/packages.md)


def test_version_prints_the_tool_version():
    from jidoteki_admin import __version__

    done = vendor("--version")
    assert (done.returncode, done.stdout, done.stderr) == (0, f"jidoteki-admin-vendor {__version__}\n", "")


def test_every_command_and_argument_has_help():
    from jidoteki_admin.vendor import _parser

    parser = _parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    assert {c.dest: c.help for c in commands._choices_actions}.keys() == {"keygen", "package", "manifest", "inspect", "open-debug-bundle",
                                                                               "license-keygen", "license"}
    assert all(c.help for c in commands._choices_actions)
    for name, sub in [("", parser), *commands.choices.items()]:
        for action in sub._actions:
            assert action.help, f"{name} {action.option_strings or action.dest}"
        done = vendor(*([name] if name else []), "--help")
        assert done.returncode == 0 and "usage: jidoteki-admin-vendor" in done.stdout


@pytest.mark.parametrize("args", [[], ["bogus"], ["package"], ["keygen"], ["inspect", "x.enc"],
                                  ["keygen", "--out", "d", "--bogus"]], ids=repr)
def test_a_command_line_it_cannot_use_exits_2_with_one_line(args):
    done = vendor(*args)
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and done.stderr.startswith("jidoteki-admin-vendor: error: ")
    assert "--help)" in done.stderr and done.stdout == ""


def test_exit_status_is_0_on_success_even_with_a_warning(tmp_path, keydir, src):
    done = vendor("package", src, "--version", "1.0.0", "--key", keydir / "updates.key",
                  "--signing-key", keydir / "vendor.key", "--out", tmp_path / "update.bin")
    assert done.returncode == 0
    assert done.stderr.startswith("jidoteki-admin-vendor: warning: ")


def test_exit_status_is_1_on_a_missing_key_file(tmp_path, keydir, src):
    missing = tmp_path / "absent.key"
    done = vendor("package", src, "--version", "1.0.0", "--key", missing,
                  "--signing-key", keydir / "vendor.key", "--out", tmp_path / "software_package-1.0.0.enc")
    assert_one_line_error(done, str(missing))


def test_a_manifest_beside_the_package_is_signed_as_openssl_signs(tmp_path, keydir, src):
    out = tmp_path / "software_package-2.1.0.enc"
    done = vendor("package", src, "--version", "2.1.0", "--key", keydir / "updates.key", "--signing-key",
                  keydir / "vendor.key", "--out", out, "--manifest")
    assert done.returncode == 0, done.stderr
    manifest = out.with_name(out.name + ".manifest.json")
    signature = out.with_name(out.name + ".manifest.json.sig")
    assert f"wrote {manifest}" in done.stdout and f"wrote {signature}" in done.stdout
    import hashlib
    import json
    value = json.loads(manifest.read_text())
    assert value == {"format": "jidoteki-admin-manifest/1", "package": out.name, "version": "2.1.0",
                     "size": out.stat().st_size, "sha256": hashlib.sha256(out.read_bytes()).hexdigest()}
    checked = subprocess.run(["openssl", "dgst", "-sha256", "-verify", str(keydir / "updates.pub"),
                              "-signature", str(signature), str(manifest)], capture_output=True, text=True)
    assert checked.stdout.strip() == "Verified OK", checked.stderr
    # For a package made before: the version read from the package itself.
    manifest.unlink()
    signature.unlink()
    done = vendor("manifest", out, "--signing-key", keydir / "vendor.key", "--key", keydir / "updates.key",
                  "--public-key", keydir / "updates.pub")
    assert done.returncode == 0, done.stderr
    assert json.loads(manifest.read_text())["version"] == "2.1.0"
    without = vendor("manifest", out, "--signing-key", keydir / "vendor.key")
    assert_one_line_error(without, "give --version, or --key and --public-key")
