"""jidoteki-admin-vendor: the appliance vendor's tool for keys and update packages.

    jidoteki-admin-vendor keygen --out DIR
    jidoteki-admin-vendor package SRC_DIR --version X --key updates.key \\
        --signing-key vendor.key --out software_package-X.enc [--legacy-md5]
    jidoteki-admin-vendor manifest FILE --signing-key vendor.key [--version X]
    jidoteki-admin-vendor inspect FILE --key updates.key --public-key updates.pub
    jidoteki-admin-vendor license-keygen --out DIR
    jidoteki-admin-vendor license --key license.key --app APP --users N --expires 2038-01-19 \\
        --name NAME --contact CONTACT [--set KEY=VALUE ...] --out license.asc

The packages it writes are exactly what plain openssl and tar make (docs/packages.md);
the licenses are the default license scheme of docs/license.md.
"""

from __future__ import annotations

import argparse
import re
import secrets
import stat
import sys
import tempfile
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from . import __version__
from .files import atomic_write, remove_quietly
from .formats import debugbundle, licensefile, package
from .formats.crypto import CryptoError
from .formats.package import PackageError

PROG = "jidoteki-admin-vendor"
RSA_BITS = 3072
EXIT_OK, EXIT_ERROR, EXIT_USAGE = 0, 1, 2

PEM_LABEL = re.compile(rb"^-----BEGIN ([A-Z0-9 ]+)-----", re.M)
PEM_SCAN_BYTES = 64 * 1024


def keygen(args: argparse.Namespace) -> None:
    out = args.out
    targets = _new_files(out, "updates.key", "vendor.key", "updates.pub")
    atomic_write(targets[0], secrets.token_hex(32).encode() + b"\n", 0o600)
    _write_key_pair(targets[1], targets[2])
    for path in targets:
        print(f"wrote {path}")
    print("Install updates.key and updates.pub in the appliance's etc/; keep vendor.key secret.")


def _new_files(out: Path, *names: str) -> list[Path]:
    """The paths of new key files in ``out``; a key already there is never overwritten."""
    targets = [out / name for name in names]
    existing = [str(p) for p in targets if p.exists()]
    if existing:
        raise ValueError(f"refusing to overwrite existing keys: {', '.join(existing)}")
    out.mkdir(parents=True, exist_ok=True)
    return targets


