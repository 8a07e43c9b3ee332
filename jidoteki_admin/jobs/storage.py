"""The storage job: save the persistent storage settings and hand them to the appliance.

    python -m jidoteki_admin.jobs.storage --admin-path DIR --settings FILE --conf FILE

FILE is the settings document the storage section checked and staged (a masked password
already replaced by the stored one); it is checked again here, since the job can be run
by hand. The job writes etc/storage.json (the whole document, mode 0600 when it holds a
password) and the storage.conf the appliance's bin/storage.sh sources (one ``key="value"``
line per key, the type first), both swapped in together (swap.py), then runs
bin/storage.sh with no arguments, as the original did; if it fails, both files are put
back as they were. The appliance applies the settings at the next boot. The staged file
is removed whatever happens.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..files import secret_owner
from ..formats.storage_settings import TYPES, conf_text, holds_secret, stored_storage, storage_settings
from .program import StagedDocumentProgram, document_bytes, main
from .protocol import JobKind

STORAGE = JobKind(
    name="storage",
    title="a storage settings change",
    program="jidoteki_admin.jobs.storage",
    log_name="update_storage.log",
    label="STORAGE",
    status_name="status_storage",
    group="storage",
    appliance_command="storage",
    persists=True,
)


__all__ = ["STORAGE", "document_bytes"]


class StorageProgram(StagedDocumentProgram):
    kind = STORAGE
    description = "Save the persistent storage settings and run bin/storage.sh."

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        super().add_arguments(parser)
        parser.add_argument("--conf", type=Path, required=True, help="the storage.conf bin/storage.sh sources")

    def stored_path(self) -> Path:
        return self.tree.storage_settings

    def recheck(self, posted: dict, stored: object) -> dict:
        return storage_settings(posted, TYPES, stored_storage(stored))

    def run(self) -> None:
        self.step(10, "Updating storage settings. Please wait..")
        document = self.checked()
        self.step(30, f"Saving the storage settings (type {document['storage']['type']})")
        secret = holds_secret(document)
        moves = self.changes()
        if secret:
            owner, group = secret_owner(self.tree.etc)
            moves.stage_file(self.tree.storage_settings, document_bytes(document), 0o600, group, owner)
        else:
            moves.stage_file(self.tree.storage_settings, document_bytes(document), 0o644)
        # Sourced by a script that runs as root: it stays the writer's (root's) own file.
        moves.stage_file(self.args.conf, conf_text(document), 0o600 if secret else 0o644)
        self.install(moves)
        self.step(60, f"Saved {self.tree.storage_settings} and {self.args.conf}")
        if self.run_hook("storage.sh"):
            self.step(100, "Storage settings saved: they are applied after a reboot")
        else:
            self.step(100, "Storage settings saved but not applied: the appliance has no bin/storage.sh")


if __name__ == "__main__":
    sys.exit(main(StorageProgram))
