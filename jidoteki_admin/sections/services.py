"""Section 6: the status of the services the appliance names, and of the daemon itself.

The names are the config's "services", then those in the appliance's services file
(/usr/local/etc/allservices.txt on appliances in the field); the daemon (named
jidoteki-admin-api, as on the original appliances) is listed last, as the API reference
shows it. Each service, the daemon too, is asked in a child process, the first of these
that the appliance has:

1. the hook bin/service-status NAME (exit 0 means running);
2. the init script <init-directory>/NAME, asked ``status`` (running when its output says
   "is running" or "online"), as appliances without systemd were always asked;
3. ``systemctl is-active NAME``;

and a service none of them can ask about is "not running" (the daemon itself, which is
answering, "running").

With "jobs": "appliance" the appliance's own update_services.sh answers, through its
wrapper (SSH_ORIGINAL_COMMAND=services), and its output is the answer, as the original
gave it: 404 when it prints nothing.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from twisted.internet import defer

from ..context import Context
from ..http import responses
from ..http.catalogue import JSON, READ, Endpoint, Reply, Section, get
from ..http.responses import APIError
from ..jobs.children import default_env, run_child
from ..jobs.runner import ApplianceScripts

SELF = "jidoteki-admin-api"
STATUS_HOOK = "service-status"
QUERY_TIMEOUT = 10.0
SERVICES_FILE_MAX = 64 * 1024
RUNNING_WORDS = (b"is running", b"online")


SERVICES_SCHEMA = {
    "type": "object",
    "properties": {
        "services": {
            "type": "array",
            "items": {"type": "object", "additionalProperties": {"enum": ["running", "not running"]}},
        }
    },
}


class Services:
    name = "services"
    optional = False

    def __init__(self, context: Context):
        self.tree = context.tree
        self.names = [name for name in context.config.services if name != SELF]
        self.reactor = context.reactor
        self.services_file = context.config.services_file
        self.init_directory = context.config.init_directory
        launcher = context.runner.launcher
        self.script = launcher.script_command("services") if isinstance(launcher, ApplianceScripts) else None

    def reload(self, config) -> None:
        """On SIGHUP: report the services the config names now."""
        self.names = [name for name in config.services if name != SELF]

    def section(self) -> Section:
        status = get(self.status, "Whether the daemon and the appliance's services run", Reply(JSON, SERVICES_SCHEMA),
                     scope=READ)
        return Section(self.name, "Services", (Endpoint("/services", (status,)),))

    @defer.inlineCallbacks
    def status(self, request):
        if self.script is not None:
            answer = yield self._scripted()
            request.setHeader(b"Cache-Control", b"no-cache")
            return responses.body(request, 200, answer, responses.JSON)
        names = self.all_names()
        states = yield defer.gatherResults([self.state_of(name) for name in names] + [self.state_of(SELF, itself=True)])
        listing = [{name: state} for name, state in zip([*names, SELF], states)]
        return responses.document(request, {"services": listing}, no_cache=True)

    @defer.inlineCallbacks
    def _scripted(self):
        """The wrapper's output: the original's answer, byte for byte."""
        assert self.script is not None
        out: list[bytes] = []
        result = yield run_child(self.reactor, self.script.argv, env={**default_env(), **self.script.env},
                                 timeout=QUERY_TIMEOUT, on_line=out.append, cwd=str(self.tree.tmp)).done
        answer = b"\n".join(out).strip()
        if not answer:
            code = "" if result.exit_code is None else f" (exit status {result.exit_code})"
            raise APIError(404, f"The appliance's update_services.sh said nothing{code}")
        return answer

    def all_names(self) -> list[str]:
        """The configured names, then the services file's, each once; never the daemon."""
        names = dict.fromkeys(self.names)
        names.update(dict.fromkeys(read_service_names(self.services_file)))
        names.pop(SELF, None)
        return list(names)

    @defer.inlineCallbacks
    def state_of(self, name: str, itself: bool = False):
        """Whether a service runs; the daemon itself by the same means, its init script's
        word included, and "running" (it is answering) when nothing can say."""
        hook = self.tree.hook(STATUS_HOOK)
        if hook is not None:
            result = yield self._run([str(hook), name])
            return _state(result.exit_code == 0)
        script = self._init_script(name)
        if script is not None:
            running = yield self._says_running([str(script), "status"])
            return _state(running)
        if itself:
            return _state(True)  # no init script of its own: under systemd, or run by hand
        systemctl = shutil.which("systemctl")
        if systemctl is not None:
            result = yield self._run([systemctl, "is-active", "--quiet", name])
            return _state(result.exit_code == 0)
        return _state(False)

    def _init_script(self, name: str) -> Path | None:
        """The service's executable init script, when the name can be one file's name."""
        if self.init_directory is None or "/" in name or "\0" in name or name in (".", ".."):
            return None
        script = self.init_directory / name
        return script if script.is_file() and os.access(script, os.X_OK) else None

    def _run(self, argv: list[str], on_line=lambda line: None):
        return run_child(self.reactor, argv, timeout=QUERY_TIMEOUT, on_line=on_line).done

    @defer.inlineCallbacks
    def _says_running(self, argv: list[str]):
        """Whether a line of the command's output says "is running" or "online"; its exit
        status does not count, as it did not on appliances in the field."""
        found = []

        def look(line: bytes) -> None:
            if not found and any(word in line for word in RUNNING_WORDS):
                found.append(line)

        yield self._run(argv, on_line=look)
        return bool(found)


def _state(running: bool) -> str:
    return "running" if running else "not running"


def read_service_names(path: Path | None) -> list[str]:
    """The names in a services file: whitespace-separated, ``#`` starts a comment line."""
    if path is None:
        return []
    try:
        with open(path, "rb") as f:
            text = f.read(SERVICES_FILE_MAX).decode("utf-8", "replace")
    except (FileNotFoundError, NotADirectoryError):
        return []
    names = []
    for line in text.splitlines():
        if not line.lstrip().startswith("#"):
            names.extend(line.split())
    return names
