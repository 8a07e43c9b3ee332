"""The cluster job: save the cluster settings and hand them to the appliance.

    python -m jidoteki_admin.jobs.cluster --admin-path DIR --settings FILE

FILE is the settings document the cluster section checked and staged (a masked secret
already replaced by the stored one); it is checked again here, since the job can be run
by hand. The job writes etc/cluster.json (mode 0600: it holds the shared secret)
atomically, then runs bin/cluster.sh with no arguments; the hook reads etc/cluster.json.
If the hook fails, the previous cluster.json is put back. The staged file is removed
whatever happens.
"""

from __future__ import annotations

import sys
from pathlib import Path

from ..files import secret_owner
from ..formats.cluster_settings import cluster_settings, stored_cluster
from .program import StagedDocumentProgram, document_bytes, main
from .protocol import JobKind

CLUSTER = JobKind(
    name="cluster",
    title="a cluster settings change",
    program="jidoteki_admin.jobs.cluster",
    log_name="update_cluster.log",
    label="CLUSTER",
    status_name="status_cluster",
    group="cluster",
    # The original appliances have no cluster script: the built-in program does the job.
    persists=True,
)


__all__ = ["CLUSTER", "document_bytes"]


class ClusterProgram(StagedDocumentProgram):
    kind = CLUSTER
    description = "Save the cluster settings and run bin/cluster.sh."

    def stored_path(self) -> Path:
        return self.tree.cluster_settings

    def recheck(self, posted: dict, stored: object) -> dict:
        return cluster_settings(posted, stored_cluster(stored))

    def run(self) -> None:
        self.step(10, "Updating cluster settings. Please wait..")
        document = self.checked()
        cluster = document["cluster"]
        self.step(30, f"Saving the cluster settings: cluster {cluster['name']}, node {cluster['node']} "
                      f"({cluster['role']}), {len(cluster['peers'])} peer(s)")
        moves = self.changes()
        owner, group = secret_owner(self.tree.etc)
        moves.stage_file(self.tree.cluster_settings, document_bytes(document), 0o600, group, owner)
        self.install(moves)
        self.step(60, f"Saved {self.tree.cluster_settings}")
        if self.run_hook("cluster.sh"):
            self.step(100, "Cluster settings saved and applied")
        else:
            self.step(100, "Cluster settings saved but not applied: the appliance has no bin/cluster.sh")


if __name__ == "__main__":
    sys.exit(main(ClusterProgram))
