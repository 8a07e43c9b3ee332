import pytest_twisted

from conftest import json_of


@pytest_twisted.ensureDeferred
async def test_version_with_published_hash(daemon):
    (daemon.admin_path / "etc" / "version.txt").write_text("1.2.3\n")
    response = await daemon.client.get(
        daemon.base
        + "/api/v1/admin/version?hash=b714a60732e096ccef06e360eefe0f1ba4fa5d16ef7da726612e2026e5523241"
    )
    assert response.code == 200
    assert await json_of(response) == {"version": "1.2.3"}


@pytest_twisted.ensureDeferred
async def test_setup_with_curl(fresh_daemon):
    out, err, code = await fresh_daemon.curl(
        "-X", "POST", fresh_daemon.url("/setup", auth=None), "-F", "newtoken=abc"
    )
    assert code == 0, err
    assert out == b'{"Status":"200 OK"}'
    assert (fresh_daemon.admin_path / "etc" / "api.token").read_text() == "abc\n"
