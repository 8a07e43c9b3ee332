"""jidoteki-admin-client: the Admin API from a shell, for one appliance or a fleet.

    jidoteki-admin-client --host site-12 version
    jidoteki-admin-client --url https://10.0.0.12:8443 --fingerprint AB:CD:... --token-file t update pkg.enc --wait
    jidoteki-admin-client --group eu --parallel 5 update pkg.enc --wait

Hosts and groups are named in ~/.config/jidoteki-admin/hosts.toml (hosts.py). The token is
read from a file (or $JIDOTEKI_ADMIN_TOKEN), never from the command line, where every user
of the machine could read it.

Exit status: 0 done; 1 the appliance refused (its message); 2 bad usage, configuration or
local file; 3 the appliance could not be reached or did not answer in time; 4 it is not
the certificate trusted; 5 a job failed or did not end in time; 130 interrupted (SIGINT or
SIGTERM); 70 a fault of the client itself. On many appliances, 0 when the command succeeded
on every one, else the highest of their statuses. Every error is one line on stderr; with
--json, also one JSON object on stdout.
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import signal
import sys
import traceback
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

from twisted.internet.defer import CancelledError, Deferred, DeferredSemaphore, ensureDeferred
from twisted.internet.task import react

from . import JOB_TITLES, AdminClient, Started, presented_fingerprint
from .errors import (APIError, ClientError, JobFailed, JobTimedOut, Misconfigured, Unreachable, Untrusted)
from .hosts import CONFIG, TOKEN_ENV, Target, read_hosts, read_token, select, target
from .transport import certificate_fingerprint, normal_fingerprint, shown_fingerprint

PROG = "jidoteki-admin-client"
EXIT_OK, EXIT_REFUSED, EXIT_USAGE, EXIT_UNREACHABLE, EXIT_UNTRUSTED, EXIT_JOB_FAILED = 0, 1, 2, 3, 4, 5
EXIT_BUG, EXIT_INTERRUPTED = 70, 130
OUTCOMES = {EXIT_OK: "ok", EXIT_REFUSED: "refused", EXIT_USAGE: "usage", EXIT_UNREACHABLE: "unreachable",
            EXIT_UNTRUSTED: "untrusted", EXIT_JOB_FAILED: "job failed", EXIT_BUG: "client fault",
            EXIT_INTERRUPTED: "interrupted"}
# How long a command waits for its job (or a rebooted appliance) unless told (--timeout, or
# timeout in the hosts file): an update or a backup may take long; a settings change not.
WAITS = {"update": 3600.0, "backup": 3600.0, "restore": 3600.0, "job": 3600.0, "reboot": 900.0}
DEFAULT_WAIT = 900.0
DOWNLOADS = {("logs", None), ("debug", None), ("backup", "download")}
FILE_DOCUMENTS = {"settings", "storage", "cluster"}


class UsageError(Exception):
    """Bad usage: exit status 2, one line."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message} (see {self.prog} --help)")


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be above 0 seconds: {text!r}")
    return value


def _mode(text: str) -> int:
    try:
        value = int(text.removeprefix("0o"), 8)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an octal file mode: {text!r} (like 0600)") from None
    if not 0 <= value <= 0o777:
        raise argparse.ArgumentTypeError(f"not a file mode: {text!r}")
    return value


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number above 0: {text!r}")
    return value


def _common(ca: bool = True) -> argparse.ArgumentParser:
    """The options every command takes, before or after its name (``version --json``);
    without ``--ca`` for ``certs install``, where it names the CA certificate to install."""
    common = argparse.ArgumentParser(add_help=False)
    s = argparse.SUPPRESS
    which = common.add_argument_group("which appliances")
    which.add_argument("--host", action="append", default=s, metavar="NAME[,NAME...]",
                       help="hosts named in the hosts file (repeat, or separate with commas)")
    which.add_argument("--group", default=s, help="every host of this group in the hosts file ('all': every host)")
    which.add_argument("--parallel", type=_positive, default=s, metavar="N",
                       help="on many hosts, run on at most N at once (default 10)")
    which.add_argument("--hosts-file", type=Path, default=s, help=f"default {CONFIG}")
    which.add_argument("--url", default=s, help="https://HOST:PORT of the appliance")
    which.add_argument("--token-file", type=Path, default=s, help=f"a file holding the API token (or ${TOKEN_ENV})")
    which.add_argument("--token-name", default=s, help="the name of a named token in --token-file (default: the "
                       "API token itself)")
    which.add_argument("--auth", choices=("signature", "hash"), default=s,
                       help="sign every request (the default), or send the old hash, for an appliance that "
                       "predates signed requests")
    if ca:
        which.add_argument("--ca", type=Path, default=s, help="trust the appliance when this CA signed its certificate")
    which.add_argument("--fingerprint", default=s, help="trust the appliance when its certificate has this SHA-256")
    limits = common.add_argument_group("timeouts (seconds)")
    limits.add_argument("--connect-timeout", type=_seconds, default=s, help="to connect (default 10)")
    limits.add_argument("--tls-timeout", type=_seconds, default=s, help="for the TLS handshake (default 10)")
    limits.add_argument("--read-timeout", type=_seconds, default=s,
                        help="for the next byte while a request is under way (default 30)")
    limits.add_argument("--timeout", type=_seconds, default=s,
                        help="for a whole wait: a job to end, an appliance to answer again (default: by command)")
    output = common.add_argument_group("output")
    output.add_argument("--json", action="store_true", default=s, help="print one JSON object on stdout")
    output.add_argument("--quiet", action="store_true", default=s, help="no progress or log lines on stderr")
    output.add_argument("--debug", action="store_true", default=s, help="show the client's own tracebacks")
    return common


