"""Section 9: TLS (optional): replace the certificate the appliance serves.

POST /certs checks the uploaded certificate, key and CA completely (certificates.py: a
few KB of PEM parse in well under a millisecond) and answers 400 at once, with nothing on
disk changed, when they will not do. Otherwise the certs job (jobs/certs.py) checks them
again, installs them where the listener reads them, and tells the appliance's other
services. When it succeeds, the listener loads the new pair: new connections get the new
certificate with no restart; if loading fails, the old one stays in service and GET
/certs says why.

POST /certs/check (an addition) makes the same checks and installs nothing: it answers
what the upload is (subject, issuer, names, fingerprint, dates), so that a client can ask
before replacing a certificate with one that expires sooner, or is for other names.
"""

from __future__ import annotations

import datetime

from twisted.logger import Logger

from ..context import Context
from ..files import remove_quietly
from ..formats.certificates import description, describe, validate
from ..http import responses
from ..http.catalogue import ACCEPTED, FILE, JSON, READ, Endpoint, Field, Reply, Section, get, post
from ..jobs.certs import CERTS
from ..jobs.runner import FAILED, SUCCESS, JobStatus

_TEXT_OR_NULL = {"type": ["string", "null"]}
STATUS_SCHEMA = {
    "type": "object",
    "properties": {
        "status": {"enum": ["running", "success", "failed", None]},
        "log": _TEXT_OR_NULL,
        "error-message": _TEXT_OR_NULL,
        "subject": {"type": "string"},
        "issuer": {"type": "string"},
        "alt-names": {"type": "array", "items": {"type": "string"}},
        "fingerprint": {"type": "string", "description": "SHA-256, as AB:CD:..."},
        "not-before": {"type": "string"},
        "expires": {"type": "string"},
        "days-left": {"type": "integer"},
        "load-error": {"type": "string"},
    },
    "required": ["status", "log"],
}
CHECK_SCHEMA = {
    "type": "object",
    "properties": {
        "subject": {"type": "string"},
        "issuer": {"type": "string"},
        "alt-names": {"type": "array", "items": {"type": "string"}},
        "fingerprint": {"type": "string"},
        "not-before": {"type": "string"},
        "expires": {"type": "string"},
        "days-left": {"type": "integer"},
        "warnings": {"type": "array", "items": {"type": "string"}},
    },
    "required": ["subject", "issuer", "alt-names", "fingerprint", "expires", "days-left", "warnings"],
}
# Where the uploads wait for the job, in the uploads folder (where they were streamed to):
# for the built-in job, and under the names the appliance's update_certs.sh looks for.
STAGED = {"public": "certs-public.pem", "private": "certs-private.key", "ca": "certs-ca.pem"}
APPLIANCE_STAGED = {"public": "appliance.pem", "private": "appliance.key", "ca": "ca.pem"}


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
        context.runner.when_finished(CERTS, self._finished)
        self.load_error: str | None = None

    def section(self) -> Section:
        files = (
            Field("public", FILE, description="The certificate (PEM), optionally followed by its chain"),
            Field("private", FILE, description="Its private key (PEM, unencrypted RSA or EC)"),
            Field("ca", FILE, required=False, description="The certificate(s) of the CA that issued it (PEM)"),
        )
        upload = post(self.upload, "Upload a TLS certificate, its private key and CA, and install them",
                      Reply(ACCEPTED), *files, errors=(400, 413, 507))
        check = post(self.check, "Check a TLS certificate, its private key and CA without installing them",
                     Reply(JSON, CHECK_SCHEMA), *files, errors=(400, 413, 507))
        status = get(self.status, "The status of the last certificates update, and the certificate in service",
                     Reply(JSON, STATUS_SCHEMA), scope=READ)
        return Section(self.name, "TLS", (Endpoint("/certs", (status, upload)),
                                          Endpoint("/certs/check", (check,))), optional=True)

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

    @staticmethod
    def _uploads(form) -> dict:
        uploads = {"public": form.file("public"), "private": form.file("private")}
        if "ca" in form.files or "ca" in form.texts:
            uploads["ca"] = form.file("ca")
        return uploads

    def _validate(self, uploads: dict):
        contents = {name: upload.path.read_bytes() for name, upload in uploads.items()}
        # The whole check, but for the slow consistency check of an RSA key's numbers (a
        # 16384-bit key takes seconds), which the job does.
        return validate(contents["public"], contents["private"], contents.get("ca"), self.now(), check_rsa=False)

    def check(self, request) -> bytes:
        """The checks POST /certs makes, and what the upload is; the files are removed with
        the request, as every upload no handler keeps."""
        candidate = self._validate(self._uploads(request.form))
        facts = describe(candidate.certificate, self.now())
        facts["warnings"] = candidate.warnings
        return responses.document(request, facts, no_cache=True)

    def upload(self, request) -> bytes:
        self.runner.check_free(CERTS)
        uploads = self._uploads(request.form)
        self._validate(uploads)
        names = APPLIANCE_STAGED if self.runner.launcher.scripted(CERTS) else STAGED
        staged = {name: upload.move_to(self.tree.uploads / names[name]) for name, upload in uploads.items()}
        args = ["--public", str(staged["public"]), "--private", str(staged["private"]),
                "--certificate", str(self.tls.certificate), "--private-key", str(self.tls.private_key),
                "--ca-file", str(self.config.tls_ca or self.tree.ca_certificate)]
        if "ca" in staged:
            args += ["--ca", str(staged["ca"])]
        if self.config.tls_bundle is not None:
            args += ["--bundle", str(self.config.tls_bundle)]
        if self.config.admin_group is not None:
            args += ["--group", str(self.config.admin_group)]
        self.runner.start(CERTS, args, script_args=[""])
        return responses.accepted(request, "/certs")

    def _finished(self, outcome: JobStatus) -> None:
        """Serve the new certificate after a success, before the status says so (a job a
        previous daemon left is followed here too); the old one stays on any failure."""
        for name in STAGED.values():  # the appliance's script removes its own
            remove_quietly(self.tree.uploads / name)
        if outcome.status != SUCCESS:
            if self.tls.served() is None:  # the daemon started while this job was left half-done
                self._load("The certificate on disk cannot be loaded even after an interrupted install was undone")
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
            report.update(description(served.subject, served.issuer, served.names, served.sha256,
                                      served.not_before, served.not_after, self.now()))
        if self.load_error is not None:
            report["load-error"] = self.load_error
        return responses.document(request, report, no_cache=True)
