"""Section 11: Storage (optional): the appliance's persistent storage settings.

GET /storage is etc/storage.json (password masked) with the types the storage-options file
offers. POST /storage checks a settings document completely (storage_settings.py) before
anything on disk changes, stages it with the stored password in place of a masked one,
and hands it to the storage job (jobs/storage.py), which writes storage.json and
storage.conf and runs bin/storage.sh. With "jobs": "appliance" the staged files are the
original's uploads/storage.json and uploads/storage.conf, which the appliance's own
update_storage.sh moves into place.
"""

from __future__ import annotations

import json
from typing import Any

from ..context import Context
from ..files import atomic_write
from ..formats.storage_settings import allowed_types, conf_text, masked, parse_options, storage_settings, stored_storage
from ..formats.validate import Invalid, read_document
from ..http import responses
from ..http.catalogue import ACCEPTED, FILE, JSON, Endpoint, Field, Reply, Section, get, post
from ..http.responses import APIError
from ..jobs.storage import STORAGE, document_bytes

SETTINGS_SCHEMA = {
    "type": "object",
    "properties": {
        "storage": {"type": "object", "properties": {"type": {"type": "string"}}, "additionalProperties": True},
        "options": {"type": "array", "items": {"type": "string"}},
    },
    "required": ["storage", "options"],
}
STORED_MAX = 64 * 1024


class Storage:
    name = "storage"
    optional = True

    def __init__(self, context: Context):
        tree, config = context.tree, context.config
        self.tree = tree
        self.runner = context.runner
        self.options_file = config.storage_options_file
        self.conf = tree.system_file(config.storage_conf, "/usr/local/etc/storage.conf")
        self.appliance_scripts = context.runner.launcher.scripted(STORAGE)
        self.staged = tree.jobs / "storage-settings.json"
        context.runner.register(STORAGE)

    def section(self) -> Section:
        settings = Field("settings", FILE, description='A JSON file: {"storage": {"type": "nfs", ...}}')
        return Section(self.name, "Storage", (
            Endpoint("/storage", (
                get(self.settings, "The persistent storage settings and the types on offer",
                    Reply(JSON, SETTINGS_SCHEMA), errors=(404, 500)),
                post(self.change, "Change the persistent storage settings (applied after a reboot)",
                     Reply(ACCEPTED), settings, errors=(400, 404, 500)),
            )),
        ), optional=True)

    def options(self) -> list[str]:
        """The storage-options file: 404 when the appliance has none, 500 when it is malformed."""
        try:
            data = self.options_file.read_bytes()
        except FileNotFoundError:
            raise APIError(404, f"Storage options not found: {self.options_file}") from None
        except OSError as e:
            raise APIError(500, f"Cannot read the storage options file {self.options_file}: {e.strerror}") from None
        try:
            return parse_options(data, str(self.options_file))
        except Invalid as e:
            raise APIError(500, str(e)) from None

    def settings(self, request) -> bytes:
        options = self.options()
        stored = responses.json_file(self.tree.storage_settings, STORED_MAX, "storage.json not found",
                                     "storage.json is not valid JSON")
        if stored_storage(stored) is None:
            raise APIError(500, 'storage.json holds no "storage" object')
        assert isinstance(stored, dict)
        return responses.document(request, {**masked(stored), "options": options}, no_cache=True)

    def change(self, request) -> bytes:
        self.runner.check_free(STORAGE)
        allowed = allowed_types(self.options())
        posted = read_document(request.form.file("settings").path, "settings")
        document = storage_settings(posted, allowed, stored_storage(self.stored()))
        self.stage(document)
        self.runner.start(STORAGE, ["--settings", str(self.staged), "--conf", str(self.conf)], script_args=[""])
        return responses.accepted(request, "/storage")

    def stored(self) -> Any:
        """The stored settings, for the password a masked one keeps; None when unreadable."""
        try:
            return json.loads(self.tree.storage_settings.read_bytes()[:STORED_MAX])
        except (OSError, ValueError):
            return None

    def stage(self, document: dict) -> None:
        """Where the job (or the appliance's update_storage.sh) finds the checked settings."""
        if self.appliance_scripts:
            atomic_write(self.tree.uploads / "storage.json", document_bytes(document), 0o600)
            atomic_write(self.tree.uploads / "storage.conf", conf_text(document), 0o600)
        else:
            atomic_write(self.staged, document_bytes(document), 0o600)
