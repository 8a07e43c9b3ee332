"""The public pages: the dashboard at /, the API reference at /docs, and the files they use.

They are in the catalogue like every endpoint (public: no authentication), so the gate,
the error layer and the OpenAPI document treat them alike. Their content is package data,
read once when the daemon starts.
"""

from __future__ import annotations

import json

from . import responses
from .catalogue import PAGE, Catalogue, Endpoint, Reply, Section, get
from .docs import Docs
from .openapi import openapi_document

JSON_TYPE = b"application/json"


class Pages:
    name = "pages"

    def __init__(self, catalogue: Catalogue):
        self.catalogue = catalogue
        self.docs = Docs()
        self._openapi: bytes | None = None

    def section(self) -> Section:
        def page(path: str, handler, summary: str, media_type: str) -> Endpoint:
            return Endpoint(path, (get(handler, summary, Reply(PAGE, media_type=media_type)),), public=True)

        return Section(self.name, "Pages", (
            page("/", self.dashboard, "The Admin Dashboard", "text/html"),
            page("/docs", self.docs_page, "The API reference", "text/html"),
            page("/docs/", self.docs_page, "The API reference (as the original dashboard links it)", "text/html"),
            page("/docs/API.md", self.docs_source, "The API reference as Markdown", "text/markdown"),
            page("/docs/NOTICE.TXT", self.notice, "Notices for the files the daemon ships", "text/plain"),
            page("/docs/style.css", self.style, "The stylesheet of the pages", "text/css"),
            page("/docs/openapi.json", self.openapi, "This OpenAPI document", "application/json"),
        ))

    def dashboard(self, request) -> bytes:
        return responses.body(request, 200, self.docs.home, responses.HTML)

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
