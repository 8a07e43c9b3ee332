"""Optional endpoints: enabled by the config, and indistinguishable from unknown paths when not."""

import json
import re

import pytest
import pytest_twisted

from conftest import json_of, raw_request
from jidoteki_admin.config import ConfigError, parse_config
from jidoteki_admin.http.catalogue import JSON, Endpoint, Reply, Section, get
from jidoteki_admin.http.responses import document

DEFAULT_ENDPOINTS = {
    "/api/v1/admin/build",
    "/api/v1/admin/changelog",
    "/api/v1/admin/endpoints",
    "/api/v1/admin/health",
    "/api/v1/admin/services",
    "/api/v1/admin/setup",
    "/api/v1/admin/version",
}
VARYING_HEADERS = {"date", "x-request-id"}


OPTIONAL_SECTIONS = ["settings", "certs", "license", "storage", "backup", "cluster"]
# Every optional section's endpoints and methods, as API.md documents them (checked
# against the catalogue below).
OPTIONAL_ENDPOINTS = {
    "/settings": ["GET", "POST"], "/storage": ["GET", "POST"], "/certs": ["GET", "POST"],
    "/license": ["GET", "POST"], "/cluster": ["GET", "POST"], "/cluster/log": ["GET"],
    "/backup": ["GET", "POST"], "/backup/download": ["GET"], "/backup/log": ["GET"],
    "/backup/restore": ["POST"],
    # Additions of this version (API.md marks them as such).
    "/settings/confirm": ["GET", "POST"], "/certs/check": ["POST"], "/license/check": ["POST"],
}


def test_the_optional_endpoints_here_are_the_ones_served(make_memory_daemon):
    daemon = make_memory_daemon(config={"endpoints": OPTIONAL_SECTIONS})
    served = {endpoint.path: endpoint.methods for section, endpoint in daemon.service.catalogue.endpoints()
              if section.optional}
    assert served == OPTIONAL_ENDPOINTS


# Enabled (the cluster section: a first-level endpoint and a nested one)


@pytest_twisted.ensureDeferred
async def test_enabled_optional_endpoint_answers(make_memory_daemon):
    daemon = make_memory_daemon(config={"endpoints": ["cluster"]})
    response = await daemon.get("/cluster", auth="hash")
    assert response.code == 200
    assert await json_of(response) == {"cluster": None, "status": None, "log": None}
    nested = await daemon.get("/cluster/log", auth="hash")  # no log yet: the section's own 404
    assert nested.code == 404
    assert (await json_of(nested))["Error-Message"] == "update_cluster.log not found"


@pytest_twisted.ensureDeferred
async def test_enabled_optional_endpoint_needs_authentication(make_memory_daemon):
    daemon = make_memory_daemon(config={"endpoints": ["cluster"]})
    for path in ("/cluster", "/cluster/log"):
        response = await daemon.get(path, auth=None)
        assert response.code == 403
        assert await json_of(response) == {"Status": "403 Forbidden", "Error-Message": "Authentication error"}


@pytest_twisted.ensureDeferred
async def test_enabled_optional_endpoint_checks_the_method(make_memory_daemon):
    daemon = make_memory_daemon(config={"endpoints": ["cluster"]})
    response = await daemon.request("PUT", daemon.url("/cluster"))
    assert response.code == 400
    message = (await json_of(response))["Error-Message"]
    assert message.startswith("Invalid authentication method. Expected ")
    assert "GET" in message and "POST" in message


@pytest_twisted.ensureDeferred
async def test_enabled_optional_endpoint_is_listed_once(make_memory_daemon):
    daemon = make_memory_daemon(config={"endpoints": ["cluster", "backup"]})
    listed = (await json_of(await daemon.get("/endpoints")))["endpoints"]
    assert listed.count("/api/v1/admin/cluster") == listed.count("/api/v1/admin/backup") == 1
    assert not any(entry.count("/") > 4 for entry in listed)  # no nested path: /cluster/log, /backup/log


# Disabled: every optional endpoint, with every other optional section enabled


def stable_headers(response) -> dict:
    return {k: v for k, v in response.headers.items() if k not in VARYING_HEADERS}


def all_but(name: str) -> dict:
    return {"endpoints": [other for other in OPTIONAL_SECTIONS if other != name],
            "parameters": ["license", "action", "archive", "public", "private", "ca"]}


@pytest.mark.parametrize("auth", ["?token=yourtoken", ""], ids=["authenticated", "anonymous"])
@pytest.mark.parametrize("path", sorted(OPTIONAL_ENDPOINTS))
@pytest.mark.parametrize("method", ["GET", "POST", "PUT"])
@pytest_twisted.ensureDeferred
async def test_disabled_optional_endpoint_answers_like_an_unknown_path(make_memory_daemon, auth, path, method):
    daemon = make_memory_daemon(config=all_but(path.split("/")[1]))
    disabled = await raw_request(daemon, method, "/api/v1/admin" + path + auth)
    unknown = await raw_request(daemon, method, "/api/v1/admin/no-such-thing" + auth)
    assert disabled.status == unknown.status == 404
    assert disabled.body == unknown.body == b'{"Status":"404 Not Found"}'
    assert stable_headers(disabled) == stable_headers(unknown)


