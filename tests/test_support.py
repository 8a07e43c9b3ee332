"""Section 4, Support: GET /logs through the real daemon, the bundle built by a real job."""

from __future__ import annotations

import io
import json
import os
import tarfile

import pytest_twisted

from conftest import wait_until


async def bundle_of(response) -> dict[str, bytes]:
    data = await response.content()
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        return {m.name: tar.extractfile(m).read() for m in tar if m.isfile()}


@pytest_twisted.ensureDeferred
async def test_logs_are_a_tar_gz_of_log_and_the_listed_paths_with_the_token_redacted(daemon, tmp_path):
    app_logs = tmp_path / "var-log-app"
    app_logs.mkdir()
    (app_logs / "app.log").write_text("started\nlogin with token=yourtoken ok\n")
    (daemon.admin_path / "log" / "update.log").write_text("[1][SYSTEM] fine\n")
    (daemon.admin_path / "etc" / "logs.txt").write_text(f"{app_logs}\n{tmp_path}/nothing-here\nrelative/path\n")
    response = await daemon.get("/logs", auth="hash")
    assert response.code == 200
    assert response.headers.getRawHeaders("Content-Type") == ["application/octet-stream"]
    assert response.headers.getRawHeaders("Filename") == ["logs.tar.gz"]
    files = await bundle_of(response)
    assert files["log/update.log"] == b"[1][SYSTEM] fine\n"
    listed = str(app_logs).lstrip("/") + "/app.log"
    assert files[listed] == b"started\nlogin with token=REDACTED ok\n"
    assert not any(b"yourtoken" in content for content in files.values())
    assert os.listdir(daemon.admin_path / "home" / "sftp" / "uploads") == []
    job_log = (daemon.admin_path / "log" / "logs.log").read_text()
    assert "nothing-here: not there" in job_log and "'relative/path' in etc/logs.txt: not an absolute path" in job_log


@pytest_twisted.ensureDeferred
async def test_without_logs_txt_the_admin_trees_log_is_collected(daemon):
    (daemon.admin_path / "log" / "update.log").write_text("an update\n")
    response = await daemon.get("/logs")
    assert response.code == 200
    files = await bundle_of(response)
    assert files["log/update.log"] == b"an update\n"
    assert set(files) <= {"log/update.log", "log/logs.log"}  # the job's own log, as it stood


@pytest_twisted.ensureDeferred
async def test_a_bundle_that_cannot_be_written_answers_400_and_leaves_nothing(daemon):
    uploads = daemon.admin_path / "home" / "sftp" / "uploads"
    uploads.rmdir()
    uploads.write_text("not a directory")
    response = await daemon.get("/logs")
    assert response.code == 400
    assert json.loads(await response.content())["Error-Message"].startswith("Could not collect the logs: ")
    uploads.unlink()
    uploads.mkdir()
    again = await daemon.get("/logs")  # nothing stayed locked
    assert again.code == 200


@pytest_twisted.ensureDeferred
async def test_logs_downloads_are_audited(daemon):
    assert (await daemon.get("/logs")).code == 200
    audit = daemon.admin_path / "log" / "jidoteki-audit.log"
    assert await wait_until(lambda: audit.exists() and "/api/v1/admin/logs" in audit.read_text())
    entry = json.loads(audit.read_text().splitlines()[-1])
    assert (entry["action"], entry["target"], entry["outcome"]) == ("GET", "/api/v1/admin/logs", "200")
