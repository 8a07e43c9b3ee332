"""The wire format every response shares: bodies, headers, unknown paths, methods."""

import json
import string

import pytest
import pytest_twisted
from twisted.internet.defer import ensureDeferred
from hypothesis import HealthCheck, Phase, example, given, settings
from hypothesis import strategies as st

from conftest import multipart, raw_conversation, raw_request, raw_request_bytes
from jidoteki_admin.http.catalogue import ACCEPTED, Endpoint, Reply, Section, post
from jidoteki_admin.http.responses import accepted

TOKEN = "yourtoken"
AUTH = "token=" + TOKEN
NOT_FOUND = b'{"Status":"404 Not Found"}'
FORBIDDEN = b'{"Status":"403 Forbidden","Error-Message":"Authentication error"}'


def header(response, name: str) -> str | None:
    if name.lower() == "content-length":  # the client keeps it as response.length
        return str(response.length)
    values = response.headers.getRawHeaders(name)
    return values[0] if values else None


def assert_security_headers(get) -> None:
    """`get(name)` returns a header value or None."""
    hsts = get("Strict-Transport-Security")
    assert hsts and "max-age=" in hsts and int(hsts.split("max-age=")[1].split(";")[0]) > 0
    assert (get("X-Frame-Options") or "").upper() == "DENY"
    assert (get("X-Content-Type-Options") or "").lower() == "nosniff"
    assert get("Content-Security-Policy")


def accepting() -> Section:
    """A section whose POST hands work to a job, as /update does."""
    start = post(lambda request: accepted(request, "/sample"), "Start", Reply(ACCEPTED))
    return Section("sample", "Sample", (Endpoint("/sample", (start,)),))


@pytest.fixture
def versioned(memory_daemon):
    (memory_daemon.admin_path / "etc" / "version.txt").write_text("1.2.3\n")
    return memory_daemon


# Bodies and content types


@pytest_twisted.ensureDeferred
async def test_success_status_body_is_exact(memory_daemon):
    response = await memory_daemon.post_form("/setup", {"newtoken": "another"})
    assert response.code == 200
    body = await response.content()
    assert body == b'{"Status":"200 OK"}'
    assert header(response, "Content-Type") == "application/json"
    assert header(response, "Content-Length") == str(len(body))


@pytest_twisted.ensureDeferred
async def test_authentication_error_body_and_header_are_exact(memory_daemon):
    response = await memory_daemon.get("/version", auth=None, token="wrong")
    assert response.code == 403
    assert await response.content() == FORBIDDEN
    assert header(response, "Error-Message") == "Authentication error"
    assert header(response, "Content-Type") == "application/json"


@pytest_twisted.ensureDeferred
async def test_json_documents_are_compact_without_a_trailing_newline(versioned):
    response = await versioned.get("/version")
    assert await response.content() == b'{"version":"1.2.3"}'
    health = await (await versioned.get("/health")).content()
    assert health == json.dumps(json.loads(health), separators=(",", ":")).encode()


@pytest_twisted.ensureDeferred
async def test_not_found_body_is_exact(memory_daemon):
    response = await memory_daemon.get("/nothing-here")
    assert response.code == 404
    assert await response.content() == NOT_FOUND
    assert header(response, "Content-Length") == str(len(NOT_FOUND))


@pytest_twisted.ensureDeferred
async def test_error_message_is_both_a_json_key_and_a_header(memory_daemon):
    response = await memory_daemon.request("PUT", memory_daemon.url("/version"))
    body = json.loads(await response.content())
    assert response.code == 400
    assert body == {
        "Status": "400 Bad Request",
        "Error-Message": "Invalid authentication method. Expected GET",
    }
    assert header(response, "Error-Message") == body["Error-Message"]


