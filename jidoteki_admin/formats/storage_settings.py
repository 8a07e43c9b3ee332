"""The persistent storage settings (section 11): what a settings document may hold, the
storage-options file, and the storage.conf the appliance's bin/storage.sh sources.

Shared by the storage section (which refuses bad input before anything on disk changes)
and the storage job (which checks again what it is handed). Pure: no Twisted, no web code.

The stored document is ``{"storage": {"type": ..., ...}}``, the type first and then the
type's keys in the order they were posted; a key given as "" or null is left out. The
password is never answered in clear: GET answers MASK in its place, and a POST that sends
MASK back (as the original's dashboard sends back what it was given) keeps the stored one.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from . import validate
from .validate import Invalid, json_type, only_keys, problem, text

TYPES = ("local", "nfs", "aoe", "iscsi", "nbd")
MASK = "********"
REQUIRED: dict[str, tuple[str, ...]] = {
    "local": (),
    "nfs": ("ip", "share"),
    "aoe": ("device",),
    "iscsi": ("target", "ip"),
    "nbd": ("export_name", "ip"),
}
OPTIONAL: dict[str, tuple[str, ...]] = {
    "local": (),
    "nfs": ("mount_options",),
    "aoe": (),
    "iscsi": ("username", "password"),
    "nbd": ("port",),
}
OPTIONS_MAX = 64 * 1024


def parse_options(data: bytes, where: str) -> list[str]:
    """The storage types the options file offers.

    Appliances hold an object ``{"options": ["local", "nfs"]}``; a bare list is read too.
    A malformed file raises Invalid naming ``where`` (the daemon answers 500: it is the
    appliance's file, not the client's input).
    """
    try:
        value = json.loads(data[:OPTIONS_MAX].decode("utf-8-sig"))
    except (UnicodeDecodeError, ValueError):
        raise Invalid(f"The storage options file {where} is not valid JSON") from None
    if isinstance(value, dict):
        value = value.get("options")
    if not isinstance(value, list) or not all(isinstance(option, str) for option in value):
        raise Invalid(f"The storage options file {where} must hold a list of storage types, "
                      'or an object {"options": [...]}')
    return value


def allowed_types(options: list[str]) -> tuple[str, ...]:
    """The types a POST may choose: those the options file offers that this version knows."""
    return tuple(kind for kind in TYPES if kind in options)


def stored_storage(document: object) -> Mapping[str, Any] | None:
    """The storage object of a stored storage.json, when it is one."""
    if isinstance(document, dict) and isinstance(document.get("storage"), dict):
        return document["storage"]
    return None


def storage_settings(document: Mapping[str, Any], allowed: tuple[str, ...],
                     stored: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The document to store for a posted settings document, or Invalid saying what is wrong.

    ``allowed`` are the types the options file offers; ``stored`` the storage object saved
    before, whose password a masked one stands for.
    """
    only_keys(document, ("storage",), "the settings file")
    storage = document.get("storage")
    if not isinstance(storage, dict):
        raise Invalid(f'The settings file must hold an object "storage", not {json_type(storage)}')
    kind = text(storage, "type", ", ".join(allowed) or "none")
    if kind is None or kind not in allowed:
        offered = ", ".join(allowed) or "none (the storage options file offers no known type)"
        raise problem("type", offered)
    known = ("type", *REQUIRED[kind], *OPTIONAL[kind])
    given = {key: value for key, value in storage.items() if value not in ("", None)}
    only_keys(given, known, f"storage of type {kind}")
    missing = [key for key in REQUIRED[kind] if key not in given]
    if missing:
        raise Invalid(f"Missing option for storage type {kind}: {', '.join(missing)}")
    result: dict[str, Any] = {"type": kind}
    for key, value in given.items():
        if key != "type":
            result[key] = _value(key, value, stored)
    if ("username" in result) != ("password" in result):
        raise Invalid("Missing option for storage type iscsi: username and password go together")
    return {"storage": result}


def _value(key: str, value: object, stored: Mapping[str, Any] | None) -> str:
    if key == "port":
        return validate.port(value, key)
    allowed = _ALLOWED[key]
    if not isinstance(value, str):
        raise problem(key, allowed)
    if key == "password" and value == MASK:
        return _stored_password(stored)
    return _CHECKS[key](value)


def _stored_password(stored: Mapping[str, Any] | None) -> str:
    password = stored.get("password") if stored is not None else None
    if not isinstance(password, str) or not password or password == MASK:
        raise Invalid(f"Missing or invalid string for option: password. {MASK} keeps the stored password, "
                      "and none is stored")
    try:
        return _password(password)
    except Invalid:
        # Saved by an earlier version, which took any password: it cannot go into storage.conf.
        raise Invalid(f"Missing or invalid string for option: password. {MASK} keeps the stored password, "
                      f"and the stored one is not allowed: {_ALLOWED['password']}") from None


_ALLOWED = {
    "ip": "an IPv4 address like 192.168.1.10 or an IPv6 address like 2001:db8::10",
    "share": "an absolute path like /nfs/storage",
    "mount_options": "comma-separated mount options like noacl,sync",
    "device": "an AoE device like e0.1",
    "target": "an iSCSI name like iqn.2016-01.com.example:storage.lun1",
    "username": "1 to 255 letters, digits and . _ + @ : / = ~ -",
    "password": "1 to 255 printable ASCII characters without $ ` \\ \" ' ; | < > & or a newline",
    "export_name": "1 to 255 letters, digits and . _ + @ : / = ~ -",
}


def _ip(value: str) -> str:
    validate.ip_address(value, "ip")
    return value


def _password(value: str) -> str:
    return validate.shell_safe(value, "password", _ALLOWED["password"])


_CHECKS = {
    "ip": _ip,
    "share": lambda value: validate.absolute_path(value, "share"),
    "mount_options": validate.mount_options,
    "device": validate.aoe_device,
    "target": validate.iscsi_name,
    "username": lambda value: validate.word(value, "username"),
    "password": _password,
    "export_name": lambda value: validate.word(value, "export_name"),
}


def masked(document: Mapping[str, Any]) -> dict[str, Any]:
    """The stored document as GET answers it: a password replaced by MASK."""
    storage = stored_storage(document)
    if storage is None or not storage.get("password"):
        return dict(document)
    return {**document, "storage": {**storage, "password": MASK}}


def conf_text(document: Mapping[str, Any]) -> bytes:
    """storage.conf: one ``key="value"`` line per key of the storage object, the type
    first, as the original wrote it for bin/storage.sh to source."""
    storage = stored_storage(document)
    if storage is None:
        raise Invalid('The settings hold no "storage" object')
    lines = [f"{key}={validate.quoted(str(value))}" for key, value in storage.items()
             if key.isidentifier() and key.isascii()]
    if len(lines) != len(storage):
        raise Invalid("refusing to write a key that is not a shell variable name into storage.conf")
    return ("\n".join(lines) + "\n").encode()


def holds_secret(document: Mapping[str, Any]) -> bool:
    storage = stored_storage(document)
    return storage is not None and bool(storage.get("password"))