def parser() -> argparse.ArgumentParser:
    common = _common()
    top = _Parser(prog=PROG, description=__doc__.split("\n\n")[0], parents=[common])
    commands = top.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=_Parser)

    def command(name: str, summary: str, parent: Any = commands, options: Any = common) -> argparse.ArgumentParser:
        sub: argparse.ArgumentParser = parent.add_parser(name, help=summary, description=summary, parents=[options])
        return sub

    def wait(sub: argparse.ArgumentParser, what: str) -> None:
        sub.add_argument("--wait", action="store_true", help=f"follow {what} to its end, its log lines on stderr")

    def mode(sub: argparse.ArgumentParser) -> None:
        sub.add_argument("--mode", type=_mode, default=0o600, help="the saved file's mode (default 0600)")

    command("fingerprint", "print the SHA-256 fingerprint the appliance presents (to pin it, after checking it)")
    setup = command("setup", "set the first API token, or change it")
    setup.add_argument("--new-token-file", type=Path, help="read the new token from this file (else it is asked for)")
    for name, summary in (("version", "the installed version"), ("health", "disk, memory and CPU"),
                          ("services", "the status of the services"), ("endpoints", "the endpoints served"),
                          ("build", "the build information"), ("changelog", "the changelog")):
        command(name, summary)
    update = command("update", "upload an update package and start it")
    update.add_argument("package", type=Path)
    wait(update, "the update")
    command("update-status", "the status of the last update")
    check = command("update-check", "what a package is and whether the appliance would install it (nothing changes)")
    check.add_argument("package", type=Path)
    stage = command("update-stage", "check a package and keep it on the appliance, to apply later")
    stage.add_argument("package", type=Path)
    command("update-staged", "the package staged, if any")
    wait(command("update-apply", "install the staged package"), "the update")
    command("update-discard", "delete the staged package")
    command("update-history", "every update attempt, newest first")
    tokens = command("tokens", "named tokens with a scope (read or admin)")
    verbs = tokens.add_subparsers(dest="verb", required=True, parser_class=_Parser)
    command("list", "the named tokens (never a token)", verbs)
    create = command("create", "make a named token; it is printed once, on stdout", verbs)
    create.add_argument("name")
    create.add_argument("--scope", choices=("read", "admin"), required=True)
    revoke = command("revoke", "revoke a named token", verbs)
    revoke.add_argument("name")
    for section, summary in (("settings", "network and application settings"), ("storage", "storage settings"),
                             ("cluster", "cluster settings")):
        sub = command(section, summary)
        verbs = sub.add_subparsers(dest="verb", required=True, parser_class=_Parser)
        command("get", f"show the {summary}", verbs)
        put = command("set", f"send new {summary} (a JSON file)", verbs)
        put.add_argument("file", type=Path)
        wait(put, "the change")
    certs = command("certs", "TLS certificates")
    verbs = certs.add_subparsers(dest="verb", required=True, parser_class=_Parser)
    command("status", "the status of the last install and the certificate in service", verbs)
    install = command("install", "install a certificate and its private key (--ca after it: the CA to install)",
                      verbs, _common(ca=False))
    install.add_argument("--public", type=Path, required=True, help="the certificate (PEM), its chain after it")
    install.add_argument("--private", type=Path, required=True, help="its private key (PEM, unencrypted)")
    install.add_argument("--ca", "--ca-cert", dest="ca_file", type=Path,
                         help="the CA certificate that signed it (to trust the appliance by a CA, give --ca before "
                              "the command)")
    wait(install, "the install")
    lic = command("license", "the appliance's license")
    verbs = lic.add_subparsers(dest="verb", required=True, parser_class=_Parser)
    command("get", "the license details", verbs)
    put = command("set", "install a license file", verbs)
    put.add_argument("file", type=Path)
    backup = command("backup", "back up the appliance's data")
    verbs = backup.add_subparsers(dest="verb", required=True, parser_class=_Parser)
    wait(command("start", "start a backup", verbs), "the backup")
    command("stop", "stop a backup and delete it", verbs)
    command("status", "the status of the last backup", verbs)
    download = command("download", "download the last backup", verbs)
    download.add_argument("file", type=Path, help="where to save it ({host} is the host's name)")
    mode(download)
    restore = command("restore", "restore a backup archive (waits until done)")
    restore.add_argument("file", type=Path)
    for name, summary in (("logs", "download the logs (logs.tar.gz)"),
                          ("debug", "download the encrypted debug bundle")):
        sub = command(name, summary)
        sub.add_argument("file", type=Path, help="where to save it ({host} is the host's name)")
        mode(sub)
    reboot = command("reboot", "reboot the appliance")
    reboot.add_argument("--wait", action="store_true", help="wait until the API answers again")
    command("jobs", "every kind of job and its last run")
    job = command("job", "a kind of job's last run")
    job.add_argument("name", help="update, certs, settings, storage, cluster, backup, restore, reboot, ...")
    job.add_argument("--follow", action="store_true", help="print its log from its first line, and follow it to its end")
    return top


