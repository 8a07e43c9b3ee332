"""Requests that a proxy, a script or an attacker sends, and the one answer each gets."""

import json

import pytest
import pytest_twisted
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from twisted.internet import reactor
from twisted.internet.task import deferLater
from twisted.logger import LogLevel, globalLogPublisher

from conftest import multipart, raw_request
from jidoteki_admin.http.auth import request_hash
from jidoteki_admin.http.site import parse_query

TOKEN = "yourtoken"
VERSION = "/api/v1/admin/version"


@pytest.fixture
def versioned(daemon):
    (daemon.admin_path / "etc" / "version.txt").write_text("1.2.3\n")
    return daemon


async def post_setup(daemon, query: str, newtoken: str = "replaced", pad: int = 0):
    """POST /setup with a multipart body; pad makes it large enough to be judged before
    the body is read."""
    fields = {"newtoken": newtoken}
    if pad:
        fields["pad"] = "x" * pad
    content_type, body = multipart(fields)
    return await raw_request(daemon, "POST", "/api/v1/admin/setup?" + query,
                             {"Content-Type": content_type}, body)


# One query parser


def test_the_query_parser_splits_on_ampersands_only():
    assert parse_query(b"/x?token=a;b=c&x=%41+B&flag&=v") == {
        b"token": [b"a;b=c"], b"x": [b"A B"], b"flag": [b""], b"": [b"v"]
    }
    assert parse_query(b"/x?a=%ff&a=%zz") == {b"a": [b"\xff", b"%zz"]}
    assert parse_query(b"/x") == {}
    assert parse_query(b"/x?&&a=1&&&b=2&") == {b"a": [b"1"], b"b": [b"2"]}  # empty pairs are skipped, not the end


@pytest_twisted.ensureDeferred
async def test_a_semicolon_is_part_of_the_token_for_get(versioned):
    response = await raw_request(versioned, "GET", f"{VERSION}?token={TOKEN};a=1")
    assert response.status == 403


@pytest_twisted.ensureDeferred
async def test_a_semicolon_is_part_of_the_token_for_a_post_judged_before_its_body(daemon):
    response = await post_setup(daemon, f"token={TOKEN};a=1", pad=100_000)
    assert response.status == 403


@pytest_twisted.ensureDeferred
async def test_a_token_with_a_semicolon_works_before_and_after_the_body(versioned):
    versioned.set_token("abc;def")
    get = await raw_request(versioned, "GET", f"{VERSION}?token=abc;def")
    assert (get.status, json.loads(get.body)) == (200, {"version": "1.2.3"})
    post = await post_setup(versioned, "token=abc;def", newtoken="abc;def")
    assert post.status == 200


# Repeated credentials


@pytest.mark.parametrize("query", [
    f"token={TOKEN}&token=other",
    f"token=other&token={TOKEN}",
    f"token={TOKEN}&%74oken={TOKEN}",
    f"token={TOKEN}&token",
    "hash=a&hash=b",
])
@pytest_twisted.ensureDeferred
async def test_repeated_token_or_hash_is_refused(versioned, query):
    response = await raw_request(versioned, "GET", f"{VERSION}?{query}")
    assert response.status == 400
    name = "hash" if "hash" in query else "token"
    message = f"Parameter {name} was given more than once"
    assert json.loads(response.body)["Error-Message"] == message
    assert response.header("Error-Message") == message


@pytest_twisted.ensureDeferred
async def test_repeated_token_is_refused_before_a_large_body_is_read(daemon):
    response = await post_setup(daemon, f"token={TOKEN}&token={TOKEN}", pad=100_000)
    assert response.status == 400
    assert (daemon.admin_path / "etc" / "api.token").read_text() == TOKEN + "\n"


@pytest_twisted.ensureDeferred
async def test_token_and_hash_once_each_are_fine(versioned):
    digest = request_hash(TOKEN, "GET", VERSION)
    response = await raw_request(versioned, "GET", f"{VERSION}?token={TOKEN}&hash={digest}")
    assert response.status == 200


# Trailing slash