@pytest.mark.parametrize(
    "path",
    ["/version", "/health", "/endpoints", "/services", "/changelog", "/nothing", "/setup"],
)
@pytest_twisted.ensureDeferred
async def test_json_responses_have_a_matching_content_length(versioned, path):
    response = await versioned.get(path)
    body = await response.content()
    assert header(response, "Content-Type") == "application/json"
    assert header(response, "Content-Length") == str(len(body))
    json.loads(body)


# Headers


@pytest.mark.parametrize(
    "method,target",
    [
        ("GET", f"/api/v1/admin/version?{AUTH}"),
        ("GET", "/api/v1/admin/version"),
        ("GET", f"/api/v1/admin/nothing?{AUTH}"),
        ("PUT", f"/api/v1/admin/version?{AUTH}"),
        ("DELETE", "/docs"),
        ("GET", "/docs"),
        ("GET", "/docs/API.md"),
        ("HEAD", "/docs"),
        ("HEAD", f"/api/v1/admin/version?{AUTH}"),
        ("GET", f"/api/v1/admin/changelog?{AUTH}"),
        ("GET", f"/api/v1/admin/health?{AUTH}"),
        ("OPTIONS", "*"),
    ],
)
@pytest_twisted.ensureDeferred
async def test_security_headers_on_every_response(versioned, method, target):
    response = await raw_request(versioned, method, target)
    assert_security_headers(response.header)


@pytest_twisted.ensureDeferred
async def test_accepted_body_and_location_are_exact(memory_daemon):
    memory_daemon.service.catalogue.add(accepting())
    response = await memory_daemon.post_form("/sample", {})
    assert response.code == 202
    body = await response.content()
    assert body == b'{"Status":"202 Accepted","Location":"/api/v1/admin/sample"}'
    assert header(response, "Location") == "/api/v1/admin/sample"
    assert header(response, "Content-Length") == str(len(body))


@pytest.mark.parametrize(
    "target,expected",
    [
        ("/api/v1/admin/version", FORBIDDEN),
        ("/api/v1/admin/version?" + AUTH, b'{"Status":"400 Bad Request","Error-Message":"Invalid authentication method. Expected GET"}'),
    ],
    ids=["403", "400"],
)
@pytest_twisted.ensureDeferred
async def test_refused_large_upload_has_the_exact_error_body(memory_daemon, target, expected):
    content_type, body = multipart({"newtoken": "x" * 100_000})
    response = await raw_request(memory_daemon, "POST", target, {"Content-Type": content_type}, body)
    assert response.body == expected
    assert response.header("Content-Length") == str(len(expected))


@pytest_twisted.ensureDeferred
async def test_security_headers_on_a_refused_large_upload(memory_daemon):
    content_type, body = multipart({"newtoken": "x" * 100_000})
    response = await raw_request(
        memory_daemon, "POST", "/api/v1/admin/version", {"Content-Type": content_type}, body
    )
    assert response.status == 403
    assert_security_headers(response.header)


@pytest.mark.parametrize("path", ["/health", "/endpoints", "/services"])
@pytest_twisted.ensureDeferred
async def test_status_endpoints_are_not_cached(memory_daemon, path):
    response = await memory_daemon.get(path)
    assert response.code == 200
    assert header(response, "Cache-Control") == "no-cache"


# Unknown paths


UNKNOWN_TARGETS = [
    "/api/v1/admin/version/default",
    "//version",
    "/api/v1/admin/../x",
    "/api/v1/admin/../admin/version",
    "/api/v1/admin/./version",
    "/api/v1/admin/",
    "/api/v1/admin",
    "/api/v1/admin//version",
    "/api/v1/admin/version//",
    "/api/v1/admin/version/x/",
    "/api/v1/admin/VERSION",
    "/api/v1/admin/%76ersion",
    "/api/v1/admin/versio%6E",
    "/api/v1/admin/version%2F",
    "/api/v1/admin/%2e%2e/version",
    "/api/v1/admin/version%00",
    "/api/v1/admin/version;x",
    "/api/v1/admin/setup/x",
    "/api/v1",
    "/api",
    "/nothing",
]


