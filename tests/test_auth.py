"""Token and HMAC authentication (API.md section 2), the audit trail, and the access log."""

import hmac
import json
import types

import pytest
import pytest_twisted
from twisted.logger import formatEvent, globalLogPublisher

from conftest import json_of, multipart, raw_request
from jidoteki_admin.http import auth
from jidoteki_admin.http.auth import request_hash, secret_key

PUBLISHED_KEY = "13e2ff941bbc8692cad141c8d293dda2c4f1c1a3c51b93d54f1a1693e1206107"
PUBLISHED_HASH = "b714a60732e096ccef06e360eefe0f1ba4fa5d16ef7da726612e2026e5523241"
EMPTY_TOKEN_HASH = "99256a631b6a3ecae8c503dfffab1e1c8fe91100f3dddb24a1f24f30907618da"
FORBIDDEN = {"Status": "403 Forbidden", "Error-Message": "Authentication error"}


@pytest.fixture
def versioned(memory_daemon):
    (memory_daemon.admin_path / "etc" / "version.txt").write_text("1.2.3\n")
    return memory_daemon


def audit_entries(daemon) -> list[dict]:
    path = daemon.admin_path / "log" / "jidoteki-audit.log"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines()]


def request_id(response) -> str:
    return response.headers.getRawHeaders("X-Request-Id")[0]


# Published vectors


def test_secret_key_matches_the_published_vector():
    assert secret_key("yourtoken") == PUBLISHED_KEY


def test_request_hash_matches_the_published_vector():
    assert request_hash("yourtoken", "GET", "/api/v1/admin/version") == PUBLISHED_HASH


def test_empty_token_hash_vector():
    assert request_hash("", "GET", "/api/v1/admin/version") == EMPTY_TOKEN_HASH


def test_request_hash_covers_method_and_full_path():
    log_hash = request_hash("yourtoken", "GET", "/api/v1/admin/update/log")
    assert log_hash != request_hash("yourtoken", "GET", "/api/v1/admin/update")
    assert log_hash != request_hash("yourtoken", "POST", "/api/v1/admin/update/log")


@pytest_twisted.ensureDeferred
async def test_published_hash_authenticates(versioned):
    response = await versioned.get("/version", auth=None, hash=PUBLISHED_HASH)
    assert response.code == 200
    assert await json_of(response) == {"version": "1.2.3"}


@pytest_twisted.ensureDeferred
async def test_uppercase_hex_hash_authenticates(versioned):
    response = await versioned.get("/version", auth=None, hash=PUBLISHED_HASH.upper())
    assert response.code == 200


@pytest_twisted.ensureDeferred
async def test_token_authenticates(versioned):
    response = await versioned.get("/version", auth="token")
    assert response.code == 200


@pytest_twisted.ensureDeferred
async def test_nested_endpoint_hash_is_over_the_full_path(versioned):
    (versioned.admin_path / "log" / "update.log").write_text("[1][SYSTEM] Updating system successful\n")
    good = await versioned.get("/update/log", auth="hash")
    assert good.code == 200
    assert await good.content() == b"[1][SYSTEM] Updating system successful\n"
    first_level_only = request_hash("yourtoken", "GET", "/api/v1/admin/update")
    bad = await versioned.get("/update/log", auth=None, hash=first_level_only)
    assert bad.code == 403


@pytest_twisted.ensureDeferred
async def test_hash_for_another_method_is_refused(versioned):
    response = await versioned.get(
        "/version", auth=None, hash=request_hash("yourtoken", "POST", "/api/v1/admin/version")
    )
    assert response.code == 403


@pytest_twisted.ensureDeferred
async def test_hash_for_another_endpoint_is_refused(versioned):
    response = await versioned.get(
        "/version", auth=None, hash=request_hash("yourtoken", "GET", "/api/v1/admin/health")
    )
    assert response.code == 403


@pytest.mark.parametrize("query", [{"token": "yourtoken"}, {"hash": PUBLISHED_HASH}, {"token": "x", "hash": "y"}], ids=repr)
def test_credentials_are_compared_in_constant_time(memory_daemon, monkeypatch, query):
    compared = []

    def spy(a, b):
        compared.append((a, b))
        return hmac.compare_digest(a, b)

    monkeypatch.setattr(auth, "hmac", types.SimpleNamespace(compare_digest=spy, new=hmac.new))
    memory_daemon.service.tokens.authenticates("GET", "/api/v1/admin/version", query.get("token"), query.get("hash"))
    assert len(compared) == 1


# Both token and hash: the hash decides


@pytest_twisted.ensureDeferred
async def test_good_token_with_bad_hash_is_refused(versioned):
    response = await versioned.get("/version", auth=None, token="yourtoken", hash="0" * 64)
    assert response.code == 403


@pytest_twisted.ensureDeferred
async def test_bad_token_with_good_hash_is_accepted(versioned):
    response = await versioned.get("/version", auth=None, token="wrong", hash=PUBLISHED_HASH)
    assert response.code == 200


# Refusals