DEFAULTS: dict[str, Any] = {"host": [], "group": None, "parallel": 10, "hosts_file": CONFIG, "url": None,
                            "token_file": None, "ca": None, "fingerprint": None, "connect_timeout": None,
                            "tls_timeout": None, "read_timeout": None, "timeout": None, "json": False,
                            "quiet": False, "debug": False}


def parse(argv: list[str]) -> argparse.Namespace:
    args = parser().parse_args(argv)
    for name, value in DEFAULTS.items():
        if not hasattr(args, name):
            setattr(args, name, value)
    args.host = [h.strip() for given in args.host for h in given.split(",") if h.strip()]
    args.verb = getattr(args, "verb", None)
    return args


# Before anything is asked of an appliance: who, and every input checked


@dataclass
class Plan:
    """A command, checked, with the appliances it runs on."""

    args: argparse.Namespace
    targets: list[Target]
    many: bool
    document: dict[str, Any] | None = None  # settings, storage or cluster to send
    new_token: str | None = None
    new_fingerprint: str | None = None  # of the certificate to install

    @property
    def command(self) -> str:
        return str(self.args.command)

    @property
    def verb(self) -> str | None:
        return None if self.args.verb is None else str(self.args.verb)

    def destination(self, host: str) -> Path:
        return Path(str(self.args.file).replace("{host}", host))


def prepare(args: argparse.Namespace) -> Plan:
    """The appliances and inputs of a command, every one checked: UsageError or
    Misconfigured for the first thing wrong, before any appliance is asked anything."""
    command = args.command
    options = vars(args).copy()
    if args.hosts_file != CONFIG:
        options["hosts_prefix"] = f"--hosts-file {args.hosts_file} "
    token = {"fingerprint": "none", "setup": "optional"}.get(command, "required")
    many = bool(args.group) or len(args.host) > 1
    if many and (args.url or args.ca or args.fingerprint):
        raise UsageError("--url, --ca and --fingerprint name one appliance: with --group or several --host, "
                         "each host's own come from the hosts file")
    if args.group and args.host:
        raise UsageError("give --group or --host, not both")
    if many and command == "setup":
        raise UsageError("setup changes one appliance's token at a time: give one --host or --url")
    if args.host or args.group:
        hosts = read_hosts(args.hosts_file)
        names = select(hosts, args.host, args.group, args.hosts_file)
        targets = [target(name, hosts[name], options, token) for name in names]
    else:
        targets = [target(None, {}, options, token)]
    wait = args.timeout or WAITS.get(command, DEFAULT_WAIT)
    targets = [_with_wait(t, wait) for t in targets]
    plan = Plan(args, targets, many)
    _check_inputs(plan)
    return plan


def _with_wait(chosen: Target, default: float) -> Target:
    from dataclasses import replace

    return replace(chosen, timeouts=chosen.timeouts.but(wait=chosen.wait or default))


def _check_inputs(plan: Plan) -> None:
    args, command, verb = plan.args, plan.command, plan.verb
    if command in ("update", "update-check", "update-stage"):
        _readable(args.package, "the update package")
    elif command in FILE_DOCUMENTS and verb == "set":
        plan.document = _json_document(args.file)
    elif command == "license" and verb == "set":
        _readable(args.file, "the license")
    elif command == "restore":
        _readable(args.file, "the backup archive")
    elif command == "certs" and verb == "install":
        public = _readable(args.public, "the certificate")
        _readable(args.private, "the private key")
        if args.ca_file is not None:
            _readable(args.ca_file, "the CA certificate")
        try:
            plan.new_fingerprint = certificate_fingerprint(public)
        except Misconfigured:
            raise Misconfigured(f"{args.public} holds no PEM certificate") from None
    elif command == "setup":
        plan.new_token = new_token(args.new_token_file)
    elif command == "job":
        if not args.name.replace("_", "").isalnum():
            raise UsageError(f"not a job's name: {args.name!r}")
    if (command, verb) in DOWNLOADS:
        if plan.many and "{host}" not in str(args.file):
            raise UsageError(f"on many hosts, put {{host}} in the file's name ({args.file}): "
                             "each host's is saved apart")
        for chosen in plan.targets:
            _destination_ok(plan.destination(chosen.name))


def _readable(path: Path, what: str) -> bytes:
    try:
        if path.is_dir():
            raise Misconfigured(f"{path} is a folder, not {what}")
        with open(path, "rb") as f:
            return f.read(1 << 20)
    except OSError as e:
        raise Misconfigured(f"cannot read {what} {path}: {e.strerror or e}") from None


