"""Section 4: Support, the appliance's logs as logs.tar.gz (GET /logs).

The bundle is built by a job (jobs/logs.py) while the request waits, then streamed from
disk and removed: it is unlinked as soon as it is open, so nothing is left behind
whether the client takes it all or leaves.
"""

from __future__ import annotations

from twisted.internet import defer

from .. import responses
from ..catalogue import DOWNLOAD, Endpoint, Reply, Section, get
from ..context import Context
from ..files import remove_quietly
from ..jobs.logs import LOGS
from ..responses import APIError
from ..runner import SUCCESS

OCTET_STREAM = b"application/octet-stream"


class Support:
    name = "support"
    optional = False

    def __init__(self, context: Context):
        self.runner = context.runner
        self.bundle = context.tree.uploads / "logs.tar.gz"
        context.runner.register(LOGS)

    def section(self) -> Section:
        logs = get(self.logs, "Download the appliance's log files as logs.tar.gz",
                   Reply(DOWNLOAD, media_type="application/octet-stream"), errors=(400, 404), audited=True)
        return Section(self.name, "Support", (Endpoint("/logs", (logs,)),))

    @defer.inlineCallbacks
    def logs(self, request):
        gone = []
        request.notifyFinish().addErrback(lambda _: gone.append(True))
        status = yield self.runner.start(LOGS, ["--out", str(self.bundle)])
        if gone:
            remove_quietly(self.bundle)  # the client left while the bundle was built
            return b""
        if status.status != SUCCESS:
            remove_quietly(self.bundle)
            raise APIError(400, f"Could not collect the logs: {status.error_message}")
        try:
            transfer = responses.stream_file(request, self.bundle, OCTET_STREAM, filename="logs.tar.gz")
        finally:
            remove_quietly(self.bundle)  # open (or missing) by now: the data lives until it is sent
        result = yield transfer
        return result
