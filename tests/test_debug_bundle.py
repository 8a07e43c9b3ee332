"""GET /debug: the encrypted debug bundle, opened by the vendor tool and by plain openssl."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tarfile

import pytest_twisted

from conftest import REPO

VENDOR = [sys.executable, "-m", "jidoteki_admin.vendor"]
ENV = {**os.environ, "PYTHONPATH": str(REPO)}


def install_vendor_key(daemon, keys) -> None:
    (daemon.admin_path / "etc" / "updates.pub").write_bytes(keys["pub"].read_bytes())


def contents(tar_gz: bytes) -> dict[str, bytes]:
    with tarfile.open(fileobj=io.BytesIO(tar_gz), mode="r:gz") as tar:
        return {m.name: tar.extractfile(m).read() for m in tar if m.isfile()}


@pytest_twisted.ensureDeferred
async def test_the_debug_bundle_opens_with_the_vendor_tool(daemon, keys, tmp_path):
    install_vendor_key(daemon, keys)
    (daemon.admin_path / "etc" / "debug.txt").write_text(
        "echo disk report; a comment after the semicolon\n\nuname -s\nexit 3\n")
    (daemon.admin_path / "log" / "app.log").write_text("token yourtoken seen\n")
    response = await daemon.get("/debug", auth="hash")
    assert response.code == 200
    assert response.headers.getRawHeaders("Filename") == ["debug-bundle.tar"]
    bundle = tmp_path / "debug-bundle.tar"
    bundle.write_bytes(await response.content())
    with tarfile.open(bundle) as tar:
        assert sorted(tar.getnames()) == ["debug.key.enc", "debug.tar.gz.enc"]
    opened = tmp_path / "debug.tar.gz"
    done = subprocess.run(VENDOR + ["open-debug-bundle", str(bundle), "--key", str(keys["vendor"]),
                                    "--out", str(opened)], capture_output=True, text=True, env=ENV, timeout=60)
    assert done.returncode == 0, done.stderr
    files = contents(opened.read_bytes())
    assert files["debug-1.log"] == b"Running: echo disk report\ndisk report\n"
    assert files["debug-2.log"].startswith(b"Running: uname -s\nLinux")
    assert files["debug-3.log"] == b"Running: exit 3\n"
    logs = contents(files["logs.tar.gz"])
    assert logs["log/app.log"] == b"token REDACTED seen\n"
    assert os.listdir(daemon.admin_path / "home" / "sftp" / "uploads") == []


@pytest_twisted.ensureDeferred
async def test_the_debug_bundle_opens_with_plain_openssl(daemon, keys, tmp_path):
    """The commands docs/packages.md gives vendors, as the original appliance's tooling used them."""
    install_vendor_key(daemon, keys)
    response = await daemon.get("/debug")
    assert response.code == 200
    work = tmp_path / "open"
    work.mkdir()
    (tmp_path / "debug-bundle.tar").write_bytes(await response.content())
    subprocess.run(["tar", "-xf", str(tmp_path / "debug-bundle.tar")], cwd=work, check=True, timeout=60)
    run = lambda *args: subprocess.run(args, cwd=work, check=True, capture_output=True, timeout=60)  # noqa: E731
    run("openssl", "pkeyutl", "-decrypt", "-inkey", str(keys["vendor"]), "-pkeyopt", "rsa_padding_mode:pkcs1",
        "-in", "debug.key.enc", "-out", "debug.key")
    assert len((work / "debug.key").read_bytes()) == 45  # openssl rand -base64 32, newline included
    run("openssl", "enc", "-d", "-aes-256-cbc", "-md", "sha256", "-pbkdf2", "-pass", "file:debug.key",
        "-in", "debug.tar.gz.enc", "-out", "debug.tar.gz")
    assert "logs.tar.gz" in contents((work / "debug.tar.gz").read_bytes())