def _json_document(path: Path) -> dict[str, Any]:
    try:
        value = json.loads(_readable(path, "the settings file"))
    except ValueError as e:
        raise Misconfigured(f"{path} is not JSON: {e}") from None
    if not isinstance(value, dict):
        raise Misconfigured(f"{path} must hold a JSON object")
    return value


def _destination_ok(destination: Path) -> None:
    from . import _writable

    _writable(destination)


def new_token(path: Path | None) -> str:
    if path is not None:
        token = read_token(path)
        assert token is not None
        return token
    if not sys.stdin.isatty():
        token = sys.stdin.readline().strip()
    else:
        token = getpass.getpass("New API token: ")
        if getpass.getpass("Again: ") != token:
            raise UsageError("the two tokens differ")
    if not token:
        raise UsageError("no new token given")
    return token


# Output


class HostOutput:
    """Where the command on one appliance writes as it goes: progress and its job's log
    lines on stderr (each line with the host's name first when there are many), unless
    --quiet or --json. Its result is printed by the caller, once it is known."""

    def __init__(self, args: argparse.Namespace, prefix: str = ""):
        self.prefix = prefix
        self.quiet = args.quiet or args.json
        self.json = args.json
        self.bar = not self.quiet and not prefix and sys.stderr.isatty()
        self._last = -1
        self.lines: list[str] = []  # job NAME --follow: the lines, for --json

    def note(self, message: str) -> None:
        if not self.quiet:
            _write(sys.stderr, f"{self.prefix}{message}\n")

    def log_line(self, line: str) -> None:
        self.note(line)

    def result_line(self, line: str) -> None:
        """A line that is the result itself (job --follow): stdout, as it comes (with
        --json, in the one object printed at the end)."""
        self.lines.append(line)
        if not self.json:
            _write(sys.stdout, f"{self.prefix}{line}\n")

    def progress(self, done: int, total: int) -> None:
        if not self.bar or not total:
            return
        percent = done * 100 // total
        if percent != self._last:
            self._last = percent
            _write(sys.stderr, f"\r{percent:3d}% {done >> 20}/{total >> 20} MiB" + ("\n" if done >= total else ""))


def _write(stream: Any, text: str) -> None:
    try:
        stream.write(text)
        stream.flush()
    except BrokenPipeError:  # `| head`: the reader left; nothing more to say
        pass


def _plain(value: Any) -> str:
    if isinstance(value, dict):
        return "\n".join(f"{k}: {json.dumps(v) if isinstance(v, (dict, list)) else v}" for k, v in value.items())
    if isinstance(value, list):
        return "\n".join(_plain(v) if isinstance(v, dict) else str(v) for v in value)
    return str(value)


# What a command does on one appliance


@dataclass
class Activity:
    """What a command was doing, for the message when it is interrupted."""

    phase: str | None = None  # "upload", "wait", "reboot"
    job: str | None = None
    run: str | None = None
    uploaded: bool = False  # every byte of the upload was sent

    def uploading(self, job: str, out: HostOutput) -> Callable[[int, int], None]:
        self.phase, self.job = "upload", job

        def progress(done: int, total: int) -> None:
            self.uploaded = done >= total
            out.progress(done, total)
        return progress


@dataclass
class Result:
    value: Any  # what --json prints
    text: str | None  # what is printed otherwise (None: nothing)


