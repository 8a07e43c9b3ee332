"""jidoteki-admin-privileged: the one privileged entry point of the daemon's jobs.

The daemon runs as an unprivileged user. A job that needs root (installing an update,
saving persistent files, rebooting) is started through the config's
``privileged-command``, typically

    sudo -n /opt/jidoteki-admin/venv/bin/jidoteki-admin-privileged --admin-path /opt/jidoteki/tinyadmin

and a sudoers line that allows exactly that command with that admin path (etc/sudoers.d/).
Given the module of one of the project's job programs and its arguments, it runs that
program as root on that admin tree, and nothing else: no other module, no shell, no
other admin tree. The job writes its own log (its stdout and stderr, which sudo passes on)
and its own status files, so nothing else needs to reach it.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import re
import sys
from pathlib import Path

from . import __version__

PROG = "jidoteki-admin-privileged"
JOBS_PACKAGE = "jidoteki_admin.jobs"
# The modules of the jobs package that programs and the daemon import but that are no
# program: never run as root (tests/test_appliance.py holds every module to this).
NOT_PROGRAMS = {"program", "protocol", "status", "swap", "runner", "children"}
# The environment a job gets as root: nothing of the caller's.
CLEAN_ENV = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8",
             "HOME": "/root"}


class Refused(Exception):
    pass


def job_module(name: str) -> str:
    """The job program module ``name`` names, or Refused."""
    match = re.fullmatch(re.escape(JOBS_PACKAGE) + r"\.([a-z][a-z0-9_]*)", name)
    if match is None or match.group(1) in NOT_PROGRAMS:
        raise Refused(f"not a job program of {JOBS_PACKAGE}: {name!r}")
    if importlib.util.find_spec(name) is None:
        raise Refused(f"no such job program: {name!r}")
    return name


def command(admin_path: Path, module: str, args: list[str]) -> list[str]:
    if not admin_path.is_absolute():
        raise Refused(f"--admin-path must be absolute, not {str(admin_path)!r}")
    if any(a == "--admin-path" or a.startswith("--admin-path=") for a in args):
        raise Refused("the admin path is set by --admin-path before the program, not after it")
    return [sys.executable, "-m", job_module(module), "--admin-path", str(admin_path), *args]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog=PROG, description="Run one of the daemon's job programs as root (see etc/sudoers.d/).")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("--admin-path", required=True, type=Path, help="the appliance's admin tree (absolute)")
    parser.add_argument("program", help=f"the job program's module, {JOBS_PACKAGE}.NAME")
    parser.add_argument("args", nargs=argparse.REMAINDER, help="the job program's own arguments")
    options = parser.parse_args(argv)
    try:
        argv_ = command(options.admin_path, options.program, options.args)
    except Refused as e:
        print(f"{PROG}: refused: {e}", file=sys.stderr)
        return 2
    os.execve(sys.executable, argv_, CLEAN_ENV)  # keeps the pid, the process group and the log
    return 1  # not reached


if __name__ == "__main__":
    sys.exit(main())
