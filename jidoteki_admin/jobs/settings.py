"""The settings job: save the network and application settings, then apply them.

    python -m jidoteki_admin.jobs.settings --admin-path DIR --settings FILE \\
        --network-conf /usr/local/etc/network.conf [--confirm-seconds N]

FILE is the uploaded settings document, checked again here with the very checks the API
made (validate.py), since this program runs as root and can be run by hand. It writes, each
atomically, etc/network.json ("mode" first, then the network object as given), etc/app.json
and network.conf in the original's format, then runs the appliance's bin/network.sh with
``static`` or ``dhcp``. Without that hook the settings are saved, not applied.

With ``--confirm-seconds N`` (above 0), a change the administrator cannot reach the
appliance through again is undone: after the hook, the job waits up to N seconds for the
daemon to touch tmp/settings.confirmed (it does on every authenticated request while this
job runs); if nothing comes, the previous files are put back, the hook runs again with the
previous mode, and the job fails with "not confirmed, previous settings restored".
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from .. import validate
from ..files import atomic_write, remove_quietly
from .program import Interrupted, JobFailed, Program, main
from .protocol import JobKind

SETTINGS = JobKind(
    name="settings",
    title="a settings update",
    program="jidoteki_admin.jobs.settings",
    log_name="update_settings.log",
    label="SYSTEM",
    status_name="status_settings",
    group="settings",
    appliance_command="settings",
    privileged=True,
    persists=True,
)

NOT_CONFIRMED = "not confirmed, previous settings restored"
CONFIRM_POLL = 0.1
FILE_MODE = 0o640  # as the original's update_settings.sh left them (app.json may hold secrets)
# What a value written without quotes may hold: interface names, addresses and netmasks.
_BARE = re.compile(r"[A-Za-z0-9.:]+\Z")
_MODE_LINE = re.compile(r"^mode=(static|dhcp)$", re.MULTILINE)


def bare(value: str) -> str:
    """A value written without quotes; only names and addresses validate.py checked get
    here, and this refuses anything else, as quoted() does for quoted values."""
    if not _BARE.match(value):
        raise validate.Invalid(f"refusing to write {value!r} unquoted into a shell file")
    return value


def network_conf(network: validate.Network) -> bytes:
    """network.conf as the original wrote it, for the appliance's network.sh to source."""
    lines = [f"mode={network.mode}", f"interface={bare(network.interface)}"]
    if network.ip_address is not None and network.netmask is not None and network.gateway is not None:
        subnet = "subnet_ipv6" if network.ipv6 else "subnet"
        lines += [f"ip={bare(network.ip_address)}", f"{subnet}={bare(network.netmask)}",
                  f"router={bare(network.gateway)}", f"dns={validate.quoted(' '.join(network.dns))}"]
    lines += [f"hostname={validate.quoted(network.hostname)}",
              f"ntpserver={validate.quoted(network.ntpserver or '')}"]
    return ("\n".join(lines) + "\n").encode()


def network_json(settings: validate.SettingsDocument) -> bytes:
    return json.dumps({"mode": settings.network.mode, **settings.given}).encode() + b"\n"


def app_json(settings: validate.SettingsDocument) -> bytes:
    return json.dumps(settings.app).encode() + b"\n"


def previous_mode(conf: bytes | None) -> str | None:
    """The mode a network.conf says, None when there was none (or it says none)."""
    match = _MODE_LINE.search(conf.decode("utf-8", "replace")) if conf is not None else None
    return match.group(1) if match else None


@dataclass(frozen=True)
class Saved:
    """A file as it was before the job: its bytes, None when it did not exist."""

    path: Path
    content: bytes | None

    @classmethod
    def of(cls, path: Path) -> Saved:
        try:
            return cls(path, path.read_bytes())
        except FileNotFoundError:
            return cls(path, None)

    def restore(self, new_group: int | None = None) -> None:
        if self.content is None:
            remove_quietly(self.path)
        else:
            write(self.path, self.content, new_group)


