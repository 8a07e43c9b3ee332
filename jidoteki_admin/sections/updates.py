"""Section 3: updating the system from an encrypted package, and following its progress.

Besides the original's upload-and-install (POST /update): a check that says what a
package is and whether it would install, changing nothing (POST /update/check); a package
verified now and applied later (POST /update/stage, /update/apply, /update/discard, GET
/update/staged), which survives a restart; and the history of every attempt (GET
/update/history), kept across restarts (updatehistory.py).
"""

from __future__ import annotations

import datetime
import os
import re
import secrets
import shutil

from twisted.internet import defer

from ..context import Context
from ..files import read_first_line, remove_quietly
from ..formats import updatehistory
from ..formats.package import PACKAGE_PREFIX, PACKAGE_SUFFIX
from ..http import responses
from ..http.catalogue import ACCEPTED, FILE, JSON, PLAIN_TEXT, READ, STATUS, Endpoint, Field, Reply, Section, get, post
from ..http.responses import APIError
from ..jobs.runner import FAILED, RUNNING, SUCCESS, JobStatus
from ..jobs.update import UPDATE
from ..jobs.update_check import CHECK_PREFIX, UPDATE_CHECK

APPLIANCE_PACKAGE = "software_package-zzz.enc"
_TEXT_OR_NULL = {"type": ["string", "null"]}
STATUS_SCHEMA = {
    "type": "object",
    "properties": {
        "status": {"enum": ["running", "success", "failed", None]},
        "log": _TEXT_OR_NULL,
        "percentage": {"type": ["integer", "null"]},
        "error-message": _TEXT_OR_NULL,
        "error-code": _TEXT_OR_NULL,
    },
    "required": ["status", "log"],
}
_TEXT_OR_NULL_LIST = {"type": ["array", "null"], "items": {"type": "string"}}
CHECK_SCHEMA = {
    "type": "object",
    "properties": {
        "package": {"type": "string", "description": "the uploaded file's name"},
        "size": {"type": "integer"},
        "version": _TEXT_OR_NULL,
        "installed": _TEXT_OR_NULL,
        "changelog": _TEXT_OR_NULL,
        "installable": {"type": "boolean"},
        "problem": _TEXT_OR_NULL,
        "precheck": _TEXT_OR_NULL_LIST,
        "staged": {"type": "boolean"},
    },
    "required": ["version", "installed", "installable", "problem", "staged"],
}
STAGED_SCHEMA = {
    "type": "object",
    "properties": {"staged": {"type": ["object", "null"], "properties": {
        "package": {"type": "string"}, "uploaded-as": {"type": "string"}, "version": _TEXT_OR_NULL,
        "installed": _TEXT_OR_NULL, "size": {"type": "integer"}, "staged": {"type": "string"}}}},
    "required": ["staged"],
}
HISTORY_SCHEMA = {
    "type": "object",
    "properties": {"history": {"type": "array", "items": {"type": "object", "properties": {
        "run": _TEXT_OR_NULL, "started": _TEXT_OR_NULL, "ended": _TEXT_OR_NULL, "seconds": {"type": ["number", "null"]},
        "from": _TEXT_OR_NULL, "to": _TEXT_OR_NULL, "package": _TEXT_OR_NULL,
        "outcome": {"enum": ["success", "failed"]}, "error-code": _TEXT_OR_NULL, "error-message": _TEXT_OR_NULL,
        "rolled-back": {"type": ["boolean", "null"]}}}}},
    "required": ["history"],
}


