"""Assembles the daemon: the admin tree, the API and its sections, and the listeners."""

from __future__ import annotations

from twisted.application.service import MultiService, Service
from twisted.internet.endpoints import SSL4ServerEndpoint, TCP4ServerEndpoint
from twisted.internet.error import CannotListenError
from twisted.logger import Logger
from twisted.python.failure import Failure

from .api import AdminAPI
from .audit import AuditLog
from .auth import TokenStore
from .config import Settings
from .sections.information import CpuSampler, Information, listed_endpoints
from .layout import AdminTree
from .runner import JobRunner
from .sections.services import Services
from .sections.setup import Setup
from .tls import ContextFactory, ensure_certificate
from .sections.updates import Updates
from .web import AdminSite


class StartupError(Exception):
    """The daemon cannot start; the message is one line for the operator."""


class Listener(Service):
    """Listens on one endpoint; a port that can't be had stops start-up with a clear error."""

    def __init__(self, name: str, endpoint, factory):
        self.name = name
        self.endpoint = endpoint
        self.factory = factory
        self.port = None

    def privilegedStartService(self) -> None:
        super().privilegedStartService()
        outcome = []
        self.endpoint.listen(self.factory).addBoth(outcome.append)
        if isinstance(outcome[0], Failure):
            problem = outcome[0].value
            if isinstance(problem, CannotListenError):
                where = f"{problem.interface or '*'}:{problem.port}"
                raise StartupError(f"cannot listen for {self.name} on {where}: {problem.socketError}")
            outcome[0].raiseException()
        self.port = outcome[0]

    def startService(self) -> None:
        if self.port is None:
            self.privilegedStartService()
        super().startService()

    def stopService(self):
        super().stopService()
        port, self.port = self.port, None
        return port.stopListening() if port is not None else None


class AdminService(MultiService):
    log = Logger()

    def __init__(self, settings: Settings, reactor, clock=None):
        super().__init__()
        clock = clock or reactor
        config = settings.config
        self.tree = tree = AdminTree(settings.admin_path)
        tree.lay_out()
        if ensure_certificate(tree.certificate, tree.private_key):
            self.log.info("Generated a self-signed certificate in {path}", path=str(tree.certificate))
        self.tokens = TokenStore(tree, config.first_run.enabled, config.admin_group)
        if config.first_run.enabled and self.tokens.start_first_run(config.first_run.word_length):
            self.log.info("First run: a generated API token is in {path}", path=str(tree.token_file))
        for key in config.unknown_keys:
            self.log.warn("Ignoring unknown config key {key!r}", key=key)
        self.tls = ContextFactory(tree.certificate, tree.private_key)
        self.sampler = CpuSampler(clock)
        self.sampler.setServiceParent(self)
        self.runner = JobRunner(tree, reactor, clock, timeout=config.job_timeout)
        self.runner.setServiceParent(self)
        self.api = api = AdminAPI(tree, config, self.tokens, AuditLog(tree.audit_log, clock), clock)
        api.add(Setup(self.tokens))
        api.add(Information(tree, config.build_file, self.sampler, lambda: listed_endpoints(api.endpoints)))
        api.add(Updates(tree, self.runner))
        api.add(Services(tree, config.services, reactor, config.services_file, config.init_directory))
        self.site = AdminSite(api, reactor)
        self.listeners: dict[str, Listener] = {}
        if settings.https_port is not None:
            endpoint = SSL4ServerEndpoint(reactor, settings.https_port, self.tls, interface=settings.interface)
            self._listen("https", endpoint)
        if settings.http_port is not None:
            endpoint = TCP4ServerEndpoint(reactor, settings.http_port, interface=settings.interface)
            self._listen("http", endpoint)

    def _listen(self, name: str, endpoint) -> None:
        listener = Listener(name, endpoint, self.site)
        listener.setServiceParent(self)
        self.listeners[name] = listener

    def startService(self) -> None:
        super().startService()
        if "https" in self.listeners:
            self._announce_first_call()

    def _announce_first_call(self) -> None:
        """Tell the operator how to make the first call (never printing a token)."""
        host = self.listeners["https"].port.getHost()
        address = "127.0.0.1" if host.host in ("0.0.0.0", "") else host.host
        base = f"https://{address}:{host.port}/api/v1/admin"
        curl = f"curl --cacert {self.tree.certificate}"
        if self.tokens.current() is None:
            self.log.info("No API token yet. Set one: {curl} -X POST {base}/setup -F newtoken=YOURTOKEN",
                          curl=curl, base=base)
        elif self.tokens.first_run:
            self.log.info("First run: the API token is in {path}. Replace it: {curl} -X POST "
                          "'{base}/setup?token=THATTOKEN' -F newtoken=YOURTOKEN",
                          path=str(self.tree.token_file), curl=curl, base=base)
        else:
            self.log.info("Ready. Try: {curl} '{base}/version?token=YOURTOKEN'", curl=curl, base=base)

    def port_of(self, name: str) -> int:
        """The port a listener is bound to (useful when it was asked for port 0)."""
        return self.listeners[name].port.getHost().port
