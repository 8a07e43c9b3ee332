"""The contract between the job runner (in the daemon) and the job programs (children).

Both sides import this module and nothing else of each other: a program runs without the
daemon (by hand, from an appliance script), and the runner knows no program by name.

A job program is started as ``python -m <JobKind.program> --admin-path DIR [args...]`` in
its own session. It writes log lines to stdout/stderr (the runner appends them to the
kind's log) and reports on file descriptor PROGRESS_FD, one JSON object a line:
``{"percentage": N}`` at each step, and ``{"error-code": C, "error-message": M}`` just
before a failed exit. Exit status 0 is success, anything else failure. SIGTERM asks it to
stop and clean up; SIGKILL follows after a grace period.
"""

from __future__ import annotations

from dataclasses import dataclass

PROGRESS_FD = 3
PERCENTAGE = "percentage"
ERROR_CODE = "error-code"
ERROR_MESSAGE = "error-message"
MESSAGE_MAX = 1000  # keeps each progress line under PIPE_BUF, so it is written whole

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
    # etc/<status_name>.json and .txt plus the two error files; None for a job (a logs
    # download, say) the old appliance kept no status for.
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
    # Needs root: run through the privileged entry point when one is configured.
    privileged: bool = True
    # Saves the appliance's persistent files after a success (jobs/persist.py), so the
    # change survives a reboot of a live image.
    persists: bool = False

    @property
    def has_status_files(self) -> bool:
        return self.status_name is not None
