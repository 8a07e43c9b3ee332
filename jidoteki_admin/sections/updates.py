"""Section 3: updating the system from an encrypted package, and following its progress."""

from __future__ import annotations

import re
import sys

from .. import responses
from ..api import Endpoint
from ..files import tail_lines
from ..layout import AdminTree
from ..package import PACKAGE_PREFIX, PACKAGE_SUFFIX
from ..responses import APIError
from ..runner import FAILED, JobKind, JobRunner
from ..uploads import FILE

UPDATE = JobKind(
    name="update",
    log_name="update.log",
    status_name="status_update",
    error_message_name="status_error_message.txt",
    error_code_name="status_error_code.txt",
    label="SYSTEM",
    unexpected_code="E1000",
    timeout_code="E1002",
    interrupted_code="E1002",
)
STATUS_LOG_LINES = 10


class Updates:
    def __init__(self, tree: AdminTree, runner: JobRunner):
        self.tree = tree
        self.runner = runner
        self.files = runner.register(UPDATE)

    def endpoints(self):
        return [
            Endpoint("/update", {"GET": self.status, "POST": self.start}, form={"update": FILE}),
            Endpoint("/update/log", {"GET": self.log}),
        ]

    def start(self, request) -> bytes:
        if self.runner.is_running(UPDATE):
            raise APIError(400, "E1004: An update is already running")
        upload = request.form.file("update")
        if upload.size == 0:
            raise APIError(400, "The update package is empty")
        upload.move_to(self.tree.uploads / package_name(upload.filename))
        self.runner.start(
            UPDATE, [sys.executable, "-m", "jidoteki_admin.jobs.update", "--admin-path", str(self.tree.root)]
        )
        return responses.accepted(request, "/update")

    def status(self, request) -> bytes:
        status = self.runner.status(UPDATE)
        if status.status is None:
            return responses.document(request, {"status": None, "log": None}, no_cache=True)
        lines = tail_lines(self.files.log, STATUS_LOG_LINES)
        report = {
            "status": status.status,
            "log": "\n".join(lines) if lines is not None else None,
            "percentage": status.percentage,
        }
        if status.status == FAILED:
            report["error-message"] = status.error_message
            report["error-code"] = status.error_code
        return responses.document(request, report, no_cache=True)

    def log(self, request):
        return responses.stream_file(request, self.files.log, responses.TEXT, no_cache=True)


def package_name(uploaded: str) -> str:
    """A safe name in the uploads folder that the update job will recognise.

    The client's name is kept when it is already a package name, since the job picks the
    newest package by the version in its name. ``software_package-.enc`` is not one to the
    job: kept, it would be reported missing and never removed.
    """
    base = re.sub(r"[^A-Za-z0-9._-]", "_", uploaded.rsplit("/", 1)[-1]).lstrip(".")
    label = base.removeprefix(PACKAGE_PREFIX).removesuffix(PACKAGE_SUFFIX)
    if base == PACKAGE_PREFIX + label + PACKAGE_SUFFIX and label and len(base) <= 200:
        return base
    stem = label[:150] or "upload"
    return f"{PACKAGE_PREFIX}{stem}{PACKAGE_SUFFIX}"
