"""The persistence step as a job of its own: the daemon runs it after a token change.

See persistence.py for what the step does on each kind of appliance.
"""

from __future__ import annotations

import sys

from ..persistence import PersistError, persist
from .program import JobFailed, Program, main, write_log
from .protocol import JobKind

PERSIST = JobKind(
    name="persist",
    title="saving the persistent files",
    program="jidoteki_admin.jobs.persist",
    log_name="persist.log",
    label="PERSIST",
    group="persist",  # never holds up an update or a backup
)


class PersistProgram(Program):
    kind = PERSIST
    description = "Save the appliance's persistent files."

    def run(self) -> None:
        try:
            persist(self.tree, self.log, write_log)
        except PersistError as e:
            raise JobFailed(None, str(e)) from None


if __name__ == "__main__":
    sys.exit(main(PersistProgram))
