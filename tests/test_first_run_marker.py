"""First-run as appliances in the field keep it: a non-empty etc/api.token.setup.

Setting a token empties the marker (it is not removed), so every appliance that ever
completed setup has an empty one; only a marker with something in it means first-run.
"""

import json
import os

import pytest
import pytest_twisted

from conftest import json_of, raw_request
from jidoteki_admin.http.auth import TokenStore
from jidoteki_admin.layout import AdminTree

ENABLED = {"first-run": {"enabled": True, "word-length": 4}}


def etc_of(tmp_path):
    etc = tmp_path / "admin" / "etc"
    etc.mkdir(parents=True)
    return etc


async def first_run_key(daemon):
    """The "First-Run" value of an error answer (a 404), or "absent"."""
    return (await json_of(await daemon.get("/nothing"))).get("First-Run", "absent")


@pytest_twisted.ensureDeferred
async def test_an_empty_marker_is_a_completed_setup(make_daemon, tmp_path):
    etc = etc_of(tmp_path)
    (etc / "api.token").write_text("chosen-long-ago\n")
    (etc / "api.token.setup").write_bytes(b"")
    daemon = make_daemon(config=ENABLED, token=None)
    daemon.token = "chosen-long-ago"
    assert await first_run_key(daemon) is False
    forbidden = await daemon.get("/health", auth=None, token="wrong")
    assert await json_of(forbidden) == {
        "Status": "403 Forbidden", "Error-Message": "Authentication error", "First-Run": False}
    assert (etc / "api.token.setup").read_bytes() == b""


@pytest_twisted.ensureDeferred
async def test_no_marker_with_first_run_enabled_is_false(make_daemon, tmp_path):
    (etc_of(tmp_path) / "api.token").write_text("set-before-first-run-existed\n")
    daemon = make_daemon(config=ENABLED, token=None)
    assert not (daemon.admin_path / "etc" / "api.token.setup").exists()
    assert await first_run_key(daemon) is False


@pytest_twisted.ensureDeferred
async def test_without_first_run_in_the_config_there_is_no_key(make_daemon, tmp_path):
    etc = etc_of(tmp_path)
    (etc / "api.token.setup").write_text("left-over-passphrase\n")
    daemon = make_daemon(config={})
    assert await first_run_key(daemon) == "absent"
    content_type = "multipart/form-data; boundary=x"
    refused = await raw_request(daemon, "POST", "/api/v1/admin/version", {"Content-Type": content_type}, b"x")
    assert "First-Run" not in json.loads(refused.body)


@pytest_twisted.ensureDeferred
async def test_generated_passphrase_is_first_run_until_a_token_is_set(make_daemon):
    daemon = make_daemon(config=ENABLED, token=None)
    etc = daemon.admin_path / "etc"
    daemon.token = (etc / "api.token").read_text().splitlines()[0]
    # The marker holds the passphrase, as the original daemon kept it for the appliance.
    assert (etc / "api.token.setup").read_text() == daemon.token + "\n"
    assert (etc / "api.token.setup").stat().st_mode & 0o777 == 0o600
    assert await first_run_key(daemon) is True
    refused = await raw_request(daemon, "POST", "/api/v1/admin/version",
                                {"Content-Type": "multipart/form-data; boundary=x"}, b"x")
    assert json.loads(refused.body)["First-Run"] is True

    assert (await daemon.post_form("/setup", {"newtoken": "mine"})).code == 200
    assert (etc / "api.token.setup").exists() and (etc / "api.token.setup").stat().st_size == 0
    daemon.token = "mine"
    assert await first_run_key(daemon) is False


@pytest_twisted.ensureDeferred
async def test_a_restart_after_setup_stays_out_of_first_run(make_daemon):
    first = make_daemon(config=ENABLED, token=None, subdir="one")
    etc = first.admin_path / "etc"
    store = TokenStore(AdminTree(first.admin_path), first_run_enabled=True)
    store.replace("mine")
    await first.pool.closeCachedConnections()
    await first.service.stopService()  # one daemon per tree
    second = make_daemon(config=ENABLED, token=None, subdir="one")
    assert (etc / "api.token").read_text() == "mine\n"
    assert second.service.tokens.first_run is False


def test_replace_empties_the_marker_a_link_points_to(tmp_path):
    etc = etc_of(tmp_path)
    mount = tmp_path / "mnt" / "mydata"
    mount.mkdir(parents=True)
    (mount / "api.token.setup").write_text("passphrase\n")
    (etc / "api.token.setup").symlink_to(mount / "api.token.setup")
    store = TokenStore(AdminTree(tmp_path / "admin"), first_run_enabled=True)
    assert store.first_run is True
    store.replace("mine")
    assert (etc / "api.token.setup").is_symlink()
    assert (mount / "api.token.setup").read_bytes() == b""
    assert store.first_run is False


def test_replace_creates_no_marker(tmp_path):
    etc = etc_of(tmp_path)
    store = TokenStore(AdminTree(tmp_path / "admin"), first_run_enabled=True)
    store.replace("mine")
    assert os.listdir(etc) == ["api.token"]


@pytest.mark.parametrize("enabled, content, expected", [
    (True, b"passphrase\n", True), (True, b"", False), (True, None, False),
    (False, b"passphrase\n", None), (False, b"", None), (False, None, None),
])
def test_first_run_is_the_config_and_a_non_empty_marker(tmp_path, enabled, content, expected):
    etc = etc_of(tmp_path)
    if content is not None:
        (etc / "api.token.setup").write_bytes(content)
    assert TokenStore(AdminTree(tmp_path / "admin"), first_run_enabled=enabled).first_run is expected


def test_admin_group_owns_the_generated_passphrase_files(tmp_path):
    gid = os.getegid()
    etc = etc_of(tmp_path)
    assert TokenStore(AdminTree(tmp_path / "admin"), True, group=gid).start_first_run(4)
    for name in ("api.token", "api.token.setup"):
        info = (etc / name).stat()
        assert (info.st_mode & 0o777, info.st_gid) == (0o660, gid)
