"""First-run mode: a generated passphrase token until the administrator sets one."""

import json
from importlib import resources

import pytest
import pytest_twisted

from conftest import json_of, multipart, raw_request

FIRST_RUN = {"first-run": {"enabled": True, "word-length": 4}}


def eff_words() -> set[str]:
    text = resources.files("jidoteki_admin").joinpath("data/eff_large_wordlist.txt").read_text()
    return {line.split("\t")[1].strip() for line in text.splitlines() if "\t" in line}


def word_counts(passphrase: str) -> set[int]:
    """How many EFF words the passphrase can be read as ("t-shirt" is one word with a dash)."""
    words, parts = eff_words(), passphrase.split("-")
    counts = {0: {0}}
    for end in range(1, len(parts) + 1):
        counts[end] = {
            n + 1
            for start in range(end)
            if "-".join(parts[start:end]) in words
            for n in counts[start]
        }
    return counts[len(parts)]


def first_run_daemon(make_daemon, words=4, **kwargs):
    daemon = make_daemon(config={"first-run": {"enabled": True, "word-length": words}}, token=None, **kwargs)
    daemon.token = (daemon.admin_path / "etc" / "api.token").read_text().splitlines()[0]
    return daemon


def test_the_shipped_wordlist_is_the_eff_large_list():
    words = eff_words()
    assert len(words) == 7776
    assert {"abacus", "zoom", "t-shirt"} <= words


def test_passphrase_is_four_eff_words(make_memory_daemon):
    daemon = first_run_daemon(make_memory_daemon)
    etc = daemon.admin_path / "etc"
    content = (etc / "api.token").read_text()
    assert content.endswith("\n") and content.count("\n") == 1
    assert 4 in word_counts(daemon.token)
    assert daemon.token == daemon.token.strip().lower()
    assert (etc / "api.token.setup").exists()
    assert (etc / "api.token").stat().st_mode & 0o777 == 0o600


@pytest.mark.parametrize("words", [1, 6, 10])
def test_word_length_is_respected(make_memory_daemon, words):
    daemon = first_run_daemon(make_memory_daemon, words=words)
    assert words in word_counts(daemon.token)


def test_passphrases_differ_between_trees(make_memory_daemon):
    tokens = {first_run_daemon(make_memory_daemon, subdir=f"tree{i}").token for i in range(3)}
    assert len(tokens) == 3


def test_an_existing_token_is_not_overwritten(make_memory_daemon, tmp_path):
    (tmp_path / "admin" / "etc").mkdir(parents=True)
    (tmp_path / "admin" / "etc" / "api.token").write_text("keep-me\n")
    daemon = make_memory_daemon(config=FIRST_RUN, token=None)
    etc = daemon.admin_path / "etc"
    assert (etc / "api.token").read_text() == "keep-me\n"
    assert not (etc / "api.token.setup").exists()


def test_an_empty_token_file_gets_a_passphrase(make_memory_daemon, tmp_path):
    (tmp_path / "admin" / "etc").mkdir(parents=True)
    (tmp_path / "admin" / "etc" / "api.token").write_bytes(b"")
    daemon = first_run_daemon(make_memory_daemon)
    assert 4 in word_counts(daemon.token)


def test_disabled_first_run_writes_no_token(make_memory_daemon):
    daemon = make_memory_daemon(config={"first-run": {"enabled": False, "word-length": 4}}, token=None)
    etc = daemon.admin_path / "etc"
    assert not (etc / "api.token").exists()
    assert not (etc / "api.token.setup").exists()


@pytest_twisted.ensureDeferred
async def test_the_passphrase_authenticates_by_token_and_hash(make_memory_daemon):
    daemon = first_run_daemon(make_memory_daemon)
    assert (await daemon.get("/health", auth="token")).code == 200
    assert (await daemon.get("/health", auth="hash")).code == 200


@pytest_twisted.ensureDeferred
async def test_anonymous_setup_is_refused_in_first_run(make_memory_daemon):
    daemon = first_run_daemon(make_memory_daemon)
    response = await daemon.answer_after(daemon.post_form("/setup", {"newtoken": "mine"}, auth=None), 1.9)
    assert response.code == 403
    assert await json_of(response) == {
        "Status": "403 Forbidden",
        "Error-Message": "Authentication error",
        "First-Run": True,
    }


@pytest_twisted.ensureDeferred
async def test_every_error_carries_first_run(make_memory_daemon):
    daemon = first_run_daemon(make_memory_daemon)
    forbidden = await daemon.get("/health", auth=None, token="wrong")
    not_found = await daemon.get("/nothing")
    wrong_method = await daemon.get("/setup")
    missing = await daemon.get("/version")
    bad_token = await daemon.post_form("/setup", {"newtoken": ""})
    not_allowed = await daemon.request("DELETE", daemon.base + "/docs")
    assert await json_of(forbidden) == {
        "Status": "403 Forbidden",
        "Error-Message": "Authentication error",
        "First-Run": True,
    }
    assert await json_of(not_found) == {"Status": "404 Not Found", "First-Run": True}
    for response, code in [(wrong_method, 400), (missing, 404), (bad_token, 400), (not_allowed, 405)]:
        assert response.code == code
        assert (await json_of(response))["First-Run"] is True


