"""Section 8: Network (optional): the network and application settings.

GET /settings answers etc/network.json and etc/app.json as one document. POST /settings
takes a settings.json upload, checks all of it here (validate.py) so that bad input changes
nothing, and hands it to the settings job (jobs/settings.py), which writes network.json,
app.json and network.conf and runs the appliance's bin/network.sh.

With settings-confirm-seconds set, every authenticated request made while the job runs
touches tmp/settings.confirmed: the job's proof that the administrator still reaches the
appliance after a network change, without which it puts the previous settings back.

Additions for a client that asks the administrator (the dashboard's countdown with "Keep"
and "Undo"): POST /settings with confirm=explicit takes only POST /settings/confirm
action=KEEP as that proof, not any request (a page that polls would otherwise confirm a
change nobody looked at); UNDO stops the job, which puts the previous settings back; GET
/settings/confirm says whether a change waits, and until when. Whether a run is explicit
is kept in memory: a daemon restarted meanwhile falls back to any request.
"""

from __future__ import annotations

import datetime
import re

from ..context import Context
from ..files import atomic_write
from ..formats import validate
from ..http import responses
from ..http.catalogue import ACCEPTED, FILE, JSON, STATUS, Endpoint, Field, Reply, Section, get, post
from ..http.responses import APIError
from ..jobs import settings as job
from ..jobs.settings import SETTINGS

DOCUMENT_MAX = 64 * 1024  # what GET reads of each file
_OBJECT = {"type": "object"}
SETTINGS_SCHEMA = {
    "type": "object",
    "properties": {"network": _OBJECT, "app": _OBJECT},
    "required": ["network", "app"],
}
CONFIRM_SCHEMA = {
    "type": "object",
    "properties": {
        "waiting": {"type": "boolean", "description": "a network change waits to be confirmed"},
        "explicit": {"type": "boolean", "description": "only POST /settings/confirm KEEP confirms it"},
        "seconds": {"type": ["integer", "null"], "description": "the configured settings-confirm-seconds"},
        "deadline": {"type": ["string", "null"], "description": "when it is undone unless confirmed (UTC)"},
        "seconds-left": {"type": ["integer", "null"]},
    },
    "required": ["waiting", "explicit", "seconds", "deadline", "seconds-left"],
}
# The lines the settings job writes around its wait (jobs/settings.py: confirm()).
_WAITING = re.compile(r"^\[(\d+)\]\[[^\]]*\] Waiting (\d+) seconds for a request to confirm the new settings$")
_WAIT_ENDED = re.compile(r"^\[\d+\]\[[^\]]*\] (The new settings are confirmed|No request confirmed)")
NOTHING_WAITS = "No network change is waiting to be confirmed"