@pytest_twisted.ensureDeferred
async def test_a_debug_bundle_needs_an_rsa_public_key(daemon, tmp_path):
    subprocess.run(["openssl", "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256",
                    "-out", str(tmp_path / "ec.key")], check=True, capture_output=True)
    subprocess.run(["openssl", "pkey", "-in", str(tmp_path / "ec.key"), "-pubout",
                    "-out", str(daemon.admin_path / "etc" / "updates.pub")], check=True, capture_output=True)
    response = await daemon.get("/debug")
    assert response.code == 400
    message = json.loads(await response.content())["Error-Message"]
    assert message == ("Could not create the debug bundle: Could not encrypt the debug bundle: "
                       "The public key must be an RSA key to encrypt to it")
    assert os.listdir(daemon.admin_path / "home" / "sftp" / "uploads") == []


def test_the_vendor_tool_refuses_a_bundle_for_another_key(tmp_path, keys):
    from jidoteki_admin.formats import debugbundle

    plain = tmp_path / "p.tar.gz"
    with tarfile.open(plain, "w:gz") as tar:
        info = tarfile.TarInfo("x")
        tar.addfile(info, io.BytesIO(b""))
    bundle = tmp_path / "debug-bundle.tar"
    debugbundle.seal(plain, keys["pub"], bundle)
    other = tmp_path / "other.key"
    subprocess.run(["openssl", "genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048",
                    "-out", str(other)], check=True, capture_output=True)
    done = subprocess.run(VENDOR + ["open-debug-bundle", str(bundle), "--key", str(other),
                                    "--out", str(tmp_path / "out.tar.gz")], capture_output=True, text=True,
                          env=ENV, timeout=60)
    assert done.returncode == 1
    assert "not encrypted to this private key" in done.stderr
    assert not (tmp_path / "out.tar.gz").exists()


@pytest_twisted.ensureDeferred
async def test_without_updates_pub_the_answer_names_it_relative_to_the_tree(daemon):
    response = await daemon.get("/debug")
    assert response.code == 400
    message = json.loads(await response.content())["Error-Message"]
    assert "Cannot read the public key etc/updates.pub" in message
    assert str(daemon.admin_path) not in message


@pytest_twisted.ensureDeferred
async def test_two_bundles_of_the_same_input_share_no_key_and_no_ciphertext(daemon, keys, tmp_path):
    """Each bundle has a key of its own (a fresh random key, a fresh salt): two bundles of
    the same logs must not reveal that they are the same, nor open with each other's key."""
    install_vendor_key(daemon, keys)
    (daemon.admin_path / "etc" / "debug.txt").write_text("echo same\n")
    opened = []
    for n in range(2):
        response = await daemon.get("/debug")
        assert response.code == 200
        work = tmp_path / f"bundle-{n}"
        work.mkdir()
        (work.parent / f"bundle-{n}.tar").write_bytes(await response.content())
        subprocess.run(["tar", "-xf", str(work.parent / f"bundle-{n}.tar")], cwd=work, check=True, timeout=60)
        subprocess.run(["openssl", "pkeyutl", "-decrypt", "-inkey", str(keys["vendor"]), "-pkeyopt",
                        "rsa_padding_mode:pkcs1", "-in", "debug.key.enc", "-out", "debug.key"],
                       cwd=work, check=True, capture_output=True, timeout=60)
        opened.append({name: (work / name).read_bytes() for name in ("debug.key", "debug.key.enc",
                                                                      "debug.tar.gz.enc")})
    first, second = opened
    assert first["debug.key"] != second["debug.key"]
    assert first["debug.key.enc"] != second["debug.key.enc"]
    assert first["debug.tar.gz.enc"][:16] != second["debug.tar.gz.enc"][:16]  # "Salted__" and its salt
    assert first["debug.tar.gz.enc"][16:64] != second["debug.tar.gz.enc"][16:64]
    # Each opens with its own key only.
    out = tmp_path / "wrong.tar.gz"
    wrong = subprocess.run(["openssl", "enc", "-d", "-aes-256-cbc", "-md", "sha256", "-pbkdf2", "-pass",
                            f"file:{tmp_path / 'bundle-0' / 'debug.key'}", "-in",
                            str(tmp_path / "bundle-1" / "debug.tar.gz.enc"), "-out", str(out)],
                           capture_output=True, timeout=60)
    # A wrong key almost always fails on the padding; when it happens to pass, it is noise.
    assert wrong.returncode != 0 or not out.read_bytes().startswith(b"\x1f\x8b")