async def perform(client: AdminClient, plan: Plan, chosen: Target, out: HostOutput, activity: Activity) -> Result:
    """Run the command on one appliance."""
    command, verb, args = plan.command, plan.verb, plan.args
    follow_hint = f"{PROG} {chosen.selector} job {{job}} --follow"

    async def follow(started: Started) -> dict[str, Any]:
        activity.phase, activity.job = "wait", started.job
        state = await client.follow(started, on_line=out.log_line)
        activity.phase = None
        return state.raw

    def accepted(started: Started, text: str) -> Result:
        activity.phase = None
        hint = f"; follow it with: {follow_hint.format(job=started.job)}" if started.jobs_served else ""
        return Result({**started.answer, "job": started.job}, text + hint)

    if command == "setup":
        assert plan.new_token is not None
        await client.setup(plan.new_token)
        if chosen.token is None:
            return Result({"Status": "200 OK"}, "The API token is set.")
        return Result({"Status": "200 OK"}, "The API token is changed: put the new one in the token file.")
    if command in ("version", "health", "services", "endpoints", "build"):
        value = await client.get_document("/" + command)
        return Result(value, str(value.get("version")) if command == "version" else _plain(value))
    if command == "changelog":
        text = await client.changelog()
        return Result({"changelog": text}, text.rstrip("\n"))
    if command == "update":
        started = await client.update(args.package, progress=activity.uploading("update", out))
        if not args.wait:
            return accepted(started, "Uploaded; the update runs on the appliance")
        out.note("Uploaded; the update runs.")
        report = await follow(started)
        return Result(report, "The update succeeded.")
    if command == "update-status":
        value = (await client.update_status()).raw
        return Result(value, _plain(value))
    if command in ("update-check", "update-stage"):
        submit = client.check_update if command == "update-check" else client.stage_update
        checked = await submit(args.package, progress=activity.uploading("update", out))
        if not checked.get("installable"):
            raise ClientError(f"it would not install: {checked.get('problem')}")
        said = (f"{checked.get('version')} would install over {checked.get('installed')}" if command == "update-check"
                else f"{checked.get('version')} is staged; install it with: {PROG} {chosen.selector} update-apply")
        return Result(checked, said)
    if command == "update-staged":
        staged = await client.staged_update()
        return Result({"staged": staged}, _plain(staged) if staged else "Nothing is staged.")
    if command == "update-apply":
        started = await client.apply_update()
        if not args.wait:
            return accepted(started, "The staged package is being installed")
        report = await follow(started)
        return Result(report, "The update succeeded.")
    if command == "update-discard":
        await client.discard_update()
        return Result({"Status": "200 OK"}, "The staged package is deleted.")
    if command == "update-history":
        history = await client.update_history()
        attempts = [(str(h.get("ended") or h.get("started") or "-"), str(h.get("from") or "-"), str(h.get("to") or "-"),
                     str(h.get("outcome") or "-"), str(h.get("error-code") or "")) for h in history]
        return Result({"history": history}, _table(("WHEN", "FROM", "TO", "OUTCOME", "CODE"), attempts))
    if command == "tokens":
        if verb == "list":
            listed = await client.tokens()
            named = [(str(t.get("name", "")), str(t.get("scope", "")), str(t.get("created", ""))) for t in listed]
            return Result({"tokens": listed}, _table(("NAME", "SCOPE", "CREATED"), named))
        if verb == "create":
            made = await client.create_token(args.name, args.scope)
            return Result(made, str(made.get("token")))
        await client.revoke_token(args.name)
        return Result({"Status": "200 OK"}, f"The token {args.name} is revoked.")
    if command in ("settings", "storage", "cluster", "license") and verb == "get":
        value = await client.get_document("/" + command)
        return Result(value, _plain(value))
    if command in FILE_DOCUMENTS and verb == "set":
        assert plan.document is not None
        send = {"settings": client.set_settings, "storage": client.set_storage, "cluster": client.set_cluster}[command]
        started = await send(plan.document)
        said = {"settings": "The new network and application settings are being applied",
                "storage": "The new storage settings are being saved; they apply at the next reboot",
                "cluster": "The new cluster settings are being applied"}[command]
        if not args.wait:
            return accepted(started, said)
        report = await follow(started)
        return Result(report, said.replace("are being applied", "are applied").replace("are being saved", "are saved")
                      + ".")
    if command == "license" and verb == "set":
        value = await client.install_license(Path(args.file))
        return Result(value, _plain(value))
    if command == "certs" and verb == "status":
        value = (await client.certs_status()).raw
        return Result(value, _plain(value))
    if command == "certs" and verb == "install":
        return await install_certs(client, plan, chosen, out, follow, accepted)
    if command == "backup":
        return await backup(client, plan, chosen, out, follow, accepted)
    if command == "restore":
        activity.job = "restore"
        await client.restore(args.file, progress=activity.uploading("restore", out))
        return Result({"Status": "200 OK"}, "Restored.")
    if command in ("logs", "debug"):
        destination = plan.destination(chosen.name)
        download = client.logs if command == "logs" else client.debug_bundle
        size = await download(destination, progress=out.progress, mode=args.mode)
        return Result({"file": str(destination), "bytes": size}, f"Saved {destination} ({size} bytes).")
    if command == "reboot":
        started = await client.reboot()
        activity.phase, activity.job = "reboot", "reboot"
        going = await client.rebooting(started, timeout=min(client.timeouts.wait, 300.0))
        said = "The appliance is rebooting." if going else "The appliance was asked to reboot."
        if not args.wait:
            activity.phase = None
            return Result({"Status": "202 Accepted", "rebooting": going}, said)
        out.note(said)
        await client.wait_until_answering(gone_first=True)
        activity.phase = None
        return Result({"Status": "200 OK"}, "The appliance answers again.")
    if command == "jobs":
        states = await client.jobs()
        rows = [(s.name, s.status or "-", s.run or "-", s.ended or s.started or "-") for s in states]
        return Result({"jobs": [s.raw for s in states]}, _table(("JOB", "STATUS", "RUN", "WHEN"), rows))
    if command == "job":
        if not args.follow:
            value = (await client.job(args.name)).raw
            return Result(value, _plain(value))
        activity.phase, activity.job = "wait", args.name
        state = await client.follow(args.name, on_line=out.result_line)
        activity.phase = None
        title = JOB_TITLES.get(args.name, f"The {args.name} job")
        said = f"{title}: {state.status}" if state.run is not None else f"{title} has not run on this appliance."
        return Result({**state.raw, "lines": out.lines}, said)
    raise UsageError(f"unknown command {command}")  # pragma: no cover (argparse allows only the above)


