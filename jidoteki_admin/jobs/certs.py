"""The certs job: check an uploaded certificate, key and CA, and install them.

    python -m jidoteki_admin.jobs.certs --admin-path DIR --public FILE --private FILE [--ca FILE]
        --certificate PATH --private-key PATH --ca-file PATH [--bundle PATH] [--group GID]

The uploads are checked again (certificates.py: the section checked them, but the job can
be run by hand), then every file is written beside its target first and a TLS context is
built from the new certificate and key as a last check, exactly as the daemon's listener
builds it. Only then are they renamed into place, one right after the other; if a rename
fails, what was already renamed is put back, so the previous certificate stays on disk.

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
from dataclasses import dataclass
from pathlib import Path

from OpenSSL import SSL

from ..certificates import Candidate, fingerprint, subject_of, validate
from ..files import fsync_directory, remove_quietly, staged_write
from ..layout import AdminTree
from ..tls import build_context
from ..validate import Invalid
from ..persistence import PersistError, persist
from .program import JobFailed, Program, Progress, main, write_log
from .protocol import JobKind

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
    privileged=True,
    persists=True,
)


@dataclass
class Replacement:
    """One file being installed: its temporary beside the target, and the previous file
    kept (as a hard link) until every rename is done."""

    target: Path
    temporary: Path
    previous: Path | None = None
    installed: bool = False


def read_upload(path: Path, what: str) -> bytes:
    with open(path, "rb") as f:
        data = f.read(UPLOAD_MAX + 1)
    if len(data) > UPLOAD_MAX:
        raise JobFailed(None, f"The {what} file is too large (at most {UPLOAD_MAX} bytes)")
    return data


class CertsProgram(Program):
    kind = CERTS
    description = "Check and install a TLS certificate, its key and CA."

    def __init__(self, tree: AdminTree, args: argparse.Namespace, progress: Progress):
        super().__init__(tree, args, progress)
        self.replacements: list[Replacement] = []
        self.done = False

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
            build_context(self.replacements[-1].temporary, self.replacements[-2].temporary)
        except SSL.Error as e:
            raise JobFailed(None, f"The TLS library refuses the certificate and key: {e}") from None
        self.step(80, "Installing the new files")
        self.install()
        hook_args = [str(args.certificate), str(args.private_key), str(args.ca_file)]
        if args.bundle is not None:
            hook_args.append(str(args.bundle))
        if not self.run_hook("certs.sh", *hook_args):
            self.log("Certificates installed; no bin/certs.sh, so no other service was told of them")
        self.save_for_next_boot()
        self.done = True
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
        for path, data, mode in files:
            path.parent.mkdir(parents=True, exist_ok=True)
            owner, group = self.ownership(path)
            if args.group is not None and mode != 0o644:
                group = args.group
            temporary, target = staged_write(path, data, mode, group, owner)
            self.replacements.append(Replacement(target, temporary))

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

    def install(self) -> None:
        """Rename every new file into place, keeping the previous ones until all are in."""
        try:
            for r in self.replacements:
                if r.target.exists():
                    r.previous = r.target.with_name(f".{r.target.name}.previous")
                    remove_quietly(r.previous)
                    os.link(r.target, r.previous)
            for r in self.replacements:
                os.replace(r.temporary, r.target)
                r.installed = True
        except OSError as e:
            self.put_back()
            raise JobFailed(None, f"Could not install the new files ({e}); the previous ones are in place") from None
        for directory in {r.target.parent for r in self.replacements}:
            fsync_directory(directory)

    def put_back(self) -> None:
        """Undo the renames done so far: each previous file back, each new one gone."""
        for r in reversed(self.replacements):
            if not r.installed:
                continue
            try:
                if r.previous is not None:
                    os.replace(r.previous, r.target)
                    r.previous = None
                else:
                    r.target.unlink()
                r.installed = False
            except OSError as e:
                self.log(f"Could not put {r.target} back as it was: {e}")

    def clean_up(self) -> None:
        if not self.done:
            self.put_back()
        for r in self.replacements:
            remove_quietly(r.temporary)
            if r.previous is not None:
                remove_quietly(r.previous)
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
