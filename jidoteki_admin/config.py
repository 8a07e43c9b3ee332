"""The daemon's settings: command-line options layered over the JSON config file."""

from __future__ import annotations

import grp
import json
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TypeVar

from .layout import DEFAULT_ADMIN_PATH

_T = TypeVar("_T")

DEFAULT_CONFIG_FILE = "/usr/local/etc/jidoteki-admin-api.json"
DEFAULT_BUILD_FILE = "/usr/local/etc/build.json"
DEFAULT_STORAGE_OPTIONS_FILE = "/usr/local/etc/storage-options.json"
DEFAULT_SERVICES_FILE = "/usr/local/etc/allservices.txt"
DEFAULT_INIT_DIRECTORY = "/usr/local/etc/init.d"
DEFAULT_HTTPS_PORT = 8443

OPTIONAL_ENDPOINTS = ("settings", "certs", "license", "storage", "backup", "cluster")

KiB, MiB, GiB = 1024, 1024**2, 1024**3
DEFAULT_UPLOAD_LIMITS = {
    "update": 8 * GiB,
    "archive": 8 * GiB,
    "settings": 1 * MiB,
    "public": 1 * MiB,
    "private": 1 * MiB,
    "ca": 1 * MiB,
    "license": 1 * MiB,
    "text": 4 * KiB,
}
DEFAULT_JOB_TIMEOUT = 3600
BUILTIN_JOBS, APPLIANCE_JOBS = "builtin", "appliance"


class ConfigError(Exception):
    """The config file is unusable; the message says which file and where."""


@dataclass(frozen=True)
class FirstRun:
    enabled: bool = False
    word_length: int = 4


@dataclass(frozen=True)
class ConnectionLimits:
    """What one client may hold of the daemon, so that slow or many connections from some
    clients cannot keep the others from being served."""

    header_timeout: float = 10.0  # seconds for a request line and all its headers
    body_min_rate: int = 1024  # bytes per second a body must average...
    body_rate_window: float = 30.0  # ...over each window of this many seconds
    max: int = 512  # open connections in all
    max_per_client: int = 32  # open connections from one client address


@dataclass(frozen=True)
class LogRotate:
    """When the audit log and job logs are rotated, and how many old ones are kept."""

    bytes: int = 4 * MiB
    keep: int = 3


@dataclass(frozen=True)
class AuthThrottle:
    """How failed authentication from one client address is slowed down: ``burst``
    failures are free, one more is free every ``refill_seconds``; past that each failure
    is answered after a delay that doubles, up to ``max_delay`` seconds."""

    burst: int = 5
    refill_seconds: float = 2.0
    max_delay: float = 30.0


@dataclass(frozen=True)
class Config:
    endpoints: tuple[str, ...] = ()
    parameters: tuple[str, ...] = ()
    first_run: FirstRun = FirstRun()
    build_file: Path = Path(DEFAULT_BUILD_FILE)
    storage_options_file: Path = Path(DEFAULT_STORAGE_OPTIONS_FILE)
    services: tuple[str, ...] = ()
    services_file: Path = Path(DEFAULT_SERVICES_FILE)
    init_directory: Path = Path(DEFAULT_INIT_DIRECTORY)
    upload_limits: dict[str, int] = field(default_factory=lambda: dict(DEFAULT_UPLOAD_LIMITS))
    job_timeout: int = DEFAULT_JOB_TIMEOUT
    precheck_seconds: int = 60  # how long a package's precheck.sh may run
    jobs: str = BUILTIN_JOBS  # or APPLIANCE_JOBS: the appliance's bin/wrapper.sh does the work
    # The one privileged entry point, an argv prefix such as
    # ["sudo", "-n", "/opt/jidoteki-admin/venv/bin/jidoteki-admin-privileged",
    #  "--admin-path", "/opt/jidoteki/tinyadmin"]; empty: jobs run as the daemon's user.
    privileged_command: tuple[str, ...] = ()
    appliance_lock_dir: Path = Path("/tmp")  # where the appliance's scripts take their locks
    decrypt_dir: Path | None = None  # where packages are decrypted; None: the tree's tmp/
    reboot_command: tuple[str, ...] = ()  # e.g. ("/usr/bin/sudo", "-n", "/sbin/reboot"); none: no reboot
    backup_root: Path = Path("/data")  # what etc/backup.txt's globs are relative to
    restore_max_bytes: int = 16 * GiB  # the most a backup archive may expand to
    restore_max_members: int = 1_000_000  # the most members it may hold
    admin_group: int | None = None  # gid that owns etc/api.token (0660), or 0600 without
    # Files of the appliance outside the admin tree that configuration jobs write; None:
    # AdminTree.system_file decides (the original's /usr/local/etc/ on the appliance's own
    # tree, the tree's etc/ anywhere else, so a trial run never writes outside its tree).
    network_conf: Path | None = None
    storage_conf: Path | None = None
    # Seconds a network change waits for an authenticated request before it is undone; 0: off.
    settings_confirm_seconds: int = 0
    # The TLS files the daemon serves from and POST /certs installs; None: in the admin tree.
    tls_certificate: Path | None = None
    tls_private_key: Path | None = None
    tls_ca: Path | None = None
    tls_bundle: Path | None = None  # key + certificate + CA in one file, for other services
    connections: ConnectionLimits = ConnectionLimits()
    log_rotate: LogRotate = LogRotate()
    auth_throttle: AuthThrottle = AuthThrottle()
    # Seconds either side of now a signed request's ``created`` may be; also how long its
    # nonce is remembered, so a replay within it is refused.
    signature_window: float = 300.0
    # False: the query's ``token`` and ``hash`` are refused; only signed requests pass.
    query_credentials: bool = True
    unknown_keys: tuple[str, ...] = ()


