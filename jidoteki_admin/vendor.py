"""jidoteki-admin-vendor: the appliance vendor's tool for keys and update packages.

    jidoteki-admin-vendor keygen --out DIR
    jidoteki-admin-vendor package SRC_DIR --version X --key updates.key \\
        --signing-key vendor.key --out software_package-X.enc [--legacy-md5]
    jidoteki-admin-vendor inspect FILE --key updates.key --public-key updates.pub

The packages it writes are exactly what plain openssl and tar make (docs/packages.md).
"""

from __future__ import annotations

import argparse
import secrets
import stat
import sys
import tempfile
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from . import package
from .files import atomic_write
from .package import PackageError

PROG = "jidoteki-admin-vendor"
RSA_BITS = 3072


def keygen(args: argparse.Namespace) -> None:
    out = args.out
    targets = [out / "updates.key", out / "vendor.key", out / "updates.pub"]
    existing = [str(p) for p in targets if p.exists()]
    if existing:
        raise ValueError(f"refusing to overwrite existing keys: {', '.join(existing)}")
    out.mkdir(parents=True, exist_ok=True)
    signing_key = rsa.generate_private_key(public_exponent=65537, key_size=RSA_BITS)
    atomic_write(targets[0], secrets.token_hex(32).encode() + b"\n", 0o600)
    atomic_write(targets[1], signing_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()), 0o600)
    atomic_write(targets[2], signing_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo), 0o644)
    for path in targets:
        print(f"wrote {path}")
    print("Install updates.key and updates.pub in the appliance's etc/; keep vendor.key secret.")


def build(args: argparse.Namespace) -> None:
    out = args.out
    version = package.build_package(args.src_dir, args.version, args.key, args.signing_key,
                                    out, legacy_md5=args.legacy_md5)
    if not (out.name.startswith(package.PACKAGE_PREFIX) and out.name.endswith(package.PACKAGE_SUFFIX)):
        print(f"{PROG}: warning: the appliance only looks for "
              f"{package.PACKAGE_PREFIX}*{package.PACKAGE_SUFFIX} uploads", file=sys.stderr)
    print(f"wrote {out} (version {version}, {out.stat().st_size} bytes)")


def inspect(args: argparse.Namespace) -> None:
    schemes: list[str] = []
    with tempfile.TemporaryDirectory(prefix="jidoteki-inspect-") as work:
        inner = package.decrypt_and_verify(args.file, args.key, args.public_key, Path(work),
                                           on_decrypted=schemes.append)
        members, version = package.read_contents(inner)
    encryption = ("aes-256-cbc, PBKDF2-HMAC-SHA256 (10000 iterations)" if schemes[0] == "pbkdf2"
                  else "aes-256-cbc, legacy MD5 key derivation (EVP_BytesToKey)")
    print(f"package:    {args.file}")
    print(f"encryption: {encryption}")
    print(f"signature:  valid (SHA-256, {args.public_key})")
    print(f"version:    {_shown_version(version)}")
    print(f"members:    {len(members)}")
    for member in members:
        print(f"  {_listing(member)}")


def _listing(member) -> str:
    """One member as `tar -tv` would show it: mode, size, name, and where a link points."""
    kind = stat.S_IFDIR if member.isdir() else stat.S_IFLNK if member.issym() else stat.S_IFREG
    line = f"{stat.filemode(kind | member.mode)} {member.size:>12} {member.name}"
    if member.issym():
        line += f" -> {member.linkname}"
    elif member.islnk():
        line += f" link to {member.linkname}"
    return line


def _shown_version(version: str | None) -> str:
    """The package's version as the appliance will see it."""
    if version is None:
        return "none (no version.txt: the appliance installs it without comparing versions)"
    return version.strip() or "empty (only an appliance without etc/version.txt installs it)"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description="Keys and update packages for appliances.")
    commands = parser.add_subparsers(dest="command", required=True)

    p = commands.add_parser("keygen", help="create updates.key, vendor.key and updates.pub")
    p.add_argument("--out", type=Path, required=True, help="directory for the three key files")
    p.set_defaults(run=keygen)

    p = commands.add_parser("package", help="build an encrypted, signed update package")
    p.add_argument("src_dir", type=Path, help="directory whose contents become the package")
    p.add_argument("--version", help="version written as version.txt, compared by sort -V "
                   "(default: the first line of SRC_DIR/version.txt)")
    p.add_argument("--key", type=Path, required=True, help="updates.key (encryption passphrase)")
    p.add_argument("--signing-key", type=Path, required=True, help="vendor.key (PEM private key)")
    p.add_argument("--out", type=Path, required=True, help="the package file to write")
    p.add_argument("--legacy-md5", action="store_true",
                   help="use the old -md md5 key derivation, for appliances that predate pbkdf2")
    p.set_defaults(run=build)

    p = commands.add_parser("inspect", help="decrypt and verify a package without installing it")
    p.add_argument("file", type=Path)
    p.add_argument("--key", type=Path, required=True, help="updates.key")
    p.add_argument("--public-key", type=Path, required=True, help="updates.pub")
    p.set_defaults(run=inspect)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        args.run(args)
    except PackageError as e:
        print(f"{PROG}: error: {e.message} ({e.code})", file=sys.stderr)
        return 1
    except OSError as e:
        where = f": {e.filename}" if e.filename else ""
        print(f"{PROG}: error: {e.strerror or e}{where}", file=sys.stderr)
        return 1
    except ValueError as e:
        print(f"{PROG}: error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