async def install_certs(client: AdminClient, plan: Plan, chosen: Target, out: HostOutput,
                        follow: Callable[[Started], Awaitable[dict[str, Any]]],
                        accepted: Callable[[Started, str], Result]) -> Result:
    """Install a certificate, and say its fingerprint: a pin in the hosts file stops
    matching once the appliance presents it."""
    args, new = plan.args, plan.new_fingerprint
    assert new is not None
    started = await client.install_certs(args.public, args.private, args.ca_file)
    pin = f'fingerprint = "{new}"'
    if not args.wait:
        result = accepted(started, f"Uploaded; the appliance installs the certificate {new}. Once it has, "
                                   f"pin it in the hosts file ({pin})")
        return Result({**result.value, "fingerprint": new}, result.text)
    out.note("Uploaded; the certificate is being installed.")
    report = await follow(started)
    # From a new connection that trusts only the new certificate: the appliance serves it.
    async with AdminClient(client.reactor, client.url, token=chosen.token, fingerprint=new,
                           timeouts=client.timeouts, token_name=chosen.token_name, auth=chosen.auth) as check:
        await check.certs_status()
    return Result({**report, "fingerprint": new},
                  f"The certificate is installed; the appliance presents {new}.\nPin it in the hosts file: {pin}")


async def backup(client: AdminClient, plan: Plan, chosen: Target, out: HostOutput,
                 follow: Callable[[Started], Awaitable[dict[str, Any]]],
                 accepted: Callable[[Started, str], Result]) -> Result:
    args, verb = plan.args, plan.verb
    if verb == "start":
        started = await client.start_backup()
        if not args.wait:
            return accepted(started, "The backup runs on the appliance")
        out.note("The backup runs.")
        await follow(started)
        status = await client.backup_status()
        return Result(status.raw, f"The backup is ready: {status.filesize} sha256 {status.sha256}")
    if verb == "stop":
        started = await client.stop_backup()
        return accepted(started, "The backup is being stopped and its archive deleted")
    if verb == "status":
        value = (await client.backup_status()).raw
        return Result(value, _plain(value))
    destination = plan.destination(chosen.name)
    size = await client.download_backup(destination, progress=out.progress, mode=args.mode)
    return Result({"file": str(destination), "bytes": size}, f"Saved {destination} ({size} bytes).")


async def fingerprint(reactor: Any, chosen: Target) -> Result:
    """The fingerprint presented; compared with the pin when there is one, so that a
    group's pins can be checked in one command."""
    presented = await presented_fingerprint(reactor, chosen.url, chosen.timeouts)
    if chosen.fingerprint is None:
        return Result({"fingerprint": presented}, presented)
    pinned = shown_fingerprint(normal_fingerprint(chosen.fingerprint))
    if presented != pinned:
        raise Untrusted(f"{chosen.name} presents the certificate {presented}, not the one pinned ({pinned})",
                        presented, pinned)
    return Result({"fingerprint": presented, "pinned": True}, f"{presented} (the one pinned)")


# Outcomes


@dataclass
class Report:
    """How the command went on one appliance."""

    host: str
    code: int
    seconds: float
    result: Result | None = None
    message: str | None = None
    details: dict[str, Any] = field(default_factory=dict)
    version: str | None = None

    @property
    def outcome(self) -> str:
        return OUTCOMES.get(self.code, "failed")

    def as_json(self) -> dict[str, Any]:
        value: dict[str, Any] = {"host": self.host, "outcome": self.outcome, "exit": self.code,
                                 "seconds": round(self.seconds, 3), "version": self.version}
        if self.result is not None:
            value["result"] = self.result.value
        if self.message is not None:
            value.update(self.error_json())
        return value

    def error_json(self) -> dict[str, Any]:
        return {"error": self.outcome, "exit": self.code, "message": self.message, "host": self.host,
                **self.details}


def classify(error: BaseException, activity: Activity, chosen: Target, debug: bool) -> tuple[int, str, dict[str, Any]]:
    """The exit status, one-line message and details of what went wrong."""
    follow = f"{PROG} {chosen.selector} job {activity.job} --follow"
    if isinstance(error, CancelledError):
        return EXIT_INTERRUPTED, interrupted(activity, chosen), {"job": activity.job}
    if isinstance(error, (Misconfigured, UsageError)):
        return EXIT_USAGE, str(error), {}
    if isinstance(error, APIError):
        return EXIT_REFUSED, f"refused: {error.describe()}", {"status": error.status, "error-message": error.message}
    if isinstance(error, Untrusted):
        return EXIT_UNTRUSTED, f"not the certificate trusted: {error}", {"presented": error.presented,
                                                                         "trusted": error.expected}
    if isinstance(error, Unreachable):
        return EXIT_UNREACHABLE, str(error), {}
    if isinstance(error, JobFailed):
        return EXIT_JOB_FAILED, str(error), {"error-code": error.code, "report": error.report}
    if isinstance(error, JobTimedOut):
        return EXIT_JOB_FAILED, f"{error}; follow it with: {follow}", {"job": error.job, "run": error.run}
    if isinstance(error, ClientError):
        return EXIT_REFUSED, str(error), {}
    if debug:
        traceback.print_exception(error)
    return EXIT_BUG, f"a fault in the client, please report it (with --debug): {type(error).__name__}: {error}", {}