class Updates:
    name = "updates"
    optional = False

    def __init__(self, context: Context):
        self.tree = context.tree
        self.runner = context.runner
        self.work_dir = context.config.decrypt_dir or context.tree.tmp
        self.decrypt_dir = context.config.decrypt_dir
        self.precheck_seconds = context.config.precheck_seconds  # replaced on SIGHUP
        self.files = context.runner.register(UPDATE)
        context.runner.register(UPDATE_CHECK)
        # The history is settled when an update ends; and, for one that ended while no
        # daemon ran, whenever it is next read or another update starts.
        context.runner.when_finished(UPDATE, self.settle)

    def section(self) -> Section:
        package = Field("update", FILE, description="The encrypted update package (software_package-*.enc)")
        start = post(self.start, "Upload an update package and start installing it", Reply(ACCEPTED), package,
                     errors=(400, 413, 507))
        status = get(self.status, "The status of the last update", Reply(JSON, STATUS_SCHEMA), scope=READ)
        log = get(self.log, "The whole update log", Reply(PLAIN_TEXT), errors=(404,), scope=READ)
        return Section(self.name, "Updates", (
            Endpoint("/update", (status, start)),
            Endpoint("/update/log", (log,)),
            Endpoint("/update/check", (post(
                self.check, "Check a package: its version, changelog and whether it would install; nothing changes",
                Reply(JSON, CHECK_SCHEMA), package, errors=(400, 413, 507)),)),
            Endpoint("/update/stage", (post(
                self.stage, "Check a package and keep it, to apply later (one at a time)",
                Reply(JSON, CHECK_SCHEMA), package, errors=(400, 413, 507)),)),
            Endpoint("/update/staged", (get(self.staged, "The staged package, or null", Reply(JSON, STAGED_SCHEMA),
                                            scope=READ),)),
            Endpoint("/update/apply", (post(self.apply, "Install the staged package", Reply(ACCEPTED),
                                            errors=(400,)),)),
            Endpoint("/update/discard", (post(self.discard, "Remove the staged package", Reply(STATUS),
                                              errors=(400,)),)),
            Endpoint("/update/history", (get(self.history, "Every update attempt, newest first",
                                             Reply(JSON, HISTORY_SCHEMA), scope=READ),)),
        ))

    def start(self, request) -> bytes:
        upload = request.form.file("update")
        if upload.size == 0:
            raise APIError(400, "The update package is empty")
        self.runner.check_free(UPDATE)  # before the upload is moved where a job might see it
        return self._install(request, upload.move_to, package_name(upload.filename), to=None)

    def _install(self, request, move, name: str, to: str | None) -> bytes:
        """Move the package where the update job (or the appliance's update_vm.sh) takes
        it, note the attempt, and start the job."""
        self.settle()
        # The appliance's update_vm.sh installs the newest software_package-*.enc by sort -V:
        # the original named every upload so that it sorts last.
        scripted = self.runner.launcher.scripted(UPDATE)
        target = move(self.tree.uploads / (APPLIANCE_PACKAGE if scripted else name))
        attempt = {"from": self._installed(), "to": to, "package": name}
        updatehistory.write_json(self.tree.update_attempt, attempt)
        self.runner.start(UPDATE, ["--package", str(target), "--work-dir", str(self.work_dir),
                                   "--precheck-seconds", str(self.precheck_seconds)], script_args=[""])
        run = self.runner.run(UPDATE)
        updatehistory.write_json(self.tree.update_attempt, {**attempt, "run": run.id if run else None})
        return responses.accepted(request, "/update")

    def _installed(self) -> str | None:
        """The installed version, for the history: None when it cannot be read (the job
        says why, if it matters to the update)."""
        try:
            value = read_first_line(self.tree.version_file)
        except OSError:
            return None
        return value.strip() if value else None

    # Check, stage, apply

    def check(self, request):
        return self._check(request, stage=False)

    def stage(self, request):
        staged = self._staged()
        if staged is not None:
            raise APIError(400, f"A package is staged already (version {staged.get('version')}, uploaded as "
                                f"{staged.get('uploaded-as')}): apply or discard it first")
        return self._check(request, stage=True)

    @defer.inlineCallbacks
    def _check(self, request, stage: bool):
        upload = request.form.file("update")
        if upload.size == 0:
            raise APIError(400, "The update package is empty")
        self.runner.check_free(UPDATE_CHECK)
        label = re.sub(r"[^A-Za-z0-9._-]", "_", (upload.filename or "package").rsplit("/", 1)[-1])[:100]
        # In a folder of its own, under the name it was sent as, where the appliance's
        # update_vm.sh (which takes software_package-*.enc at the top) never looks.
        folder = self.tree.uploads / f"{CHECK_PREFIX}{secrets.token_hex(4)}"
        folder.mkdir()
        target = upload.move_to(folder / (label.lstrip(".") or "package"))
        report_path = self.tree.jobs / f"update-check-{secrets.token_hex(4)}.json"
        # Decrypted beside the upload unless the config says where: the check runs as the
        # daemon's user, which may not write the tree's tmp/ (root's, on an appliance).
        work = self.decrypt_dir or folder
        args = ["--package", str(target), "--work-dir", str(work), "--report", str(report_path),
                "--precheck-seconds", str(self.precheck_seconds)]
        try:
            status = yield self.runner.start(UPDATE_CHECK, [*args, *(["--stage"] if stage else [])])
            report = updatehistory.read_json(report_path)
        finally:
            remove_quietly(report_path)
            remove_quietly(target)  # the job removed or staged it; never left behind
            shutil.rmtree(folder, ignore_errors=True)
        if status.status != SUCCESS or not isinstance(report, dict):
            raise APIError(400, f"The update package cannot be checked: {status.error_message or 'no report'}")
        if stage and not report.get("installable"):
            raise APIError(400, f"Not staged: {report.get('problem')}")
        return responses.document(request, report, no_cache=True)

    def staged(self, request) -> bytes:
        return responses.document(request, {"staged": self._staged()}, no_cache=True)

    def _staged(self) -> dict | None:
        """The staged package's note, while its package is there (a note whose package was
        removed by hand is dropped)."""
        note = updatehistory.read_json(self.tree.staged_update)
        if not isinstance(note, dict):
            return None
        path = self.tree.staged_packages / str(note.get("package", ""))
        if not note.get("package") or not path.is_file():
            remove_quietly(self.tree.staged_update)
            return None
        return note

    def apply(self, request) -> bytes:
        staged = self._staged()
        if staged is None:
            raise APIError(400, "No package is staged: stage one first (POST /update/stage)")
        self.runner.check_free(UPDATE)
        source = self.tree.staged_packages / staged["package"]

        def move(target):
            os.replace(source, target)
            return target

        answer = self._install(request, move, staged["package"], to=staged.get("version"))
        remove_quietly(self.tree.staged_update)
        return answer

    def discard(self, request) -> bytes:
        staged = self._staged()
        if staged is None:
            raise APIError(400, "No package is staged")
        self.runner.check_free(UPDATE_CHECK)  # not while a stage is being made
        remove_quietly(self.tree.staged_update)  # the note first: a package without one is not staged
        remove_quietly(self.tree.staged_packages / staged["package"])
        return responses.status(request)

    # History

    def history(self, request) -> bytes:
        self.settle()
        return responses.document(request, {"history": updatehistory.entries(self.tree.update_history)},
                                  no_cache=True)

    def settle(self, outcome: JobStatus | None = None) -> None:
        """Put an ended update's attempt into the history (once), and forget the attempt:
        with the outcome the runner is telling, or the one on disk when no update runs."""
        attempt = updatehistory.read_json(self.tree.update_attempt)
        if not isinstance(attempt, dict):
            return
        if outcome is None:
            if self.runner.is_running(UPDATE):
                return
            outcome = self.runner.status(UPDATE)
        status = outcome
        if status.status in (None, RUNNING):
            return
        run = self.runner.run(UPDATE)
        ended = run.ended if run and run.ended else _mtime(self.files.status.json)
        to = attempt.get("to")
        if status.status == SUCCESS:
            to = self._installed() or to
        entry = {
            "run": attempt.get("run") or (run.id if run else None),
            "started": _iso(run.started) if run else None,
            "ended": _iso(ended) if ended else None,
            "seconds": round(ended - run.started, 3) if run and ended else None,
            "from": attempt.get("from"), "to": to, "package": attempt.get("package"),
            "outcome": status.status,
            "error-code": status.error_code if status.status == FAILED else None,
            "error-message": status.error_message if status.status == FAILED else None,
            "rolled-back": attempt.get("rolled-back") if status.status == FAILED else None,
        }
        updatehistory.add(self.tree.update_history, entry)
        remove_quietly(self.tree.update_attempt)

    def status(self, request) -> bytes:
        """As the original: the status and percentage, the log's last lines, and the error
        message and code of a failed one."""
        status, report = self.runner.report(UPDATE)
        if status.status is None:
            return responses.document(request, report, no_cache=True)
        if status.percentage is not None:
            report["percentage"] = status.percentage
        if status.status == FAILED:
            report["error-message"] = status.error_message
            report["error-code"] = status.error_code
        return responses.document(request, report, no_cache=True)

    def reload(self, config) -> None:
        self.precheck_seconds = config.precheck_seconds

    def log(self, request):
        return responses.stream_file(request, self.files.log, responses.TEXT, no_cache=True)


def _mtime(path) -> float | None:
    try:
        return os.stat(path).st_mtime
    except OSError:
        return None


def _iso(seconds: float) -> str:
    return datetime.datetime.fromtimestamp(seconds, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def package_name(uploaded: str) -> str:
    """A safe name in the uploads folder that the update job will recognise.

    The client's name is kept when it is already a package name, so an administrator who
    looks in the folder (or runs the job by hand) sees what was uploaded. The job itself is
    told this exact path, so no other file there can be installed in its place.
    ``software_package-.enc`` is not a package name to the appliance's own scripts.
    """
    base = re.sub(r"[^A-Za-z0-9._-]", "_", uploaded.rsplit("/", 1)[-1]).lstrip(".")
    label = base.removeprefix(PACKAGE_PREFIX).removesuffix(PACKAGE_SUFFIX)
    if base == PACKAGE_PREFIX + label + PACKAGE_SUFFIX and label and len(base) <= 200:
        return base
    stem = label[:150] or "upload"
    return f"{PACKAGE_PREFIX}{stem}{PACKAGE_SUFFIX}"
