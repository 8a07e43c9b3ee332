"""Checks for the values administrators upload in settings documents, shared by the
sections (which refuse bad input before anything on disk changes) and the job programs
(which check again what they are handed, since they can be run by hand).

Every check raises Invalid with the message the API answers in Error-Message, naming the
option and what is allowed, in the original's words: ``Missing or invalid string for
option: ntpserver. Allowed: ...``. A value that passes can be written between double
quotes in a file a shell sources (network.conf, storage.conf) and never leave them.
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DOCUMENT_MAX = 64 * 1024  # a settings document is a few hundred bytes

# What a value written into a shell-sourced file may hold: printable ASCII without any
# character a shell treats specially inside double quotes ($ ` \ "), no markup (< > &),
# no quote or command separator (' ; |) and no control character or newline. What is
# left is literal between double quotes.
_SHELL_SAFE = re.compile(r"[A-Za-z0-9 _.,:/@%+=~^\-\[\]{}()!#*?]*\Z")
_LABEL = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)\Z")
_INTERFACE = re.compile(r"[A-Za-z0-9]{3,14}\Z")
HOSTNAME_ALLOWED = "a host name of 3 to 255 characters: labels of letters, digits and hyphens separated by dots"


class Invalid(ValueError):
    """A value the API refuses; str() is the whole message for the client."""


def problem(option: str, allowed: str, kind: str = "string") -> Invalid:
    return Invalid(f"Missing or invalid {kind} for option: {option}. Allowed: {allowed}")


def load_document(data: bytes, what: str, limit: int = DOCUMENT_MAX) -> dict[str, Any]:
    """The JSON object an uploaded settings file holds.

    UTF-8 only (with or without a byte-order mark), an object at the top level, no key
    twice (which object would win is a matter of parser), at most ``limit`` bytes.
    """
    if len(data) > limit:
        raise Invalid(f"The {what} file is too large: {len(data)} bytes (at most {limit})")
    if not data.strip():
        raise Invalid(f"The {what} file is empty")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise Invalid(f"The {what} file is not UTF-8 text (byte {e.start})") from None
    try:
        value = json.loads(text, object_pairs_hook=_no_repeated_keys, parse_constant=_no_constant,
                           parse_int=_bounded_int, parse_float=_finite_float)
    except json.JSONDecodeError as e:
        raise Invalid(f"The {what} file is not valid JSON: line {e.lineno} column {e.colno}: {e.msg}") from None
    except RecursionError:
        raise Invalid(f"The {what} file is nested too deeply (at most {DEPTH_MAX} levels)") from None
    except Invalid as e:
        raise Invalid(f"The {what} file is not valid JSON: {e}") from None
    if not isinstance(value, dict):
        raise Invalid(f"The {what} file must hold a JSON object, not {json_type(value)}")
    check_values(value, what)
    return value


DEPTH_MAX = 16  # objects and arrays within each other
STRING_MAX = 4096  # characters of any one string, key or value
NUMBER_DIGITS_MAX = 20  # a 64-bit integer has at most 20


class _OutOfRange:
    """A number the parser met that no field takes: kept as written, so the check after
    parsing can name where it was (the parser cannot)."""

    def __init__(self, written: str, why: str):
        self.written = written
        self.why = why


def _bounded_int(written: str) -> int | _OutOfRange:
    digits = len(written.lstrip("-"))
    if digits > NUMBER_DIGITS_MAX:
        return _OutOfRange(written, f"a number of {digits} digits (at most {NUMBER_DIGITS_MAX})")
    return int(written)


def _finite_float(written: str) -> float | _OutOfRange:
    value = float(written)
    if value != value or value in (float("inf"), float("-inf")):
        return _OutOfRange(written, "a number too large to be kept")
    return value


def check_values(document: dict[str, Any], what: str) -> None:
    """Refuse what no field allows, naming where it is: a number out of range, nesting
    deeper than DEPTH_MAX, a string or key longer than STRING_MAX. Without recursion, so
    any depth is refused the same way."""
    pending: list[tuple[object, str, int]] = [(document, "", 0)]
    while pending:
        value, path, depth = pending.pop()
        where = path or "the top level"
        if isinstance(value, _OutOfRange):
            raise Invalid(f"The {what} file is refused at {where}: {value.why}")
        if isinstance(value, str) and len(value) > STRING_MAX:
            raise Invalid(f"The {what} file is refused at {where}: a string of {len(value)} characters "
                          f"(at most {STRING_MAX})")
        if isinstance(value, (dict, list)) and depth >= DEPTH_MAX:
            raise Invalid(f"The {what} file is refused at {where}: nested more than {DEPTH_MAX} levels deep")
        if isinstance(value, dict):
            for key, item in value.items():
                if len(key) > STRING_MAX:
                    raise Invalid(f"The {what} file is refused at {where}: a key of {len(key)} characters "
                                  f"(at most {STRING_MAX})")
                pending.append((item, f"{path}.{key}" if path else key, depth + 1))
        elif isinstance(value, list):
            pending.extend((item, f"{path}[{n}]", depth + 1) for n, item in enumerate(value))


def read_document(path: Path, what: str, limit: int = DOCUMENT_MAX) -> dict[str, Any]:
    with open(path, "rb") as f:
        return load_document(f.read(limit + 1), what, limit)


def _no_repeated_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for key, value in pairs:
        if key in found:
            raise Invalid(f"the key {key!r} is given twice")
        found[key] = value
    return found


def _no_constant(name: str) -> None:
    raise Invalid(f"{name} is not a JSON value")


def json_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"


def only_keys(document: Mapping[str, Any], known: tuple[str, ...], where: str) -> None:
    unknown = sorted(set(document) - set(known))
    if unknown:
        raise Invalid(f"Unknown option in {where}: {unknown[0]}. Allowed: {', '.join(known)}")


def text(document: Mapping[str, Any], option: str, allowed: str) -> str | None:
    """A string option; None when absent, null or "" (the original's clients send "" for
    a field they leave empty). Anything else but a string is refused."""
    value = document.get(option)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise problem(option, allowed)
    return value


def shell_safe(value: str, option: str, allowed: str, longest: int = 255) -> str:
    if len(value) > longest or not _SHELL_SAFE.match(value):
        raise problem(option, allowed)
    return value


def interface(value: str, option: str = "interface") -> str:
    if not _INTERFACE.match(value):
        raise problem(option, "3 to 14 letters and digits, like eth0")
    return value


def hostname(value: str, option: str = "hostname") -> str:
    """A host name as RFC 1123 has it: dot-separated labels of letters, digits and
    hyphens, 3 to 255 characters in all (one trailing dot allowed)."""
    allowed = HOSTNAME_ALLOWED
    name = value[:-1] if value.endswith(".") else value
    if not 3 <= len(value) <= 255 or not name or not all(_LABEL.match(label) for label in name.split(".")):
        raise problem(option, allowed)
    if name.replace(".", "").isdigit():
        raise problem(option, allowed)  # 1.2.3.4 is an address, not a name
    return value


def ip_address(value: str, option: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    try:
        if "%" in value:
            raise ValueError("no zone")
        return ipaddress.ip_address(value)
    except ValueError:
        raise problem(option, "an IPv4 address like 192.168.1.10 or an IPv6 address like 2001:db8::10") from None


def netmask(value: str, version: int, option: str = "netmask") -> str:
    """A netmask for an address of IP ``version``: a dotted quad (IPv4) or a prefix length."""
    longest = 32 if version == 4 else 128
    allowed = (f"a prefix length from 0 to {longest}" +
               (" or a netmask like 255.255.255.0" if version == 4 else " (this is an IPv6 address)"))
    if value.isdigit() and value.isascii():
        if int(value) <= longest and str(int(value)) == value:
            return value
        raise problem(option, allowed)
    if version == 4:
        try:
            ipaddress.IPv4Network(f"0.0.0.0/{value}")
            ipaddress.IPv4Address(value)
        except ValueError:
            raise problem(option, allowed) from None
        return value
    raise problem(option, allowed)


def host_or_address(value: str, option: str, with_port: bool = False) -> str:
    """A host name or an IP address; with ``with_port``, optionally followed by :port
    (an IPv6 address with a port is written [2001:db8::1]:123)."""
    allowed = "a host name or an IP address" + (", optionally followed by :port" if with_port else "")
    host, port = value, None
    if with_port:
        bracketed = re.fullmatch(r"\[([^\]]+)\](?::([0-9]+))?", value)
        if bracketed:
            host, port = bracketed.group(1), bracketed.group(2)
            if ":" not in host:
                raise problem(option, allowed)
        elif value.count(":") == 1:
            host, port = value.split(":")
    if port is not None and not (port.isascii() and port.isdigit() and 1 <= int(port) <= 65535):
        raise problem(option, allowed)
    try:
        ipaddress.ip_address(host)
        return value
    except ValueError:
        pass
    try:
        hostname(host, option)
    except Invalid:
        raise problem(option, allowed) from None
    return value


def port(value: object, option: str = "port") -> str:
    """A TCP port, given as a number or a string of digits (the original's examples quote it)."""
    if isinstance(value, bool):
        raise problem(option, "a port number from 1 to 65535")
    if isinstance(value, int):
        value = str(value)
    if not isinstance(value, str) or not (value.isascii() and value.isdigit()) or not 1 <= int(value) <= 65535:
        raise problem(option, "a port number from 1 to 65535")
    return str(int(value))


def quoted(value: str) -> str:
    """``value`` between double quotes, for a shell-sourced file. Only values that passed
    shell_safe (or a stricter check) get here; this is the last line of defence."""
    if not _SHELL_SAFE.match(value):
        raise Invalid(f"refusing to write {value!r} into a shell file")
    return f'"{value}"'


# The network settings of POST /settings (API.md section 8).

NETWORK_OPTIONS = ("interface", "hostname", "ip_address", "netmask", "gateway", "dns1", "dns2", "ntpserver")
STATIC_OPTIONS = ("ip_address", "netmask", "gateway")
APP_MAX = 32 * 1024  # app.json, serialized: an application's own few settings
# Keys this version does not know are kept in network.json as given (newer clients and
# appliances add their own); their names stay plain identifiers.
_EXTRA_KEY = re.compile(r"[A-Za-z][A-Za-z0-9_-]{0,63}\Z")
EXTRA_ALLOWED = ("a number, true, false, null or a string of printable ASCII without markup, quotes or "
                 "the shell characters $ ` \\ ; | & < >")


@dataclass(frozen=True)
class Network:
    """The network settings of a settings document, each checked; None where absent."""

    interface: str
    hostname: str
    ip_address: str | None = None
    netmask: str | None = None
    gateway: str | None = None
    dns: tuple[str, ...] = ()
    ntpserver: str | None = None

    @property
    def mode(self) -> str:
        return "static" if self.ip_address is not None else "dhcp"

    @property
    def ipv6(self) -> bool:
        return self.ip_address is not None and ":" in self.ip_address


@dataclass(frozen=True)
class SettingsDocument:
    """A checked settings document: what network.conf is made of, and the two objects
    network.json and app.json keep (the network object as given, unknown keys included,
    its "mode" left out: the mode is decided by what is given)."""

    network: Network
    given: dict[str, Any]
    app: dict[str, Any]


def settings_document(document: Mapping[str, Any]) -> SettingsDocument:
    """Check an uploaded settings document through and through, or raise Invalid."""
    only_keys(document, ("network", "app"), "the settings file")
    given = document.get("network")
    if not isinstance(given, dict):
        raise problem("network", "an object with interface, hostname and the other network settings", "object")
    app = document.get("app")
    if app is None:
        app = {}
    if not isinstance(app, dict):
        raise problem("app", "an object (the application's own settings)", "object")
    if len(json.dumps(app)) > APP_MAX:
        raise problem("app", f"an object of at most {APP_MAX} bytes as JSON", "object")
    network = network_settings(given)
    return SettingsDocument(network, {k: v for k, v in given.items() if k != "mode"}, app)


def network_settings(given: Mapping[str, Any]) -> Network:
    """The network object: interface and hostname required; static when ip_address,
    netmask and gateway are all given, DHCP when none is; every other key kept as long as
    it is a plain value that is safe to show and to write."""
    iface = text(given, "interface", "3 to 14 letters and digits, like eth0")
    if iface is None:
        raise problem("interface", "3 to 14 letters and digits, like eth0")
    name = text(given, "hostname", HOSTNAME_ALLOWED)
    if name is None:
        raise problem("hostname", HOSTNAME_ALLOWED)
    network = {"interface": interface(iface), "hostname": hostname(name)}
    address = _address(given, "ip_address")
    mask, gateway = text(given, "netmask", "a prefix length, or a netmask like 255.255.255.0"), _address(given, "gateway")
    present = {"ip_address": address, "netmask": mask, "gateway": gateway}
    missing = [option for option in STATIC_OPTIONS if present[option] is None]
    if missing and len(missing) < len(STATIC_OPTIONS):
        raise Invalid(f"Missing option for static network settings: {', '.join(missing)}. Allowed: ip_address, "
                      "netmask and gateway all given (static), or none of them (DHCP)")
    if address is not None and mask is not None and gateway is not None:
        version = ipaddress.ip_address(address).version
        netmask(mask, version)
        if ipaddress.ip_address(gateway).version != version:
            raise problem("gateway", f"an IPv{version} address, like ip_address")
        network.update(ip_address=address, netmask=mask, gateway=gateway)
    dns = tuple(value for value in (_address(given, "dns1"), _address(given, "dns2")) if value is not None)
    ntp_allowed = "a host name or an IP address, optionally followed by :port"
    ntp = text(given, "ntpserver", ntp_allowed)
    if ntp is not None:
        network["ntpserver"] = host_or_address(shell_safe(ntp, "ntpserver", ntp_allowed), "ntpserver",
                                               with_port=True)
    _check_mode(given)
    for key in sorted(set(given) - set(NETWORK_OPTIONS) - {"mode"}):
        extra(key, given[key])
    return Network(dns=dns, **network)


def _address(given: Mapping[str, Any], option: str) -> str | None:
    value = text(given, option, "an IP address")
    if value is None:
        return None
    ip_address(value, option)
    return value


def _check_mode(given: Mapping[str, Any]) -> None:
    """A client may send back the "mode" GET /settings showed it; what is given decides
    the mode, so it is only checked, never followed."""
    mode = text(given, "mode", "static or dhcp")
    if mode is not None and mode.lower() not in ("static", "dhcp"):
        raise problem("mode", "static or dhcp (the mode follows from the settings given)")


def extra(key: str, value: object) -> object:
    """A network key this version does not know: kept in network.json, never written to
    network.conf. A plain JSON value only (no object, no array), its text as safe as any
    other network value."""
    if not _EXTRA_KEY.match(key):
        raise Invalid(f"Invalid option name in network: {key[:64]!r}. Allowed: letters, digits, _ and -, "
                      "starting with a letter, at most 64 characters")
    if value is None or isinstance(value, (bool, int, float)):
        return value
    if not isinstance(value, str):
        raise problem(key, EXTRA_ALLOWED, "value")
    return shell_safe(value, key, EXTRA_ALLOWED) if value else value


# Storage and cluster settings (sections storage and cluster).

_PATH = re.compile(r"/[A-Za-z0-9._+@:=~,/-]*\Z")
_MOUNT_OPTION = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*(?:=[A-Za-z0-9_.:/@+-]+)?\Z")
_AOE_DEVICE = re.compile(r"e(0|[1-9][0-9]{0,4})\.(0|[1-9][0-9]{0,2})\Z")
_DNS_LABEL = r"[a-z0-9](?:[a-z0-9-]*[a-z0-9])?"
_IQN = re.compile(rf"iqn\.[0-9]{{4}}-(?:0[1-9]|1[0-2])\.{_DNS_LABEL}(?:\.{_DNS_LABEL})*(?::[a-z0-9.:_-]+)?\Z")
_EUI_NAA = re.compile(r"(?:eui\.[0-9A-Fa-f]{16}|naa\.(?:[0-9A-Fa-f]{16}|[0-9A-Fa-f]{32}))\Z")
_WORD = re.compile(r"[A-Za-z0-9._+@:/=~-]{1,255}\Z")
# Printable ASCII (space included) without a quote or a backslash.
_SECRET = re.compile(r"[ !#-&(-\[\]-~]{16,256}\Z")


def absolute_path(value: str, option: str) -> str:
    """An absolute path of plain characters (no space, no shell metacharacter) and no
    ``..`` component: an NFS export, say, which the appliance's script mounts as given."""
    allowed = "an absolute path like /nfs/storage, of letters, digits and . _ + @ : = ~ , - /, without .."
    if len(value) > 1024 or not _PATH.match(value) or ".." in value.split("/"):
        raise problem(option, allowed)
    return value


def mount_options(value: str, option: str = "mount_options") -> str:
    """Comma-separated mount option words (``noacl,sync``, ``vers=4.1``): nothing that
    could start another option of the mount command or leave the quotes."""
    allowed = "comma-separated mount options like noacl,sync or vers=4.1"
    if len(value) > 255 or not all(_MOUNT_OPTION.match(word) for word in value.split(",")):
        raise problem(option, allowed)
    return value


def aoe_device(value: str, option: str = "device") -> str:
    """An ATA-over-Ethernet device as e<shelf>.<slot>: shelf 0-65534, slot 0-254."""
    match = _AOE_DEVICE.match(value)
    if match is None or int(match.group(1)) > 65534 or int(match.group(2)) > 254:
        raise problem(option, "an AoE device like e0.1 (shelf 0-65534, slot 0-254)")
    return value


def iscsi_name(value: str, option: str = "target") -> str:
    """An iSCSI name (RFC 3720): iqn.YYYY-MM.reversed.domain[:name], eui.<16 hex> or naa."""
    if len(value) > 223 or not (_IQN.match(value) or _EUI_NAA.match(value)):
        raise problem(option, "an iSCSI name like iqn.2016-01.com.example:storage.lun1 or eui.02004567A425678D")
    return value


def word(value: str, option: str, longest: int = 255) -> str:
    """One word of letters, digits and . _ + @ : / = ~ - (a user name, an export name)."""
    if len(value) > longest or not _WORD.match(value):
        raise problem(option, f"1 to {longest} letters, digits and . _ + @ : / = ~ -")
    return value


def label(value: str, option: str) -> str:
    """One host-name label: 1 to 63 letters, digits and hyphens, no hyphen at either end."""
    if not _LABEL.match(value):
        raise problem(option, "1 to 63 letters, digits and hyphens, not starting or ending with a hyphen")
    return value


def secret(value: str, option: str = "secret") -> str:
    """A shared secret: 16 to 256 printable ASCII characters, without quotes or backslashes
    (so it can be written in any configuration file format unescaped)."""
    if not _SECRET.match(value):
        raise problem(option, "16 to 256 printable ASCII characters, without quotes or backslashes")
    return value
