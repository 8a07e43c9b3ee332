"""The signed manifest a vendor writes beside an update package (docs/packages.md): what
the package is, read without sending it anywhere.

    software_package-1.2.3.enc
    software_package-1.2.3.enc.manifest.json       {"version": "1.2.3", "size": ..., "sha256": ...}
    software_package-1.2.3.enc.manifest.json.sig   openssl dgst -sha256 -sign vendor.key

A manifest counts only for the package it describes: its size and SHA-256 must be the
file's. With the vendor's public key (updates.pub) its signature is checked too; without
it, the manifest says what the vendor's tool wrote, and the appliance still verifies the
package itself before anything installs.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, padding, rsa

from .errors import Misconfigured

SUFFIX = ".manifest.json"
SIGNATURE_SUFFIX = ".manifest.json.sig"
FORMAT = "jidoteki-admin-manifest/1"
MANIFEST_MAX = 64 * 1024


def manifest_path(package: Path | str) -> Path:
    package = Path(package)
    return package.with_name(package.name + SUFFIX)


def read_manifest(package: Path | str, public_key: Path | str | None = None) -> dict[str, Any] | None:
    """The manifest of a package, checked against it (and against ``public_key`` when
    given); None when there is none. Misconfigured when there is one that does not fit."""
    package = Path(package)
    path = manifest_path(package)
    try:
        data = path.read_bytes()[:MANIFEST_MAX + 1]
    except FileNotFoundError:
        return None
    except OSError as e:
        raise Misconfigured(f"cannot read {path}: {e.strerror or e}") from None
    try:
        value = json.loads(data)
    except ValueError:
        raise Misconfigured(f"{path} is not JSON") from None
    if not isinstance(value, dict) or value.get("format") != FORMAT or not isinstance(value.get("version"), str):
        raise Misconfigured(f"{path} is not a package manifest ({FORMAT})")
    if public_key is not None:
        _verify(Path(public_key), data, package.with_name(package.name + SIGNATURE_SUFFIX))
    size = package.stat().st_size
    if value.get("size") != size or value.get("sha256") != _sha256(package):
        raise Misconfigured(f"{path} describes another file than {package} (its size or SHA-256 differs)")
    return value


def _sha256(path: Path) -> str:
    sha = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1024 * 1024):
            sha.update(chunk)
    return sha.hexdigest()


def _verify(public_key: Path, data: bytes, signature_path: Path) -> None:
    try:
        key = serialization.load_pem_public_key(public_key.read_bytes())
        signature = signature_path.read_bytes()
    except (OSError, ValueError) as e:
        raise Misconfigured(f"cannot check the manifest's signature: {e}") from None
    try:
        if isinstance(key, rsa.RSAPublicKey):
            key.verify(signature, data, padding.PKCS1v15(), hashes.SHA256())
        elif isinstance(key, ec.EllipticCurvePublicKey):
            key.verify(signature, data, ec.ECDSA(hashes.SHA256()))
        elif isinstance(key, dsa.DSAPublicKey):
            key.verify(signature, data, hashes.SHA256())
        else:
            raise Misconfigured(f"{public_key}: not an RSA, EC or DSA public key")
    except InvalidSignature:
        raise Misconfigured(f"{signature_path} is not the signature of {public_key}'s vendor key") from None
