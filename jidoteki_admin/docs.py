"""The API reference at /docs: docs/API.md rendered once into a page, and its source."""

from __future__ import annotations

from importlib import resources

import markdown

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Admin API documentation</title>
<link rel="stylesheet" href="/docs/style.css">
</head>
<body>
{body}
</body></html>
"""


class Docs:
    def __init__(self):
        data = resources.files(__package__).joinpath("data")
        self.source = data.joinpath("API.md").read_bytes()
        self.notice = data.joinpath("NOTICE.TXT").read_bytes()
        rendered = markdown.markdown(
            self.source.decode("utf-8"), extensions=["tables", "fenced_code", "sane_lists"]
        )
        self.page = PAGE.format(body=rendered).encode("utf-8")