@pytest.mark.parametrize(
    "query",
    [
        {},
        {"token": "wrong"},
        {"token": ""},
        {"token": "yourtoken "},
        {"token": "YOURTOKEN"},
        {"token": "yourtoke"},
        {"hash": "0" * 64},
        {"hash": ""},
        {"hash": "not hex at all"},
        {"hash": PUBLISHED_HASH[:-1]},
        {"Token": "yourtoken"},
    ],
    ids=repr,
)
@pytest_twisted.ensureDeferred
async def test_bad_credentials_are_refused_with_exact_403(versioned, query):
    response = await versioned.get("/version", auth=None, **query)
    assert response.code == 403
    assert await json_of(response) == FORBIDDEN
    assert response.headers.getRawHeaders("Error-Message") == ["Authentication error"]


@pytest.mark.parametrize("token_file", ["missing", "empty", "newline only"])
@pytest.mark.parametrize(
    "query",
    [{"token": ""}, {"hash": EMPTY_TOKEN_HASH}, {}, {"token": "\n"}],
    ids=["empty token", "empty-token hash", "no credentials", "newline token"],
)
@pytest_twisted.ensureDeferred
async def test_without_a_token_nobody_authenticates(make_memory_daemon, token_file, query):
    daemon = make_memory_daemon(token=None)
    (daemon.admin_path / "etc" / "version.txt").write_text("1.2.3\n")
    if token_file == "empty":
        daemon.service.tree.token_file.write_bytes(b"")
    elif token_file == "newline only":
        daemon.service.tree.token_file.write_bytes(b"\n")
    response = await daemon.get("/version", auth=None, **query)
    assert response.code == 403
    assert await json_of(response) == FORBIDDEN


@pytest_twisted.ensureDeferred
async def test_wrong_method_when_authenticated_is_400_expected_get(versioned):
    response = await versioned.request("POST", versioned.url("/version", auth="hash", method="POST"))
    assert response.code == 400
    assert await json_of(response) == {
        "Status": "400 Bad Request",
        "Error-Message": "Invalid authentication method. Expected GET",
    }


@pytest_twisted.ensureDeferred
async def test_setup_with_get_when_authenticated_is_400_expected_post(versioned):
    response = await versioned.get("/setup")
    assert response.code == 400
    body = await json_of(response)
    assert body["Error-Message"] == "Invalid authentication method. Expected POST"
    assert response.headers.getRawHeaders("Error-Message") == [body["Error-Message"]]


@pytest_twisted.ensureDeferred
async def test_wrong_method_when_anonymous_is_403(versioned):
    response = await versioned.request("DELETE", versioned.url("/version", auth=None))
    assert response.code == 403
    assert await json_of(response) == FORBIDDEN


@pytest_twisted.ensureDeferred
async def test_token_is_reread_when_the_file_changes(versioned):
    versioned.set_token("changed-outside")
    assert (await versioned.get("/version", auth=None, token="yourtoken")).code == 403
    assert (await versioned.get("/version", auth="token")).code == 200


# The audit trail


@pytest_twisted.ensureDeferred
async def test_each_authentication_failure_is_audited(versioned):
    responses = [
        await versioned.get("/version", auth=None, token="wrong-guess"),
        await versioned.get("/health", auth=None, hash="1" * 64),
        await versioned.get("/services", auth=None),
    ]
    entries = audit_entries(versioned)
    assert [e["request"] for e in entries] == [request_id(r) for r in responses]
    assert [e["target"] for e in entries] == [
        "/api/v1/admin/version",
        "/api/v1/admin/health",
        "/api/v1/admin/services",
    ]
    for entry in entries:
        assert entry["action"] == "GET"
        assert entry["client"] == "127.0.0.1"
        assert entry["time"]
        assert "403" in entry["outcome"]


@pytest_twisted.ensureDeferred
async def test_mutations_are_audited(versioned):
    changed = await versioned.post_form("/setup", {"newtoken": "second-token"}, auth="hash")
    assert changed.code == 200
    refused = await versioned.post_form("/setup", {"newtoken": ""}, auth=None, token="second-token")
    assert refused.code == 400
    entries = audit_entries(versioned)
    assert [e["request"] for e in entries] == [request_id(changed), request_id(refused)]
    assert all(e["action"] == "POST" and e["target"] == "/api/v1/admin/setup" for e in entries)
    assert entries[0]["outcome"].startswith("200")
    assert entries[1]["outcome"].startswith("400")


@pytest_twisted.ensureDeferred
async def test_other_failures_are_audited_but_not_unknown_paths(versioned):
    wrong_method = await versioned.get("/setup")
    assert wrong_method.code == 400
    assert (await versioned.get("/no-such-endpoint")).code == 404
    entries = audit_entries(versioned)
    assert [e["request"] for e in entries] == [request_id(wrong_method)]
    assert entries[0]["outcome"] == "400 Invalid authentication method. Expected POST"


@pytest_twisted.ensureDeferred
async def test_successful_reads_are_not_audited(versioned):
    assert (await versioned.get("/version")).code == 200
    assert audit_entries(versioned) == []


