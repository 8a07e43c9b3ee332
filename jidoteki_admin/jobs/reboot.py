"""The reboot job: save the persistent files, then run the appliance's reboot command.

    python -m jidoteki_admin.jobs.reboot --admin-path DIR -- COMMAND [ARGS...]

The original appliance saved its persistent files before rebooting. The command comes
from the config's ``reboot-command`` (``["/usr/bin/sudo", "-n", "/sbin/reboot"]`` on
appliances); with none configured the job fails and says so, so a developer's machine is
never rebooted. A reboot that goes through ends the job with the daemon, which
the runner counts as its success (JobKind.interrupted_outcome).
"""

from __future__ import annotations

import argparse
import subprocess
import sys

from .program import JobFailed, Program, main
from .protocol import SUCCESS, JobKind

COMMAND_TIMEOUT = 120

REBOOT = JobKind(
    name="reboot",
    title="a reboot",
    program="jidoteki_admin.jobs.reboot",
    log_name="reboot.log",
    label="REBOOT",
    unexpected_code=None,
    interrupted_outcome=SUCCESS,
    appliance_command="reboot",
)


class RebootProgram(Program):
    kind = REBOOT
    description = "Save the persistent files, then reboot the appliance."

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("command", nargs=argparse.REMAINDER, help="the reboot command, after --")

    def run(self) -> None:
        command = self.args.command[1:] if self.args.command[:1] == ["--"] else self.args.command
        if not command:
            raise JobFailed(None, "No reboot command configured (config key reboot-command)")
        self.step(10, "Saving the persistent files before the reboot")
        self.persist()
        self.step(50, f"Rebooting: {' '.join(command)}")
        try:
            done = subprocess.run(command, stdin=subprocess.DEVNULL, capture_output=True,
                                  timeout=COMMAND_TIMEOUT, check=False)
        except (OSError, subprocess.TimeoutExpired) as e:
            raise JobFailed(None, f"The reboot command failed: {e}") from None
        output = (done.stdout + done.stderr).decode("utf-8", "replace").strip()
        if output:
            self.log(output)
        if done.returncode != 0:
            raise JobFailed(None, f"The reboot command ended with exit status {done.returncode}")
        self.step(100, "The reboot command ran; the appliance is going down")


if __name__ == "__main__":
    sys.exit(main(RebootProgram))
