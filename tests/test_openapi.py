"""The OpenAPI document at /docs/openapi.json: valid, and exactly what the daemon serves."""

from __future__ import annotations

import json
import re

import pytest
import pytest_twisted
from openapi_spec_validator import validate

from conftest import json_of, raw_request
from jidoteki_admin import API_PREFIX
from jidoteki_admin.http.catalogue import STATUS, Endpoint, Field, Reply, Section, post
from jidoteki_admin.http.gate import check_form
from jidoteki_admin.http.responses import APIError, status
from jidoteki_admin.http.site import EARLY_REFUSAL_THRESHOLD
from jidoteki_admin.http.uploads import Form

# Paths tried against the daemon that must not be served; the document must not list them.
NOT_SERVED = ["/api/v1/admin/settings", "/api/v1/admin/backup", "/api/v1/admin/storage", "/dashboard"]


async def document_of(daemon) -> dict:
    response = await daemon.client.get(daemon.base + "/docs/openapi.json")
    assert response.code == 200
    assert response.headers.getRawHeaders("content-type") == ["application/json"]
    return await json_of(response)


@pytest_twisted.ensureDeferred
async def test_the_document_is_valid_openapi_3_1(daemon):
    document = await document_of(daemon)
    assert document["openapi"] == "3.1.0"
    validate(document)  # raises on anything the OpenAPI 3.1 schema refuses


@pytest_twisted.ensureDeferred
async def test_the_document_needs_no_authentication(fresh_daemon):
    document = await document_of(fresh_daemon)
    assert "/api/v1/admin/setup" in document["paths"]


@pytest_twisted.ensureDeferred
async def test_every_path_in_the_document_is_served_with_its_methods(daemon):
    (daemon.admin_path / "etc" / "version.txt").write_text("1.0.0\n")
    document = await document_of(daemon)
    for path, item in document["paths"].items():
        for method in item:
            query = "" if item[method].get("security") == [] else "?token=yourtoken"
            body = {"Content-Type": "multipart/form-data; boundary=x"} if method == "post" else {}
            response = await raw_request(daemon, method.upper(), path + query, body,
                                         b"--x--\r\n" if method == "post" else b"")
            assert response.status != 405, (method, path)
            if response.status == 404:  # served, but what it reads is not there yet: it says which
                assert response.header("error-message", "").endswith("not found"), (method, path)
            elif method == "post" and response.status >= 400 and "requestBody" in item[method]:
                # an empty form: refused for what it lacks
                assert response.status == 400 and "Missing required parameter" in response.header("error-message")
            elif response.status >= 400:  # a job that cannot run on this bare tree says why, as documented
                assert str(response.status) in item[method]["responses"], (method, path, response.status)
                assert response.header("error-message"), (method, path)


@pytest_twisted.ensureDeferred
async def test_every_served_route_is_in_the_document(daemon):
    document = await document_of(daemon)
    served = {
        endpoint.full_path: {op.method.lower() for op in endpoint.operations}
        for _, endpoint in daemon.service.catalogue.endpoints()
    }
    assert {path: set(item) for path, item in document["paths"].items()} == served
    for path in NOT_SERVED:
        assert path not in document["paths"]
        response = await raw_request(daemon, "GET", path + "?token=yourtoken")
        assert response.status == 404


@pytest_twisted.ensureDeferred
async def test_an_enabled_optional_section_is_documented_and_a_disabled_one_is_not(make_daemon):
    off = make_daemon(subdir="off")
    on = make_daemon(config={"endpoints": ["storage"]}, subdir="on")
    assert "/api/v1/admin/storage" not in (await document_of(off))["paths"]
    document = await document_of(on)
    validate(document)
    assert set(document["paths"]["/api/v1/admin/storage"]) == {"get", "post"}


@pytest_twisted.ensureDeferred
async def test_the_document_describes_auth_forms_and_replies(daemon):
    document = await document_of(daemon)
    schemes = document["components"]["securitySchemes"]
    assert schemes["token"] == {"type": "apiKey", "in": "query", "name": "token",
                                "description": schemes["token"]["description"]}
    assert schemes["hash"]["in"] == "query" and schemes["hash"]["name"] == "hash"
    update = document["paths"][API_PREFIX + "/update"]["post"]
    form = update["requestBody"]["content"]["multipart/form-data"]["schema"]
    assert form["required"] == ["update"]
    assert form["properties"]["update"]["contentMediaType"] == "application/octet-stream"
    assert set(update["responses"]) >= {"202", "400", "403", "404", "413"}
    assert "Location" in update["responses"]["202"]["headers"]
    setup = document["paths"][API_PREFIX + "/setup"]["post"]
    assert {} in setup["security"]  # answers without a token before the first one is set
    assert document["paths"]["/docs"]["get"]["security"] == []
    ids = [op["operationId"] for item in document["paths"].values() for op in item.values()]
    assert len(ids) == len(set(ids)) and all(re.fullmatch(r"[a-z]+[A-Za-z0-9]*", i) for i in ids)


