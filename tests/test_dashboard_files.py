"""The dashboard's files as the daemon serves them: at / and under /dashboard/, without
authentication, with the media types browsers insist on for modules and stylesheets, and
nothing the Content-Security-Policy would refuse (no inline script or style)."""

from __future__ import annotations

import re
from importlib import resources

import pytest
import pytest_twisted

from jidoteki_admin.http.pages import DASHBOARD_TYPES

FOLDER = resources.files("jidoteki_admin").joinpath("data", "dashboard")
FILES = sorted(entry.name for entry in FOLDER.iterdir() if entry.name != "index.html")
MODULE_IMPORT = re.compile(r"""(?:import|from)\s*\(?\s*["'](\./[^"']+)["']""")


def source(name: str) -> str:
    return FOLDER.joinpath(name).read_text()


@pytest_twisted.ensureDeferred
async def test_the_root_page_is_the_dashboard_and_loads_only_its_own_files(fresh_memory_daemon):
    response = await fresh_memory_daemon.client.get(fresh_memory_daemon.base + "/")
    assert response.code == 200
    assert response.headers.getRawHeaders("Content-Type") == ["text/html; charset=utf-8"]
    page = (await response.content()).decode()
    scripts = re.findall(r"<script([^>]*)>(.*?)</script>", page, re.S)
    assert scripts == [(' type="module" src="/dashboard/app.js"', "")]
    assert not re.search(r"\son[a-z]+=", page), "no inline event handlers"
    assert 'href="/docs"' in page  # the way to the API without JavaScript


@pytest.mark.parametrize("name", FILES)
@pytest_twisted.ensureDeferred
async def test_every_file_is_served_without_authentication_with_its_media_type(fresh_memory_daemon, name):
    response = await fresh_memory_daemon.client.get(fresh_memory_daemon.base + "/dashboard/" + name)
    assert response.code == 200
    suffix = "." + name.rsplit(".", 1)[-1]
    assert response.headers.getRawHeaders("Content-Type") == [DASHBOARD_TYPES[suffix]]
    assert response.headers.getRawHeaders("X-Content-Type-Options") == ["nosniff"]
    assert (await response.content()) == FOLDER.joinpath(name).read_bytes()


def test_every_module_imported_is_shipped():
    for name in (n for n in FILES if n.endswith(".js")):
        for imported in MODULE_IMPORT.findall(source(name)):
            assert imported[2:] in FILES, f"{name} imports {imported}, which is not shipped"


def test_every_page_module_the_menu_names_is_shipped():
    modules = re.findall(r'module: "\./([a-z]+\.js)"', source("app.js"))
    assert len(modules) == 13
    assert set(modules) <= set(FILES)


def test_no_module_writes_markup_from_text():
    """Everything the appliance answers goes in as text: no innerHTML, outerHTML,
    insertAdjacentHTML or document.write anywhere, so no answer can become a script."""
    for name in (n for n in FILES if n.endswith(".js")):
        assert not re.search(r"\.(innerHTML|outerHTML)\b|insertAdjacentHTML\(|document\.write|\beval\(|new Function",
                             source(name)), name


@pytest_twisted.ensureDeferred
async def test_the_policy_allows_only_the_appliance_itself(fresh_memory_daemon):
    response = await fresh_memory_daemon.client.get(fresh_memory_daemon.base + "/dashboard/app.js")
    policy = response.headers.getRawHeaders("Content-Security-Policy")[0]
    assert "default-src 'self'" in policy
    assert "unsafe-inline" not in policy and "unsafe-eval" not in policy and "http" not in policy


@pytest_twisted.ensureDeferred
async def test_the_folder_itself_and_unknown_files_are_not_served(fresh_memory_daemon):
    for path in ("/dashboard", "/dashboard/", "/dashboard/index.html", "/dashboard/nothing.js", "/dashboard/../docs"):
        response = await fresh_memory_daemon.client.get(fresh_memory_daemon.base + path)
        assert response.code == 404, path


@pytest_twisted.ensureDeferred
async def test_the_originals_index_html_leads_to_the_dashboard(fresh_memory_daemon):
    response = await fresh_memory_daemon.client.get(fresh_memory_daemon.base + "/index.html", allow_redirects=False)
    assert response.code == 301
    assert response.headers.getRawHeaders("Location") == ["/"]
