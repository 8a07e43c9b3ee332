"""What the request path keeps between requests: files it reads are cached for at most a
second, a token the daemon writes is used at once, and the access log is written in
batches that are never lost at a stop."""

import json

import pytest_twisted

from conftest import json_of


def write_version(daemon, version: str) -> None:
    (daemon.admin_path / "etc" / "version.txt").write_text(version + "\n")


@pytest_twisted.ensureDeferred
async def test_a_changed_version_file_is_served_within_a_second(memory_daemon):
    write_version(memory_daemon, "1.0.0")
    assert await json_of(await memory_daemon.get("/version")) == {"version": "1.0.0"}
    write_version(memory_daemon, "2.0.0-rc1")
    memory_daemon.clock.advance(0.5)
    # Within the second, the file is not looked at again: the cached line is served.
    assert await json_of(await memory_daemon.get("/version")) == {"version": "1.0.0"}
    memory_daemon.clock.advance(0.5)
    assert await json_of(await memory_daemon.get("/version")) == {"version": "2.0.0-rc1"}


@pytest_twisted.ensureDeferred
async def test_a_removed_version_file_is_a_404_within_a_second(memory_daemon):
    write_version(memory_daemon, "1.0.0")
    assert (await memory_daemon.get("/version")).code == 200
    (memory_daemon.admin_path / "etc" / "version.txt").unlink()
    memory_daemon.clock.advance(1.0)
    assert (await memory_daemon.get("/version")).code == 404


@pytest_twisted.ensureDeferred
async def test_a_token_changed_outside_the_daemon_takes_effect_within_a_second(memory_daemon):
    assert (await memory_daemon.get("/health", auth="token")).code == 200
    (memory_daemon.admin_path / "etc" / "api.token").write_text("changed-outside\n")
    memory_daemon.clock.advance(0.5)
    assert (await memory_daemon.get("/health", auth="token")).code == 200
    memory_daemon.clock.advance(0.5)
    assert (await memory_daemon.get("/health", auth="token")).code == 403
    assert (await memory_daemon.get("/health", auth=None, token="changed-outside")).code == 200


@pytest_twisted.ensureDeferred
async def test_a_token_set_through_setup_takes_effect_for_the_next_request(memory_daemon):
    # The old token was just looked at; the clock does not move: the cache alone would
    # keep it for a second.
    assert (await memory_daemon.get("/health", auth="hash")).code == 200
    response = await memory_daemon.post_form("/setup", {"newtoken": "next-token"}, auth="token")
    assert response.code == 200
    assert (await memory_daemon.get("/health", auth=None, token="yourtoken")).code == 403
    memory_daemon.token = "next-token"
    assert (await memory_daemon.get("/health", auth="hash")).code == 200
    assert (await memory_daemon.get("/health", auth="token")).code == 200