@pytest.mark.parametrize("target", UNKNOWN_TARGETS)
@pytest.mark.parametrize("auth", [True, False], ids=["authenticated", "anonymous"])
@pytest_twisted.ensureDeferred
async def test_unknown_paths_answer_404(versioned, target, auth):
    response = await raw_request(versioned, "GET", target + ("?" + AUTH if auth else ""))
    assert (response.status, response.body) == (404, NOT_FOUND)
    assert response.header("Content-Type") == "application/json"


@pytest_twisted.ensureDeferred
async def test_unknown_path_with_a_large_body_answers_404(memory_daemon):
    content_type, body = multipart({"pad": "x" * 100_000})
    response = await raw_request(
        memory_daemon, "POST", "/api/v1/admin/nothing", {"Content-Type": content_type}, body
    )
    assert (response.status, response.body) == (404, NOT_FOUND)


# Query strings


@pytest.mark.parametrize(
    "query",
    [
        AUTH + "&foo=bar",
        "foo=bar&" + AUTH,
        AUTH + "&foo",
        AUTH + "&&&=",
        AUTH + "&=x",
        AUTH + "&a=1&a=2&b=%20",
        AUTH + "&%66oo=%62ar",
        AUTH + "&x=" + "y" * 2000,
        AUTH + "&x=%",
        AUTH + "&x=%zz",
    ],
)
@pytest_twisted.ensureDeferred
async def test_unknown_query_parameters_are_ignored(versioned, query):
    response = await raw_request(versioned, "GET", "/api/v1/admin/version?" + query)
    assert response.status == 200
    assert json.loads(response.body) == {"version": "1.2.3"}


@pytest.mark.parametrize("query", [AUTH + "&x=%ff", AUTH + "&%ff=1", "token=%ff"])
@pytest_twisted.ensureDeferred
async def test_undecodable_query_bytes_get_a_complete_answer(versioned, query):
    response = await raw_request(versioned, "GET", "/api/v1/admin/version?" + query, timeout=2.0)
    assert response.status in (200, 400, 403)
    json.loads(response.body)


@pytest_twisted.ensureDeferred
async def test_connection_stays_usable_after_an_undecodable_query(versioned):
    first = raw_request_bytes(b"GET", f"/api/v1/admin/version?{AUTH}&x=%ff".encode(), close=False)
    second = raw_request_bytes(b"GET", f"/api/v1/admin/version?{AUTH}".encode())
    responses = await raw_conversation(versioned, first + second, timeout=2.0)
    assert [r.status for r in responses] == [200, 200]


# Methods


@pytest.mark.parametrize(
    "target", [f"/api/v1/admin/version?{AUTH}", "/docs", "/api/v1/admin/nothing", "/docs/API.md"]
)
@pytest_twisted.ensureDeferred
async def test_head_is_answered_like_get_without_a_body(versioned, target):
    get = await raw_request(versioned, "GET", target)
    head = await raw_request(versioned, "HEAD", target)
    assert head.status == get.status
    assert head.body == b""
    assert head.header("Content-Type") == get.header("Content-Type")
    assert head.header("Content-Length") == str(len(get.body))


@pytest.mark.parametrize("method", ["PUT", "DELETE", "OPTIONS", "PATCH", "TRACE", "FOO", "get"])
@pytest_twisted.ensureDeferred
async def test_other_methods_on_an_endpoint_get_400_when_authenticated(versioned, method):
    response = await raw_request(versioned, method, f"/api/v1/admin/version?{AUTH}")
    assert response.status == 400
    assert json.loads(response.body)["Error-Message"] == "Invalid authentication method. Expected GET"


@pytest.mark.parametrize("method", ["PUT", "DELETE", "OPTIONS", "PATCH", "FOO"])
@pytest_twisted.ensureDeferred
async def test_other_methods_on_an_endpoint_get_403_when_anonymous(versioned, method):
    response = await raw_request(versioned, method, "/api/v1/admin/version")
    assert (response.status, response.body) == (403, FORBIDDEN)


