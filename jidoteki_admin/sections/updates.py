"""Section 3: updating the system from an encrypted package, and following its progress."""

from __future__ import annotations

import re

from .. import responses
from ..catalogue import ACCEPTED, FILE, JSON, PLAIN_TEXT, READ, Endpoint, Field, Reply, Section, get, post
from ..context import Context
from ..jobs.update import UPDATE
from ..package import PACKAGE_PREFIX, PACKAGE_SUFFIX
from ..responses import APIError
from ..runner import FAILED

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


class Updates:
    name = "updates"
    optional = False

    def __init__(self, context: Context):
        self.tree = context.tree
        self.runner = context.runner
        self.work_dir = context.config.decrypt_dir or context.tree.tmp
        self.files = context.runner.register(UPDATE)

    def section(self) -> Section:
        start = post(
            self.start, "Upload an update package and start installing it", Reply(ACCEPTED),
            Field("update", FILE, description="The encrypted update package (software_package-*.enc)"),
            errors=(400, 413, 507),
        )
        status = get(self.status, "The status of the last update", Reply(JSON, STATUS_SCHEMA), scope=READ)
        log = get(self.log, "The whole update log", Reply(PLAIN_TEXT), errors=(404,), scope=READ)
        return Section(self.name, "Updates", (
            Endpoint("/update", (status, start)),
            Endpoint("/update/log", (log,)),
        ))

    def start(self, request) -> bytes:
        upload = request.form.file("update")
        if upload.size == 0:
            raise APIError(400, "The update package is empty")
        self.runner.check_free(UPDATE)  # before the upload is moved where a job might see it
        # The appliance's update_vm.sh installs the newest software_package-*.enc by sort -V:
        # the original named every upload so that it sorts last.
        name = APPLIANCE_PACKAGE if self.runner.launcher.scripted(UPDATE) else package_name(upload.filename)
        target = upload.move_to(self.tree.uploads / name)
        self.runner.start(UPDATE, ["--package", str(target), "--work-dir", str(self.work_dir)], script_args=[""])
        return responses.accepted(request, "/update")

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

    def log(self, request):
        return responses.stream_file(request, self.files.log, responses.TEXT, no_cache=True)


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
