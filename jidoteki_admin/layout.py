"""The admin tree: where everything the daemon reads and writes lives on disk.

It keeps the layout of existing appliances so the daemon can replace the old one in place.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

DEFAULT_ADMIN_PATH = "/opt/jidoteki/tinyadmin"
SUBDIRECTORIES = ("etc", "log", "home/sftp/uploads", "tmp", "bin")


@dataclass(frozen=True)
class AdminTree:
    root: Path

    @property
    def etc(self) -> Path:
        return self.root / "etc"

    @property
    def log(self) -> Path:
        return self.root / "log"

    @property
    def uploads(self) -> Path:
        return self.root / "home" / "sftp" / "uploads"

    @property
    def tmp(self) -> Path:
        return self.root / "tmp"

    @property
    def bin(self) -> Path:
        return self.root / "bin"

    @property
    def token_file(self) -> Path:
        return self.etc / "api.token"

    @property
    def named_tokens(self) -> Path:
        """The named tokens with their scopes (POST /tokens), each kept as a hash."""
        return self.etc / "api-tokens.json"

    @property
    def first_run_marker(self) -> Path:
        return self.etc / "api.token.setup"

    @property
    def certificate(self) -> Path:
        return self.etc / "ssl" / "cert.pem"

    @property
    def private_key(self) -> Path:
        return self.etc / "ssl" / "key.pem"

    @property
    def ca_certificate(self) -> Path:
        """The CA certificate(s) installed by POST /certs, when the config names no tls-ca."""
        return self.etc / "ssl" / "ca.pem"

    @property
    def audit_log(self) -> Path:
        return self.log / "jidoteki-audit.log"

    @property
    def lock_file(self) -> Path:
        return self.etc / "jidoteki-admin.lock"

    @property
    def health_history(self) -> Path:
        """The health samples behind GET /health/history, kept across restarts."""
        return self.etc / "health-history.json"

    @property
    def version_file(self) -> Path:
        """The installed version (GET /version); installed by updates."""
        return self.etc / "version.txt"

    @property
    def changelog_file(self) -> Path:
        return self.etc / "changelog.txt"

    @property
    def update_key(self) -> Path:
        """The passphrase update packages are encrypted with (openssl -pass file:)."""
        return self.etc / "updates.key"

    @property
    def update_public_key(self) -> Path:
        """The vendor's public key that update packages are signed for."""
        return self.etc / "updates.pub"

    @property
    def network_json(self) -> Path:
        """The network settings as last saved (GET /settings), "mode" first."""
        return self.etc / "network.json"

    @property
    def app_json(self) -> Path:
        """The application's own settings, saved with the network settings."""
        return self.etc / "app.json"

    @property
    def jobs(self) -> Path:
        """What the daemon and its jobs keep of the jobs: the runner's record of each
        running job, the journals of jobs that change several files together, requests
        for a job to run, and documents handed from a section to its job. In etc/, which
        the daemon's user may write on appliances in the field (their tmp/ is root's)."""
        return self.etc / "jobs"

    def job_record(self, kind: str) -> Path:
        """The runner's note of a running job's process, so a daemon started after one
        that died follows the job to its end."""
        return self.jobs / f"{kind}.pid"

    def job_run(self, kind: str) -> Path:
        """The last run of a kind: its id, when it started and ended, and where its lines
        begin in the kind's log (so the log of one run is read without another's)."""
        return self.jobs / f"{kind}.run"

    def journal(self, kind: str) -> Path:
        """Where a job of this kind notes what it replaces, so that whatever stops it, the
        next start finishes or undoes the change (swap.py)."""
        return self.jobs / f"{kind}.journal"

    def request_marker(self, kind: str) -> Path:
        """Present while a job of this kind is asked for and has not started: written by
        a job (a restore asks for the persistence step) or the daemon, acted on by the
        runner whenever it can, at its next start if not before."""
        return self.jobs / f"{kind}.requested"

    def request_taken(self, kind: str) -> Path:
        """A request the runner has started a job for: the job removes it once it has
        said how it ended, so one that died first (with the power) is asked for again."""
        return self.jobs / f"{kind}.requested.taken"

    @property
    def update_history(self) -> Path:
        """Every update attempt, newest first, bounded (GET /update/history)."""
        return self.etc / "update-history.json"

    @property
    def update_attempt(self) -> Path:
        """The update being made: from which version, with which package; the job adds
        what it learns (the package's version, whether it rolled back). Settled into the
        history once the update has ended, by whichever daemon sees it first."""
        return self.jobs / "update.attempt.json"

    @property
    def staged_update(self) -> Path:
        """What the staged package is (POST /update/stage): its version, size, digest."""
        return self.jobs / "update.staged.json"

    @property
    def staged_packages(self) -> Path:
        """Where a staged package waits to be applied: beside the uploads, where a package
        can be large, under a name the appliance's update_vm.sh does not pick up."""
        return self.uploads / "staged"

    @property
    def settings_upload(self) -> Path:
        """A settings document handed from the API to the settings job."""
        return self.jobs / "settings.json"

    @property
    def settings_confirmation(self) -> Path:
        """Touched by the daemon on each authenticated request while the settings job
        runs: the administrator can still reach the appliance after a network change."""
        return self.jobs / "settings.confirmed"

    @property
    def storage_settings(self) -> Path:
        """The persistent storage settings (GET /storage), as last posted."""
        return self.etc / "storage.json"

    @property
    def cluster_settings(self) -> Path:
        """The cluster settings (GET /cluster), shared secret included: mode 0600."""
        return self.etc / "cluster.json"

    @property
    def license_file(self) -> Path:
        """The installed license (POST /license), checked by bin/license.sh or, without
        it, against license_public_key (docs/license.md)."""
        return self.etc / "license.asc"

    @property
    def license_public_key(self) -> Path:
        """The vendor's public key that licenses are signed for (the default scheme)."""
        return self.etc / "license.pub"

    @property
    def wrapper(self) -> Path:
        """The appliance's own job entry point (with "jobs": "appliance")."""
        return self.bin / "wrapper.sh"

    @property
    def appliance(self) -> bool:
        """The appliance's own tree, where files outside it belong to the appliance too."""
        return self.root == Path(DEFAULT_ADMIN_PATH)

    def system_file(self, configured: Path | None, appliance_default: str) -> Path:
        """A file of the appliance outside the tree that a job writes (network.conf, say).

        The config names it; else the original's path on the appliance's own tree, and the
        tree's etc/ on any other, so trying the daemon on a workstation never writes
        outside the tree it was given.
        """
        if configured is not None:
            return configured
        if self.appliance:
            return Path(appliance_default)
        return self.etc / Path(appliance_default).name

    def status_file(self, name: str) -> Path:
        """etc/<name>: the old appliance's status and error files."""
        return self.etc / name

    def log_file(self, name: str) -> Path:
        return self.log / name

    def hook(self, name: str) -> Path | None:
        """An executable appliance hook in bin/, or None when the appliance has none."""
        path = self.bin / name
        return path if path.is_file() and os.access(path, os.X_OK) else None

    def lay_out(self) -> None:
        """Create whatever part of the tree is missing; existing files are left alone."""
        self.root.mkdir(parents=True, exist_ok=True)
        for sub in SUBDIRECTORIES:
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        (self.etc / "ssl").mkdir(mode=0o700, exist_ok=True)
        self.jobs.mkdir(mode=0o755, exist_ok=True)
