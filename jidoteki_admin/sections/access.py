"""Access (an addition): named tokens with a scope, and one-time download links.

The API token can do everything, so a monitoring system that polls /health would have to
hold the token that restores backups. A named token has a scope: ``read`` may ask what is
(information, health, services, status, logs, metrics: the operations the catalogue marks
READ), ``admin`` may do everything. A token is shown once, in the answer that makes it;
the daemon keeps only its SHA-256 (auth.NamedTokens), and a revoked one is refused at the
next request.

A download link is for a browser, which keeps every URL it visits: the link works once,
for one download, within a minute, and grants nothing else, so the history that keeps it
keeps nothing of use.
"""

from __future__ import annotations

import datetime

from .. import API_PREFIX
from ..context import Context
from ..http import responses
from ..http.auth import SCOPES, Identity
from ..http.catalogue import DOWNLOAD, JSON, STATUS, Endpoint, Field, Reply, Section, get, post
from ..http.responses import APIError
from ..jobs.persist import PERSIST

TOKEN_SCHEMA = {
    "type": "object",
    "properties": {
        "name": {"type": "string"},
        "scope": {"enum": list(SCOPES)},
        "created": {"type": "string", "description": "ISO 8601, UTC"},
        "token": {"type": "string", "description": "the token itself: shown in this answer only"},
    },
    "required": ["name", "scope", "created", "token"],
}
TOKENS_SCHEMA = {
    "type": "object",
    "properties": {"tokens": {"type": "array", "items": {
        "type": "object",
        "properties": {"name": {"type": "string"}, "scope": {"enum": list(SCOPES)}, "created": {"type": "string"}},
        "required": ["name", "scope", "created"],
    }}},
    "required": ["tokens"],
}
LINK_SCHEMA = {
    "type": "object",
    "properties": {
        "url": {"type": "string", "description": "the path and query to GET, once"},
        "expires": {"type": "string", "description": "ISO 8601, UTC"},
        "seconds": {"type": "integer"},
    },
    "required": ["url", "expires", "seconds"],
}
DOWNLOAD_PATH = "/download"


class Access:
    name = "access"
    optional = False

    def __init__(self, context: Context):
        self.tokens = context.tokens
        self.runner = context.runner
        self.clock = context.clock
        self.downloads = context.downloads  # filled by the sections before this one
        context.runner.register(PERSIST)

    def section(self) -> Section:
        name = Field("name", description="1 to 63 lower-case letters, digits, dots, dashes and underscores")
        scope = Field("scope", allowed=SCOPES, description="read: what GET /endpoints lists as readable; "
                                                          "admin: everything")
        what = Field("what", allowed=tuple(sorted(self.downloads)), description="The download the link is for")
        endpoints = [
            Endpoint("/tokens", (
                get(self.listing, "The named tokens: name, scope and when made (never the token)",
                    Reply(JSON, TOKENS_SCHEMA)),
                post(self.create, "Make a named token of a scope; the answer is the only time it is shown",
                     Reply(JSON, TOKEN_SCHEMA), name, scope, errors=(400,)),
            )),
            Endpoint("/tokens/revoke", (post(self.revoke, "Revoke a named token: refused from the next request on",
                                             Reply(STATUS), name, errors=(400, 404)),)),
        ]
        if self.downloads:
            endpoints += [
                Endpoint("/downloads", (post(self.link, "A link for one download, that works once, within 60 seconds",
                                             Reply(JSON, LINK_SCHEMA), what, errors=(400,)),)),
                Endpoint(DOWNLOAD_PATH, (get(self.download, "The download a link is for (?link=ID; no token)",
                                             Reply(DOWNLOAD, media_type="application/octet-stream"),
                                             errors=(404,), audited=True),), by_link=True),
            ]
        return Section(self.name, "Access", tuple(endpoints))

    def listing(self, request) -> bytes:
        return responses.document(request, {"tokens": self.tokens.named.listing()}, no_cache=True)

    def create(self, request) -> bytes:
        name = request.form.text("name").strip()
        scope = request.form.text("scope")
        try:
            token = self.tokens.named.create(name, scope, self.clock.seconds())
        except ValueError as e:
            raise APIError(400, f"Parameter {e}") from None
        self.runner.request(PERSIST)  # a live image keeps it across a reboot, as the API token
        entry = next(t for t in self.tokens.named.listing() if t["name"] == name)
        return responses.document(request, {**entry, "token": token}, no_cache=True)

    def revoke(self, request) -> bytes:
        name = request.form.text("name").strip()
        if not self.tokens.named.revoke(name):
            raise APIError(404, f"No token named {name!r}")
        self.runner.request(PERSIST)
        return responses.status(request)

    def link(self, request) -> bytes:
        what = request.form.text("what")
        by: Identity = request.identity
        link, expires = self.tokens.links.make(what, by, self.clock.seconds())
        return responses.document(request, {
            "url": f"{API_PREFIX}{DOWNLOAD_PATH}?link={link}",
            "expires": datetime.datetime.fromtimestamp(expires, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "seconds": int(self.tokens.links.seconds),
        }, no_cache=True)

    def download(self, request):
        grant = request.identity.grant
        handler = self.downloads.get(grant)
        if handler is None:  # a link made before a restart that no longer serves it cannot exist; be sure
            raise APIError(404, f"Nothing to download for {grant!r}")
        request.setHeader(b"Cache-Control", b"no-store")
        return handler(request)