@dataclass(frozen=True)
class Settings:
    """Everything the service needs to start. Ports: None is off, 0 picks a free port."""

    admin_path: Path
    config: Config
    https_port: int | None = DEFAULT_HTTPS_PORT
    http_port: int | None = None
    interface: str = ""
    # A Twisted endpoint description for the HTTPS listener (tcp:8443,
    # systemd:domain=INET:index=0, ...); it replaces https_port and interface.
    listen: str | None = None
    config_path: Path | None = None  # where the config was read from, to read it again on SIGHUP

    def __post_init__(self) -> None:
        # Jobs run in the tree's tmp/ and get the admin path on their command line: a
        # relative path would name a different tree there. Anchor it once, here.
        object.__setattr__(self, "admin_path", Path(self.admin_path).absolute())

    @property
    def https_listen(self) -> str | None:
        if self.listen is not None:
            return self.listen
        return listen_description(self.https_port, self.interface) if self.https_port is not None else None


def listen_description(port: int, interface: str) -> str:
    """The endpoint description for the simple --https/--http PORT form."""
    description = f"tcp:{port}"
    if interface:
        description += ":interface=" + interface.replace(":", r"\:")
    return description


def default_admin_path() -> Path:
    return Path(os.environ.get("JIDO_ADMIN_PATH") or DEFAULT_ADMIN_PATH)


