"""jidoteki-admin-client: the Admin API from a shell, for one appliance or many.

    jidoteki-admin-client --host site-12 version
    jidoteki-admin-client --url https://10.0.0.12:8443 --fingerprint AB:CD:... --token-file t update pkg.enc --wait

A host named with --host is looked up in ~/.config/jidoteki-admin/hosts.toml:

    [site-12]
    url = "https://10.0.0.12:8443"
    token-file = "~/.config/jidoteki-admin/site-12.token"
    fingerprint = "AB:CD:..."          # or: ca = "/path/to/ca.pem"

The token is read from a file (or $JIDOTEKI_ADMIN_TOKEN), never from the command line,
where every user of the machine could read it. Exit status: 0 done, 1 the API or a job
said no, 2 bad usage or configuration, 3 the appliance could not be reached.
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import sys
import tomllib
from pathlib import Path
from typing import Any

from twisted.internet.defer import ensureDeferred
from twisted.internet.task import react

from . import (AdminClient, APIError, ClientError, JobFailed, Misconfigured, Unreachable, presented_fingerprint,
               response_json)

CONFIG = Path("~/.config/jidoteki-admin/hosts.toml")
TOKEN_ENV = "JIDOTEKI_ADMIN_TOKEN"
EXIT_REFUSED, EXIT_USAGE, EXIT_UNREACHABLE = 1, 2, 3


class UsageError(Exception):
    pass


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="jidoteki-admin-client", description=__doc__.split("\n\n")[0])
    top.add_argument("--host", help="a host named in the hosts file")
    top.add_argument("--hosts-file", type=Path, default=CONFIG, help=f"default {CONFIG}")
    top.add_argument("--url", help="https://HOST:PORT of the appliance")
    top.add_argument("--token-file", type=Path, help=f"a file holding the API token (or ${TOKEN_ENV})")
    top.add_argument("--ca", type=Path, help="trust the appliance when its certificate is signed by this CA")
    top.add_argument("--fingerprint", help="trust the appliance when its certificate has this SHA-256 fingerprint")
    top.add_argument("--json", action="store_true", help="print JSON for scripts")
    top.add_argument("--quiet", action="store_true", help="no progress on stderr")
    commands = top.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, summary: str) -> argparse.ArgumentParser:
        return commands.add_parser(name, help=summary, description=summary)

    command("fingerprint", "print the SHA-256 fingerprint the appliance presents (to pin it, after checking it)")
    setup = command("setup", "set the first API token, or change it")
    setup.add_argument("--new-token-file", type=Path, help="read the new token from this file (else it is asked for)")
    for name, summary in (("version", "the installed version"), ("health", "disk, memory and CPU"),
                          ("services", "the status of the services"), ("endpoints", "the endpoints served"),
                          ("build", "the build information"), ("changelog", "the changelog")):
        command(name, summary)
    update = command("update", "upload an update package and start it")
    update.add_argument("package", type=Path)
    update.add_argument("--wait", action="store_true", help="follow the update until it ends")
    command("update-status", "the status of the last update")
    for section, summary in (("settings", "network and application settings"), ("storage", "storage settings"),
                             ("cluster", "cluster settings")):
        sub = command(section, summary)
        verbs = sub.add_subparsers(dest="verb", required=True)
        verbs.add_parser("get", help=f"show the {summary}")
        put = verbs.add_parser("set", help=f"upload new {summary} (a JSON file)")
        put.add_argument("file", type=Path)
    certs = command("certs", "TLS certificates")
    verbs = certs.add_subparsers(dest="verb", required=True)
    verbs.add_parser("status", help="the status of the last install and the certificate in service")
    install = verbs.add_parser("install", help="install a certificate and its private key")
    install.add_argument("--public", type=Path, required=True)
    install.add_argument("--private", type=Path, required=True)
    install.add_argument("--ca", dest="ca_file", type=Path)
    install.add_argument("--wait", action="store_true")
    lic = command("license", "the appliance's license")
    verbs = lic.add_subparsers(dest="verb", required=True)
    verbs.add_parser("get", help="the license details")
    put = verbs.add_parser("set", help="install a license file")
    put.add_argument("file", type=Path)
    backup = command("backup", "back up the appliance's data")
    verbs = backup.add_subparsers(dest="verb", required=True)
    start = verbs.add_parser("start", help="start a backup")
    start.add_argument("--wait", action="store_true")
    verbs.add_parser("stop", help="stop a backup and delete it")
    verbs.add_parser("status", help="the status of the last backup")
    download = verbs.add_parser("download", help="download the last backup")
    download.add_argument("file", type=Path)
    restore = command("restore", "restore a backup archive (waits until done)")
    restore.add_argument("file", type=Path)
    for name, summary in (("logs", "download the logs (logs.tar.gz)"),
                          ("debug", "download the encrypted debug bundle")):
        sub = command(name, summary)
        sub.add_argument("file", type=Path)
    reboot = command("reboot", "reboot the appliance")
    reboot.add_argument("--wait", action="store_true", help="wait until the API answers again")
    reboot.add_argument("--timeout", type=float, default=900.0)
    return top


def host_settings(args: argparse.Namespace) -> dict[str, Any]:
    """The URL, token file and trust, from the options over the hosts file's entry."""
    found: dict[str, Any] = {}
    if args.host:
        path = args.hosts_file.expanduser()
        try:
            hosts = tomllib.loads(path.read_text())
        except FileNotFoundError:
            raise UsageError(f"--host {args.host}: no hosts file at {path}") from None
        except (OSError, tomllib.TOMLDecodeError) as e:
            raise UsageError(f"{path}: {e}") from None
        if not isinstance(hosts.get(args.host), dict):
            raise UsageError(f"--host {args.host}: not in {path} (it has: {', '.join(sorted(hosts)) or 'nothing'})")
        found = dict(hosts[args.host])
    url = args.url or found.get("url")
    if not url:
        raise UsageError("say which appliance: --url https://HOST:PORT or --host NAME")
    ca = args.ca or _path(found.get("ca"))
    fingerprint = args.fingerprint or found.get("fingerprint")
    if args.ca or args.fingerprint:  # an option given wins over the file's trust, either kind
        ca, fingerprint = args.ca, args.fingerprint
    return {"url": url, "token_file": args.token_file or _path(found.get("token-file")),
            "ca_file": ca, "fingerprint": fingerprint}


