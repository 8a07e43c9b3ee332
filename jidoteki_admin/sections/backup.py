"""Section 12: Backup (optional): take the appliance's data off the box and put it back.

POST /backup START runs the backup job (jobs/backup.py), which writes backup.tar and the
original's backup.json in the uploads folder; STOP stops it through the job runner and
deletes both. GET /backup is backup.json, /backup/download streams backup.tar, /backup/log
is the job's log. POST /backup/restore is synchronous, as API.md says: the request waits
(without blocking the reactor) on the restore job (jobs/restore.py), which never runs as
root and leaves the previous data untouched when it fails.
"""

from __future__ import annotations


from twisted.internet import defer
from twisted.logger import Logger

from ..http import responses
from ..http.catalogue import (ACCEPTED, DOWNLOAD, FILE, JSON, PLAIN_TEXT, READ, STATUS, Endpoint, Field, Reply, Section,
                         get, post)
from ..context import Context
from ..files import remove_quietly
from ..http.responses import APIError
from ..jobs.backup import BACKUP, BACKUP_STOP, write_status
from ..jobs.persist import PERSIST
from ..jobs.restore import RESTORE
from ..jobs.runner import SUCCESS, JobStatus

TAR = b"application/x-tar"  # as the original served it
ACTION_PROBLEM = "Missing or invalid option: action. Expected value 'START' or 'STOP'"
STATUS_SCHEMA = {
    "type": "object",
    "properties": {
        "status": {"enum": ["running", "success", "failed"]},
        "filesize": {"type": "string"},
        "sha256": {"type": "string"},
        "created": {"type": "string", "description": "when the archive was made, ISO 8601 in UTC (an addition)"},
        "written": {"type": "integer", "description": "bytes of the archive written so far, while a backup "
                                                     "runs (an addition)"},
    },
    "required": ["status"],
}