# Form fields declared in the catalogue are checked before any handler runs.

ACTION = post(lambda r: status(r), "Start or stop", Reply(STATUS),
              Field("action", allowed=("START", "STOP")), Field("note", required=False))


@pytest.mark.parametrize("texts, problem", [
    ({}, "Missing required parameter: action"),
    ({"action": b"start"}, "Parameter action must be START or STOP"),
    ({"action": b"\xff"}, "Parameter action is not valid UTF-8"),
])
def test_declared_fields_are_checked(texts, problem):
    with pytest.raises(APIError) as refused:
        check_form(ACTION, Form(texts=texts))
    assert (refused.value.status, refused.value.message) == (400, problem)


def test_declared_fields_accept_allowed_values_and_leave_optional_ones_out():
    check_form(ACTION, Form(texts={"action": b"STOP"}))


@pytest_twisted.ensureDeferred
async def test_an_allowed_value_is_enforced_through_the_daemon(daemon):
    daemon.service.catalogue.add(Section("cluster", "Cluster", (Endpoint("/cluster", (ACTION,)),)))
    refused = await daemon.post_form("/cluster", {"action": "RESTART"})
    assert refused.code == 400
    assert json.loads(await refused.content())["Error-Message"] == "Parameter action must be START or STOP"
    done = await daemon.post_form("/cluster", {"action": "START"})
    assert done.code == 200


@pytest_twisted.ensureDeferred
async def test_the_backup_section_when_enabled_is_documented_and_valid(make_daemon):
    daemon = make_daemon(config={"endpoints": ["backup"]})
    document = await document_of(daemon)
    validate(document)
    backup = {path for path in document["paths"] if path.startswith(API_PREFIX + "/backup")}
    assert backup == {API_PREFIX + p for p in ("/backup", "/backup/download", "/backup/log", "/backup/restore")}
    action = document["paths"][API_PREFIX + "/backup"]["post"]["requestBody"]["content"]["multipart/form-data"]
    pattern = action["schema"]["properties"]["action"]["pattern"]
    assert all(re.fullmatch(pattern, value) for value in ("START", "stop", "Start"))
    assert not re.fullmatch(pattern, "RESTART")


@pytest_twisted.ensureDeferred
async def test_every_operation_documents_the_413_it_answers_to_an_oversized_body(memory_daemon):
    """Any operation refuses a body it does not take, and /setup a newtoken over 4 KiB: the
    document must list that 413 (it once listed it for /update alone)."""
    document = await document_of(memory_daemon)
    for path, item in document["paths"].items():
        for method, operation in item.items():
            assert "413" in operation["responses"], (method, path)
            has_file = any(schema.get("contentMediaType") for schema in _form_properties(operation))
            assert ("507" in operation["responses"]) == has_file, (method, path)
    answer = await memory_daemon.post_form("/setup", {"newtoken": "a" * 4097})
    assert answer.code == 413
    assert (await json_of(answer))["Error-Message"] == "Parameter newtoken is larger than its limit of 4096 bytes"
    answer = await raw_request(memory_daemon, "GET", API_PREFIX + "/version?token=yourtoken", {},
                               b"x" * (EARLY_REFUSAL_THRESHOLD + 1))
    assert answer.status == 413


def _form_properties(operation: dict) -> list[dict]:
    """The schemas of an operation's multipart form fields, if it takes a form."""
    content = operation.get("requestBody", {}).get("content", {}).get("multipart/form-data", {})
    return list(content.get("schema", {}).get("properties", {}).values())


@pytest_twisted.ensureDeferred
async def test_no_unauthenticated_answer_gives_the_daemons_version(memory_daemon):
    """docs/API.md: the daemon does not announce what it runs on. Every public page is read
    without a token: no header names the version, the OpenAPI document gives the API's
    version only, and no page says what release of the daemon it is."""
    from jidoteki_admin import __version__

    for path in ("//", "//docs", "//docs/openapi.json", "//docs/API.md", "/version", "/nosuch"):
        response = await memory_daemon.get(path, auth=None)
        body = await response.content()
        assert f"jidoteki-admin {__version__}".encode() not in body, path
        assert f"jidoteki-admin/{__version__}".encode() not in body, path
        for name, values in response.headers.getAllRawHeaders():
            assert not any(__version__.encode() in value for value in values), (path, name)
    document = await memory_daemon.get("//docs/openapi.json", auth=None)
    text = await document.content()
    assert json.loads(text)["info"]["version"] == "1"
    assert __version__.encode() not in text