def write(path: Path, content: bytes, new_group: int | None = None) -> None:
    """Replace a settings file atomically, keeping the mode and group it had; a new one
    gets FILE_MODE and ``new_group`` (the config's admin-group) or else the group of its
    directory, so the daemon can read what it shows."""
    try:
        st = path.stat()
        mode, group = st.st_mode & 0o7777, st.st_gid
    except FileNotFoundError:
        mode, group = FILE_MODE, path.parent.stat().st_gid if new_group is None else new_group
    if os.geteuid() != 0 and group != os.getegid() and group not in os.getgroups():
        group = -1  # not ours to give; the file keeps the writer's group
    atomic_write(path, content, mode, None if group == -1 else group)


class SettingsProgram(Program):
    kind = SETTINGS
    description = "Save network and application settings and apply them with bin/network.sh."

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--settings", type=Path, required=True,
                            help="the settings document (JSON); removed once read when it is the tree's "
                                 "tmp/settings.json, where the daemon hands it over")
        parser.add_argument("--network-conf", type=Path, required=True, help="network.conf to write")
        parser.add_argument("--group", type=int, default=None,
                            help="the gid new settings files get (the config's admin-group)")
        parser.add_argument("--confirm-seconds", type=int, default=0,
                            help="undo the change unless the daemon sees a request within this time")

    def run(self) -> None:
        self.step(10, "Updating settings. Please wait..")
        conf = self.args.network_conf
        if not conf.is_absolute() or conf.name != "network.conf":
            # Run as root, the job writes only a file of that name, whatever it is handed.
            raise JobFailed(None, f"Refusing to write {conf}: not an absolute path to a file named network.conf")
        settings = self.read_settings()
        network = settings.network
        files = {self.tree.network_json: network_json(settings), self.tree.app_json: app_json(settings),
                 self.args.network_conf: network_conf(network)}
        before = [Saved.of(path) for path in files]
        try:
            for path, content in files.items():
                write(path, content, self.args.group)
                self.log(f"Saved {path}")
        except OSError as e:
            # Never leave the new network.json beside the old network.conf (a full disk).
            for saved in before:
                saved.restore(self.args.group)
            raise JobFailed(None, f"Cannot save the settings: {e}") from None
        self.step(50, f"Applying the {network.mode} network settings")
        if self.args.confirm_seconds > 0:
            remove_quietly(self.tree.settings_confirmation)
        if not self.run_hook("network.sh", network.mode):
            self.step(100, "Settings saved but not applied: the appliance has no bin/network.sh")
            return
        if self.args.confirm_seconds > 0:
            self.confirm(before, previous_mode(before[2].content))
        self.step(100, "Updating settings successful")

    def read_settings(self) -> validate.SettingsDocument:
        try:
            document = validate.read_document(self.args.settings, "settings")
            return validate.settings_document(document)
        except validate.Invalid as e:
            raise JobFailed(None, str(e)) from None
        except OSError as e:
            raise JobFailed(None, f"Cannot read the settings file: {e.strerror}") from None
        finally:
            if self.args.settings == self.tree.settings_upload:
                remove_quietly(self.args.settings)  # handed over by the daemon; a file of one's own stays

    def confirm(self, before: list[Saved], mode: str | None) -> None:
        """Wait for the administrator to show up over the new settings; undo them if not.

        A request that came while the hook ran does not count: the old network may still
        have been up then.
        """
        marker = self.tree.settings_confirmation
        remove_quietly(marker)
        seconds = self.args.confirm_seconds
        self.log(f"Waiting {seconds} seconds for a request to confirm the new settings")
        try:
            confirmed = wait_for(marker, seconds)
        except Interrupted:
            self.restore(before, mode)
            raise
        remove_quietly(marker)
        if confirmed:
            self.log("The new settings are confirmed")
            return
        self.restore(before, mode)
        raise JobFailed(None, NOT_CONFIRMED)

    def restore(self, before: list[Saved], mode: str | None) -> None:
        self.log("No request confirmed the new settings: restoring the previous ones")
        for saved in before:
            saved.restore(self.args.group)
        if mode is None:
            self.log("There were no previous network settings to apply again")
            return
        try:
            self.run_hook("network.sh", mode)
        except JobFailed as e:
            raise JobFailed(None, f"{NOT_CONFIRMED}, but applying them failed: {e.message}") from None


def wait_for(marker: Path, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if marker.exists():
            return True
        time.sleep(CONFIRM_POLL)
    return marker.exists()


if __name__ == "__main__":
    sys.exit(main(SettingsProgram))