class Settings:
    name = "settings"
    optional = True

    def __init__(self, context: Context):
        tree, config = context.tree, context.config
        self.tree = tree
        self.runner = context.runner
        self.network_conf = tree.system_file(config.network_conf, "/usr/local/etc/network.conf")
        self.confirm_seconds = config.settings_confirm_seconds
        self.admin_group = config.admin_group
        self.clock = context.clock
        self._explicit_run: str | None = None  # the run that only KEEP confirms
        context.runner.register(SETTINGS)
        if self.confirm_seconds > 0:
            context.authenticated.append(self.confirm)

    def section(self) -> Section:
        upload = Field("settings", FILE, description="settings.json: {\"network\": {...}, \"app\": {...}}")
        how = Field("confirm", required=False, allowed=("request", "explicit"),
                    description="with settings-confirm-seconds: what confirms the change, any authenticated "
                                "request (the default) or only POST /settings/confirm KEEP (an addition)")
        action = Field("action", allowed=("KEEP", "UNDO"), any_case=True,
                       description="KEEP the change waiting to be confirmed, or UNDO it")
        return Section(self.name, "Network", (
            Endpoint("/settings", (
                get(self.show, "The network and application settings", Reply(JSON, SETTINGS_SCHEMA),
                    errors=(404, 500)),
                post(self.update, "Change the network and application settings", Reply(ACCEPTED), upload, how,
                     errors=(400, 413, 507)),
            )),
            Endpoint("/settings/confirm", (
                get(self.waiting, "Whether a network change waits to be confirmed, and until when",
                    Reply(JSON, CONFIRM_SCHEMA)),
                post(self.decide, "Keep or undo the network change waiting to be confirmed",
                     Reply(STATUS), action, errors=(400,)),
            )),
        ), optional=True)

    def show(self, request) -> bytes:
        network = self._object(self.tree.network_json)
        app = self._object(self.tree.app_json)
        return responses.document(request, {"network": network, "app": app}, no_cache=True)

    @staticmethod
    def _object(path) -> object:
        value = responses.json_file(path, DOCUMENT_MAX, f"{path.name} not found", f"{path.name} is not valid JSON")
        if not isinstance(value, dict):
            raise APIError(500, f"{path.name} does not hold a JSON object")
        return value

    def update(self, request) -> bytes:
        upload = request.form.file("settings")
        self.runner.check_free(SETTINGS)
        with open(upload.path, "rb") as f:
            data = f.read(validate.DOCUMENT_MAX + 1)
        settings = validate.settings_document(validate.load_document(data, "settings"))
        if self.runner.launcher.scripted(SETTINGS):
            self._stage(settings)
        else:
            # The job reads the document from the tree's tmp/ (the uploads folder may be
            # another filesystem) and checks it again.
            atomic_write(self.tree.settings_upload, data, 0o600)
        args = ["--settings", str(self.tree.settings_upload), "--network-conf", str(self.network_conf)]
        if self.confirm_seconds > 0:
            args += ["--confirm-seconds", str(self.confirm_seconds)]
        if self.admin_group is not None:
            args += ["--group", str(self.admin_group)]
        explicit = request.form.texts.get("confirm") == b"explicit"
        self.runner.start(SETTINGS, args, script_args=[settings.network.mode])
        run = self.runner.run(SETTINGS)
        self._explicit_run = run.id if explicit and run is not None else None
        return responses.accepted(request, "/settings")

    def _stage(self, settings: validate.SettingsDocument) -> None:
        """With "jobs": "appliance", the appliance's update_settings.sh does the job as it
        did for the original: it moves app.json, network.json and network.conf from the
        uploads folder into place, then runs network.sh."""
        uploads = self.tree.uploads
        atomic_write(uploads / "app.json", job.app_json(settings), 0o640)
        atomic_write(uploads / "network.json", job.network_json(settings), 0o640)
        atomic_write(uploads / "network.conf", job.network_conf(settings.network), 0o640)

    def confirm(self) -> None:
        """An authenticated request: while the job runs, it confirms the new settings,
        unless only KEEP may."""
        if self.runner.is_running(SETTINGS) and not self._explicit():
            self._touch()

    def _touch(self) -> None:
        try:
            self.tree.settings_confirmation.touch()
        except OSError:
            pass  # the job then undoes the change; the request itself goes on

    def _explicit(self) -> bool:
        run = self.runner.run(SETTINGS)
        return run is not None and run.id == self._explicit_run

    def _deadline(self) -> float | None:
        """When the running job gives up waiting (its log says when it began to), or None
        when it does not wait now."""
        if not self.runner.is_running(SETTINGS):
            return None
        deadline = None
        for line in self.runner.read_log(SETTINGS, 0).lines:
            began = _WAITING.match(line)
            if began:
                deadline = float(int(began.group(1)) + int(began.group(2)))
            elif _WAIT_ENDED.match(line):
                deadline = None
        return deadline

    def waiting(self, request) -> bytes:
        deadline = self._deadline()
        left = None if deadline is None else max(0, round(deadline - self.clock.seconds()))
        return responses.document(request, {
            "waiting": deadline is not None,
            "explicit": self.runner.is_running(SETTINGS) and self._explicit(),
            "seconds": self.confirm_seconds or None,
            "deadline": None if deadline is None else datetime.datetime.fromtimestamp(
                deadline, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "seconds-left": left,
        }, no_cache=True)

    def decide(self, request) -> bytes:
        """KEEP confirms the change the job waits on; UNDO stops the job, which puts the
        previous settings back and applies them again (it may be still applying)."""
        if request.form.text("action").upper() == "KEEP":
            if self._deadline() is None:
                raise APIError(400, NOTHING_WAITS)
            self._touch()
            return responses.status(request)
        if not self.runner.is_running(SETTINGS):
            raise APIError(400, NOTHING_WAITS)
        self.runner.stop(SETTINGS)
        return responses.status(request)
