"""The certs job: check an uploaded certificate, key and CA, and install them.

    python -m jidoteki_admin.jobs.certs --admin-path DIR --public FILE --private FILE [--ca FILE]
        --certificate PATH --private-key PATH --ca-file PATH [--bundle PATH] [--group GID]

The uploads are checked again (certificates.py: the section checked them, but the job can
be run by hand), then every file is written beside its target first and a TLS context is
built from the new certificate and key as a last check, exactly as the daemon's listener
builds it. Only then are they swapped into place together under a journal (swap.py): a
failed rename, a SIGTERM, a kill -9 or a power cut leaves the previous certificate on disk
(put back by the job, or by the next start), or the whole new one once it is committed.

Installed: the certificate followed by its chain and the CA's certificates (so the
listener serves the whole chain), the key (0600, or 0640 with ``--group``), the CA's
certificates (left as they were when neither ``--ca`` nor a chain gives any) and, with
``--bundle``, key + certificate + CA in one file (the original's enterprise.pem). A file
that is replaced keeps its owner (and its group, unless ``--group`` names one); a new one
gets the owner of its folder: a daemon that runs unprivileged can read what a root job
wrote.

Then the appliance's hook bin/certs.sh CERTIFICATE KEY CA [BUNDLE] tells its other
services, and the persistence step saves the files for the next boot; a failure of
either puts the previous files back and fails the job.
"""

from __future__ import annotations

import argparse
import datetime
import os
import sys
from pathlib import Path

from OpenSSL import SSL

from ..files import remove_quietly, resolved_target
from ..formats.certificates import Candidate, fingerprint, subject_of, validate
from ..formats.validate import Invalid
from ..layout import AdminTree
from ..persistence import PersistError, persist
from ..tls import build_context
from .program import JobFailed, Program, main, write_log
from .protocol import JobKind
from .status import StatusFiles

UPLOAD_MAX = 1024 * 1024  # the upload cap of each field

CERTS = JobKind(
    name="certs",
    title="a certificates update",
    program="jidoteki_admin.jobs.certs",
    log_name="update_certs.log",
    label="SYSTEM",
    status_name="status_certs",
    group="certs",
    appliance_command="certs",
    appliance_reports=True,
    privileged=True,
    persists=True,
)


def read_upload(path: Path, what: str) -> bytes:
    with open(path, "rb") as f:
        data = f.read(UPLOAD_MAX + 1)
    if len(data) > UPLOAD_MAX:
        raise JobFailed(None, f"The {what} file is too large (at most {UPLOAD_MAX} bytes)")
    return data


class CertsProgram(Program):
    kind = CERTS
    description = "Check and install a TLS certificate, its key and CA."

    def __init__(self, tree: AdminTree, args: argparse.Namespace, status: StatusFiles):
        super().__init__(tree, args, status)
        self.staged: dict[Path, Path] = {}  # target: its new file, written beside it

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--public", type=Path, required=True, help="the uploaded certificate (and chain)")
        parser.add_argument("--private", type=Path, required=True, help="the uploaded private key")
        parser.add_argument("--ca", type=Path, help="the uploaded CA certificate(s)")
        parser.add_argument("--certificate", type=Path, required=True, help="where the certificate is served from")
        parser.add_argument("--private-key", type=Path, required=True, help="where its key is")
        parser.add_argument("--ca-file", type=Path, required=True, help="where the CA certificates go")
        parser.add_argument("--bundle", type=Path, help="key + certificate + CA in one file, for other services")
        parser.add_argument("--group", type=int, help="the group that may read the key (mode 0640)")

    def run(self) -> None:
        args = self.args
        self.step(10, "Validating and adding TLS certificates")
        candidate = self.validate()
        for warning in candidate.warnings:
            self.log(f"WARNING: {warning}")
        self.log(f"Certificate: {subject_of(candidate.certificate)}, issued by "
                 f"{candidate.certificate.issuer.rfc4514_string()}, SHA-256 {fingerprint(candidate.certificate)}")
        self.step(40, "Writing the new files")
        self.stage(candidate)
        self.step(60, "Checking the new certificate and key as the TLS listener will load them")
        try:
            build_context(self.staged[self.resolved(args.certificate)], self.staged[self.resolved(args.private_key)])
        except SSL.Error as e:
            raise JobFailed(None, f"The TLS library refuses the certificate and key: {e}") from None
        self.step(80, "Installing the new files")
        assert self.swap is not None
        self.install(self.swap)
        hook_args = [str(args.certificate), str(args.private_key), str(args.ca_file)]
        if args.bundle is not None:
            hook_args.append(str(args.bundle))
        if not self.run_hook("certs.sh", *hook_args):
            self.log("Certificates installed; no bin/certs.sh, so no other service was told of them")
        self.save_for_next_boot()
        self.step(100, "TLS certificates installed")

    def save_for_next_boot(self) -> None:
        """The persistence step, here rather than after run(): a failure still puts the
        previous files back, so what is served and what is on disk stay the same."""
        self.persisted = True
        try:
            persist(self.tree, self.log, write_log)
        except PersistError as e:
            raise JobFailed(self.kind.unexpected_code, f"The new certificate could not be saved for the next "
                                                       f"boot ({e}); the previous one is back in place") from None

    def validate(self) -> Candidate:
        args = self.args
        try:
            return validate(read_upload(args.public, "public"), read_upload(args.private, "private"),
                            read_upload(args.ca, "ca") if args.ca is not None else None,
                            datetime.datetime.now(datetime.timezone.utc))
        except Invalid as e:
            raise JobFailed(None, str(e)) from None

    def stage(self, candidate: Candidate) -> None:
        """Every new file written beside its target; the certificate and key last."""
        args = self.args
        secret = 0o640 if args.group is not None else 0o600
        files: list[tuple[Path, bytes, int]] = []
        if candidate.ca:
            files.append((args.ca_file, candidate.ca_pem(), 0o644))
        else:
            self.log(f"No CA certificate given: {args.ca_file} left as it was")
        if args.bundle is not None:
            files.append((args.bundle, candidate.bundle_pem(), secret))
        files.append((args.private_key, candidate.key_pem(), secret))
        files.append((args.certificate, candidate.certificate_pem(), 0o644))
        moves = self.changes()
        for path, data, mode in files:
            path.parent.mkdir(parents=True, exist_ok=True)
            owner, group = self.ownership(path)
            if args.group is not None and mode != 0o644:
                group = args.group
            target = moves.stage_file(path, data, mode, group, owner)
            self.staged[target] = moves.entries[-1].staged

    @staticmethod
    def resolved(path: Path) -> Path:
        return resolved_target(path)

    @staticmethod
    def ownership(path: Path) -> tuple[int | None, int | None]:
        """The owner and group a new file takes: the previous file's, else its folder's.

        Only root can give a file away; anyone else writes files of their own.
        """
        if os.geteuid() != 0:
            return None, None
        try:
            st = os.stat(path)
        except FileNotFoundError:
            st = os.stat(path.parent)
        return st.st_uid, st.st_gid

    def clean_up(self) -> None:
        self.remove_uploads()

    def remove_uploads(self) -> None:
        """The uploaded key must not outlive the job, even when the daemon that would have
        removed it was killed meanwhile (the next one stops this job, which ends here).
        Only files in the uploads folder are the daemon's to hand over: a path elsewhere,
        given by hand, is left alone."""
        uploads = self.tree.uploads.resolve()
        for path in (self.args.public, self.args.private, self.args.ca):
            if path is not None and path.resolve().parent == uploads:
                remove_quietly(path)


if __name__ == "__main__":
    sys.exit(main(CertsProgram))
