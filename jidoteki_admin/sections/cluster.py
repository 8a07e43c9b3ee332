"""Section 13: Cluster (optional, designed by this version): the appliance's cluster settings.

API.md lists POST /cluster, GET /cluster and GET /cluster/log without describing them;
they follow the other settings sections. POST /cluster checks a settings document
completely (cluster_settings.py) before anything on disk changes, stages it with the
stored secret in place of a masked one, and hands it to the cluster job (jobs/cluster.py),
which writes etc/cluster.json and runs bin/cluster.sh. GET /cluster is the settings
(secret masked) with the last job's status and log tail, as GET /update; GET
/cluster/log is the whole log.
"""

from __future__ import annotations

import json
from typing import Any

from ..context import Context
from ..files import atomic_write
from ..formats.cluster_settings import cluster_settings, masked, stored_cluster
from ..formats.validate import read_document
from ..http import responses
from ..http.catalogue import ACCEPTED, FILE, JSON, PLAIN_TEXT, Endpoint, Field, Reply, Section, get, post
from ..http.responses import APIError
from ..jobs.cluster import CLUSTER, document_bytes

STORED_MAX = 256 * 1024
_PEER = {
    "type": "object",
    "properties": {"name": {"type": "string"}, "address": {"type": "string"}, "port": {"type": "integer"}},
    "required": ["name", "address"],
}
STATUS_SCHEMA = {
    "type": "object",
    "properties": {
        "cluster": {
            "type": ["object", "null"],
            "properties": {
                "name": {"type": "string"},
                "node": {"type": "string"},
                "role": {"type": "string"},
                "peers": {"type": "array", "items": _PEER},
                "secret": {"type": "string"},
            },
        },
        "status": {"enum": ["running", "success", "failed", None]},
        "log": {"type": ["string", "null"]},
    },
    "required": ["cluster", "status", "log"],
}


class Cluster:
    name = "cluster"
    optional = True

    def __init__(self, context: Context):
        self.tree = context.tree
        self.runner = context.runner
        self.files = context.runner.register(CLUSTER)
        self.staged = context.tree.jobs / "cluster-settings.json"

    def section(self) -> Section:
        settings = Field("settings", FILE, description='A JSON file: {"cluster": {"name": ..., "node": ..., '
                                                       '"role": ..., "peers": [...], "secret": ...}}')
        return Section(self.name, "Cluster", (
            Endpoint("/cluster", (
                get(self.status, "The cluster settings and the status of their last change",
                    Reply(JSON, STATUS_SCHEMA), errors=(500,)),
                post(self.change, "Change the cluster settings", Reply(ACCEPTED), settings, errors=(400,)),
            )),
            Endpoint("/cluster/log", (get(self.log, "The cluster settings log", Reply(PLAIN_TEXT),
                                          errors=(404,)),)),
        ), optional=True)

    def status(self, request) -> bytes:
        cluster = None
        if self.tree.cluster_settings.exists():
            stored = responses.json_file(self.tree.cluster_settings, STORED_MAX, "cluster.json not found",
                                         "cluster.json is not valid JSON")
            cluster = masked(stored) if isinstance(stored, dict) else None
            if cluster is None:
                raise APIError(500, 'cluster.json holds no "cluster" object')
        _, report = self.runner.report(CLUSTER)
        return responses.document(request, {"cluster": cluster, **report}, no_cache=True)

    def change(self, request) -> bytes:
        self.runner.check_free(CLUSTER)
        posted = read_document(request.form.file("settings").path, "settings")
        document = cluster_settings(posted, stored_cluster(self.stored()))
        # The original appliances have no cluster script: the built-in job does this, also
        # with "jobs": "appliance".
        atomic_write(self.staged, document_bytes(document), 0o600)
        self.runner.start(CLUSTER, ["--settings", str(self.staged)])
        return responses.accepted(request, "/cluster")

    def stored(self) -> Any:
        """The stored settings, for the secret a masked one keeps; None when unreadable."""
        try:
            return json.loads(self.tree.cluster_settings.read_bytes()[:STORED_MAX])
        except (OSError, ValueError):
            return None

    def log(self, request):
        return responses.stream_file(request, self.files.log, responses.TEXT, no_cache=True)