@pytest.mark.parametrize("path", ["/version/", "/health/", "/update/log/", "/endpoints/"])
@pytest_twisted.ensureDeferred
async def test_one_trailing_slash_is_the_same_endpoint(versioned, path):
    (versioned.admin_path / "log" / "update.log").write_text("line\n")
    with_slash = await raw_request(versioned, "GET", f"/api/v1/admin{path}?token={TOKEN}")
    without = await raw_request(versioned, "GET", f"/api/v1/admin{path[:-1]}?token={TOKEN}")
    assert with_slash.status == without.status == 200
    assert with_slash.header("Content-Type") == without.header("Content-Type")


@pytest_twisted.ensureDeferred
async def test_the_hash_is_computed_over_the_path_as_sent(versioned):
    sent = VERSION + "/"
    right = await raw_request(versioned, "GET", f"{sent}?hash={request_hash(TOKEN, 'GET', sent)}")
    assert right.status == 200
    other = await raw_request(versioned, "GET", f"{sent}?hash={request_hash(TOKEN, 'GET', VERSION)}")
    assert other.status == 403


@pytest.mark.parametrize("target", ["/api/v1/admin/version//", "/api/v1/admin//", "/docs/API.md/"])
@pytest_twisted.ensureDeferred
async def test_only_one_slash_on_an_api_endpoint(versioned, target):
    response = await raw_request(versioned, "GET", f"{target}?token={TOKEN}")
    assert response.status == 404


@pytest_twisted.ensureDeferred
async def test_a_post_endpoint_with_a_slash_takes_its_form(daemon):
    content_type, body = multipart({"newtoken": "slashed"})
    response = await raw_request(daemon, "POST", f"/api/v1/admin/setup/?token={TOKEN}",
                                 {"Content-Type": content_type}, body)
    assert response.status == 200
    assert (daemon.admin_path / "etc" / "api.token").read_text() == "slashed\n"


# Caching


@pytest.mark.parametrize("path,prepare", [
    ("/build", lambda d: d.service.settings.config.build_file.write_text('{"name": "x"}')),
    ("/changelog", lambda d: (d.admin_path / "etc" / "changelog.txt").write_text("1.0.0\n")),
])
@pytest_twisted.ensureDeferred
async def test_build_and_changelog_are_not_cached(make_daemon, tmp_path, path, prepare):
    daemon = make_daemon({"build-file": str(tmp_path / "build.json")})
    prepare(daemon)
    response = await raw_request(daemon, "GET", f"/api/v1/admin{path}?token={TOKEN}")
    assert response.status == 200
    assert response.header("Cache-Control") == "no-cache"


# What an answer may show


async def failed_update(daemon) -> dict:
    """Upload a package and wait for the update job to fail; the GET /update report."""
    response = await daemon.post_form("/update", files={"update": ("software_package-1.enc", b"x" * 64)})
    assert response.code == 202
    report: dict = {}

    async def failed() -> bool:
        report.update(json.loads(await (await daemon.get("/update")).content()))
        return report.get("status") == "failed"

    for _ in range(200):
        if await failed():
            return report
        await deferLater(reactor, 0.05, lambda: None)
    raise AssertionError(f"the update did not fail: {report}")


@pytest_twisted.ensureDeferred
async def test_a_missing_public_key_is_named_inside_the_admin_tree(daemon):
    report = await failed_update(daemon)
    assert report["error-message"] == "Cannot read the public key etc/updates.pub: No such file or directory"
    log = (daemon.admin_path / "log" / "update.log").read_text()
    assert str(daemon.admin_path) not in log


