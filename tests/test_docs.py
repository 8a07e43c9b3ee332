"""/docs: the API reference as HTML rendered from docs/API.md, and the markdown itself."""

import re
from pathlib import Path

import pytest
import pytest_twisted

REPO = Path(__file__).resolve().parent.parent
DOCS = REPO / "docs" / "API.md"
# The original API reference this daemon answers to, checked in so the comparison runs
# everywhere (it used to be read from a folder beside the checkout, absent in CI).
SHARED = REPO / "tests" / "reference" / "API.md"


def anchors(markdown: str) -> list[str]:
    return re.findall(r'<a name="([^"]+)"></a>', markdown)


@pytest_twisted.ensureDeferred
async def test_docs_page_is_html_rendered_from_the_markdown(memory_daemon):
    response = await memory_daemon.client.get(memory_daemon.base + "/docs")
    assert response.code == 200
    assert response.headers.getRawHeaders("Content-Type")[0].startswith("text/html")
    page = (await response.content()).decode()
    assert page.lstrip().lower().startswith("<!doctype html")
    assert "<h1" in page and "<table" in page and "<pre" in page
    assert "Authentication" in page
    assert "13e2ff941bbc8692cad141c8d293dda2c4f1c1a3c51b93d54f1a1693e1206107" in page
    assert "| :----" not in page
    assert "```" not in page


@pytest_twisted.ensureDeferred
async def test_docs_page_has_every_section(memory_daemon):
    page = (await (await memory_daemon.client.get(memory_daemon.base + "/docs")).content()).decode()
    for name in anchors(DOCS.read_text()):
        assert f'name="{name}"' in page, name


@pytest.mark.parametrize("path", ["/docs", "/docs/API.md"])
@pytest_twisted.ensureDeferred
async def test_docs_need_no_authentication_even_with_a_token(memory_daemon, path):
    response = await memory_daemon.client.get(memory_daemon.base + path)
    assert response.code == 200


@pytest_twisted.ensureDeferred
async def test_docs_need_no_authentication_before_setup(fresh_memory_daemon):
    response = await fresh_memory_daemon.client.get(fresh_memory_daemon.base + "/docs")
    assert response.code == 200


@pytest_twisted.ensureDeferred
async def test_docs_ignore_credentials_and_other_query_parameters(memory_daemon):
    response = await memory_daemon.client.get(memory_daemon.base + "/docs?token=wrong&x=1")
    assert response.code == 200


@pytest_twisted.ensureDeferred
async def test_markdown_source_is_served_byte_identical(memory_daemon):
    response = await memory_daemon.client.get(memory_daemon.base + "/docs/API.md")
    assert response.code == 200
    content_type = response.headers.getRawHeaders("Content-Type")[0]
    assert content_type.startswith(("text/markdown", "text/plain"))
    assert await response.content() == DOCS.read_bytes()


def test_docs_keep_every_section_of_the_shared_contract():
    ours, shared = DOCS.read_text(), SHARED.read_text()
    assert anchors(shared)
    assert set(anchors(shared)) <= set(anchors(ours))
    for heading in re.findall(r"^#+ .*$", shared, flags=re.M):
        assert heading in ours, heading


def test_docs_keep_the_published_vectors_and_examples():
    ours = DOCS.read_text()
    for text in [
        "13e2ff941bbc8692cad141c8d293dda2c4f1c1a3c51b93d54f1a1693e1206107",
        "b714a60732e096ccef06e360eefe0f1ba4fa5d16ef7da726612e2026e5523241",
        '{"Status":"200 OK"}',
        "/api/v1/admin",
        "newtoken",
    ]:
        assert text in ours, text


def test_docs_start_as_the_shared_contract():
    ours, shared = DOCS.read_text().splitlines(), SHARED.read_text().splitlines()
    assert ours[:40] == shared[:40]