def load_config(path: Path, required: bool = False) -> Config:
    """Read the config file; a missing file means defaults unless it was asked for by name."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        if required:
            raise ConfigError(f"{path}: no such file") from None
        return Config()
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: cannot read: {getattr(e, 'strerror', None) or e}") from None
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as e:
        raise ConfigError(f"{path}: line {e.lineno} column {e.colno}: {e.msg}") from None
    try:
        return parse_config(raw)
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}") from None


def parse_config(raw: object) -> Config:
    if not isinstance(raw, dict):
        raise ConfigError("the top level must be a JSON object")
    endpoints = _names(raw, "endpoints")
    unknown = sorted(set(endpoints) - set(OPTIONAL_ENDPOINTS))
    if unknown:
        raise ConfigError(
            f'"endpoints": unknown optional endpoint {unknown[0]!r}'
            f" (known: {', '.join(OPTIONAL_ENDPOINTS)})"
        )
    return Config(
        endpoints=endpoints,
        parameters=_names(raw, "parameters"),
        first_run=_first_run(raw.get("first-run", {})),
        build_file=_path(raw, "build-file", DEFAULT_BUILD_FILE),
        storage_options_file=_path(raw, "storage-options-file", DEFAULT_STORAGE_OPTIONS_FILE),
        services=_names(raw, "services"),
        services_file=_path(raw, "services-file", DEFAULT_SERVICES_FILE),
        init_directory=_path(raw, "init-directory", DEFAULT_INIT_DIRECTORY),
        upload_limits=_upload_limits(raw.get("upload-limits", {})),
        job_timeout=_positive_int(raw.get("job-timeout", DEFAULT_JOB_TIMEOUT), "job-timeout"),
        precheck_seconds=_positive_int(raw.get("precheck-seconds", 60), "precheck-seconds"),
        jobs=_choice(raw, "jobs", (BUILTIN_JOBS, APPLIANCE_JOBS)),
        privileged_command=_command(raw, "privileged-command"),
        appliance_lock_dir=_path(raw, "appliance-lock-dir", "/tmp"),
        decrypt_dir=_path(raw, "decrypt-dir", "") if "decrypt-dir" in raw else None,
        reboot_command=_command(raw, "reboot-command"),
        backup_root=_path(raw, "backup-root", "/data"),
        restore_max_bytes=_positive_int(raw.get("restore-max-bytes", 16 * GiB), "restore-max-bytes"),
        restore_max_members=_positive_int(raw.get("restore-max-members", 1_000_000), "restore-max-members"),
        admin_group=_group(raw.get("admin-group")),
        network_conf=_optional_path(raw, "network-conf"),
        storage_conf=_optional_path(raw, "storage-conf"),
        settings_confirm_seconds=_non_negative_int(raw.get("settings-confirm-seconds", 0), "settings-confirm-seconds"),
        tls_certificate=_optional_path(raw, "tls-certificate"),
        tls_private_key=_optional_path(raw, "tls-private-key"),
        tls_ca=_optional_path(raw, "tls-ca"),
        tls_bundle=_optional_path(raw, "tls-bundle"),
        connections=_object(raw, "connections", ConnectionLimits, {
            "header-timeout": float, "body-min-rate": int, "body-rate-window": float,
            "max": int, "max-per-client": int}),
        log_rotate=_object(raw, "log-rotate", LogRotate, {"bytes": int, "keep": int}),
        auth_throttle=_object(raw, "auth-throttle", AuthThrottle, {
            "burst": int, "refill-seconds": float, "max-delay": float}),
        signature_window=_positive_number(raw.get("signature-window", 300), "signature-window", float),
        query_credentials=_bool(raw, "query-credentials", True),
        unknown_keys=tuple(sorted(set(raw) - KNOWN_KEYS)),
    )


KNOWN_KEYS = {
    "endpoints",
    "parameters",
    "first-run",
    "build-file",
    "storage-options-file",
    "services",
    "services-file",
    "init-directory",
    "upload-limits",
    "job-timeout",
    "precheck-seconds",
    "jobs",
    "privileged-command",
    "appliance-lock-dir",
    "decrypt-dir",
    "reboot-command",
    "backup-root",
    "restore-max-bytes",
    "restore-max-members",
    "admin-group",
    "network-conf",
    "storage-conf",
    "settings-confirm-seconds",
    "tls-certificate",
    "tls-private-key",
    "tls-ca",
    "tls-bundle",
    "connections",
    "log-rotate",
    "auth-throttle",
    "signature-window",
    "query-credentials",
}
# What a SIGHUP applies without a restart (config key -> Config field). The other keys
# shape what the daemon serves (its sections, endpoints and files) and need a restart.
RELOADABLE = {
    "services": "services",
    "upload-limits": "upload_limits",
    "job-timeout": "job_timeout",
    "precheck-seconds": "precheck_seconds",
    "connections": "connections",
    "log-rotate": "log_rotate",
    "auth-throttle": "auth_throttle",
    "signature-window": "signature_window",
    "query-credentials": "query_credentials",
}
NEEDS_RESTART = {
    "endpoints": "endpoints",
    "parameters": "parameters",
    "first-run": "first_run",
    "build-file": "build_file",
    "storage-options-file": "storage_options_file",
}


def reload_config(old: Config, new: Config) -> tuple[Config, list[str], list[str]]:
    """What a SIGHUP makes of a config read again: the config to run with (the old one
    with the new reloadable values), the reloadable keys that changed, and the keys that
    changed but take effect only after a restart."""
    changed = [key for key, name in RELOADABLE.items() if getattr(old, name) != getattr(new, name)]
    later = [key for key, name in NEEDS_RESTART.items() if getattr(old, name) != getattr(new, name)]
    running = replace(old, **{name: getattr(new, name) for name in RELOADABLE.values()},
                      unknown_keys=new.unknown_keys)
    return running, changed, later


def _choice(raw: dict[str, Any], key: str, choices: tuple[str, ...]) -> str:
    value = raw.get(key, choices[0])
    if value not in choices:
        raise ConfigError(f'"{key}" must be one of: {", ".join(repr(c) for c in choices)}')
    return str(value)


def _command(raw: dict[str, Any], key: str) -> tuple[str, ...]:
    """An argv prefix: a list of non-empty strings whose first is an absolute path."""
    value = _strings(raw, key, ', like ["/usr/bin/sudo", "-n", "/path/to/program"]')
    if value and not value[0].startswith("/"):
        raise ConfigError(f'"{key}" must start with an absolute path, not {value[0]!r}')
    return value


def _names(raw: dict[str, Any], key: str) -> tuple[str, ...]:
    """A list of names, each once, in the order given."""
    return tuple(dict.fromkeys(_strings(raw, key)))


def _strings(raw: dict[str, Any], key: str, example: str = "") -> tuple[str, ...]:
    value = raw.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise ConfigError(f'"{key}" must be a list of non-empty strings{example}')
    return tuple(value)


def _path(raw: dict[str, Any], key: str, default: str) -> Path:
    value = raw.get(key, default)
    if not isinstance(value, str) or not value:
        raise ConfigError(f'"{key}" must be a file path')
    return Path(value)


def _optional_path(raw: dict[str, Any], key: str) -> Path | None:
    """An absolute file path, or None when the key is not given."""
    if key not in raw:
        return None
    path = _path(raw, key, "")
    if not path.is_absolute():
        raise ConfigError(f'"{key}" must be an absolute file path, not {str(path)!r}')
    return path


def _non_negative_int(value: object, key: str) -> int:
    if value == 0 and not isinstance(value, bool):
        return 0
    return _positive_int(value, key)


def _positive_int(value: object, key: str) -> int:
    return int(_positive_number(value, key, int))


def _group(value: object) -> int | None:
    """The admin group as a gid: given as a gid, or as a name looked up once, at start."""
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    if not isinstance(value, str) or not value:
        raise ConfigError('"admin-group" must be a group name or a gid')
    try:
        return grp.getgrnam(value).gr_gid
    except KeyError:
        if value.isdigit():
            return int(value)
        raise ConfigError(f'"admin-group": no group named {value!r}') from None
def _object(raw: dict[str, Any], key: str, kind: type[_T], fields: dict[str, type]) -> _T:
    """A config object of positive numbers, such as {"bytes": 4194304, "keep": 3}: the
    dataclass ``kind`` with its defaults for the fields not given."""
    value = raw.get(key, {})
    example = ", ".join(f'"{name}": {getattr(kind(), name.replace("-", "_"))}' for name in fields)
    if not isinstance(value, dict):
        raise ConfigError(f'"{key}" must be an object like {{{example}}}')
    unknown = sorted(set(value) - set(fields))
    if unknown:
        raise ConfigError(f'"{key}": unknown key {unknown[0]!r} (known: {", ".join(fields)})')
    given: dict[str, int | float] = {}
    for name, number in fields.items():
        if name in value:
            given[name.replace("-", "_")] = _positive_number(value[name], f"{key}.{name}", number)
    return kind(**given)


def _positive_number(value: object, key: str, number: type) -> int | float:
    allowed = (int, float) if number is float else (int,)
    if isinstance(value, bool) or not isinstance(value, allowed) or value <= 0:
        what = "number" if number is float else "integer"
        raise ConfigError(f'"{key}" must be a positive {what}')
    return float(value) if number is float else int(value)


def _bool(raw: dict[str, Any], key: str, default: bool) -> bool:
    value = raw.get(key, default)
    if not isinstance(value, bool):
        raise ConfigError(f'"{key}" must be true or false')
    return value


def _first_run(value: object) -> FirstRun:
    if not isinstance(value, dict):
        raise ConfigError('"first-run" must be an object like {"enabled": true, "word-length": 4}')
    enabled = value.get("enabled", False)
    if not isinstance(enabled, bool):
        raise ConfigError('"first-run"."enabled" must be true or false')
    words = value.get("word-length", 4)
    if isinstance(words, bool) or not isinstance(words, int) or not 1 <= words <= 20:
        raise ConfigError('"first-run"."word-length" must be an integer from 1 to 20')
    return FirstRun(enabled, words)


def _upload_limits(value: object) -> dict[str, int]:
    if not isinstance(value, dict):
        raise ConfigError('"upload-limits" must be an object of field name to bytes')
    limits = dict(DEFAULT_UPLOAD_LIMITS)
    for name, size in value.items():
        limits[name] = _positive_int(size, f"upload-limits.{name}")
    return limits
