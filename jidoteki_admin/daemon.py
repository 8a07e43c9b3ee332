"""Assembles the daemon: the admin tree, the catalogue and its sections, the jobs, the listeners.

The constructor only wires objects together; the disk is touched when the service starts
(laying out the tree, making the certificate and the first-run token), so a daemon can be
assembled, inspected and tested without side effects.
"""

from __future__ import annotations

import os

from dataclasses import replace

from OpenSSL import SSL
from twisted.application.service import MultiService, Service
from twisted.internet.endpoints import serverFromString
from twisted.internet.error import CannotListenError
from twisted.logger import Logger
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.python.failure import Failure

from . import __version__
from .config import APPLIANCE_JOBS, Config, ConfigError, Settings, listen_description, load_config, reload_config
from .context import Context
from .files import permission_problem, remove_stale_temporaries
from .hangup import HangupHandler, reopen_log_files
from .http.accesslog import file_output
from .http.audit import AuditLog
from .http.auth import TokenStore
from .http.catalogue import Catalogue
from .http.gate import AdminAPI
from .http.httpsonly import HTTPSOnly
from .http.pages import Pages
from .http.site import AdminSite
from .http.uploads import remove_partial_files
from .jobs.runner import ApplianceScripts, BuiltinPrograms, JobRunner, Launcher
from .layout import AdminTree
from .sections import REGISTERED
from .tls import ContextFactory, ensure_certificate
from .treelock import TreeLock, TreeLocked


def _daemon_owned(name: str) -> bool:
    """The files in etc/ that only the daemon and its jobs write: the token, the first-run
    marker, the health history and the jobs' status files (version.txt and changelog.txt
    are an update script's to write too)."""
    return name in ("api.token", "api.token.setup", "api-tokens.json", "health-history.json") or \
        name.startswith("status_")


def certificate_problem(error: Exception) -> str:
    """Why a certificate and key could not be loaded, in a few words."""
    if isinstance(error, PermissionError):
        return permission_problem(error)
    if isinstance(error, OSError):
        return f"{error.filename}: {error.strerror}" if error.filename else str(error.strerror or error)
    reasons = [entry[2] for entry in getattr(error, "args", [[]])[0] if isinstance(entry, tuple) and len(entry) > 2]
    return "; ".join(reasons) or "the certificate and key cannot be used together"


class StartupError(Exception):
    """The daemon cannot start; the message is one line for the operator."""


class Listener(Service):
    """Listens on one endpoint; a port that can't be had stops start-up with a clear error."""

    def __init__(self, name: str, description: str, endpoint, factory):
        self.name = name
        self.description = description
        self.endpoint = endpoint
        self.factory = factory
        self.port = None

    def privilegedStartService(self) -> None:
        super().privilegedStartService()
        outcome: list = []
        self.endpoint.listen(self.factory).addBoth(outcome.append)
        if not outcome:
            raise StartupError(f"cannot listen for {self.name} on {self.description}: no answer from the endpoint")
        if isinstance(outcome[0], Failure):
            problem = outcome[0].value
            if isinstance(problem, CannotListenError):
                where = f"{problem.interface or '*'}:{problem.port}"
                raise StartupError(f"cannot listen for {self.name} on {where}: {problem.socketError}")
            raise StartupError(f"cannot listen for {self.name} on {self.description}: {problem}")
        self.port = outcome[0]

    def startService(self) -> None:
        if self.port is None:
            self.privilegedStartService()
        super().startService()

    def stopService(self):
        super().stopService()
        port, self.port = self.port, None
        return port.stopListening() if port is not None else None


def launcher_for(tree: AdminTree, config: Config) -> Launcher:
    """The appliance's own scripts when the config asks for them, else the built-in programs."""
    if config.jobs == APPLIANCE_JOBS:
        return ApplianceScripts(tree, config.privileged_command, config.appliance_lock_dir)
    return BuiltinPrograms(tree, config.privileged_command)


