"""Section 8: Network (optional): the network and application settings.

GET /settings answers etc/network.json and etc/app.json as one document. POST /settings
takes a settings.json upload, checks all of it here (validate.py) so that bad input changes
nothing, and hands it to the settings job (jobs/settings.py), which writes network.json,
app.json and network.conf and runs the appliance's bin/network.sh.

With settings-confirm-seconds set, every authenticated request made while the job runs
touches tmp/settings.confirmed: the job's proof that the administrator still reaches the
appliance after a network change, without which it puts the previous settings back.
"""

from __future__ import annotations

from .. import responses, validate
from ..catalogue import ACCEPTED, FILE, JSON, Endpoint, Field, Reply, Section, get, post
from ..context import Context
from ..files import atomic_write
from ..jobs import settings as job
from ..jobs.settings import SETTINGS
from ..responses import APIError

DOCUMENT_MAX = 64 * 1024  # what GET reads of each file
_OBJECT = {"type": "object"}
SETTINGS_SCHEMA = {
    "type": "object",
    "properties": {"network": _OBJECT, "app": _OBJECT},
    "required": ["network", "app"],
}


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
        context.runner.register(SETTINGS)
        if self.confirm_seconds > 0:
            context.authenticated.append(self.confirm)

    def section(self) -> Section:
        upload = Field("settings", FILE, description="settings.json: {\"network\": {...}, \"app\": {...}}")
        return Section(self.name, "Network", (
            Endpoint("/settings", (
                get(self.show, "The network and application settings", Reply(JSON, SETTINGS_SCHEMA),
                    errors=(404, 500)),
                post(self.update, "Change the network and application settings", Reply(ACCEPTED), upload,
                     errors=(400, 413, 507)),
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
        self.runner.start(SETTINGS, args, script_args=[settings.network.mode])
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
        """An authenticated request: while the job runs, it confirms the new settings."""
        if self.runner.is_running(SETTINGS):
            try:
                self.tree.settings_confirmation.touch()
            except OSError:
                pass  # the job then undoes the change; the request itself goes on
