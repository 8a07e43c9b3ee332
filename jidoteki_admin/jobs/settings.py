"""The settings job: save the network and application settings, then apply them.

    python -m jidoteki_admin.jobs.settings --admin-path DIR --settings FILE \\
        --network-conf /usr/local/etc/network.conf [--confirm-seconds N]

FILE is the uploaded settings document, checked again here with the very checks the API
made (validate.py), since this program runs as root and can be run by hand. It writes
etc/network.json ("mode" first, then the network object as given), etc/app.json and
network.conf in the original's format, all three swapped in together (swap.py), then runs
the appliance's bin/network.sh with ``static`` or ``dhcp``. Without that hook the settings
are saved, not applied.

If the hook fails, or the job is stopped before it ends, the previous files are put back
and the hook runs again with the previous mode, so the appliance is left on the settings
it had, and GET /settings shows them. A job killed outright is undone the same way by the
next start (``--recover``).

With ``--confirm-seconds N`` (above 0), a change the administrator cannot reach the
appliance through again is undone: after the hook, the job waits up to N seconds for the
daemon to touch etc/jobs/settings.confirmed (it does on every authenticated request while
this job runs); if nothing comes, the previous settings are put back as above, and the job
fails with "not confirmed, previous settings restored".
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from pathlib import Path

from ..files import remove_quietly
from ..formats import validate
from . import swap
from .program import JobFailed, Program, main
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


def file_mode(path: Path, new_group: int | None = None) -> tuple[int, int | None]:
    """(mode, group) of a settings file: the ones it has, kept when it is replaced; a new
    one gets FILE_MODE and ``new_group`` (the config's admin-group) or else the group of its
    directory, so the daemon can read what it shows."""
    try:
        st = path.stat()
        mode, group = st.st_mode & 0o7777, st.st_gid
    except FileNotFoundError:
        mode, group = FILE_MODE, path.parent.stat().st_gid if new_group is None else new_group
    if os.geteuid() != 0 and group != os.getegid() and group not in os.getgroups():
        return mode, None  # not ours to give; the file keeps the writer's group
    return mode, group


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

    def __init__(self, tree, args, status):
        super().__init__(tree, args, status)
        self.previous_mode: str | None = None
        self.applying = False  # bin/network.sh has been run with the new settings

    def run(self) -> None:
        self.step(10, "Updating settings. Please wait..")
        conf = self.args.network_conf
        if not conf.is_absolute() or conf.name != "network.conf":
            # Run as root, the job writes only a file of that name, whatever it is handed.
            raise JobFailed(None, f"Refusing to write {conf}: not an absolute path to a file named network.conf")
        settings = self.read_settings()
        network = settings.network
        files = {self.tree.network_json: network_json(settings), self.tree.app_json: app_json(settings),
                 conf: network_conf(network)}
        self.previous_mode = previous_mode(_read_or_none(conf))
        moves = self.changes()
        try:
            for path, content in files.items():
                moves.stage_file(path, content, *file_mode(path, self.args.group))
        except OSError as e:
            raise JobFailed(None, f"Cannot save the settings: {e}") from None
        self.install(moves)
        for path in files:
            self.log(f"Saved {path}")
        self.step(50, f"Applying the {network.mode} network settings")
        if self.args.confirm_seconds > 0:
            remove_quietly(self.tree.settings_confirmation)
        self.applying = True
        if not self.run_hook("network.sh", network.mode):
            self.applying = False
            self.step(100, "Settings saved but not applied: the appliance has no bin/network.sh")
            return
        if self.args.confirm_seconds > 0:
            self.confirm()
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

    def confirm(self) -> None:
        """Wait for the administrator to show up over the new settings; undo them if not.

        A request that came while the hook ran does not count: the old network may still
        have been up then.
        """
        marker = self.tree.settings_confirmation
        remove_quietly(marker)
        seconds = self.args.confirm_seconds
        self.log(f"Waiting {seconds} seconds for a request to confirm the new settings")
        confirmed = wait_for(marker, seconds)
        remove_quietly(marker)
        if not confirmed:
            self.log("No request confirmed the new settings: restoring the previous ones")
            raise JobFailed(None, NOT_CONFIRMED)
        self.log("The new settings are confirmed")

    def rolled_back(self, code: str | None, message: str) -> tuple[str | None, str]:
        """The previous files are back: apply them again, since the hook may have applied
        the new ones, in part or whole."""
        if not self.applying:
            return code, message
        try:
            self.apply_previous(self.previous_mode)
        except JobFailed as e:
            if message == NOT_CONFIRMED:
                return code, f"{NOT_CONFIRMED}, but applying them failed: {e.message}"
            return code, f"{message}; the previous settings are back, but applying them failed: {e.message}"
        return code, message if message == NOT_CONFIRMED else f"{message}; previous settings restored"

    def apply_previous(self, mode: str | None) -> None:
        if mode is None:
            self.log("There were no previous network settings to apply again")
            return
        self.run_hook("network.sh", mode)

    def recover(self) -> str | None:
        """A settings job killed after it began to swap the files in: the previous files
        come back, and are applied again."""
        conf = read_conf_path(self.tree)  # before the recovery removes the journal
        done = super().recover()
        if done == swap.ROLLED_BACK:
            self.apply_previous(previous_mode(_read_or_none(conf)) if conf is not None else None)
        return done


def _read_or_none(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None


def read_conf_path(tree) -> Path | None:
    """The network.conf a settings job swapped in, from its journal (so the recovery, run
    with --recover alone, applies the file it restored)."""
    try:
        entries = json.loads(tree.journal(SETTINGS.name).read_bytes())["entries"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    for entry in entries:
        if isinstance(entry, dict) and str(entry.get("target", "")).endswith("/network.conf"):
            return Path(entry["target"])
    return None


def wait_for(marker: Path, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if marker.exists():
            return True
        time.sleep(CONFIRM_POLL)
    return marker.exists()


if __name__ == "__main__":
    sys.exit(main(SettingsProgram))
