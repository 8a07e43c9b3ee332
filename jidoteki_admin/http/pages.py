"""The public pages: the dashboard at /, the API reference at /docs, and the files they use.

They are in the catalogue like every endpoint (public: no authentication), so the gate,
the error layer and the OpenAPI document treat them alike. Their content is package data,
read once when the daemon starts.

The Admin Dashboard is static: index.html at / and its modules and stylesheet under
/dashboard/, each file an endpoint of its own. Nothing in them is secret; everything they
show comes from the authenticated API, signed in the browser.
"""

from __future__ import annotations

import json
from importlib import resources

from . import responses
from .catalogue import PAGE, REDIRECT, Catalogue, Endpoint, Reply, Section, get
from .docs import Docs
from .openapi import openapi_document

JSON_TYPE = b"application/json"
DASHBOARD_PREFIX = "/dashboard/"
DASHBOARD_INDEX = "index.html"
# By file suffix; module scripts must be served as JavaScript (nosniff is on).
DASHBOARD_TYPES = {
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".html": "text/html; charset=utf-8",
    ".svg": "image/svg+xml",
    ".txt": "text/plain; charset=utf-8",
}


def dashboard_files() -> dict[str, bytes]:
    """Every file of the dashboard by name, read once: the package data in data/dashboard."""
    folder = resources.files("jidoteki_admin").joinpath("data", "dashboard")
    return {
        entry.name: entry.read_bytes()
        for entry in sorted(folder.iterdir(), key=lambda e: e.name)
        if entry.is_file() and "." + entry.name.rsplit(".", 1)[-1] in DASHBOARD_TYPES
    }


class Pages:
    name = "pages"

    def __init__(self, catalogue: Catalogue):
        self.catalogue = catalogue
        self.docs = Docs()
        self.dashboard_files = dashboard_files()
        self._openapi: bytes | None = None

    def section(self) -> Section:
        def page(path: str, handler, summary: str, media_type: str) -> Endpoint:
            return Endpoint(path, (get(handler, summary, Reply(PAGE, media_type=media_type)),), public=True)

        files = tuple(
            page(DASHBOARD_PREFIX + name, self._file(name), f"The dashboard's {name}", media_type(name))
            for name in self.dashboard_files
            if name != DASHBOARD_INDEX
        )
        moved = Endpoint("/index.html", (get(self.to_dashboard, "Where the original's dashboard was: moved to /",
                                             Reply(REDIRECT)),), public=True)
        return Section(self.name, "Pages", (
            page("/", self.dashboard, "The Admin Dashboard", "text/html"),
            moved,
            *files,
            page("/docs", self.docs_page, "The API reference", "text/html"),
            page("/docs/", self.docs_page, "The API reference (as the original dashboard links it)", "text/html"),
            page("/docs/API.md", self.docs_source, "The API reference as Markdown", "text/markdown"),
            page("/docs/NOTICE.TXT", self.notice, "Notices for the files the daemon ships", "text/plain"),
            page("/docs/style.css", self.style, "The stylesheet of the pages", "text/css"),
            page("/docs/openapi.json", self.openapi, "This OpenAPI document", "application/json"),
        ))

    def to_dashboard(self, request) -> bytes:
        """The original served its dashboard at /index.html too: a bookmark of it still
        leads to the dashboard."""
        request.setResponseCode(301)
        request.setHeader(b"Location", b"/")
        return responses.body(request, 301, b"", responses.HTML)

    def dashboard(self, request) -> bytes:
        return responses.body(request, 200, self.dashboard_files[DASHBOARD_INDEX], responses.HTML)

    def _file(self, name: str):
        content, content_type = self.dashboard_files[name], media_type(name).encode()

        def serve(request) -> bytes:
            request.setHeader(b"Cache-Control", b"no-cache")  # an update may bring new files
            return responses.body(request, 200, content, content_type)

        return serve

    def docs_page(self, request) -> bytes:
        return responses.body(request, 200, self.docs.page, responses.HTML)

    def docs_source(self, request) -> bytes:
        return responses.body(request, 200, self.docs.source, responses.MARKDOWN)

    def notice(self, request) -> bytes:
        return responses.body(request, 200, self.docs.notice, responses.TEXT)

    def style(self, request) -> bytes:
        return responses.body(request, 200, self.docs.stylesheet, responses.CSS)

    def openapi(self, request) -> bytes:
        if self._openapi is None:  # the catalogue is complete once the daemon serves
            self._openapi = json.dumps(openapi_document(self.catalogue), indent=1).encode()
        return responses.body(request, 200, self._openapi, JSON_TYPE)


def media_type(name: str) -> str:
    return DASHBOARD_TYPES["." + name.rsplit(".", 1)[-1]]
