"""POST /setup: the first token, changing it, and refusing bad ones (API.md sections 1-2)."""

import stat

import pytest
import pytest_twisted
from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.internet import reactor

from conftest import json_of, multipart, raw_conversation, raw_request, raw_request_bytes, wait_until
from jidoteki_admin.http.auth import request_hash, token_problem

FORBIDDEN = {"Status": "403 Forbidden", "Error-Message": "Authentication error"}
TOKEN_ASCII = "".join(chr(c) for c in range(0x21, 0x7F))  # "!" to "~", as the original allowed


def token_file(daemon):
    return daemon.admin_path / "etc" / "api.token"


def snapshot(path):
    """Bytes, mtime and inode of a file, or None when it is absent."""
    if not path.exists():
        return None
    st_ = path.stat()
    return path.read_bytes(), st_.st_mtime_ns, st_.st_ino


def leftovers(daemon) -> list[str]:
    return sorted(p.name for p in (daemon.admin_path / "etc").iterdir() if p.name.startswith("."))


async def post_raw_body(daemon, body: bytes, content_type: str | None, query: str = ""):
    headers = {"Content-Type": content_type} if content_type else {}
    return await raw_request(daemon, "POST", "/api/v1/admin/setup" + query, headers, body)


# The first token


@pytest_twisted.ensureDeferred
async def test_first_setup_needs_no_credentials(fresh_memory_daemon):
    response = await fresh_memory_daemon.post_form("/setup", {"newtoken": "first-token"}, auth=None)
    assert response.code == 200
    assert await response.content() == b'{"Status":"200 OK"}'
    path = token_file(fresh_memory_daemon)
    assert path.read_text().splitlines()[0] == "first-token"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600  # no admin-group: the owner alone
    assert leftovers(fresh_memory_daemon) == []


@pytest_twisted.ensureDeferred
async def test_new_token_then_authenticates_by_token_and_hash(fresh_memory_daemon):
    (fresh_memory_daemon.admin_path / "etc" / "version.txt").write_text("9\n")
    await fresh_memory_daemon.post_form("/setup", {"newtoken": "first-token"}, auth=None)
    fresh_memory_daemon.token = "first-token"
    assert (await fresh_memory_daemon.get("/version", auth="token")).code == 200
    assert (await fresh_memory_daemon.get("/version", auth="hash")).code == 200


@pytest_twisted.ensureDeferred
async def test_token_of_255_characters_is_accepted(fresh_memory_daemon):
    token = ("abc~!#" * 60)[:255]
    response = await fresh_memory_daemon.post_form("/setup", {"newtoken": token}, auth=None)
    assert response.code == 200
    assert token_file(fresh_memory_daemon).read_bytes() == token.encode() + b"\n"
    fresh_memory_daemon.token = token
    assert (await fresh_memory_daemon.get("/health", auth="hash")).code == 200


@pytest_twisted.ensureDeferred
async def test_single_character_token_is_accepted(fresh_memory_daemon):
    response = await fresh_memory_daemon.post_form("/setup", {"newtoken": "x"}, auth=None)
    assert response.code == 200


# Bad new tokens: 400 with a message, and nothing changes

BAD_TOKENS = {
    "empty": b"",
    "256 characters": b"a" * 256,
    "non-ASCII": "tökén".encode(),
    "not UTF-8": b"\xff\xfeab",
    "control character": b"abc\x01def",
    "tab": b"a\tb",
    "newline": b"abc\ndef",
    "carriage return": b"abc\r",
    "delete": b"abc\x7f",
    "NUL": b"abc\x00",
}


@pytest.mark.parametrize("value", BAD_TOKENS.values(), ids=BAD_TOKENS.keys())
@pytest_twisted.ensureDeferred
async def test_bad_new_token_is_refused_and_the_token_file_unchanged(memory_daemon, value):
    before = snapshot(token_file(memory_daemon))
    response = await memory_daemon.post_form("/setup", {"newtoken": value}, auth="hash")
    assert response.code == 400
    body = await json_of(response)
    assert body["Status"] == "400 Bad Request"
    assert body["Error-Message"]
    assert snapshot(token_file(memory_daemon)) == before
    assert leftovers(memory_daemon) == []
    assert (await memory_daemon.get("/health", auth="token")).code == 200