@pytest.mark.parametrize("method", ["PUT", "DELETE", "POST", "PATCH", "FOO"])
@pytest.mark.parametrize("target", ["/docs", "/docs/API.md"])
@pytest_twisted.ensureDeferred
async def test_other_methods_on_docs_get_405_with_allow(memory_daemon, method, target):
    response = await raw_request(memory_daemon, method, target)
    assert response.status == 405
    assert "GET" in response.header("Allow")
    assert json.loads(response.body)["Status"] == "405 Method Not Allowed"


@pytest.mark.parametrize(
    "method", [b"G@T", b"GET\x00", b"\xff\xfe", b"A" * 300, b"", b"G E T", b"GET\t"]
)
@pytest_twisted.ensureDeferred
async def test_garbage_methods_get_a_client_error_not_a_hangup(memory_daemon, method):
    data = method + b" /api/v1/admin/version HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    responses = await raw_conversation(memory_daemon, data)
    assert len(responses) == 1
    assert 400 <= responses[0].status < 500


# Fuzzing


SEGMENTS = st.sampled_from(
    ["version", "setup", "health", "build", "changelog", "services", "endpoints", "docs", "update",
     "log", "..", ".", "", "%2e", "%2F", "%00", "%ff", "API.md", "admin", "v1", "api"]
)
RAW_TEXT = st.text(alphabet=string.ascii_letters + string.digits + "-._~!$'()*+,;:@%", max_size=12)
QUERY_VALUE = st.one_of(
    st.just(TOKEN),
    RAW_TEXT,
    st.binary(max_size=6).map(lambda b: "".join(f"%{x:02X}" for x in b)),
)
QUERY = st.lists(
    st.tuples(st.sampled_from(["token", "hash", "newtoken", "x", "%74oken", "", "a b"]), QUERY_VALUE),
    max_size=4,
).map(lambda pairs: "&".join(f"{k}={v}" for k, v in pairs))
PATH = st.one_of(
    st.lists(st.one_of(SEGMENTS, RAW_TEXT), max_size=4).map(lambda s: "/api/v1/admin/" + "/".join(s)),
    st.lists(st.one_of(SEGMENTS, RAW_TEXT), max_size=3).map(lambda s: "/" + "/".join(s)),
)
METHOD = st.one_of(
    st.sampled_from(["GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH", "TRACE"]),
    st.text(alphabet=string.ascii_uppercase, min_size=1, max_size=8),
)


async def answered_in_clock_time(daemon, pending):
    """The answer to ``pending``, moving the daemon's clock on while it waits: a refused
    POST /setup (2 s) or a throttled failure (up to 30 s) is answered at once in real time,
    so a generated request never meets the real-time limit because of a delay it earned."""
    pending = ensureDeferred(pending)
    answered = []
    pending.addBoth(lambda result: answered.append(True) or result)
    for _ in range(120):
        await daemon.network.settle()
        if answered:
            break
        daemon.clock.advance(1)
    return await pending


@settings(
    max_examples=100,
    deadline=None,
    derandomize=True,
    database=None,
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(method=METHOD, path=PATH, query=st.one_of(st.just(""), QUERY))
@example(method="POST", path="/api/v1/admin/setup", query="token=wrong")  # refused after 2 s
@pytest_twisted.ensureDeferred
async def test_any_request_gets_a_clean_answer(versioned, method, path, query):
    target = path + ("?" + query if query else "")
    response = await answered_in_clock_time(versioned, raw_request(versioned, method, target, timeout=10.0))
    assert response.status < 500, (target, response)
    assert b"Traceback" not in response.body and b'File "' not in response.body
    content_type = response.header("Content-Type") or ""
    if content_type.startswith("application/json") and method != "HEAD":
        json.loads(response.body)
    elif response.body:
        assert content_type.startswith(("text/html", "text/plain", "text/markdown")), content_type
    if content_type:
        assert_security_headers(response.header)
