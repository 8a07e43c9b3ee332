"""Section 9: TLS (optional): replace the certificate the appliance serves.

POST /certs checks the uploaded certificate, key and CA completely (certificates.py: a
few KB of PEM parse in well under a millisecond) and answers 400 at once, with nothing on
disk changed, when they will not do. Otherwise the certs job (jobs/certs.py) checks them
again, installs them where the listener reads them, and tells the appliance's other
services. When it succeeds, the listener loads the new pair: new connections get the new
certificate with no restart; if loading fails, the old one stays in service and GET
/certs says why.
"""

from __future__ import annotations

import datetime

from twisted.application.service import Service
from twisted.logger import Logger

from .. import responses
from ..catalogue import ACCEPTED, FILE, JSON, Endpoint, Field, Reply, Section, get, post
from ..certificates import days_left, iso, validate
from ..context import Context
from ..files import remove_quietly
from ..jobs.certs import CERTS
from ..runner import FAILED, SUCCESS, JobStatus

_TEXT_OR_NULL = {"type": ["string", "null"]}
STATUS_SCHEMA = {
    "type": "object",
    "properties": {
        "status": {"enum": ["running", "success", "failed", None]},
        "log": _TEXT_OR_NULL,
        "error-message": _TEXT_OR_NULL,
        "subject": {"type": "string"},
        "expires": {"type": "string"},
        "days-left": {"type": "integer"},
        "load-error": {"type": "string"},
    },
    "required": ["status", "log"],
}
# Where the uploads wait for the job, in the uploads folder (where they were streamed to).
STAGED = {"public": "certs-public.pem", "private": "certs-private.key", "ca": "certs-ca.pem"}


class Certs:
    name = "certs"
    optional = True
    log = Logger()

    def __init__(self, context: Context):
        self.tree, self.config = context.tree, context.config
        self.runner = context.runner
        self.tls = context.tls
        self.clock = context.clock
        context.runner.register(CERTS)
        self.load_error: str | None = None

    def section(self) -> Section:
        upload = post(
            self.upload, "Upload a TLS certificate, its private key and CA, and install them", Reply(ACCEPTED),
            Field("public", FILE, description="The certificate (PEM), optionally followed by its chain"),
            Field("private", FILE, description="Its private key (PEM, unencrypted RSA or EC)"),
            Field("ca", FILE, required=False, description="The certificate(s) of the CA that issued it (PEM)"),
            errors=(400, 413, 507),
        )
        status = get(self.status, "The status of the last certificates update, and the certificate in service",
                     Reply(JSON, STATUS_SCHEMA))
        return Section(self.name, "TLS", (Endpoint("/certs", (status, upload)),), optional=True)

    def services(self) -> list[Service]:
        return [_ReloadAfterOrphan(self)]

    def reload_after_orphan(self) -> None:
        """A certificates job the previous daemon left running was stopped at start-up,
        after this daemon loaded the certificate: the job may have put the previous files
        back on its way out. Serve what is on disk now."""
        self.runner.orphan_stopped(CERTS).addCallback(self._reload_if_orphaned)

    def _reload_if_orphaned(self, there_was_one: bool) -> None:
        if not there_was_one:
            return
        if self._load("The certificate on disk could not be loaded after an interrupted install; "
                      "the one loaded at start is still in service"):
            self.log.info("Loaded the TLS certificate again after stopping an interrupted install")

    def _load(self, why_not: str) -> bool:
        """Serve the certificate on disk to new connections; if it cannot be loaded, the one
        in service stays, and GET /certs says why (``why_not``, then the error)."""
        try:
            self.tls.load()
        except Exception as e:
            self.load_error = f"{why_not}: {type(e).__name__}: {e}"
            self.log.error("{problem}", problem=self.load_error)
            return False
        self.load_error = None
        return True

    def now(self) -> datetime.datetime:
        return datetime.datetime.fromtimestamp(self.clock.seconds(), datetime.timezone.utc)

    def upload(self, request) -> bytes:
        self.runner.check_free(CERTS)
        form = request.form
        uploads = {"public": form.file("public"), "private": form.file("private")}
        if "ca" in form.files or "ca" in form.texts:
            uploads["ca"] = form.file("ca")
        contents = {name: upload.path.read_bytes() for name, upload in uploads.items()}
        # The whole check, but for the slow consistency check of an RSA key's numbers (a
        # 16384-bit key takes seconds), which the job does.
        validate(contents["public"], contents["private"], contents.get("ca"), self.now(), check_rsa=False)
        staged = {name: upload.move_to(self.tree.uploads / STAGED[name]) for name, upload in uploads.items()}
        args = ["--public", str(staged["public"]), "--private", str(staged["private"]),
                "--certificate", str(self.tls.certificate), "--private-key", str(self.tls.private_key),
                "--ca-file", str(self.config.tls_ca or self.tree.ca_certificate)]
        if "ca" in staged:
            args += ["--ca", str(staged["ca"])]
        if self.config.tls_bundle is not None:
            args += ["--bundle", str(self.config.tls_bundle)]
        if self.config.admin_group is not None:
            args += ["--group", str(self.config.admin_group)]
        running = self.runner.start(CERTS, args)
        running.addBoth(self._finished, list(staged.values()))
        return responses.accepted(request, "/certs")

    def _finished(self, result: object, staged: list) -> None:
        """Serve the new certificate after a success; the old one stays on any failure."""
        for path in staged:
            remove_quietly(path)
        if not isinstance(result, JobStatus):
            self.log.failure("The certificates job could not be followed", result)
            return
        if result.status != SUCCESS:
            return
        if self._load("The new certificate is installed but could not be loaded; the previous one is still in service"):
            served = self.tls.served()
            self.log.info("Serving the new TLS certificate {subject}",
                          subject=served.subject if served is not None else "?")

    def status(self, request) -> bytes:
        status, report = self.runner.report(CERTS)
        if status.status == FAILED:
            report["error-message"] = status.error_message
        served = self.tls.served()
        if served is not None:
            report.update({"subject": served.subject, "expires": iso(served.not_after),
                           "days-left": days_left(served.not_after, self.now())})
        if self.load_error is not None:
            report["load-error"] = self.load_error
        return responses.document(request, report, no_cache=True)


class _ReloadAfterOrphan(Service):
    """Starts with the daemon, after the job runner (which stops left-over jobs)."""

    def __init__(self, certs: Certs):
        self.certs = certs

    def startService(self) -> None:
        super().startService()
        self.certs.reload_after_orphan()
