"""Section 4: Support, the appliance's logs as logs.tar.gz (GET /logs) and the
encrypted debug bundle for the vendor (GET /debug).

Each is built by a job (jobs/logs.py, jobs/debug.py) while the request waits, then
streamed from disk and removed: it is unlinked as soon as it is open, so nothing is left
behind whether the client takes it all or leaves.
"""

from __future__ import annotations

from twisted.internet import defer

from ..context import Context
from ..files import remove_quietly
from ..http import responses
from ..http.catalogue import DOWNLOAD, Endpoint, Reply, Section, get
from ..http.responses import APIError
from ..jobs.debug import DEBUG
from ..jobs.logs import LOGS
from ..jobs.runner import SUCCESS

OCTET_STREAM = b"application/octet-stream"


class Support:
    name = "support"
    optional = False

    def __init__(self, context: Context):
        self.runner = context.runner
        self.uploads = context.tree.uploads
        context.runner.register(LOGS)
        context.runner.register(DEBUG)
        context.downloads["logs"] = self.logs  # POST /downloads makes one-time links to them
        context.downloads["debug"] = self.debug

    def section(self) -> Section:
        logs = get(self.logs, "Download the appliance's log files as logs.tar.gz",
                   Reply(DOWNLOAD, media_type="application/octet-stream"), errors=(400, 404), audited=True)
        debug = get(self.debug, "Download the encrypted debug bundle for the vendor",
                    Reply(DOWNLOAD, media_type="application/octet-stream"), errors=(400, 404), audited=True)
        return Section(self.name, "Support", (Endpoint("/logs", (logs,)), Endpoint("/debug", (debug,))))

    def logs(self, request):
        return self._bundle(request, LOGS, "logs.tar.gz", "Could not collect the logs")

    def debug(self, request):
        return self._bundle(request, DEBUG, "debug-bundle.tar", "Could not create the debug bundle")

    @defer.inlineCallbacks
    def _bundle(self, request, kind, filename: str, failed: str):
        bundle = self.uploads / filename
        gone = []
        request.notifyFinish().addErrback(lambda _: gone.append(True))
        scripted = self.runner.launcher.scripted(kind)
        if scripted:
            self.runner.check_free(kind)
            remove_quietly(bundle)  # only what the script makes now is answered
        status = yield self.runner.start(kind, ["--out", str(bundle)])
        if gone:
            remove_quietly(bundle)  # the client left while the bundle was built
            return b""
        if scripted and not bundle.is_file():
            # As the original: the appliance's script made the file in the uploads folder, or not.
            raise APIError(404, f"{failed}: the appliance's script made no {filename}")
        if status.status != SUCCESS and not scripted:
            remove_quietly(bundle)
            raise APIError(400, f"{failed}: {status.error_message}")
        try:
            transfer = responses.stream_file(request, bundle, OCTET_STREAM, filename=filename)
        finally:
            remove_quietly(bundle)  # open (or missing) by now: the data lives until it is sent
        result = yield transfer
        return result