def repeated_newtoken():
    """newtoken twice in one form, as curl -F newtoken=a -F newtoken=b sends it."""
    part = b'--b0undary\r\nContent-Disposition: form-data; name="newtoken"\r\n\r\n%s\r\n'
    return "multipart/form-data; boundary=b0undary", part % b"first-choice" + part % b"second-choice" + b"--b0undary--\r\n"


@pytest.mark.parametrize("form, message", [
    ({}, "Missing required parameter: newtoken"),
    ({"other": "x"}, "Missing required parameter: newtoken"),
    ("repeated", "Parameter newtoken was given more than once"),
])
@pytest_twisted.ensureDeferred
async def test_a_form_without_exactly_one_newtoken_is_refused_by_name(memory_daemon, form, message):
    before = snapshot(token_file(memory_daemon))
    if form == "repeated":
        content_type, body = repeated_newtoken()
    else:
        content_type, body = multipart(form)
    response = await raw_request(memory_daemon, "POST", "/api/v1/admin/setup?token=yourtoken",
                                 {"Content-Type": content_type}, body)
    assert (response.status, response.body) == (
        400, b'{"Status":"400 Bad Request","Error-Message":"%s"}' % message.encode())
    assert snapshot(token_file(memory_daemon)) == before
    assert leftovers(memory_daemon) == []


@pytest.mark.parametrize("value", BAD_TOKENS.values(), ids=BAD_TOKENS.keys())
@pytest_twisted.ensureDeferred
async def test_bad_first_token_writes_nothing(fresh_memory_daemon, value):
    response = await fresh_memory_daemon.post_form("/setup", {"newtoken": value}, auth=None)
    assert response.code == 400
    assert (await json_of(response))["Error-Message"]
    etc = fresh_memory_daemon.admin_path / "etc"
    assert not (etc / "api.token").exists()
    assert not (etc / "api.token.setup").exists()
    assert leftovers(fresh_memory_daemon) == []


@pytest.mark.parametrize(
    "fields", [{}, {"token": "abc"}, {"newToken": "abc"}, {"newtoken[]": "abc"}], ids=repr
)
@pytest_twisted.ensureDeferred
async def test_missing_newtoken_is_400(memory_daemon, fields):
    before = snapshot(token_file(memory_daemon))
    response = await memory_daemon.post_form("/setup", fields, auth="token")
    assert response.code == 400
    assert "newtoken" in (await json_of(response))["Error-Message"]
    assert snapshot(token_file(memory_daemon)) == before


@pytest_twisted.ensureDeferred
async def test_newtoken_in_the_query_string_does_not_count(memory_daemon):
    response = await raw_request(memory_daemon, "POST", "/api/v1/admin/setup?token=yourtoken&newtoken=abc")
    assert response.status == 400
    assert token_file(memory_daemon).read_text() == "yourtoken\n"


@pytest.mark.parametrize(
    "body,content_type",
    [
        (b"newtoken=abc", "application/x-www-form-urlencoded"),
        (b'{"newtoken": "abc"}', "application/json"),
        (b"newtoken=abc", None),
        (b"abc", "text/plain"),
        (b"--x\r\nContent-Disposition: form-data; name=\"newtoken\"\r\n\r\nabc\r\n--x--\r\n", "multipart/form-data"),
        (b"--x\r\nContent-Disposition: form-data; name=\"newtoken\"\r\n\r\nabc\r\n--x--\r\n", "multipart/form-data; boundary=y"),
        (b"--x\r\nContent-Disposition: form-data; name=\"newtoken\"\r\n\r\nabc", "multipart/form-data; boundary=x"),
        (b"garbage", "multipart/form-data; boundary=x"),
    ],
    ids=["urlencoded", "json", "no type", "text", "no boundary", "wrong boundary", "cut short", "garbage"],
)
@pytest_twisted.ensureDeferred
async def test_body_that_is_not_a_good_multipart_form_is_400(memory_daemon, body, content_type):
    response = await post_raw_body(memory_daemon, body, content_type, "?token=yourtoken")
    assert response.status == 400
    assert response.header("Error-Message")
    assert token_file(memory_daemon).read_text() == "yourtoken\n"


@pytest_twisted.ensureDeferred
async def test_newtoken_given_twice_is_400(memory_daemon):
    boundary = "b0undary"
    part = f'--{boundary}\r\nContent-Disposition: form-data; name="newtoken"\r\n\r\n{{}}\r\n'
    body = (part.format("one") + part.format("two") + f"--{boundary}--\r\n").encode()
    response = await post_raw_body(memory_daemon, body, f"multipart/form-data; boundary={boundary}", "?token=yourtoken")
    assert response.status == 400
    assert token_file(memory_daemon).read_text() == "yourtoken\n"


