"""`twistd jidoteki-admin`: command-line options and makeService."""

from __future__ import annotations

# Loaded lazily by werkzeug on the first request; with twistd --uid that is after the
# switch to a user who may not be able to read the standard library's files any more.
import encodings.idna  # noqa: F401

import gc
import os
from contextlib import contextmanager
from pathlib import Path

from twisted.application.service import MultiService
from twisted.python import usage

from . import __version__
from .config import (
    DEFAULT_CONFIG_FILE,
    DEFAULT_HTTPS_PORT,
    ConfigError,
    Settings,
    default_admin_path,
    load_config,
)
from .daemon import AdminService, StartupError
from .http.accesslog import twistd_log_file

PROGRAM = "jidoteki-admin"


class Options(usage.Options):
    synopsis = "[--admin-path DIR] [--config FILE] [--https PORT] [--http PORT] [--interface ADDR] [--listen DESCRIPTION]"
    optParameters = [
        ["admin-path", None, None, "The admin tree [default: $JIDO_ADMIN_PATH, else /opt/jidoteki/tinyadmin]"],
        ["config", None, None, f"The JSON config file [default: {DEFAULT_CONFIG_FILE}, "
                               "which may be missing: then every setting has its default]"],
        ["https", None, str(DEFAULT_HTTPS_PORT), "HTTPS port; 0 turns HTTPS off"],
        ["http", None, None, "Plain HTTP port [default: off, or $JIDO_API_PORT]"],
        ["interface", None, None, "Address to listen on [default: all]"],
        ["listen", None, None, "HTTPS listener as a Twisted endpoint description, replacing --https and "
         "--interface (tcp:8443:interface=127.0.0.1, systemd:domain=INET:index=0 for socket activation)"],
    ]

    # An operator asking for the version means the daemon's, not Twisted's (the default).
    def opt_version(self) -> None:
        """Display the jidoteki-admin version and exit."""
        print(f"{PROGRAM} {__version__}")
        raise SystemExit(0)

    def parseOptions(self, options=None):
        # twistd would print the whole usage text for a bad option; one line is clearer.
        try:
            super().parseOptions(options)
        except usage.UsageError as e:
            raise SystemExit(f"{PROGRAM}: {e} (see: twistd {PROGRAM} --help)") from None

    def postOptions(self) -> None:
        self["interface"] = self["interface"] or ""
        self["https"] = _port(self["https"], "--https")
        http = self["http"] if self["http"] is not None else os.environ.get("JIDO_API_PORT")
        self["http"] = _port(http, "--http") if http not in (None, "") else None
        if self["https"] is None and self["http"] is None and self["listen"] is None:
            raise usage.UsageError("nothing to listen on: --https 0 turns HTTPS off and no --http port is set")


def _port(value: str, option: str) -> int | None:
    """A port number; 0 means the listener is off."""
    try:
        port = int(value)
    except ValueError:
        raise usage.UsageError(f"{option} must be a port number, not {value!r}") from None
    if not 0 <= port <= 65535:
        raise usage.UsageError(f"{option} must be between 0 and 65535")
    return port or None


def settings_from(options: Options) -> Settings:
    # Only the default config may be missing: a file named on the command line that is
    # not there is a typo, and running on defaults instead would hide it.
    named = options["config"] is not None
    config_path = Path(options["config"] if named else DEFAULT_CONFIG_FILE)
    try:
        config = load_config(config_path, required=named)
    except ConfigError as e:
        raise SystemExit(f"{PROGRAM}: config error: {e}") from None
    admin_path = Path(options["admin-path"]) if options["admin-path"] else default_admin_path()
    return Settings(
        admin_path=admin_path,
        config=config,
        https_port=options["https"],
        http_port=options["http"],
        interface=options["interface"],
        listen=options["listen"],
        config_path=config_path,
    )


class Daemon(MultiService):
    """The service twistd runs; a tree or listener that can't start ends it with one clear line."""

    admin_path: Path | None = None
    reactor = None

    def privilegedStartService(self) -> None:
        with self._one_line():
            super().privilegedStartService()

    def startService(self) -> None:
        with self._one_line():
            super().startService()
        if self.reactor is not None:
            self.reactor.callWhenRunning(freeze_startup_objects)

    @contextmanager
    def _one_line(self):
        try:
            yield
        except StartupError as e:
            raise SystemExit(f"{PROGRAM}: {e}") from None
        except OSError as e:
            raise SystemExit(f"{PROGRAM}: cannot prepare {self.admin_path}: {e.strerror or e}") from None


def freeze_startup_objects() -> None:
    """Move everything made at start-up (modules, the catalogue, the routing map, the TLS
    context: what lives as long as the daemon) out of the garbage collector's reach.

    A request allocates enough to set off collections, and each full collection walked
    all of it again: that was most of the slowest 1 % of answers (p99 of 10 ms and more
    under load, 3 to 5 ms once frozen). Only what exists now is frozen; what requests
    make is collected as before."""
    gc.freeze()


def makeService(options: Options) -> MultiService:
    from twisted.internet import reactor

    settings = settings_from(options)
    try:
        admin = AdminService(settings, reactor, log_file=twistd_log_file)
    except StartupError as e:
        raise SystemExit(f"{PROGRAM}: {e}") from None
    daemon = Daemon()
    daemon.admin_path = settings.admin_path
    daemon.reactor = reactor
    admin.setServiceParent(daemon)
    return daemon