def interrupted(activity: Activity, chosen: Target) -> str:
    """Say plainly what an interrupt leaves behind on the appliance."""
    job = activity.job or "job"
    title = JOB_TITLES.get(job, f"the {job} job")
    title = title[0].lower() + title[1:]
    see = f"{PROG} {chosen.selector} job {job}"
    if activity.phase == "upload" and not activity.uploaded:
        return "interrupted during the upload: the appliance keeps nothing of a partial upload, and nothing started"
    if activity.phase == "upload":
        return f"interrupted as the upload ended: {title} may have started on the appliance; see: {see}"
    if activity.phase == "wait":
        return f"interrupted: {title} goes on on the appliance; follow it with: {see} --follow"
    if activity.phase == "reboot":
        return f"interrupted: the appliance reboots all the same; see whether it answers: {PROG} {chosen.selector} health"
    return "interrupted"


async def run_one(reactor: Any, plan: Plan, chosen: Target, out: HostOutput) -> Report:
    """The command on one appliance, whatever happens: a Report, never an exception."""
    start = reactor.seconds()
    activity = Activity()
    client: AdminClient | None = None
    report = Report(chosen.name, EXIT_OK, 0.0)
    try:
        if plan.command == "fingerprint":
            report.result = await fingerprint(reactor, chosen)
        else:
            client = AdminClient(reactor, chosen.url, token=chosen.token, ca_file=chosen.ca_file,
                                 fingerprint=chosen.fingerprint, timeouts=chosen.timeouts,
                                 token_name=chosen.token_name, auth=chosen.auth)
            report.result = await perform(client, plan, chosen, out, activity)
    except BaseException as error:  # noqa: B036 (a cancellation is an outcome too)
        if isinstance(error, (KeyboardInterrupt, SystemExit)):
            raise
        report.code, report.message, report.details = classify(error, activity, chosen, plan.args.debug)
    try:
        if plan.many and client is not None and report.code in (EXIT_OK, EXIT_REFUSED, EXIT_JOB_FAILED):
            report.version = await _version(client, plan, report)
    finally:
        if client is not None:
            await client.close()
    report.seconds = reactor.seconds() - start
    return report


async def _version(client: AdminClient, plan: Plan, report: Report) -> str | None:
    if plan.command == "version" and report.result is not None:
        return str(report.result.value.get("version"))
    try:
        return await client.version()
    except ClientError:
        return None


# One appliance, or many


async def main_async(reactor: Any, plan: Plan, session: Session) -> int:
    args = plan.args
    if not plan.many:
        out = HostOutput(args)
        report: Report = await session.track(ensureDeferred(run_one(reactor, plan, plan.targets[0], out)))
        show_one(report, args)
        return report.code
    semaphore = DeferredSemaphore(args.parallel)
    reports: list[Report] = []

    async def one(chosen: Target) -> Report:
        try:
            await semaphore.acquire()
        except CancelledError:
            return Report(chosen.name, EXIT_INTERRUPTED, 0.0, message="interrupted before it started")
        try:
            report = await run_one(reactor, plan, chosen, HostOutput(args, prefix=f"{chosen.name}: "))
        finally:
            semaphore.release()
        show_progress(report, args)
        return report

    tasks = [session.track(ensureDeferred(one(chosen))) for chosen in plan.targets]
    for task in tasks:
        reports.append(await task)
    show_many(reports, args)
    return max(report.code for report in reports)


def show_one(report: Report, args: argparse.Namespace) -> None:
    if report.message is not None:
        _write(sys.stderr, f"{PROG}: {report.host}: {report.message}\n")
        if args.json:
            _write(sys.stdout, json.dumps(report.error_json(), indent=1) + "\n")
        return
    assert report.result is not None
    if args.json:
        _write(sys.stdout, json.dumps(report.result.value, indent=1) + "\n")
    elif report.result.text is not None:
        _write(sys.stdout, report.result.text + "\n")


def show_progress(report: Report, args: argparse.Namespace) -> None:
    """As each host ends: its error on stderr; a result of several lines on stdout."""
    if report.message is not None:
        _write(sys.stderr, f"{PROG}: {report.host}: {report.message}\n")
    elif not args.json and report.result is not None and report.result.text and "\n" in report.result.text:
        _write(sys.stdout, f"== {report.host} ==\n{report.result.text}\n")


