"""Optional endpoints: enabled by the config, and indistinguishable from unknown paths when not."""

import re

import pytest
import pytest_twisted

from conftest import json_of, raw_request
from jidoteki_admin.catalogue import JSON, Endpoint, Reply, Section, get, post
from jidoteki_admin.config import ConfigError, parse_config
from jidoteki_admin.responses import document

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


@pytest.fixture(autouse=True)
def example_endpoint(monkeypatch):
    """Let the config enable the stand-in section's name."""
    from jidoteki_admin import config

    monkeypatch.setattr(config, "OPTIONAL_ENDPOINTS", (*config.OPTIONAL_ENDPOINTS, "example"))


def example_section() -> Section:
    """A stand-in optional section with a first-level and a nested endpoint, under a name no
    real section serves (the config accepts it in these tests only)."""
    return Section("example", "Example", (
        Endpoint("/example", (
            get(lambda r: document(r, {"example": "ok"}), "Show", Reply(JSON)),
            post(lambda r: document(r, {}), "Install", Reply(JSON)),
        )),
        Endpoint("/example/log", (get(lambda r: document(r, {"log": ""}), "Log", Reply(JSON)),)),
    ), optional=True)


def with_example(make_daemon, enabled: bool):
    config = {"endpoints": ["example"] if enabled else ["settings"], "parameters": ["license"]}
    daemon = make_daemon(config=config)
    daemon.service.catalogue.add(example_section())
    return daemon


def stable_headers(response) -> dict:
    return {k: v for k, v in response.headers.items() if k not in VARYING_HEADERS}


# Enabled


@pytest_twisted.ensureDeferred
async def test_enabled_optional_endpoint_answers(make_memory_daemon):
    daemon = with_example(make_memory_daemon, enabled=True)
    response = await daemon.get("/example", auth="hash")
    assert response.code == 200
    assert await json_of(response) == {"example": "ok"}
    nested = await daemon.get("/example/log", auth="hash")
    assert nested.code == 200


@pytest_twisted.ensureDeferred
async def test_enabled_optional_endpoint_needs_authentication(make_memory_daemon):
    daemon = with_example(make_memory_daemon, enabled=True)
    response = await daemon.get("/example", auth=None)
    assert response.code == 403
    assert await json_of(response) == {"Status": "403 Forbidden", "Error-Message": "Authentication error"}


@pytest_twisted.ensureDeferred
async def test_enabled_optional_endpoint_checks_the_method(make_memory_daemon):
    daemon = with_example(make_memory_daemon, enabled=True)
    response = await daemon.request("PUT", daemon.url("/example"))
    assert response.code == 400
    message = (await json_of(response))["Error-Message"]
    assert message.startswith("Invalid authentication method. Expected ")
    assert "GET" in message and "POST" in message


@pytest_twisted.ensureDeferred
async def test_enabled_optional_endpoint_is_listed_once(make_memory_daemon):
    daemon = with_example(make_memory_daemon, enabled=True)
    listed = (await json_of(await daemon.get("/endpoints")))["endpoints"]
    assert listed.count("/api/v1/admin/example") == 1
    assert "/api/v1/admin/example/log" not in listed


# Disabled


@pytest.mark.parametrize("auth", ["?token=yourtoken", ""], ids=["authenticated", "anonymous"])
@pytest.mark.parametrize("path", ["/example", "/example/log"])
@pytest.mark.parametrize("method", ["GET", "POST", "PUT"])
@pytest_twisted.ensureDeferred
async def test_disabled_optional_endpoint_answers_like_an_unknown_path(make_memory_daemon, auth, path, method):
    daemon = with_example(make_memory_daemon, enabled=False)
    disabled = await raw_request(daemon, method, "/api/v1/admin" + path + auth)
    unknown = await raw_request(daemon, method, "/api/v1/admin/no-such-thing" + auth)
    assert disabled.status == unknown.status == 404
    assert disabled.body == unknown.body == b'{"Status":"404 Not Found"}'
    assert stable_headers(disabled) == stable_headers(unknown)


@pytest_twisted.ensureDeferred
async def test_disabled_optional_endpoint_with_a_form_answers_404(make_memory_daemon):
    daemon = with_example(make_memory_daemon, enabled=False)
    response = await daemon.post_form("/example", {"license": "data"}, auth=None)
    assert response.code == 404
    assert await response.content() == b'{"Status":"404 Not Found"}'


@pytest_twisted.ensureDeferred
async def test_disabled_optional_endpoint_is_not_listed(make_memory_daemon):
    daemon = with_example(make_memory_daemon, enabled=False)
    listed = (await json_of(await daemon.get("/endpoints")))["endpoints"]
    assert not any("example" in entry for entry in listed)


@pytest_twisted.ensureDeferred
async def test_disabled_optional_endpoint_audits_nothing(make_memory_daemon):
    daemon = with_example(make_memory_daemon, enabled=False)
    await daemon.get("/example", auth=None)
    audit = daemon.admin_path / "log" / "jidoteki-audit.log"
    assert not audit.exists() or audit.read_text() == ""


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


def test_an_enabled_optional_endpoint_is_unserved_until_a_section_serves_it(make_daemon):
    daemon = make_daemon(config={"endpoints": ["example", "license"]})
    assert daemon.service.unserved_optional() == ["example"]
    daemon.service.catalogue.add(example_section())
    assert daemon.service.unserved_optional() == []