def _path(value: object) -> Path | None:
    return Path(str(value)).expanduser() if value else None


def read_token(token_file: Path | None) -> str | None:
    if token_file is not None:
        try:
            token = token_file.read_text().splitlines()[0].strip() if token_file.stat().st_size else ""
        except (OSError, IndexError) as e:
            raise UsageError(f"cannot read the token from {token_file}: {e}") from None
        if not token:
            raise UsageError(f"{token_file} is empty")
        return token
    return os.environ.get(TOKEN_ENV) or None


class Output:
    def __init__(self, as_json: bool, quiet: bool):
        self.as_json = as_json
        self.quiet = quiet or not sys.stderr.isatty()
        self._last = -1

    def show(self, value: Any, text: str | None = None) -> None:
        if self.as_json:
            print(json.dumps(value, indent=1))
        else:
            print(text if text is not None else _plain(value))

    def progress(self, done: int, total: int) -> None:
        if self.quiet or not total:
            return
        percent = done * 100 // total
        if percent != self._last:
            self._last = percent
            sys.stderr.write(f"\r{percent:3d}% {done >> 20}/{total >> 20} MiB")
            if done >= total:
                sys.stderr.write("\n")
            sys.stderr.flush()

    def note(self, message: str) -> None:
        if not self.as_json:
            print(message, file=sys.stderr)


def _plain(value: Any) -> str:
    if isinstance(value, dict):
        return "\n".join(f"{k}: {json.dumps(v) if isinstance(v, (dict, list)) else v}" for k, v in value.items())
    if isinstance(value, list):
        return "\n".join(str(v) for v in value)
    return str(value)


class LogFollower:
    """Prints the log lines of a job's status reports once each, as they come."""

    def __init__(self, out: Output):
        self.out = out
        self.seen: list[str] = []

    def __call__(self, report: dict[str, Any]) -> None:
        # The API writes each newline of the log as the two characters backslash and n.
        lines = (report.get("log") or "").replace("\\n", "\n").splitlines()
        new = lines
        for overlap in range(min(len(lines), len(self.seen)), 0, -1):
            if self.seen[-overlap:] == lines[:overlap]:
                new = lines[overlap:]
                break
        self.seen.extend(new)
        if not self.out.as_json:
            for line in new:
                print(line, file=sys.stderr)


async def main_async(reactor, args: argparse.Namespace) -> int:
    out = Output(args.json, args.quiet)
    settings = host_settings(args)
    if args.command == "fingerprint":
        fingerprint = await presented_fingerprint(reactor, settings["url"])
        out.show({"fingerprint": fingerprint}, fingerprint)
        return 0
    token = read_token(settings["token_file"])
    if token is None and args.command != "setup":
        raise UsageError(f"no API token: give --token-file FILE, token-file in the hosts file, or ${TOKEN_ENV}")
    client = AdminClient(reactor, settings["url"], token=token,
                         ca_file=settings["ca_file"], fingerprint=settings["fingerprint"])
    try:
        return await run_command(client, args, out)
    finally:
        await client.close()