@pytest_twisted.ensureDeferred
async def test_refused_large_upload_carries_first_run(make_memory_daemon):
    daemon = first_run_daemon(make_memory_daemon)
    content_type, body = multipart({"newtoken": "x" * 100_000})
    response = await raw_request(daemon, "POST", "/api/v1/admin/version", {"Content-Type": content_type}, body)
    assert response.status == 403
    assert json.loads(response.body).get("First-Run") is True


@pytest_twisted.ensureDeferred
async def test_successes_do_not_carry_first_run(make_memory_daemon):
    daemon = first_run_daemon(make_memory_daemon)
    response = await daemon.get("/health")
    assert "First-Run" not in await json_of(response)


@pytest.mark.parametrize("auth", ["token", "hash"])
@pytest_twisted.ensureDeferred
async def test_setting_a_token_ends_first_run(make_memory_daemon, auth):
    daemon = first_run_daemon(make_memory_daemon)
    passphrase = daemon.token
    response = await daemon.post_form("/setup", {"newtoken": "chosen"}, auth=auth)
    assert response.code == 200
    assert await response.content() == b'{"Status":"200 OK"}'
    etc = daemon.admin_path / "etc"
    assert (etc / "api.token.setup").read_bytes() == b""  # emptied, not removed
    assert (etc / "api.token").read_text() == "chosen\n"
    forbidden = await daemon.get("/health", auth=None, token=passphrase)
    assert await json_of(forbidden) == {
        "Status": "403 Forbidden", "Error-Message": "Authentication error", "First-Run": False}
    not_found = await daemon.get("/nothing", auth=None)
    assert await json_of(not_found) == {"Status": "404 Not Found", "First-Run": False}


@pytest_twisted.ensureDeferred
async def test_the_setup_state_is_answered_without_authentication(make_memory_daemon):
    """GET /setup/state (an addition): what the sign-in page asks before anyone signs in,
    answered 200 so that browsers log no failure."""
    daemon = first_run_daemon(make_memory_daemon)
    state = daemon.base + "/api/v1/admin/setup/state"
    response = await daemon.client.get(state)
    assert response.code == 200 and await json_of(response) == {"token": True, "first-run": True}
    assert (await daemon.post_form("/setup", {"newtoken": "chosen"})).code == 200
    assert await json_of(await daemon.client.get(state)) == {"token": True, "first-run": False}
    assert (await daemon.client.post(state)).code == 405
    plain = make_memory_daemon(subdir="plain", token=None)
    assert await json_of(await plain.client.get(plain.base + "/api/v1/admin/setup/state")) == {
        "token": False, "first-run": None}


@pytest_twisted.ensureDeferred
async def test_a_refused_new_token_keeps_first_run(make_memory_daemon):
    daemon = first_run_daemon(make_memory_daemon)
    response = await daemon.post_form("/setup", {"newtoken": "a" * 256})
    assert response.code == 400
    etc = daemon.admin_path / "etc"
    assert (etc / "api.token.setup").exists()
    assert (etc / "api.token").read_text() == daemon.token + "\n"


@pytest_twisted.ensureDeferred
async def test_a_second_start_keeps_the_passphrase(make_memory_daemon):
    first = first_run_daemon(make_memory_daemon)
    await first.service.stopService()  # one daemon per tree at a time
    second = make_memory_daemon(config=FIRST_RUN, token=None)
    assert (second.admin_path / "etc" / "api.token").read_text() == first.token + "\n"
    assert (second.admin_path / "etc" / "api.token.setup").exists()


@pytest_twisted.ensureDeferred
async def test_first_run_is_on_413_500_507_and_an_early_400_too(make_memory_daemon, tmp_path, monkeypatch):
    """The errors answered outside a section's handler (a field over its cap, a crash, a
    full disk, a body refused before it is read) carry First-Run like the others."""
    import errno

    from jidoteki_admin.http import uploads
    from jidoteki_admin.http.site import EARLY_REFUSAL_THRESHOLD

    build_file = tmp_path / "build.json"
    build_file.write_bytes(b"{not json")
    daemon = make_memory_daemon(config={**FIRST_RUN, "build-file": str(build_file)}, token=None)
    daemon.token = (daemon.admin_path / "etc" / "api.token").read_text().splitlines()[0]

    too_large = await daemon.post_form("/setup", {"newtoken": "x" * 5000})
    crashed = await daemon.get("/build")
    early = await raw_request(daemon, "POST", f"/api/v1/admin/update?token={daemon.token}",
                              {"Content-Type": "text/plain"}, b"x" * (EARLY_REFUSAL_THRESHOLD + 1))

    def disk_full(fd, data):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(uploads, "write_all", disk_full)
    full = await daemon.post_form("/update", files={"update": ("p.enc", b"x" * 100_000)})

    for response, code in [(too_large, 413), (crashed, 500), (full, 507)]:
        assert response.code == code
        assert (await json_of(response))["First-Run"] is True, code
    assert early.status == 400
    assert json.loads(early.body)["First-Run"] is True


@pytest_twisted.ensureDeferred
async def test_first_run_enabled_with_a_token_and_no_marker_says_false(make_memory_daemon):
    """An appliance with first-run on whose token was set before (no marker file at all)
    is not in first-run: its errors say so rather than leaving the key out or saying true."""
    daemon = make_memory_daemon(config=FIRST_RUN, token="set-by-hand")
    assert not (daemon.admin_path / "etc" / "api.token.setup").exists()
    response = await daemon.get("/nothing")
    assert await json_of(response) == {"Status": "404 Not Found", "First-Run": False}