def show_many(reports: list[Report], args: argparse.Namespace) -> None:
    if args.json:
        _write(sys.stdout, json.dumps({"exit": max(r.code for r in reports), "hosts": [r.as_json() for r in reports]},
                                      indent=1) + "\n")
        return
    rows = []
    for r in reports:
        detail = r.message if r.message is not None else (r.result.text if r.result and r.result.text else "")
        detail = detail if "\n" not in detail else detail.split("\n", 1)[0] + " ..."
        rows.append((r.host, r.outcome, r.version or "-", f"{r.seconds:.1f}s", detail))
    failed = sum(1 for r in reports if r.code)
    summary = f"{len(reports) - failed} of {len(reports)} succeeded" + (f", {failed} did not" if failed else "")
    _write(sys.stdout, _table(("HOST", "OUTCOME", "VERSION", "TIME", "DETAIL"), rows) + "\n" + summary + "\n")


def _table(head: tuple[str, ...], rows: Sequence[tuple[str, ...]]) -> str:
    widths = [max(len(str(row[i])) for row in [head, *rows]) for i in range(len(head))]
    lines = ["  ".join(str(cell).ljust(width) for cell, width in zip(row, widths)).rstrip() for row in [head, *rows]]
    return "\n".join(lines)


# Running it: the reactor, signals, and nothing but one line for any error


class Session:
    """The work under way, for SIGINT and SIGTERM to cancel: each appliance's command then
    ends as interrupted and says what goes on without it."""

    def __init__(self) -> None:
        self.tasks: list[Deferred[Any]] = []
        self.interrupted: int | None = None

    def track(self, task: Deferred[Any]) -> Deferred[Any]:
        self.tasks.append(task)
        return task

    def interrupt(self, signum: int) -> None:
        if self.interrupted is not None:
            return
        self.interrupted = signum
        for task in self.tasks:
            task.cancel()


def run(work: Callable[[Any, Session], Coroutine[Any, Any, int]], debug: bool, as_json: bool) -> NoReturn:
    """Run ``work`` on the reactor and exit with its status. SIGINT and SIGTERM cancel it
    (it then reports what it left running, and ends with 130); a second one, or one it
    does not answer within five seconds, ends the process at once with 130."""
    from twisted.logger import globalLogBeginner, textFileLogObserver

    session = Session()

    def start(reactor: Any) -> Deferred[None]:
        # Twisted's own log (an unhandled error in a Deferred, say) goes nowhere unless
        # asked: every error reaches the user as one line, from here.
        observers: list[Any] = [textFileLogObserver(sys.stderr)] if debug else [lambda event: None]
        globalLogBeginner.beginLoggingTo(observers, discardBuffer=True, redirectStandardIO=False)

        def leave_now() -> None:
            _write(sys.stderr, f"{PROG}: interrupted\n")
            os._exit(EXIT_INTERRUPTED)

        def interrupt(signum: int) -> None:
            if session.interrupted is not None:
                leave_now()
            session.interrupt(signum)
            reactor.callLater(5, leave_now)

        def on_signal(signum: int, _frame: Any) -> None:
            reactor.callFromThread(interrupt, signum)

        def handle_signals() -> None:
            signal.signal(signal.SIGINT, on_signal)
            signal.signal(signal.SIGTERM, on_signal)

        # In place of the reactor's own handlers, which would stop it under the work's
        # feet and end with 0 as if all went well: now, and again once it runs (it
        # installs its own as it starts).
        handle_signals()
        reactor.callWhenRunning(handle_signals)
        task: Deferred[int] = ensureDeferred(work(reactor, session))

        def finished(result: Any) -> None:
            code = result if isinstance(result, int) else EXIT_BUG
            if not isinstance(result, int):
                error = getattr(result, "value", result)
                if debug:
                    result.printTraceback(file=sys.stderr)
                _write(sys.stderr, f"{PROG}: a fault in the client, please report it (with --debug): "
                                   f"{type(error).__name__}: {error}\n")
                if as_json:
                    _write(sys.stdout, json.dumps({"error": OUTCOMES[EXIT_BUG], "exit": EXIT_BUG,
                                                   "message": str(error)}) + "\n")
            if code:
                raise SystemExit(code)  # react() exits with it

        return task.addBoth(finished)

    react(start)
    raise SystemExit(0)  # pragma: no cover (react exits)


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    as_json = "--json" in argv
    try:
        args = parse(argv)
        plan = prepare(args)
    except (UsageError, Misconfigured) as e:
        _fail(EXIT_USAGE, str(e), as_json)
    except KeyboardInterrupt:
        _fail(EXIT_INTERRUPTED, "interrupted", as_json)
    except EOFError:
        _fail(EXIT_USAGE, "no new token given", as_json)
    except Exception as e:  # noqa: BLE001 (one line, whatever it is)
        if "--debug" in argv:
            traceback.print_exc()
        _fail(EXIT_BUG, f"a fault in the client, please report it (with --debug): {type(e).__name__}: {e}", as_json)
    run(lambda reactor, session: main_async(reactor, plan, session), args.debug, as_json)


def _fail(code: int, message: str, as_json: bool) -> NoReturn:
    _write(sys.stderr, f"{PROG}: {message}\n")
    if as_json:
        _write(sys.stdout, json.dumps({"error": OUTCOMES[code], "exit": code, "message": message}, indent=1) + "\n")
    sys.exit(code)


if __name__ == "__main__":
    main()
