"""The API reference at /docs, served without authentication: docs/API.md rendered once,
with its source, and its stylesheet.

The stylesheet is a file of its own because the Content-Security-Policy forbids inline
styles, and should go on forbidding them.
"""

from __future__ import annotations

from html import escape
from importlib import resources

import markdown

STYLESHEET_PATH = "/docs/style.css"

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<link rel="stylesheet" href="{stylesheet}">
</head>
<body>
{body}
</body></html>
"""

REFERENCE = """<div class="layout">
<nav class="contents" aria-label="Contents">
<p class="contents-title">Contents</p>
{toc}
</nav>
<main class="reference">
{body}
</main>
</div>"""

def page(title: str, body: str) -> bytes:
    return PAGE.format(title=escape(title), stylesheet=STYLESHEET_PATH, body=body).encode("utf-8")


def render_reference(source: str) -> tuple[str, str]:
    """The reference as HTML and its table of contents (sections and endpoints)."""
    converter = markdown.Markdown(
        extensions=["tables", "fenced_code", "sane_lists", "toc"],
        extension_configs={
            "toc": {"toc_depth": "1-3"},
            # align="left" instead of style="text-align: left", which the CSP would refuse.
            "tables": {"use_align_attribute": True},
        },
    )
    body = converter.convert(source)
    return body, converter.toc


class Docs:
    def __init__(self):
        data = resources.files("jidoteki_admin").joinpath("data")
        self.source = data.joinpath("API.md").read_bytes()
        self.notice = data.joinpath("NOTICE.TXT").read_bytes()
        self.stylesheet = data.joinpath("docs.css").read_bytes()
        body, toc = render_reference(self.source.decode("utf-8"))
        self.page = page("Admin API documentation", REFERENCE.format(toc=toc, body=body))