class Backup:
    name = "backup"
    optional = True
    logger = Logger()

    def __init__(self, context: Context):
        tree, config = context.tree, context.config
        self.runner = context.runner
        self.root = config.backup_root
        self.restore_max_bytes = config.restore_max_bytes
        self.restore_max_members = config.restore_max_members
        self.archive = tree.uploads / "backup.tar"
        self.status_file = tree.uploads / "backup.json"
        self.log_file = tree.log_file(BACKUP.log_name)
        self._delete_when_stopped = False
        self.tree = tree
        self.scripted = context.runner.launcher.scripted(BACKUP)
        context.runner.register(BACKUP)
        context.runner.register(BACKUP_STOP)
        context.runner.when_finished(BACKUP, self._backup_finished)
        context.runner.register(RESTORE)
        context.runner.register(PERSIST)
        context.downloads["backup"] = self.download  # POST /downloads makes one-time links to it

    def section(self) -> Section:
        action = Field("action", allowed=("START", "STOP"), any_case=True, problem=ACTION_PROBLEM,
                       description="START a backup, or STOP it and delete the backup")
        archive = Field("archive", FILE, description="A backup archive, as GET /backup/download gives it")
        return Section(self.name, "Backup", (
            Endpoint("/backup", (
                get(self.status, "The status of the last backup", Reply(JSON, STATUS_SCHEMA), errors=(404,),
                    scope=READ),
                post(self.act, "Start a backup, or stop it and delete it", Reply(ACCEPTED), action, errors=(400,)),
            )),
            Endpoint("/backup/download", (get(self.download, "Download backup.tar, the archive GET /backup describes",
                                              Reply(DOWNLOAD, media_type=TAR.decode()), errors=(404,)),)),
            Endpoint("/backup/log", (get(self.log, "The backup log", Reply(PLAIN_TEXT), errors=(404,), scope=READ),)),
            Endpoint("/backup/restore", (post(self.restore, "Restore a backup archive (waits until done)",
                                              Reply(STATUS), archive, errors=(400, 413, 507)),)),
        ), optional=True)

    def status(self, request) -> bytes:
        """backup.json; "running" for as long as the job runs, so a client that sees
        "success" can restore at once (the job writes the file just before it ends)."""
        return responses.document(request, self._status(), no_cache=True)

    def _status(self) -> object:
        if self.runner.is_running(BACKUP):
            return self._running()
        value = responses.json_file(self.status_file, 64 * 1024, "backup.json not found",
                                    "backup.json is not valid JSON")
        if isinstance(value, dict) and value.get("status") == "running":
            # No backup runs, yet the file says one does: its job died with a daemon killed
            # under it (a power cut), too suddenly to say so itself; whatever archive is
            # there is not one backup.json describes.
            value = {"status": "failed"}
            try:
                write_status(self.status_file, value)
                remove_quietly(self.archive)
            except OSError:
                pass  # an appliance script's file, not the daemon's to replace: the answer says it
        return value

    def _running(self) -> dict[str, object]:
        """A running backup, and how much of its archive is written: the job writes it
        beside the final name (jobs/backup.py), so a client can show it grow."""
        value: dict[str, object] = {"status": "running"}
        try:
            value["written"] = self.archive.with_name(f".{self.archive.name}.partial").stat().st_size
        except OSError:
            pass  # not begun yet, already renamed, or an appliance script's own file
        return value

    def act(self, request) -> bytes:
        if request.form.text("action").upper() == "START":
            return self.start(request)
        return self.stop(request)

    def start(self, request) -> bytes:
        self.runner.check_free(BACKUP)
        if not self.scripted:
            # The status says "running" from the answer on, not from when the job gets to it.
            write_status(self.status_file, {"status": "running"})
        self.runner.start(BACKUP, ["--root", str(self.root), "--out", str(self.archive),
                                   "--status", str(self.status_file)], script_args=["START"])
        return responses.accepted(request, "/backup")

    def stop(self, request) -> bytes:
        """Stop a running backup, then delete the archive and its status, whatever state
        they are in; with nothing running they are deleted at once. Like START, it answers
        202: a running job is stopped, and the files deleted, once it has ended. The
        appliance's update_backup.sh STOP does all of it itself."""
        if self.scripted:
            self.runner.start(BACKUP_STOP, script_args=["STOP"])
            return responses.accepted(request, "/backup")
        if self.runner.is_running(BACKUP):
            self._delete_when_stopped = True
            self.runner.stop(BACKUP)
        else:
            self._delete()
        return responses.accepted(request, "/backup")

    def _backup_finished(self, outcome: JobStatus) -> None:
        """Before anyone hears how a backup ended: a failed one leaves no archive and says
        so, even killed outright before it could (the job does it otherwise)."""
        if self._delete_when_stopped:
            self._delete_when_stopped = False
            self._delete()
        elif outcome.status != SUCCESS and not self.scripted:  # update_backup.sh says so itself
            remove_quietly(self.archive)
            try:
                write_status(self.status_file, {"status": "failed"})
            except OSError as e:
                self.logger.warn("Cannot write {path}: {why}", path=str(self.status_file), why=e)

    def _delete(self) -> None:
        remove_quietly(self.archive)
        remove_quietly(self.status_file)

    def download(self, request):
        """The archive, only when GET /backup says it is there: never an older one while a
        backup runs, or after one failed. Last-Modified says when it was made."""
        try:
            status = self._status()
        except APIError:
            raise APIError(404, "No backup archive: no backup was made") from None
        state = status.get("status") if isinstance(status, dict) else None
        if state != SUCCESS:
            why = "a backup is running" if state == "running" else "the last backup failed"
            raise APIError(404, f"No backup archive: {why}")
        return responses.stream_file(request, self.archive, TAR, filename="backup.tar")

    def log(self, request):
        return responses.stream_file(request, self.log_file, responses.TEXT, no_cache=True)

    @defer.inlineCallbacks
    def restore(self, request):
        upload = request.form.file("archive")
        if upload.size == 0:
            raise APIError(400, "The backup archive is empty")
        if self.runner.launcher.scripted(RESTORE):
            self.runner.check_free(RESTORE)
            # The appliance's update_backup.sh RESTORE extracts uploads/backup-archive.tar.
            upload.move_to(self.tree.uploads / "backup-archive.tar")
        status = yield self.runner.start(RESTORE, ["--root", str(self.root), "--archive", str(upload.path),
                                                   "--max-bytes", str(self.restore_max_bytes),
                                                   "--max-members", str(self.restore_max_members)],
                                         script_args=["RESTORE"])
        if status.status != SUCCESS:
            if self.runner.launcher.scripted(RESTORE):
                remove_quietly(upload.path)  # the script removes it only on its way out of a failure
                raise APIError(400, "Unable to extract backup archive")
            raise APIError(400, status.error_message or "Unable to extract backup archive")
        # The job asked for the persistence step itself (it runs unprivileged); on an appliance
        # whose scripts do the work, its wrapper saved the persistent files.
        return responses.status(request)