# One request, one response (the original answered 400 and then 200)


@pytest_twisted.ensureDeferred
async def test_refused_setup_sends_exactly_one_response(fresh_memory_daemon):
    content_type, body = multipart({"newtoken": ""})
    data = raw_request_bytes(b"POST", b"/api/v1/admin/setup", {"Content-Type": content_type}, body)
    responses = await raw_conversation(fresh_memory_daemon, data)
    assert [r.status for r in responses] == [400]
    assert not (fresh_memory_daemon.admin_path / "etc" / "api.token.setup").exists()
    assert not token_file(fresh_memory_daemon).exists()


@pytest_twisted.ensureDeferred
async def test_refused_setup_leaves_the_connection_usable(fresh_memory_daemon):
    bad_type, bad = multipart({"newtoken": "a" * 256})
    good_type, good = multipart({"newtoken": "kept-alive"})
    data = raw_request_bytes(b"POST", b"/api/v1/admin/setup", {"Content-Type": bad_type}, bad, close=False)
    data += raw_request_bytes(b"POST", b"/api/v1/admin/setup", {"Content-Type": good_type}, good)
    responses = await raw_conversation(fresh_memory_daemon, data)
    assert [r.status for r in responses] == [400, 200]
    assert token_file(fresh_memory_daemon).read_text() == "kept-alive\n"


@pytest_twisted.ensureDeferred
async def test_curl_sees_a_single_status_line_for_a_refused_setup(fresh_daemon):
    out, err, code = await fresh_daemon.curl(
        "-i", "-X", "POST", fresh_daemon.url("/setup", auth=None), "-F", "newtoken="
    )
    assert code == 0, err
    status_lines = [line for line in out.split(b"\r\n") if line.startswith(b"HTTP/")]
    assert status_lines == [b"HTTP/1.1 400 Bad Request"]


# Once a token exists


@pytest_twisted.ensureDeferred
async def test_anonymous_setup_after_a_token_exists_is_403_after_a_delay(memory_daemon):
    before = snapshot(token_file(memory_daemon))
    started = reactor.seconds()
    refused = memory_daemon.post_form("/setup", {"newtoken": "takeover"}, auth=None)
    assert await wait_until(memory_daemon.waiting_on_clock, interval=0.001)  # the refusal is held back
    health = await memory_daemon.get("/health")
    health_after = reactor.seconds() - started
    assert health.code == 200 and health_after < 1.0
    assert memory_daemon.waiting_on_clock()  # still held back
    refused = await memory_daemon.answer_after(refused, 1.9)
    assert refused.code == 403
    assert await json_of(refused) == FORBIDDEN
    assert snapshot(token_file(memory_daemon)) == before
    log = (memory_daemon.admin_path / "log" / "jidoteki-audit.log").read_text()
    assert '"target":"/api/v1/admin/setup"' in log.replace(" ", "")
    assert "takeover" not in log


@pytest_twisted.ensureDeferred
async def test_setup_with_a_wrong_token_is_403_after_a_delay(memory_daemon):
    refused = memory_daemon.post_form("/setup", {"newtoken": "takeover"}, auth=None, token="guess")
    refused = await memory_daemon.answer_after(refused, 1.9)
    assert refused.code == 403
    assert token_file(memory_daemon).read_text() == "yourtoken\n"


@pytest_twisted.ensureDeferred
async def test_setup_refusal_is_delayed_even_with_a_large_body(memory_daemon):
    content_type, body = multipart({"newtoken": "takeover", "pad": "p" * 100_000})
    response = raw_request(memory_daemon, "POST", "/api/v1/admin/setup?token=guess", {"Content-Type": content_type}, body)
    response = await memory_daemon.answer_after(response, 1.9)
    assert response.status == 403
    assert token_file(memory_daemon).read_text() == "yourtoken\n"


