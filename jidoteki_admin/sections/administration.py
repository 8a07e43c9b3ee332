"""Section 5: Administration, rebooting the appliance (GET /reboot)."""

from __future__ import annotations

from ..context import Context
from ..http import responses
from ..http.catalogue import ACCEPTED, Endpoint, Reply, Section, get
from ..jobs.reboot import REBOOT


class Administration:
    name = "administration"
    optional = False

    def __init__(self, context: Context):
        self.runner = context.runner
        self.command = context.config.reboot_command
        context.runner.register(REBOOT)

    def section(self) -> Section:
        reboot = get(self.reboot, "Save the persistent files and reboot the appliance",
                     Reply(ACCEPTED), errors=(400,), audited=True)
        return Section(self.name, "Administration", (Endpoint("/reboot", (reboot,)),))

    def reboot(self, request) -> bytes:
        """202 at once; the job saves the persistent files, then runs the reboot command.
        Without a configured reboot command the job fails and says so: a quick-start
        daemon on a developer's machine must never reboot it."""
        self.runner.start(REBOOT, ["--", *self.command], script_args=[""])
        return responses.accepted(request, "/reboot")