@pytest.mark.parametrize("path, field", [("/license", "license"), ("/backup", "action"),
                                         ("/certs", "public"), ("/backup/restore", "archive")])
@pytest_twisted.ensureDeferred
async def test_disabled_optional_endpoint_with_a_form_answers_404(make_memory_daemon, path, field):
    daemon = make_memory_daemon(config=all_but(path.split("/")[1]))
    for auth in (None, "token"):
        response = await daemon.post_form(path, {field: "data"}, auth=auth)
        assert response.code == 404
        assert await response.content() == b'{"Status":"404 Not Found"}'


@pytest.mark.parametrize("name", OPTIONAL_SECTIONS)
@pytest_twisted.ensureDeferred
async def test_disabled_optional_endpoint_is_not_listed(make_memory_daemon, name):
    daemon = make_memory_daemon(config=all_but(name))
    listed = (await json_of(await daemon.get("/endpoints")))["endpoints"]
    assert f"/api/v1/admin/{name}" not in listed
    assert {f"/api/v1/admin/{other}" for other in OPTIONAL_SECTIONS if other != name} <= set(listed)


@pytest_twisted.ensureDeferred
async def test_disabled_optional_endpoint_is_audited_as_an_unknown_path(make_memory_daemon):
    """Nothing for an anonymous GET; a POST with the token gets the line any authenticated
    POST to an unknown path gets, outcome 404."""
    daemon = make_memory_daemon(config=all_but("license"))
    audit = daemon.admin_path / "log" / "jidoteki-audit.log"
    await daemon.get("/license", auth=None)
    assert not audit.exists() or audit.read_text() == ""
    await daemon.post_form("/license", {"license": "data"}, auth="token")
    await daemon.post_form("/no-such-thing", {"license": "data"}, auth="token")
    lines = [json.loads(line) for line in audit.read_text().splitlines()]
    assert [line["target"] for line in lines] == ["/api/v1/admin/license", "/api/v1/admin/no-such-thing"]
    assert [{k: v for k, v in line.items() if k not in ("time", "request", "target")} for line in lines] == [
        {"client": "127.0.0.1", "token": "-", "action": "POST", "outcome": "404"}] * 2


# GET /endpoints


@pytest_twisted.ensureDeferred
async def test_endpoints_lists_first_levels_and_docs_sorted(memory_daemon):
    response = await memory_daemon.get("/endpoints")
    assert response.code == 200
    body = await json_of(response)
    assert list(body) == ["endpoints"]
    listed = body["endpoints"]
    assert listed == sorted(listed)
    assert len(listed) == len(set(listed))
    assert listed[-1] == "/docs"
    assert DEFAULT_ENDPOINTS <= set(listed)
    for entry in listed[:-1]:
        assert re.fullmatch(r"/api/v1/admin/[a-z]+", entry), entry
    registered = {"/api/v1/admin/" + p.split("/")[4] for p in memory_daemon.service.catalogue.paths() if p.startswith("/api/v1/admin/")}
    assert set(listed) == registered | {"/docs"}


@pytest_twisted.ensureDeferred
async def test_endpoints_needs_authentication(memory_daemon):
    response = await memory_daemon.get("/endpoints", auth=None)
    assert response.code == 403


# Config


@pytest.mark.parametrize(
    "raw",
    [
        {"endpoints": ["nonsense"]},
        {"endpoints": "license"},
        {"endpoints": [1]},
        {"endpoints": [""]},
        {"parameters": "public"},
        {"parameters": [None]},
    ],
    ids=repr,
)
def test_bad_endpoints_or_parameters_are_config_errors(raw):
    with pytest.raises(ConfigError):
        parse_config(raw)


def test_every_documented_optional_endpoint_is_accepted():
    names = ["settings", "certs", "license", "storage", "backup", "cluster"]
    parameters = ["public", "private", "ca", "license", "action", "archive"]
    config = parse_config({"endpoints": names, "parameters": parameters})
    assert set(config.endpoints) == set(names)
    assert set(config.parameters) == set(parameters)


def test_an_enabled_optional_endpoint_is_unserved_until_a_section_serves_it(make_daemon, monkeypatch):
    """Every name the config accepts has a section now; a name added to the config before
    its section is written must still be reported, not silently served as nothing."""
    from jidoteki_admin import config

    monkeypatch.setattr(config, "OPTIONAL_ENDPOINTS", (*config.OPTIONAL_ENDPOINTS, "example"))
    daemon = make_daemon(config={"endpoints": ["example", "license"]})
    assert daemon.service.unserved_optional() == ["example"]
    daemon.service.catalogue.add(Section("example", "Example", (
        Endpoint("/example", (get(lambda r: document(r, {}), "Show", Reply(JSON)),)),), optional=True))
    assert daemon.service.unserved_optional() == []
