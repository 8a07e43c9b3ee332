"""Section 10: License (optional): install the system license and show its details.

Two schemes, never mixed (docs/license.md):

- The appliance has bin/license.sh: that script decides, always, as on the original
  appliances. POST /license waits (without blocking the reactor) on the license job
  (jobs/license.py), which installs the candidate, runs the script and puts the previous
  license back when the script refuses it; GET /license runs the script through the check
  job (jobs/license_check.py). Concurrent GETs share one check.
- It has none: the default scheme, a signed JSON document checked in-process against
  etc/license.pub (licensefile.py); a valid license is installed atomically here and
  saved for the next boot by the persist job.

Either way: 200 with the details; 404 for an invalid license or none; 400 when a valid
license cannot be installed. An invalid license changes nothing on disk.

POST /license/check (an addition) answers a license's details without installing it, so a
client can ask before replacing a valid license with an expired one. Only the default
scheme can: bin/license.sh checks the installed license, so there it is refused (400).
"""

from __future__ import annotations

from typing import Any

from twisted.internet import defer
from twisted.python.failure import Failure

from ..context import Context
from ..files import atomic_write, remove_quietly
from ..formats import licensefile
from ..http import responses
from ..http.catalogue import FILE, JSON, Endpoint, Field, Reply, Section, get, post
from ..http.responses import APIError
from ..jobs.license import HOOK, INVALID, LICENSE_INSTALL
from ..jobs.license_check import LICENSE_CHECK
from ..jobs.persist import PERSIST
from ..jobs.runner import SUCCESS, AlreadyRunning, JobStatus

DETAILS_MAX = 64 * 1024
DETAILS_SCHEMA = {
    "type": "object",
    "description": "The license's details: the default scheme's document, or what bin/license.sh prints",
    "properties": {
        "app": {"type": "string"},
        "users": {"type": "integer"},
        "expires": {"type": "string", "description": "as 19 January 2038"},
        "name": {"type": "string"},
        "contact": {"type": "string"},
        "expired": {"type": "boolean", "description": "the default scheme: past the expiry date (an addition)"},
    },
}


