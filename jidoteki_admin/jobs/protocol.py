"""The contract between the job runner (in the daemon) and the job programs (children).

Both sides import this module (and jobs/status.py) and nothing else of each other: a
program runs without the daemon (by hand, from an appliance script), and the runner knows
no program by name.

A job program is started as ``python -m <JobKind.program> --admin-path DIR [args...]`` in
its own session, its stdout and stderr appended to the kind's log file. It writes its own
status files (jobs/status.py): "running" with a percentage at each step, then its outcome,
last, after its clean-up: "success", or "failed" with an error code and message. Its exit
status says the same (0 for success). So the outcome is on disk whether or not the daemon
that started the job is still there to see it end. SIGTERM asks it to stop, undo what it
started and say so; SIGKILL follows after a grace period. ``--recover`` asks a program
whose job keeps a journal to finish or undo what a job of its kind left half-done.
"""

from __future__ import annotations

from dataclasses import dataclass

PERCENTAGE = "percentage"
ERROR_CODE = "error-code"
ERROR_MESSAGE = "error-message"

RUNNING, SUCCESS, FAILED = "running", "success", "failed"


@dataclass(frozen=True)
class JobKind:
    """A kind of job: the program that does it, and the files the old appliance kept for it.

    Sections declare their kinds; the runner treats them all alike.
    """

    name: str
    title: str  # for messages: "an update", "a backup"
    program: str  # the module run with ``python -m``
    log_name: str  # in log/
    label: str  # "[SYSTEM]"-style tag in the log lines
    # etc/<status_name>.json and .txt plus the two error files, in the old appliance's
    # formats; None for a kind it kept none for, whose status is etc/status_<name>.json.
    status_name: str | None = None
    error_message_name: str | None = None
    error_code_name: str | None = None
    busy_code: str | None = None  # answered when a start is refused (E1004 for updates)
    unexpected_code: str | None = None  # the child died without saying why
    timeout_code: str | None = None
    interrupted_code: str | None = None  # the daemon stopped while it ran
    timeout: float | None = None  # seconds; None means the config's job-timeout
    group: str = "system"  # at most one job of a group runs at a time
    # What a daemon stop while it runs means: a reboot job is "interrupted" by the very
    # reboot it asked for, which is its success.
    interrupted_outcome: str = FAILED
    # The command the appliance's own bin/wrapper.sh knows this job by, for appliances
    # whose scripts do the work (the original passed it as SSH_ORIGINAL_COMMAND).
    appliance_command: str | None = None
    # The appliance script the wrapper runs for it, whose lock is <lock dir>/<script>.task;
    # update_<appliance_command>.sh unless the script is named otherwise (update_vm.sh).
    appliance_script: str | None = None
    # Whether that script takes its lock for this job (update_backup.sh STOP does not).
    appliance_locks: bool = True
    # Whether that script writes this kind's status files itself (update_vm.sh,
    # update_certs.sh); for the others the job that runs the wrapper writes them.
    appliance_reports: bool = False
    # Needs root: run through the privileged entry point when one is configured.
    privileged: bool = True
    # Saves the appliance's persistent files after a success (jobs/persist.py), so the
    # change survives a reboot of a live image.
    persists: bool = False

    @property
    def status_base(self) -> str:
        """The name its status files start with, in etc/."""
        return self.status_name or f"status_{self.name}"