@pytest_twisted.ensureDeferred
async def test_docs_with_a_slash_is_the_same_page_as_the_original_dashboard_links_it(memory_daemon):
    plain = await memory_daemon.client.get(memory_daemon.base + "/docs")
    slash = await memory_daemon.client.get(memory_daemon.base + "/docs/")
    assert slash.code == 200
    assert await slash.content() == await plain.content()


# Styling: a stylesheet of its own, since the Content-Security-Policy refuses inline styles.


def linked_stylesheets(page: str) -> list[str]:
    return re.findall(r'<link rel="stylesheet" href="([^"]+)">', page)


@pytest.mark.parametrize("path, stylesheet", [("/docs", "/docs/style.css"), ("/", "/dashboard/app.css")])
@pytest_twisted.ensureDeferred
async def test_pages_link_the_stylesheet_and_have_no_inline_style(fresh_daemon, path, stylesheet):
    response = await fresh_daemon.client.get(fresh_daemon.base + path)
    page = (await response.content()).decode()
    assert linked_stylesheets(page) == [stylesheet]
    assert not re.search(r"<style[\s>]", page, re.I)
    assert not re.search(r"\sstyle=", page, re.I)
    policy = response.headers.getRawHeaders("Content-Security-Policy")[0]
    assert "default-src 'self'" in policy and "unsafe-inline" not in policy


@pytest_twisted.ensureDeferred
async def test_the_stylesheet_is_served_as_css_without_authentication(fresh_daemon):
    response = await fresh_daemon.client.get(fresh_daemon.base + "/docs/style.css")
    assert response.code == 200
    assert response.headers.getRawHeaders("Content-Type")[0] == "text/css; charset=utf-8"
    css = (await response.content()).decode()
    assert "overflow-x: auto" in css and "@media" in css


@pytest_twisted.ensureDeferred
async def test_docs_page_has_a_table_of_contents_that_links_every_section(daemon):
    page = (await (await daemon.client.get(daemon.base + "/docs")).content()).decode()
    contents = page.split('<nav class="contents"', 1)[1].split("</nav>", 1)[0]
    for heading_id in re.findall(r'<h1 id="([^"]+)"', page):
        assert f'href="#{heading_id}"' in contents, heading_id


# What this version serves, as the reference says near its top


def served_note() -> tuple[str, str]:
    """The note's two paragraphs: the sections always served, and the optional ones."""
    note = DOCS.read_text().split("### What this version serves\n", 1)[1].split("\n#", 1)[0]
    always, optional = [p for p in note.split("\n\n") if p.strip()][:2]
    return always, optional


def test_the_note_names_exactly_the_endpoints_the_daemon_registers(make_daemon):
    from jidoteki_admin.config import OPTIONAL_ENDPOINTS

    always, optional = served_note()
    daemon = make_daemon(config={"endpoints": list(OPTIONAL_ENDPOINTS)})
    registered = {
        (operation.method, endpoint.path)
        for section, endpoint in daemon.service.catalogue.endpoints()
        if not endpoint.public
        for operation in endpoint.operations
    }
    named_always = set(re.findall(r"`(GET|POST) (/[a-z/<>]+)`", always))
    named_optional = set(re.findall(r"`(GET|POST) (/[a-z/<>]+)`", optional))
    # /jobs/<name> stands for one endpoint per kind of job the daemon runs.
    registered = {(method, re.sub(r"^/jobs/[a-z_]+", "/jobs/<name>", path)) for method, path in registered}
    assert named_always | named_optional == registered
    optional_paths = {endpoint.path for section, endpoint in daemon.service.catalogue.endpoints() if section.optional}
    assert {path for _, path in named_optional} == optional_paths


def test_every_optional_endpoint_is_served_when_enabled_and_404_when_not():
    from jidoteki_admin.config import OPTIONAL_ENDPOINTS
    from jidoteki_admin.sections import REGISTERED

    assert {section.name for section in REGISTERED if section.optional} == set(OPTIONAL_ENDPOINTS)