async def run_command(client: AdminClient, args: argparse.Namespace, out: Output) -> int:
    command, verb = args.command, getattr(args, "verb", None)
    if command == "setup":
        await client.setup(new_token(args.new_token_file))
        out.show({"Status": "200 OK"}, "The API token is set.")
    elif command in ("version", "health", "services", "endpoints", "build"):
        value = await client.get_json("/" + command)
        out.show(value, value.get("version") if command == "version" else None)
    elif command == "changelog":
        text = await client.changelog()
        out.show({"changelog": text}, text.rstrip("\n"))
    elif command == "update":
        await client.update(args.package, progress=out.progress)
        out.note("Uploaded; the update runs.")
        if args.wait:
            report = await client.wait_for("/update", "The update", LogFollower(out))
            out.show(report, "The update succeeded.")
    elif command == "update-status":
        out.show(await client.get_json("/update"))
    elif command in ("settings", "storage", "cluster", "license") and verb == "get":
        out.show(await client.get_json("/" + command))
    elif command in ("settings", "storage", "cluster") and verb == "set":
        await client.request("POST", "/" + command, files={"settings": args.file})
        out.show({"Status": "202 Accepted"}, f"The new {command} settings are being applied.")
    elif command == "license" and verb == "set":
        response = await client.request("POST", "/license", files={"license": args.file})
        out.show(await response_json(response))
    elif command == "certs" and verb == "status":
        out.show(await client.get_json("/certs"))
    elif command == "certs" and verb == "install":
        await client.install_certs(args.public, args.private, args.ca_file)
        out.note("Uploaded; the certificate is being installed.")
        if args.wait:
            report = await client.wait_for("/certs", "The certificate install", LogFollower(out))
            out.show(report, "The certificate is installed.")
    elif command == "backup":
        return await backup(client, args, out)
    elif command == "restore":
        await client.restore(args.file, progress=out.progress)
        out.show({"Status": "200 OK"}, "Restored.")
    elif command in ("logs", "debug"):
        size = await client.download("/" + command, args.file, progress=out.progress)
        out.show({"file": str(args.file), "bytes": size}, f"Saved {args.file} ({size} bytes).")
    elif command == "reboot":
        await client.reboot()
        out.note("The appliance is rebooting.")
        if args.wait:
            await client.wait_until_answering(args.timeout)
            out.show({"Status": "200 OK"}, "The appliance answers again.")
    return 0


async def backup(client: AdminClient, args: argparse.Namespace, out: Output) -> int:
    if args.verb == "start":
        await client.start_backup()
        out.note("The backup runs.")
        if args.wait:
            report = await client.wait_for("/backup", "The backup")
            out.show(report, f"The backup is ready: {report.get('filesize')} sha256 {report.get('sha256')}")
    elif args.verb == "stop":
        await client.stop_backup()
        out.show({"Status": "202 Accepted"}, "The backup is stopped and deleted.")
    elif args.verb == "status":
        out.show(await client.get_json("/backup"))
    else:
        size = await client.download("/backup/download", args.file, progress=out.progress)
        out.show({"file": str(args.file), "bytes": size}, f"Saved {args.file} ({size} bytes).")
    return 0


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


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    code = [0]

    async def go(reactor) -> None:
        try:
            code[0] = await main_async(reactor, args)
        except (UsageError, Misconfigured) as e:
            print(f"jidoteki-admin-client: {e}", file=sys.stderr)
            code[0] = EXIT_USAGE
        except JobFailed as e:
            print(f"jidoteki-admin-client: {e}", file=sys.stderr)
            if args.json:
                print(json.dumps(e.report, indent=1))
            code[0] = EXIT_REFUSED
        except APIError as e:
            print(f"jidoteki-admin-client: {e.status} {e.message}".rstrip(), file=sys.stderr)
            code[0] = EXIT_REFUSED
        except Unreachable as e:
            print(f"jidoteki-admin-client: {e}", file=sys.stderr)
            code[0] = EXIT_UNREACHABLE
        except ClientError as e:
            print(f"jidoteki-admin-client: {e}", file=sys.stderr)
            code[0] = EXIT_REFUSED
        if code[0]:
            raise SystemExit(code[0])  # react() exits with it

    react(lambda reactor: ensureDeferred(go(reactor)))


if __name__ == "__main__":
    main()
