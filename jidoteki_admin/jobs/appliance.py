"""An appliance's own script as a job: its bin/wrapper.sh called as the original daemon
called it, and its outcome recorded the way every job records its own.

    python -m jidoteki_admin.jobs.appliance --admin-path DIR --kind MODULE:NAME [--reports]
        --command WORD -- WRAPPER [ARGS...]

WRAPPER (bin/wrapper.sh, or the privileged entry point that runs it as root) runs with
SSH_ORIGINAL_COMMAND=WORD and ARGS, under umask 022, as the original's fork and exec did;
its output goes where this program's goes (the daemon's own, as with the original). The
appliance's scripts write their own logs, and some their status (update_vm.sh's
status_update.json, update_certs.sh's status_certs.txt: ``--reports``); this program
writes the kind's status for the others, "running" and then the outcome the wrapper's
exit status gives, and for a reporting script the failure it could not write itself
(killed, or refused before it began). It stays to the end whatever stops the script, so
the outcome is on disk even when the daemon that started it is gone.
"""

from __future__ import annotations

import argparse
import importlib
import os
import signal
import subprocess
import sys
from pathlib import Path

from ..layout import AdminTree
from .protocol import FAILED, RUNNING, SUCCESS, JobKind
from .status import JobStatus, StatusFiles

# POST /setup on an appliance whose update_token.sh installs the token (the daemon writes
# it itself otherwise, atomically, with no job).
TOKEN = JobKind(
    name="token",
    title="a token change",
    program="jidoteki_admin.jobs.appliance",
    log_name="update_token.log",
    label="LIVE IMAGE",
    group="token",
    appliance_command="token",
)

# The scripts leave their status files to the daemon's user's group: without a umask that
# lets others read, a daemon whose service runs with UMask=0027 (etc/) could not read what
# a script run through sudo (which keeps the caller's umask) wrote.
SCRIPT_UMASK = 0o022


def find_kind(spec: str) -> JobKind:
    """MODULE:NAME, the JobKind named NAME among those MODULE (a job program) declares."""
    module_name, _, name = spec.partition(":")
    if not module_name.startswith("jidoteki_admin.jobs."):
        raise SystemExit(f"--kind must name a module of jidoteki_admin.jobs, not {module_name!r}")
    module = importlib.import_module(module_name)
    for value in vars(module).values():
        if isinstance(value, JobKind) and value.name == name:
            return value
    raise SystemExit(f"{module_name} declares no job kind {name!r}")


def parse_arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m jidoteki_admin.jobs.appliance",
                                     description="Run the appliance's bin/wrapper.sh as a job.")
    parser.add_argument("--admin-path", required=True, type=Path)
    parser.add_argument("--kind", required=True, help="MODULE:NAME of the job kind")
    parser.add_argument("--command", required=True, help="SSH_ORIGINAL_COMMAND for the wrapper")
    parser.add_argument("--reports", action="store_true", help="the script writes the kind's status itself")
    parser.add_argument("wrapper", nargs=argparse.REMAINDER, help="the wrapper and its arguments, after --")
    args = parser.parse_args(argv)
    if args.wrapper[:1] == ["--"]:
        args.wrapper = args.wrapper[1:]
    if not args.wrapper:
        parser.error("the wrapper to run is missing, after --")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_arguments(argv)
    tree = AdminTree(args.admin_path.resolve())
    kind = find_kind(args.kind)
    status = StatusFiles(tree, kind)
    if not args.reports:
        status.write(JobStatus(RUNNING, 0))
    before = status.stamp()
    # The script is stopped through its process group (the runner's SIGTERM reaches it, or
    # sudo relays it); this program stays to write how it ended.
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    os.umask(SCRIPT_UMASK)
    env = {**os.environ, "SSH_ORIGINAL_COMMAND": args.command}
    try:
        ended = subprocess.run(args.wrapper, stdin=subprocess.DEVNULL, env=env, cwd=tree.tmp, check=False,
                               preexec_fn=lambda: signal.signal(signal.SIGTERM, signal.SIG_DFL))
        code = ended.returncode
    except OSError as e:
        print(f"Cannot run {args.wrapper[0]}: {e.strerror or e}", file=sys.stderr)
        code = 127
    written = status.read()
    if args.reports and written.status in (SUCCESS, FAILED) and status.stamp() != before:
        return 0 if code == 0 else 1  # the script's own word stands
    if code == 0:
        outcome = JobStatus(SUCCESS, 100)
    else:
        how = f"exit status {code}" if code > 0 else f"signal {-code}"
        outcome = JobStatus(FAILED, written.percentage if written.status == RUNNING else None,
                            f"The appliance's wrapper.sh {args.command} ended with {how}", kind.unexpected_code)
    try:
        status.write(outcome)
    except OSError as e:  # a script's own status files, which this user cannot replace
        print(f"Cannot write the outcome to {e.filename or status.json}: {e.strerror or e}", file=sys.stderr)
    return 0 if code == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