@pytest.mark.parametrize("auth", ["token", "hash"])
@pytest_twisted.ensureDeferred
async def test_authenticated_token_change(memory_daemon, auth):
    old_inode = token_file(memory_daemon).stat().st_ino
    response = await memory_daemon.post_form("/setup", {"newtoken": "second"}, auth=auth)
    assert response.code == 200
    assert token_file(memory_daemon).read_text() == "second\n"
    assert token_file(memory_daemon).stat().st_ino != old_inode
    assert stat.S_IMODE(token_file(memory_daemon).stat().st_mode) == 0o600
    assert leftovers(memory_daemon) == []
    assert (await memory_daemon.get("/health", auth=None, token="yourtoken")).code == 403
    assert (
        await memory_daemon.get("/health", auth=None, hash=request_hash("yourtoken", "GET", "/api/v1/admin/health"))
    ).code == 403
    assert (await memory_daemon.get("/health", auth=None, token="second")).code == 200


@pytest_twisted.ensureDeferred
async def test_hash_for_setup_is_over_post_and_the_setup_path(memory_daemon):
    wrong = request_hash("yourtoken", "GET", "/api/v1/admin/setup")
    response = memory_daemon.post_form("/setup", {"newtoken": "second"}, auth=None, hash=wrong)
    response = await memory_daemon.answer_after(response, 1.9)
    assert response.code == 403
    assert token_file(memory_daemon).read_text() == "yourtoken\n"


@pytest_twisted.ensureDeferred
async def test_token_file_is_replaced_not_rewritten_in_place(memory_daemon):
    handle = open(token_file(memory_daemon), "rb")
    try:
        await memory_daemon.post_form("/setup", {"newtoken": "second"}, auth="token")
        assert handle.read() == b"yourtoken\n"
    finally:
        handle.close()
    assert token_file(memory_daemon).read_text() == "second\n"


# token_problem


@settings(max_examples=200, database=None)
@given(st.text(alphabet=TOKEN_ASCII, min_size=1, max_size=255))
def test_tokens_of_bang_to_tilde_are_accepted(candidate):
    assert token_problem(candidate) is None


@settings(max_examples=200, database=None)
@given(
    st.one_of(
        st.just(""),
        st.text(alphabet=TOKEN_ASCII, min_size=256, max_size=400),
        st.builds(
            lambda before, bad, after: before + bad + after,
            st.text(alphabet=TOKEN_ASCII, max_size=100),
            st.characters().filter(lambda c: c not in TOKEN_ASCII),
            st.text(max_size=100),
        ),
    )
)
def test_everything_else_is_refused_with_a_message(candidate):
    problem = token_problem(candidate)
    assert isinstance(problem, str) and problem


@pytest.mark.parametrize("candidate", [" ", "two words", "tab\there", "del\x7f", "caf\u00e9", " leading"])
def test_spaces_and_other_characters_are_refused_with_the_allowed_range(candidate):
    assert token_problem(candidate) == "newtoken may only contain the characters ! to ~ (ASCII 0x21 to 0x7E)"


@pytest_twisted.ensureDeferred
async def test_a_space_is_not_a_token(fresh_daemon):
    response = await fresh_daemon.post_form("/setup", {"newtoken": " "}, auth=None)
    assert response.code == 400
    assert (await json_of(response))["Error-Message"] == (
        "newtoken may only contain the characters ! to ~ (ASCII 0x21 to 0x7E)")
    assert not token_file(fresh_daemon).exists()


# The token file's owner group: the appliance's admin group reads it (mode 0660)


def another_group() -> int:
    """A group the test may give files to, other than its own when it can."""
    import grp
    import os

    candidates = [g.gr_gid for g in grp.getgrall()] if os.geteuid() == 0 else os.getgroups()
    others = [gid for gid in candidates if gid != os.getegid()]
    return others[0] if others else os.getegid()


@pytest.mark.parametrize("by", ["gid", "name"])
@pytest_twisted.ensureDeferred
async def test_admin_group_owns_the_token_file(make_daemon, by):
    import grp

    gid = another_group()
    daemon = make_daemon(config={"admin-group": gid if by == "gid" else grp.getgrgid(gid).gr_name})
    response = await daemon.post_form("/setup", {"newtoken": "grouped"})
    assert response.code == 200
    info = token_file(daemon).stat()
    assert (stat.S_IMODE(info.st_mode), info.st_gid) == (0o660, gid)


@pytest_twisted.ensureDeferred
async def test_without_admin_group_the_token_file_is_private(daemon):
    response = await daemon.post_form("/setup", {"newtoken": "private"})
    assert response.code == 200
    assert stat.S_IMODE(token_file(daemon).stat().st_mode) == 0o600