def _write_key_pair(private: Path, public: Path) -> None:
    """A new RSA key: the private half PKCS#8 (0600), the public half SubjectPublicKeyInfo."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=RSA_BITS)
    atomic_write(private, key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()), 0o600)
    atomic_write(public, key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo), 0o644)


def build(args: argparse.Namespace) -> None:
    out = args.out
    version = package.build_package(args.src_dir, args.version, args.key, args.signing_key,
                                    out, legacy_md5=args.legacy_md5)
    if not (out.name.startswith(package.PACKAGE_PREFIX) and out.name.endswith(package.PACKAGE_SUFFIX)):
        print(f"{PROG}: warning: the appliance only looks for "
              f"{package.PACKAGE_PREFIX}*{package.PACKAGE_SUFFIX} uploads", file=sys.stderr)
    print(f"wrote {out} (version {version}, {out.stat().st_size} bytes)")
    if args.manifest:
        for path in package.write_manifest(out, version, args.signing_key):
            print(f"wrote {path}")


def manifest(args: argparse.Namespace) -> None:
    """A manifest for a package built before (by openssl and tar, say): its version is
    read from it when the keys to open it are given, else taken from --version."""
    version = args.version
    if version is None:
        if args.key is None or args.public_key is None:
            raise ValueError("give --version, or --key and --public-key to read it from the package")
        with tempfile.TemporaryDirectory(prefix="jidoteki-manifest-") as work:
            inner = package.decrypt_and_verify(args.file, args.key, args.public_key, Path(work))
            _, version = package.read_contents(inner)
        if version is None:
            raise ValueError(f"{args.file} has no version.txt: give --version")
    for path in package.write_manifest(args.file, version, args.signing_key):
        print(f"wrote {path}")


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


def open_debug_bundle(args: argparse.Namespace) -> None:
    if args.out.exists():
        raise ValueError(f"refusing to overwrite {args.out}")
    try:
        debugbundle.open_bundle(args.file, args.vendor_key, args.out)
    except CryptoError as e:
        remove_quietly(args.out)
        raise ValueError(str(e)) from None
    print(f"wrote {args.out}")


def license_keygen(args: argparse.Namespace) -> None:
    """The license key pair: a key of its own, so that the key that signs update
    packages never has to be at hand where licenses are issued."""
    targets = _new_files(args.out, "license.key", "license.pub")
    _write_key_pair(targets[0], targets[1])
    for path in targets:
        print(f"wrote {path}")
    print("Install license.pub as the appliance's etc/license.pub; keep license.key secret.")


def issue_license(args: argparse.Namespace) -> None:
    more: dict[str, str] = {}
    for setting in args.set:
        key, equals, value = setting.partition("=")
        if not equals or not key:
            raise ValueError(f"--set wants KEY=VALUE, not {setting!r}")
        if key in more:
            raise ValueError(f"--set {key} is given twice")
        more[key] = value
    try:
        document = licensefile.make_document(args.app, args.users, args.expires, args.name, args.contact, more)
        armored = licensefile.sign(document, args.license_key)
    except licensefile.LicenseError as e:
        raise ValueError(str(e)) from None
    atomic_write(args.out, armored, 0o644)
    print(f"wrote {args.out} ({args.app}, {args.users} users, expires {args.expires})")


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


# Key files of the wrong kind. Each of the three files is easy to pass for another, and
# the mistake otherwise shows only on the appliance: a package encrypted with a public key
# as its passphrase builds fine and is refused there with E1005.


def _pem_labels(path: Path) -> list[str]:
    """The labels of the PEM blocks at the start of a file ("PUBLIC KEY", "PRIVATE KEY", ...)."""
    with open(path, "rb") as f:
        return [label.decode("ascii") for label in PEM_LABEL.findall(f.read(PEM_SCAN_BYTES))]


def _holds(labels: list[str]) -> str:
    return f"a PEM {labels[0]}" if labels else "no PEM key"


def check_passphrase_file(option: str, path: Path) -> None:
    labels = _pem_labels(path)
    if labels:
        raise ValueError(f"{option} wants the passphrase file (updates.key), "
                         f"but {path} holds {_holds(labels)}")


def check_private_key_file(option: str, path: Path) -> None:
    labels = _pem_labels(path)
    if not any(label.endswith("PRIVATE KEY") for label in labels):
        raise ValueError(f"{option} wants the vendor's PEM private key (vendor.key), "
                         f"but {path} holds {_holds(labels)}")


def check_public_key_file(option: str, path: Path) -> None:
    labels = _pem_labels(path)
    if not any(label.endswith("PUBLIC KEY") for label in labels):
        raise ValueError(f"{option} wants the vendor's PEM public key (updates.pub), "
                         f"but {path} holds {_holds(labels)}")


def check_license_key_file(option: str, path: Path) -> None:
    labels = _pem_labels(path)
    if not any(label.endswith("PRIVATE KEY") for label in labels):
        raise ValueError(f"{option} wants the PEM private key licenses are signed with (license.key), "
                         f"but {path} holds {_holds(labels)}")


KEY_CHECKS = {
    "key": ("--key", check_passphrase_file),
    "signing_key": ("--signing-key", check_private_key_file),
    "public_key": ("--public-key", check_public_key_file),
    "vendor_key": ("--key", check_private_key_file),
    "license_key": ("--key", check_license_key_file),
}


def check_key_files(args: argparse.Namespace) -> None:
    """Refuse a key file of the wrong kind before any work, naming the option it was given to."""
    for name, (option, check) in KEY_CHECKS.items():
        path = getattr(args, name, None)
        if path is not None:
            check(option, path)


class Parser(argparse.ArgumentParser):
    """argparse, with one line for a command line it cannot use, like every other error."""

    def error(self, message: str):
        self.exit(EXIT_USAGE, f"{PROG}: error: {message} (see: {self.prog} --help)\n")


def _parser() -> argparse.ArgumentParser:
    parser = Parser(prog=PROG, description="Keys, update packages and licenses for appliances: "
                    "packages it builds install on appliances and open with plain openssl and tar.")
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}",
                        help="print the version of this tool and exit")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=Parser,
                                     help="one of these (COMMAND --help for its options):")

    p = commands.add_parser("keygen", help="create updates.key, vendor.key and updates.pub",
                            description="Create the passphrase (updates.key), the signing key "
                            "(vendor.key) and its public key (updates.pub); never overwrites.")
    p.add_argument("--out", type=Path, required=True, help="directory for the three key files")
    p.set_defaults(run=keygen)

    p = commands.add_parser("package", help="build an encrypted, signed update package",
                            description="Build software_package-X.enc from the contents of SRC_DIR.")
    p.add_argument("src_dir", type=Path, metavar="SRC_DIR", help="directory whose contents become the package")
    p.add_argument("--version", help="version written as version.txt, compared by sort -V "
                   "(default: the first line of SRC_DIR/version.txt)")
    p.add_argument("--key", type=Path, required=True, help="updates.key (encryption passphrase)")
    p.add_argument("--signing-key", type=Path, required=True, help="vendor.key (PEM private key)")
    p.add_argument("--out", type=Path, required=True, help="the package file to write")
    p.add_argument("--legacy-md5", action="store_true",
                   help="use the old -md md5 key derivation, for appliances that predate pbkdf2")
    p.add_argument("--manifest", action="store_true",
                   help="also write OUT.manifest.json (version, size, SHA-256) and its signature OUT.manifest.json.sig")
    p.set_defaults(run=build)

    p = commands.add_parser("manifest", help="write the signed manifest of a package",
                            description="Write FILE.manifest.json (the package's version, size and SHA-256) "
                            "and FILE.manifest.json.sig, its signature by vendor.key, for fleet tools.")
    p.add_argument("file", type=Path, metavar="FILE", help="the package (software_package-X.enc)")
    p.add_argument("--signing-key", type=Path, required=True, help="vendor.key (PEM private key)")
    p.add_argument("--version", help="the package's version (default: read from the package)")
    p.add_argument("--key", type=Path, help="updates.key, to read the version from the package")
    p.add_argument("--public-key", type=Path, help="updates.pub, to verify the package as it is read")
    p.set_defaults(run=manifest)

    p = commands.add_parser("inspect", help="decrypt and verify a package without installing it",
                            description="Decrypt and verify a package, then print its encryption, "
                            "signature, version and members; nothing is installed.")
    p.add_argument("file", type=Path, metavar="FILE", help="the package (software_package-X.enc)")
    p.add_argument("--key", type=Path, required=True, help="updates.key (encryption passphrase)")
    p.add_argument("--public-key", type=Path, required=True, help="updates.pub (PEM public key of vendor.key)")
    p.set_defaults(run=inspect)

    p = commands.add_parser("open-debug-bundle", help="decrypt a debug bundle an appliance made (GET /debug)",
                            description="Decrypt debug-bundle.tar with vendor.key into debug.tar.gz.")
    p.add_argument("file", type=Path, metavar="FILE", help="the bundle (debug-bundle.tar)")
    p.add_argument("--key", dest="vendor_key", type=Path, required=True,
                   help="vendor.key (the PEM private key of the appliance's updates.pub)")
    p.add_argument("--out", type=Path, default=Path("debug.tar.gz"),
                   help="the decrypted tar.gz to write [default: debug.tar.gz]; never overwritten")
    p.set_defaults(run=open_debug_bundle)

    p = commands.add_parser("license-keygen", help="create license.key and license.pub",
                            description="Create the key licenses are signed with (license.key) and "
                            "its public key (license.pub, the appliance's etc/license.pub); never overwrites.")
    p.add_argument("--out", type=Path, required=True, help="directory for the two key files")
    p.set_defaults(run=license_keygen)

    p = commands.add_parser("license", help="issue a signed license (license.asc)",
                            description="Write a license for POST /license, signed with license.key "
                            "(docs/license.md).")
    p.add_argument("--key", dest="license_key", type=Path, required=True,
                   help="license.key (PEM private key)")
    p.add_argument("--app", required=True, help="the licensed application, like enterprise")
    p.add_argument("--users", type=int, required=True, help="the number of users licensed")
    p.add_argument("--expires", required=True, help="the last day the license is good for, like 2038-01-19")
    p.add_argument("--name", required=True, help="the licensee")
    p.add_argument("--contact", required=True, help="the licensee's contact")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="any other detail, as a string (repeat for more)")
    p.add_argument("--out", type=Path, required=True, help="the license file to write")
    p.set_defaults(run=issue_license)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Exit status 0 on success, 1 on any error, 2 on a command line it cannot use
    (docs/packages.md)."""
    args = _parser().parse_args(argv)
    try:
        check_key_files(args)
        args.run(args)
    except PackageError as e:
        print(f"{PROG}: error: {e.message} ({e.code})", file=sys.stderr)
        return EXIT_ERROR
    except OSError as e:
        where = f": {e.filename}" if e.filename else ""
        print(f"{PROG}: error: {e.strerror or e}{where}", file=sys.stderr)
        return EXIT_ERROR
    except ValueError as e:
        print(f"{PROG}: error: {e}", file=sys.stderr)
        return EXIT_ERROR
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
