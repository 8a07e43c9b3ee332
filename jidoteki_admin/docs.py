"""The API reference at /docs: docs/API.md rendered once into a page, and its source."""

from __future__ import annotations

from importlib import resources

import markdown

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Admin API documentation</title>
<style>
body {{ font-family: system-ui, sans-serif; max-width: 56rem; margin: 2rem auto; padding: 0 1rem;
       line-height: 1.5; color: #222; }}
pre {{ background: #f5f5f5; padding: .75rem; overflow-x: auto; }}
code {{ font-family: ui-monospace, monospace; }}
table {{ border-collapse: collapse; }}
th, td {{ border: 1px solid #ccc; padding: .3rem .6rem; text-align: left; vertical-align: top; }}
blockquote {{ border-left: 4px solid #ccc; margin-left: 0; padding-left: 1rem; color: #555; }}
</style></head>
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
