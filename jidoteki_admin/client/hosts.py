"""The hosts file of the CLI, ``~/.config/jidoteki-admin/hosts.toml``: one table per
appliance, and groups of them for commands run on many at once.

    [site-12]
    url = "https://10.0.0.12:8443"
    token-file = "~/.config/jidoteki-admin/site-12.token"
    fingerprint = "AB:CD:..."          # or: ca = "/path/to/ca.pem"
    groups = ["eu", "production"]      # --group eu; every host is in the group "all"
    token-name = "ci"                  # a named token's name (POST /tokens); default: the API token
    auth = "hash"                      # only for appliances that predate signed requests
    read-timeout = 60                  # optional: connect-timeout, tls-timeout, read-timeout, timeout

Everything is checked before any appliance is asked anything: a misspelt key, a missing
token file or a bad fingerprint is a usage error (exit status 2) naming the host, not a
surprise half-way through a fleet.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import Misconfigured
from .transport import Timeouts, Trust, split_url

CONFIG = Path("~/.config/jidoteki-admin/hosts.toml")
TOKEN_ENV = "JIDOTEKI_ADMIN_TOKEN"
TIMEOUT_KEYS = {"connect-timeout": "connect", "tls-timeout": "handshake", "read-timeout": "read", "timeout": "wait"}
KEYS = {"url", "token-file", "token-name", "auth", "fingerprint", "ca", "groups", *TIMEOUT_KEYS}
AUTH = ("signature", "hash")
ALL = "all"


@dataclass(frozen=True)
class Target:
    """One appliance a command runs on: whom to reach, how to trust it, its token."""

    name: str  # the hosts file's name for it, or its URL
    url: str
    token: str | None
    ca_file: Path | None
    fingerprint: str | None
    timeouts: Timeouts
    wait: float | None  # the hosts file's wait limit, else the command's own
    selector: str  # how a command line names it (for "follow it with: ...")
    token_name: str = "admin"  # a named token's name; "admin" is the API token
    auth: str = "signature"  # or "hash", for an appliance that predates signed requests


def read_hosts(path: Path) -> dict[str, dict[str, Any]]:
    """The hosts file's entries, checked; Misconfigured names what is wrong where."""
    path = path.expanduser()
    try:
        hosts = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise Misconfigured(f"no hosts file at {path}") from None
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as e:
        raise Misconfigured(f"{path}: {e}") from None
    for name, entry in hosts.items():
        if not isinstance(entry, dict):
            raise Misconfigured(f"{path}: {name} is not a table ([{name}] with url = ... under it)")
        unknown = sorted(set(entry) - KEYS)
        if unknown:
            raise Misconfigured(f"{path}: [{name}] has unknown key {unknown[0]!r} (known: {', '.join(sorted(KEYS))})")
        groups = entry.get("groups", [])
        if not isinstance(groups, list) or not all(isinstance(g, str) for g in groups):
            raise Misconfigured(f"{path}: [{name}] groups must be a list of names, like groups = [\"eu\"]")
    return hosts


def select(hosts: dict[str, dict[str, Any]], names: list[str], group: str | None, path: Path) -> list[str]:
    """The names of the hosts a command runs on, in the hosts file's order for a group."""
    if group is not None:
        chosen = [name for name, entry in hosts.items() if group == ALL or group in entry.get("groups", [])]
        if not chosen:
            known = sorted({g for entry in hosts.values() for g in entry.get("groups", [])} | {ALL})
            raise Misconfigured(f"--group {group}: no host of {path.expanduser()} is in it (groups: {', '.join(known)})")
        return chosen
    for name in names:
        if name not in hosts:
            raise Misconfigured(f"--host {name}: not in {path.expanduser()} (it has: {', '.join(hosts) or 'nothing'})")
    return list(dict.fromkeys(names))


def read_token(token_file: Path | None, who: str = "") -> str | None:
    """The first line of a token file (or $JIDOTEKI_ADMIN_TOKEN when there is no file)."""
    where = f"{who}: " if who else ""
    if token_file is not None:
        try:
            lines = token_file.read_text().splitlines()
        except (OSError, UnicodeDecodeError) as e:
            raise Misconfigured(f"{where}cannot read the token from {token_file}: {getattr(e, 'strerror', None) or e}") \
                from None
        token = lines[0].strip() if lines else ""
        if not token:
            raise Misconfigured(f"{where}{token_file} is empty")
        return token
    return os.environ.get(TOKEN_ENV) or None


def _path(value: object) -> Path | None:
    return Path(str(value)).expanduser() if value else None


def _seconds(entry: dict[str, Any], key: str, who: str) -> float | None:
    value = entry.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        raise Misconfigured(f"{who}: {key} must be a number of seconds above 0, not {value!r}")
    return float(value)


def target(name: str | None, entry: dict[str, Any], options: dict[str, Any], token: str = "required") -> Target:
    """An appliance from its hosts file entry (if any) and the command line's options,
    which win: ``url``, ``token_file``, ``ca``, ``fingerprint`` and the timeouts.

    ``token``: "required"; "optional" (setup: none before the first token, read from an
    existing token file after); "none" (fingerprint)."""
    who = name or "the appliance"
    url = options.get("url") or entry.get("url")
    if not url:
        raise Misconfigured("say which appliance: --url https://HOST:PORT, --host NAME or --group NAME")
    split_url(str(url))
    ca, fingerprint = _path(entry.get("ca")), entry.get("fingerprint")
    if options.get("ca") or options.get("fingerprint"):  # an option given wins over the file's trust, either kind
        ca, fingerprint = options.get("ca"), options.get("fingerprint")
    if token != "none" or ca or fingerprint:
        Trust(ca, fingerprint)  # checked now: a bad pin or CA file is a usage error
    token_file = options.get("token_file") or _path(entry.get("token-file"))
    if token == "optional" and token_file is not None and not token_file.exists():
        token_file = None
    secret = read_token(token_file, name or "") if token != "none" else None
    if token == "required" and secret is None:
        raise Misconfigured(f"{who}: no API token: give --token-file FILE, token-file in the hosts file, or ${TOKEN_ENV}")
    timeouts = Timeouts()
    for key, field_name in TIMEOUT_KEYS.items():
        if key != "timeout":
            timeouts = timeouts.but(**{field_name: _seconds(entry, key, who)})
    timeouts = timeouts.but(connect=options.get("connect_timeout"), handshake=options.get("tls_timeout"),
                            read=options.get("read_timeout"))
    wait = options.get("timeout") or _seconds(entry, "timeout", who)
    if name is not None and not options.get("url"):
        selector = options.get("hosts_prefix", "") + f"--host {name}"
    else:
        trust = f"--fingerprint {fingerprint}" if fingerprint else f"--ca {ca}"
        selector = f"--url {url} {trust}" + (f" --token-file {token_file}" if token_file else "")
    token_name = str(options.get("token_name") or entry.get("token-name") or "admin")
    auth = str(options.get("auth") or entry.get("auth") or AUTH[0])
    if auth not in AUTH:
        raise Misconfigured(f"{who}: auth must be {' or '.join(AUTH)}, not {auth!r}")
    return Target(name or str(url), str(url), secret, Path(ca) if ca else None, fingerprint, timeouts, wait, selector,
                  token_name, auth)
