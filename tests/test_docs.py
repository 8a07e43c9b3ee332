"""/docs: the API reference as HTML rendered from docs/API.md, and the markdown itself."""

import re
from pathlib import Path

import pytest
import pytest_twisted

REPO = Path(__file__).resolve().parent.parent
DOCS = REPO / "docs" / "API.md"
SHARED = REPO.parent / "shared" / "API.md"


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


needs_shared = pytest.mark.skipif(not SHARED.exists(), reason="the shared API.md is not beside this checkout")


@needs_shared
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


@needs_shared
def test_docs_start_as_the_shared_contract():
    ours, shared = DOCS.read_text().splitlines(), SHARED.read_text().splitlines()
    assert ours[:40] == shared[:40]


@pytest_twisted.ensureDeferred
async def test_docs_with_a_slash_is_the_same_page_as_the_original_dashboard_links_it(memory_daemon):
    plain = await memory_daemon.client.get(memory_daemon.base + "/docs")
    slash = await memory_daemon.client.get(memory_daemon.base + "/docs/")
    assert slash.code == 200
    assert await slash.content() == await plain.content()
