"""Section 6: the status of the daemon and of the services the appliance names.

Each service is asked in a child process: the appliance's hook bin/service-status if it
has one (exit 0 means running), else `systemctl is-active`, else it is "not running".
"""

from __future__ import annotations

import shutil

from twisted.internet import defer

from .. import responses
from ..catalogue import JSON, Endpoint, Reply, Section, get
from ..children import run_child
from ..context import Context

SELF = "jidoteki-admin-api"
STATUS_HOOK = "service-status"
QUERY_TIMEOUT = 10.0


SERVICES_SCHEMA = {
    "type": "object",
    "properties": {
        "services": {
            "type": "array",
            "items": {"type": "object", "additionalProperties": {"enum": ["running", "not running"]}},
        }
    },
}


class Services:
    name = "services"
    optional = False

    def __init__(self, context: Context):
        self.tree = context.tree
        self.names = [name for name in context.config.services if name != SELF]
        self.reactor = context.reactor

    def reload(self, config) -> None:
        """On SIGHUP: report the services the config names now."""
        self.names = [name for name in config.services if name != SELF]

    def section(self) -> Section:
        status = get(self.status, "Whether the daemon and the appliance's services run", Reply(JSON, SERVICES_SCHEMA))
        return Section(self.name, "Services", (Endpoint("/services", (status,)),))

    @defer.inlineCallbacks
    def status(self, request):
        states = yield defer.gatherResults([self.state_of(name) for name in self.names])
        listing = [{SELF: "running"}] + [{name: state} for name, state in zip(self.names, states)]
        return responses.document(request, {"services": listing}, no_cache=True)

    @defer.inlineCallbacks
    def state_of(self, name: str):
        command = self._status_command(name)
        if command is None:
            return "not running"
        result = yield run_child(self.reactor, command, timeout=QUERY_TIMEOUT).done
        return "running" if result.exit_code == 0 else "not running"

    def _status_command(self, name: str) -> list[str] | None:
        hook = self.tree.hook(STATUS_HOOK)
        if hook is not None:
            return [str(hook), name]
        systemctl = shutil.which("systemctl")
        if systemctl is not None:
            return [systemctl, "is-active", "--quiet", name]
        return None