@pytest_twisted.ensureDeferred
async def test_a_missing_package_key_is_named_inside_the_admin_tree(daemon):
    key = ec.generate_private_key(ec.SECP256R1()).public_key()
    (daemon.admin_path / "etc" / "updates.pub").write_bytes(
        key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    report = await failed_update(daemon)
    assert report["error-message"] == "Cannot read the package key etc/updates.key: No such file or directory"
    assert str(daemon.admin_path) not in report["log"]


# What the daemon writes to stderr


@pytest_twisted.ensureDeferred
async def test_a_malformed_multipart_body_writes_nothing_to_stderr(daemon, capfd):
    events = []
    observer = events.append
    globalLogPublisher.addObserver(observer)
    try:
        body = b"--BOUNDARO\r\n"  # the parser logs "Expected boundary character 89, got 79"
        response = await raw_request(daemon, "POST", f"/api/v1/admin/update?token={TOKEN}",
                                     {"Content-Type": "multipart/form-data; boundary=BOUNDARY"}, body)
    finally:
        globalLogPublisher.removeObserver(observer)
    assert response.status == 400
    assert json.loads(response.body)["Error-Message"] == "Malformed multipart/form-data body"
    assert capfd.readouterr().err == ""
    parser = [e for e in events if e.get("log_namespace") == "jidoteki_admin.uploads.parser"]
    assert parser and all(e["log_level"] == LogLevel.debug for e in parser)
    assert "boundary" in parser[0]["message"].lower()


@pytest.mark.parametrize("method, target, headers, body, status", [
    ("GET", "/api/v1/admin/version?token=yourtoken", {}, b"", 200),
    ("GET", "/api/v1/admin/version", {}, b"", 403),
    ("GET", "/api/v1/admin/no-such-thing?token=yourtoken", {}, b"", 404),
    ("GET", "/", {}, b"", 200),  # the dashboard
    ("HEAD", "/api/v1/admin/version?token=yourtoken", {}, b"", 200),
    ("GET", "/api/v1/admin/version?token=yourtoken", {"X-Big": "b" * 70_000}, b"", 431),  # the channel's own
    ("POST", "/api/v1/admin/update", {"Content-Type": "text/plain"}, b"x" * 70_000, 403),  # before the body
])
@pytest_twisted.ensureDeferred
async def test_every_answer_names_the_server_without_a_version(memory_daemon, method, target, headers, body, status):
    """twisted.web would announce "TwistedWeb/<version>": an attacker's shortcut to a CVE list."""
    (memory_daemon.admin_path / "etc" / "version.txt").write_text("1.0.0\n")
    response = await raw_request(memory_daemon, method, target, headers, body)
    assert response.status == status
    assert response.headers["server"] == "jidoteki-admin"
    # every other header keeps its own value
    assert len(response.headers["x-request-id"]) == 16 and response.headers["x-content-type-options"] == "nosniff"


@pytest_twisted.ensureDeferred
async def test_when_the_error_layer_itself_fails_the_client_still_gets_no_traceback(memory_daemon, monkeypatch):
    """The last line of defence: the API's JSON 500, never twisted.web's failure page or
    its traceback (Site.displayTracebacks stays off in case that page is ever shown)."""
    from jidoteki_admin.http import responses

    def broken(*args, **kwargs):
        raise RuntimeError("secret detail of the failure")

    monkeypatch.setattr(responses, "error", broken)
    seen = []
    globalLogPublisher.addObserver(seen.append)
    try:
        response = await raw_request(memory_daemon, "GET", "/api/v1/admin/no-such-thing?token=yourtoken")
    finally:
        globalLogPublisher.removeObserver(seen.append)
    assert response.status == 500
    request_id = response.headers["x-request-id"]
    assert json.loads(response.body) == {"Status": "500 Internal Server Error",
                                         "Error-Message": f"Internal error (request {request_id})"}
    assert response.headers["content-type"] == "application/json"
    assert b"secret detail" not in response.body and b"Traceback" not in response.body
    assert b'File "' not in response.body and b"RuntimeError" not in response.body
    assert any(e.get("log_failure") is not None and e["log_failure"].check(RuntimeError) for e in seen)


@pytest_twisted.ensureDeferred
async def test_a_failure_after_the_answer_began_ends_the_connection_without_a_traceback(memory_daemon, monkeypatch):
    """Half an answer is out: nothing can be said any more, so the connection is closed
    (the client sees a cut answer, not a second one glued to it)."""
    from conftest import raw_request_bytes
    from jidoteki_admin.http import responses
    from jidoteki_admin.http.catalogue import JSON, Endpoint, Reply, Section, get

    def half(request):
        request.write(b'{"partial":')
        raise RuntimeError("secret detail of the failure")

    def broken(*args, **kwargs):
        raise RuntimeError("the error layer failed too")

    memory_daemon.service.catalogue.add(Section("half", "Half", (Endpoint("/half", (get(half, "Half", Reply(JSON)),)),)))
    monkeypatch.setattr(responses, "error", broken)
    raw = await memory_daemon.network.exchange(
        raw_request_bytes(b"GET", b"/api/v1/admin/half?token=yourtoken", close=False), 5.0)
    assert raw.startswith(b"HTTP/1.1 200 ") and b'{"partial":' in raw
    assert b"Internal error" not in raw and b"secret detail" not in raw and b"Traceback" not in raw