@pytest_twisted.ensureDeferred
async def test_audit_log_never_holds_a_secret(versioned):
    good_hash = request_hash("yourtoken", "POST", "/api/v1/admin/setup")
    await versioned.get("/version", auth=None, token="wrong-guess-1234")
    await versioned.get("/version", auth=None, hash="abcdef" * 10)
    await versioned.get("/nothing", auth=None, token="yourtoken")
    await versioned.post_form("/setup", {"newtoken": "new-secret-5678"}, auth=None, hash=good_hash)
    await versioned.post_form("/setup", {"newtoken": "x" * 300}, auth=None, token="new-secret-5678")
    text = (versioned.admin_path / "log" / "jidoteki-audit.log").read_text()
    assert len(text.splitlines()) >= 4
    for secret in ["yourtoken", good_hash, "wrong-guess-1234", "abcdef" * 10, "new-secret-5678", "x" * 300]:
        assert secret not in text


@pytest_twisted.ensureDeferred
async def test_large_refused_body_is_audited_without_secrets(versioned):
    content_type, body = multipart({"newtoken": "n" * 100_000})
    response = await raw_request(
        versioned, "POST", "/api/v1/admin/version?token=guess-9876", {"Content-Type": content_type}, body
    )
    assert response.status == 403
    entries = audit_entries(versioned)
    assert [e["request"] for e in entries] == [response.header("X-Request-Id")]
    assert entries[0]["target"] == "/api/v1/admin/version"
    assert "guess-9876" not in json.dumps(entries)


# The access log


@pytest.fixture
def log_events():
    events = []
    globalLogPublisher.addObserver(events.append)
    yield events
    globalLogPublisher.removeObserver(events.append)


def logged_text(events) -> str:
    return "\n".join(
        (formatEvent(e) or "") + " " + " ".join(str(v) for v in e.values() if isinstance(v, (str, bytes)))
        for e in events
    )


@pytest.mark.parametrize(
    "query",
    [
        "token=yourtoken",
        "%74oken=yourtoken",
        "%74%6F%6B%65%6E=yourtoken",
        "token=wrong&token=yourtoken",
        "token=yourtoken&token=yourtoken",
        "hash=" + PUBLISHED_HASH,
        "%68ash=" + PUBLISHED_HASH,
        "hash=0&hash=" + PUBLISHED_HASH,
        "token=your%74oken",
        "x=1&token=yourtoken&y=2",
    ],
)
@pytest_twisted.ensureDeferred
async def test_access_log_never_holds_token_or_hash(versioned, log_events, query):
    response = await raw_request(versioned, "GET", "/api/v1/admin/version?" + query)
    assert response.status in (200, 400, 403)  # 400: a repeated token or hash
    text = logged_text(log_events)
    assert "/api/v1/admin/version" in text
    assert "yourtoken" not in text
    assert "your%74oken" not in text
    assert PUBLISHED_HASH not in text


@pytest_twisted.ensureDeferred
async def test_access_log_scrubs_setup_secrets(versioned, log_events):
    await versioned.post_form("/setup", {"newtoken": "brand-new-9"}, auth=None, token="yourtoken", newtoken="q-secret")
    text = logged_text(log_events)
    assert "/api/v1/admin/setup" in text
    assert "yourtoken" not in text
    assert "q-secret" not in text
    assert "brand-new-9" not in text


def _refusals():
    """Requests refused on each path that writes an access line of its own, with the token
    in the query: before the body (site.AdminSite.refused_early), by the channel (414, 431),
    and mid-body (a field over its cap)."""
    from jidoteki_admin.http.site import EARLY_REFUSAL_THRESHOLD

    content_type, over_cap = multipart({"newtoken": "n" * 5000})
    return {
        "before the body": ("POST", "/api/v1/admin/update?token=yourtoken&hash=" + PUBLISHED_HASH,
                            {"Content-Type": "text/plain"}, b"x" * (EARLY_REFUSAL_THRESHOLD + 1),
                            403, "refused before the body"),
        "over its cap": ("POST", "/api/v1/admin/setup?token=yourtoken", {"Content-Type": content_type},
                         over_cap, 413, "/api/v1/admin/setup"),
        "headers too large": ("GET", "/api/v1/admin/version?token=yourtoken", {"X-Big": "b" * 70_000},
                              b"", 431, "431"),
        "URI too long": ("GET", "/api/v1/admin/version?token=yourtoken&x=" + "u" * 70_000, {}, b"", 414, "414"),
    }


@pytest.mark.parametrize("refusal", list(_refusals()))
@pytest_twisted.ensureDeferred
async def test_access_log_scrubs_refused_requests_too(versioned, log_events, refusal):
    method, target, headers, body, status, logged = _refusals()[refusal]
    response = await raw_request(versioned, method, target, headers, body)
    assert response.status == status
    text = logged_text(log_events)
    assert logged in text, "the refusal should have its access line"
    assert "yourtoken" not in text
    assert PUBLISHED_HASH not in text
    access = [event["line"] for event in log_events if event.get("log_namespace", "").endswith("AccessLog")]
    assert len(access) == 1 and access[0].startswith("127.0.0.1 "), access  # who was refused