class License:
    name = "license"
    optional = True

    def __init__(self, context: Context):
        self.tree = context.tree
        self.runner = context.runner
        self.installed_details = self.tree.jobs / "license-install.json"
        self.checked_details = self.tree.jobs / "license-check.json"
        self._waiting: list[defer.Deferred[dict[str, Any]]] | None = None  # GETs sharing one check
        self._installing = False
        self._check_after_install = False
        for kind in (LICENSE_INSTALL, LICENSE_CHECK, PERSIST):
            context.runner.register(kind)

    def section(self) -> Section:
        license_file = Field("license", FILE, description="The license file (license.asc)")
        return Section(self.name, "License", (
            Endpoint("/license", (
                get(self.details, "The details of the installed license", Reply(JSON, DETAILS_SCHEMA),
                    errors=(400, 404)),
                post(self.install, "Install a license (waits until it is checked)", Reply(JSON, DETAILS_SCHEMA),
                     license_file, errors=(400, 404, 413)),
            )),
            Endpoint("/license/check", (
                post(self.check, "Check a license without installing it", Reply(JSON, DETAILS_SCHEMA),
                     license_file, errors=(400, 404, 413)),
            )),
        ), optional=True)

    @property
    def scripted(self) -> bool:
        """Whether the appliance's bin/license.sh decides (looked at on every request, so
        an update that adds or removes it takes effect at once)."""
        return self.tree.hook(HOOK) is not None

    # ------------------------------------------------------------------------------------
    # GET /license

    def details(self, request):
        if not self.scripted:
            return responses.document(request, self._default_details(), no_cache=True)
        return self._shared_check().addCallback(lambda value: responses.document(request, value, no_cache=True))

    def _default_details(self) -> dict[str, Any]:
        try:
            return licensefile.check_file(self.tree.license_file, self.tree.license_public_key)
        except licensefile.LicenseError as e:
            raise APIError(404, str(e)) from None

    def _shared_check(self) -> defer.Deferred[dict[str, Any]]:
        """The details from the check job; a GET arriving while one runs waits for it
        instead of being refused as "already running"."""
        waiter: defer.Deferred[dict[str, Any]] = defer.Deferred()
        first = self._waiting is None
        if self._waiting is None:
            self._waiting = []
        self._waiting.append(waiter)
        if first:
            self._start_check()
        return waiter

    def _start_check(self) -> None:
        if self._installing:
            self._check_after_install = True  # the answer is about the license being installed
            return
        try:
            self.runner.check_free(LICENSE_CHECK)
            remove_quietly(self.checked_details)
            running = self.runner.start(LICENSE_CHECK, ["--out", str(self.checked_details)])
        except AlreadyRunning as busy:  # an appliance script holding its lock, say
            self._answer_waiting(Failure(APIError(400, busy.message)))
            return
        running.addCallback(self._checked).addBoth(self._answer_waiting)

    def _checked(self, status: JobStatus) -> dict[str, Any]:
        if status.status != SUCCESS:
            code = 404 if status.error_code == INVALID else 500
            raise APIError(code, status.error_message or "Could not check the license")
        return self._read_details(self.checked_details)

    def _answer_waiting(self, result: dict[str, Any] | Failure) -> None:
        waiting, self._waiting = self._waiting or [], None
        for waiter in waiting:
            if isinstance(result, Failure):
                waiter.errback(result)
            else:
                waiter.callback(result)

    @staticmethod
    def _read_details(path) -> dict[str, Any]:
        value = responses.json_file(path, DETAILS_MAX, "The license check gave no details",
                                    "The license check gave details that are not JSON")
        if not isinstance(value, dict):
            raise APIError(500, "The license check gave details that are not a JSON object")
        return value

    # ------------------------------------------------------------------------------------
    # POST /license

    def install(self, request):
        upload = request.form.file("license")
        if upload.size == 0:
            raise APIError(400, "The license file is empty")
        if self.scripted:
            return self._install_by_hook(request, upload)
        self.runner.check_free(LICENSE_INSTALL)
        with open(upload.path, "rb") as f:  # at most the field's upload cap (1 MiB)
            data = f.read()
        return responses.document(request, self._install_default(data))

    def check(self, request) -> bytes:
        """The details POST /license would answer, and nothing installed."""
        upload = request.form.file("license")
        if upload.size == 0:
            raise APIError(400, "The license file is empty")
        if self.scripted:
            raise APIError(400, "This appliance's bin/license.sh checks a license only by installing it")
        with open(upload.path, "rb") as f:  # at most the field's upload cap (1 MiB)
            data = f.read()
        try:
            details = licensefile.check(data, self.tree.license_public_key)
        except licensefile.LicenseError as e:
            raise APIError(404, str(e)) from None
        return responses.document(request, details, no_cache=True)

    def _install_default(self, data: bytes) -> dict[str, Any]:
        try:
            details = licensefile.check(data, self.tree.license_public_key)
        except licensefile.LicenseError as e:
            raise APIError(404, str(e)) from None
        try:
            atomic_write(self.tree.license_file, data, 0o644)
        except OSError as e:
            raise APIError(400, f"Could not install the license: {e.strerror or e}") from None
        self.runner.request(PERSIST)  # saving the persistent files needs the privileged job
        return details

    @defer.inlineCallbacks
    def _install_by_hook(self, request, upload):
        if self._waiting is not None and not self._installing:
            # A GET's check is running: install once it is done, rather than refuse.
            yield self._shared_check().addErrback(lambda failure: None)
        self.runner.check_free(LICENSE_INSTALL)  # before the running job's details are touched
        remove_quietly(self.installed_details)
        if self.runner.launcher.scripted(LICENSE_INSTALL):
            # The appliance's update_license.sh takes uploads/license.asc, as the original put it.
            upload.move_to(self.tree.uploads / "license.asc")
        running = self.runner.start(LICENSE_INSTALL, ["--candidate", str(upload.path),
                                                      "--out", str(self.installed_details)])
        self._installing = True
        try:
            status = yield running
        finally:
            self._installed()
            remove_quietly(self.tree.uploads / "license.asc")  # left there when the script refused it
        if status.status != SUCCESS:
            code = 404 if status.error_code == INVALID else 400
            raise APIError(code, status.error_message or "Could not install the license")
        if self.installed_details.is_file():
            details = self._read_details(self.installed_details)
        else:
            # The appliance's own job script installed it and wrote no details: ask bin/license.sh.
            details = yield self._shared_check()
        return responses.document(request, details)

    def _installed(self) -> None:
        self._installing = False
        if self._check_after_install:
            self._check_after_install = False
            self._start_check()