class AdminService(MultiService):
    log = Logger()

    def __init__(self, settings: Settings, reactor, clock=None, log_file=lambda: None):
        """``log_file``, called when the service starts, gives the file the daemon's log
        goes to (twistd's), which the access log then writes to in batches; None keeps
        every access log line going through twisted.logger."""
        super().__init__()
        self.settings = settings
        self.log_file = log_file
        self.reactor = reactor
        clock = clock or reactor
        config = settings.config
        self.tree = tree = AdminTree(settings.admin_path)
        self.tokens = TokenStore(tree, config.first_run.enabled, config.admin_group, clock,
                                 signature_window=config.signature_window,
                                 query_credentials=config.query_credentials)
        self.lock = TreeLock(tree.lock_file)
        self.tls = ContextFactory(config.tls_certificate or tree.certificate,
                                  config.tls_private_key or tree.private_key)
        self.runner = JobRunner(tree, reactor, clock, timeout=config.job_timeout,
                                launcher=launcher_for(tree, config), log_rotate=config.log_rotate)
        self.runner.setServiceParent(self)
        self.catalogue = Catalogue(enabled=frozenset(config.endpoints))
        context = Context(tree, config, self.tokens, self.runner, self.catalogue, reactor, clock, self.tls)
        self.sections = []
        for make in REGISTERED:
            if make.optional and make.name not in self.catalogue.enabled:
                continue
            section = make(context)
            self.sections.append(section)
            self.catalogue.add(section.section())
            for service in getattr(section, "services", lambda: [])():
                service.setServiceParent(self)
        self.catalogue.add(Pages(self.catalogue).section())
        self.api = AdminAPI(self.catalogue, self.tokens, AuditLog(tree.audit_log, clock, config.log_rotate), clock,
                            config.upload_limits, config.auth_throttle, context.authenticated)
        context.traffic.throttled_clients = self.api.throttle.throttled_clients
        self.site = AdminSite(self.api.resource(), self.api.body_policy(tree.uploads), reactor, clock,
                              config.connections, context.traffic)
        self.listeners: dict[str, Listener] = {}
        if settings.https_listen is not None:
            tls = TLSMemoryBIOFactory(self.tls, False, self.site)
            self._listen("https", settings.https_listen, self.site.limited(HTTPSOnly(tls)))
        if settings.http_port is not None:
            self._listen("http", listen_description(settings.http_port, settings.interface),
                         self.site.limited(self.site))
        self.hangup = HangupHandler(reactor, self.reload)
        self._prepared = False

    def _listen(self, name: str, description: str, factory) -> None:
        try:
            endpoint = serverFromString(self.reactor, description)
        except Exception as e:  # parsers raise what they like: ValueError, KeyError, IndexError...
            problem = f"{type(e).__name__}: {e}" if str(e) else type(e).__name__
            raise StartupError(f"cannot listen for {name}: bad endpoint description {description!r} ({problem})") from None
        listener = Listener(name, description, endpoint, factory)
        listener.setServiceParent(self)
        self.listeners[name] = listener

    def startService(self) -> None:
        # Not in privilegedStartService: with twistd --uid/--gid the tree, the certificate
        # and the token are made after the switch, owned by the user the daemon runs as.
        # (The listeners bind before it, so a port below 1024 still works.)
        self._prepare()
        out = self.log_file()
        if out is not None:
            self.site.access_log.output = file_output(out)
            self.site.access_log.batching = True
        super().startService()
        if os.geteuid() == 0:
            self.log.warn("Running as root: run the daemon as an unprivileged user (the unit's User=, or "
                          "twistd --uid/--gid) and give jobs root through privileged-command")
        if unserved := self.unserved_optional():
            self.log.warn("The config enables optional endpoints this version does not serve yet"
                          " (they answer 404 Not Found): {names}", names=", ".join(unserved))
        if "https" in self.listeners:
            self._announce_first_call()
        self.log.info("Serving the admin tree {root} (jidoteki-admin {version})", root=str(self.tree.root),
                      version=__version__)
        self.reactor.callWhenRunning(self.hangup.install)

    def stopService(self):
        self.hangup.uninstall()
        # Before the listeners and connections go: a partial upload must not outlive the
        # daemon, and the process may exit before the upload writer gets to remove it.
        self.site.abort_uploads()
        remove_partial_files(self.tree.uploads)
        self.api.throttle.stop()
        stopped = super().stopService()
        # After the listeners' stop began: the lines of requests still finishing are
        # written as they come from now on.
        self.site.access_log.stop()
        # The tree is released only once the jobs have stopped, so a successor never meets them.
        stopped.addBoth(lambda result: (self.lock.release(), result)[1])
        return stopped

    def unserved_optional(self) -> list[str]:
        """Optional endpoints the config enables but no registered section serves: an
        operator who enabled them should hear why they answer 404."""
        served = self.catalogue.served_names()
        return [name for name in self.settings.config.endpoints if name not in served]

    def _prepare(self) -> None:
        """Lay out the tree, make what is missing, and load the certificate: once."""
        if self._prepared:
            return
        tree, config = self.tree, self.settings.config
        tree.lay_out()
        self._lock_tree()  # before a certificate, a token or a job of the tree is touched
        if ensure_certificate(self.tls.certificate, self.tls.private_key):
            self.log.info("Generated a self-signed certificate in {path}", path=str(self.tls.certificate))
        self._load_certificate()
        removed = remove_partial_files(tree.uploads)
        if removed:
            self.log.info("Removed {count} partial upload(s) left by a daemon that stopped mid-upload",
                          count=removed)
        # The token, the status files and what etc/jobs/ holds are written by the daemon and
        # its jobs alone: a temporary file of theirs left long enough is a leftover.
        stale = remove_stale_temporaries(tree.etc, _daemon_owned) + remove_stale_temporaries(tree.jobs, bool)
        if stale:
            self.log.info("Removed temporary files left by a daemon that stopped mid-write: {names}",
                          names=", ".join(stale))
        if config.first_run.enabled and self.tokens.start_first_run(config.first_run.word_length):
            self.log.info("First run: a generated API token is in {path}", path=str(tree.token_file))
        for key in config.unknown_keys:
            self.log.warn("Ignoring unknown config key {key!r}", key=key)
        self._prepared = True

    def _load_certificate(self) -> None:
        """Load the certificate to serve; one that cannot be, unless a job left half-done
        (a certificate install cut off by a power loss) is about to be undone, stops the
        start with a line saying which file and why. In that case the listener serves
        once the job's own program has put the previous files back (sections/certs.py)."""
        try:
            self.tls.load()
        except (OSError, SSL.Error) as e:
            pending = [name for name in self.runner.kinds if self.tree.journal(name).exists()]
            if not pending:
                raise StartupError(f"cannot load the TLS certificate {self.tls.certificate} with its key "
                                   f"{self.tls.private_key}: {certificate_problem(e)}") from None
            self.log.warn("The TLS certificate cannot be loaded ({problem}) while a {kinds} job left half-done "
                          "is undone; it is loaded once that is done", problem=certificate_problem(e),
                          kinds=", ".join(pending))

    def _lock_tree(self) -> None:
        try:
            self.lock.acquire()
        except TreeLocked as e:
            holder = f"pid {e.holder}" if e.holder is not None else "pid unknown"
            raise StartupError(f"{self.tree.root} is in use by another jidoteki-admin ({holder}; "
                               f"lock file {e.path})") from None

    def reload(self) -> None:
        """What SIGHUP does: reopen the log files, load the TLS certificate and the config's
        reloadable keys again, and say so in one log line. Whatever fails is named in that
        line and the old state kept; the daemon goes on serving."""
        done = []
        for step, what in ((self._reopen_logs, "the logs"), (self._reload_certificate, "the TLS certificate"),
                           (self._reload_config, "the config")):
            try:
                done.append(step())
            except Exception as e:
                self.log.failure("SIGHUP: reloading {what} failed", what=what)
                done.append(f"kept {what} as they were: {e}")
        failed = any(part.startswith("kept") for part in done)
        (self.log.warn if failed else self.log.info)("SIGHUP: {done}", done="; ".join(done))

    def _reopen_logs(self) -> str:
        self.site.access_log.flush()  # the lines waiting belong in the file being moved away
        reopened = reopen_log_files()
        self.runner.reopen_logs()
        if reopened:
            return f"reopened {', '.join(reopened)} and the job logs"
        return "reopened the job logs (the daemon's own log is not a file)"

    def _reload_certificate(self) -> str:
        try:
            self.tls.load()
        except (OSError, SSL.Error) as e:
            return f"kept the TLS certificate in use: {certificate_problem(e)}"
        shown = self.tls.certificate
        if shown.is_relative_to(self.tree.root):
            shown = shown.relative_to(self.tree.root)
        return f"loaded the TLS certificate {shown}"

    def _reload_config(self) -> str:
        path = self.settings.config_path
        if path is None:
            return "no config file to read again"
        try:
            new = load_config(path)
        except ConfigError as e:
            return f"kept the config in use: {e}"
        running, changed, later = reload_config(self.settings.config, new)
        self._apply(running)
        self.settings = replace(self.settings, config=running)
        said = f"config {path}: " + (f"applied {', '.join(changed)}" if changed else "no change to apply")
        if later:
            said += f"; {', '.join(later)} changed and will apply after a restart"
        if running.unknown_keys:
            said += f"; ignored unknown keys {', '.join(running.unknown_keys)}"
        return said

    def _apply(self, config) -> None:
        """Hand the reloadable values to the parts that use them; each reads its current
        value when it next needs it (new connections, uploads, jobs, failures)."""
        self.api.upload_limits = config.upload_limits
        self.api.throttle.settings = config.auth_throttle
        self.api.audit.rotate = config.log_rotate
        self.tokens.signature_window = config.signature_window
        self.tokens.query_credentials = config.query_credentials
        self.runner.timeout = config.job_timeout
        self.runner.log_rotate = config.log_rotate
        self.site.limits = config.connections
        for section in self.sections:
            if hasattr(section, "reload"):
                section.reload(config)

    def _announce_first_call(self) -> None:
        """Tell the operator how to make the first call (never printing a token)."""
        host = self.listeners["https"].port.getHost()
        address = "127.0.0.1" if getattr(host, "host", "") in ("0.0.0.0", "", "::") else host.host
        base = f"https://{address}:{getattr(host, 'port', '?')}/api/v1/admin"
        curl = f"curl --cacert {self.tls.certificate}"
        if self.tokens.current() is None:
            self.log.info("No API token yet. Set one: {curl} -X POST {base}/setup -F newtoken=YOURTOKEN",
                          curl=curl, base=base)
        elif self.tokens.first_run:
            self.log.info("First run: the API token is in {path}. Replace it: {curl} -X POST "
                          "'{base}/setup?token=THATTOKEN' -F newtoken=YOURTOKEN",
                          path=str(self.tree.token_file), curl=curl, base=base)
        else:
            # /health answers on any tree; /version needs etc/version.txt, which a fresh one lacks.
            self.log.info("Ready. Try: {curl} '{base}/health?token=YOURTOKEN'", curl=curl, base=base)

    def port_of(self, name: str) -> int:
        """The port a listener is bound to (useful when it was asked for port 0)."""
        return self.listeners[name].port.getHost().port
