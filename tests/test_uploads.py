"""Streaming uploads through the real daemon, using POST /update as the upload endpoint."""

import json
import os
import socket
import ssl
import subprocess
import sys

import pytest
import pytest_twisted
from twisted.internet import threads

from conftest import json_of, multipart, raw_request, tiny_disk, wait_until
from jidoteki_admin.sections.updates import UPDATE

MiB = 1024 * 1024


def leftovers(daemon):
    return sorted(os.listdir(daemon.admin_path / "home" / "sftp" / "uploads"))


def no_job_started(daemon):
    return not (daemon.admin_path / "etc" / "status_update.json").exists()


@pytest_twisted.ensureDeferred
async def test_a_part_over_its_cap_is_refused_and_removed(make_memory_daemon):
    daemon = make_memory_daemon({"upload-limits": {"update": 64 * 1024}})
    response = await daemon.post_form("/update", files={"update": ("p.enc", b"x" * (64 * 1024 + 1))})
    assert response.code == 413
    body = await json_of(response)
    assert body["Status"] == "413 Request Entity Too Large"
    assert "update" in body["Error-Message"] and "65536" in body["Error-Message"]
    assert response.headers.getRawHeaders("Error-Message")[0] == body["Error-Message"]
    assert leftovers(daemon) == [] and no_job_started(daemon)


@pytest_twisted.ensureDeferred
async def test_a_body_announced_over_every_cap_is_refused_before_it_is_sent(make_daemon):
    daemon = make_daemon({"upload-limits": {"update": 1 * MiB}})
    out, err, code = await daemon.curl(
        "-sS", "-X", "POST", "-H", "Content-Type: multipart/form-data; boundary=abc",
        "-H", f"Content-Length: {20 * MiB}", "--data-binary", "@/dev/null", "-i",
        daemon.url("/update"),
    )
    assert b"413" in out.split(b"\r\n")[0], out
    assert leftovers(daemon) == []


@pytest_twisted.ensureDeferred
async def test_unknown_text_fields_are_ignored_but_capped(memory_daemon):
    response = await memory_daemon.post_form("/update", fields={"comment": "x" * 5000}, files={"update": ("p.enc", b"data")})
    assert response.code == 413
    assert "comment" in (await json_of(response))["Error-Message"]
    assert leftovers(memory_daemon) == []


@pytest.mark.parametrize(
    "fields, files, message",
    [
        ({}, {}, "Missing required parameter: update"),
        ({"update": "not a file"}, {}, "must be a file upload"),
        ({}, {"other": ("x.bin", b"abc")}, "Missing required parameter: update"),
    ],
)
@pytest_twisted.ensureDeferred
async def test_missing_or_wrong_fields_are_400(memory_daemon, fields, files, message):
    response = await memory_daemon.post_form("/update", fields=fields, files=files)
    assert response.code == 400
    assert message in (await json_of(response))["Error-Message"]
    assert leftovers(memory_daemon) == [] and no_job_started(memory_daemon)


@pytest.mark.parametrize(
    "body",
    [
        b"garbage without boundaries",
        b"--BOUNDARY\r\nContent-Disposition: form-data; name=\"update\"; filename=\"a\"\r\n\r\nabc",  # cut short
        b"--BOUNDARY\r\nContent-Type: text/plain\r\n\r\nabc\r\n--BOUNDARY--\r\n",  # no field name
    ],
)
@pytest_twisted.ensureDeferred
async def test_malformed_multipart_is_400(memory_daemon, body):
    response = await memory_daemon.client.post(
        memory_daemon.url("/update"), data=body, headers={"Content-Type": ["multipart/form-data; boundary=BOUNDARY"]}
    )
    assert response.code == 400
    assert "multipart" in (await json_of(response))["Error-Message"]
    assert leftovers(memory_daemon) == [] and no_job_started(memory_daemon)


@pytest_twisted.ensureDeferred
async def test_a_body_that_is_not_multipart_is_400(memory_daemon):
    response = await memory_daemon.client.post(
        memory_daemon.url("/update"), data=b'{"update": 1}', headers={"Content-Type": ["application/json"]}
    )
    assert response.code == 400
    assert "multipart/form-data" in (await json_of(response))["Error-Message"]


@pytest_twisted.ensureDeferred
async def test_an_unauthenticated_upload_is_not_stored(memory_daemon):
    content_type, body = multipart(files={"update": ("p.enc", b"x" * 1000)})
    response = await memory_daemon.client.post(
        memory_daemon.url("/update", auth=None), data=body, headers={"Content-Type": [content_type]}
    )
    assert response.code == 403
    assert leftovers(memory_daemon) == [] and no_job_started(memory_daemon)


def _send_half_an_upload(port: int, cafile: str, path: str, uploads_dir: str) -> int:
    """Send the start of a large upload, wait until its partial file grows, then vanish."""
    context = ssl.create_default_context(cafile=cafile)
    boundary = "XyZ"
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="update"; filename="p.enc"\r\n\r\n'
    ).encode()
    with socket.create_connection(("127.0.0.1", port)) as raw:
        with context.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
            tls.sendall(
                f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {100 * MiB}\r\n"
                f"Content-Type: multipart/form-data; boundary={boundary}\r\n\r\n".encode()
                + head
            )
            for _ in range(16):  # 4 MiB: past the writer's 1 MiB buffer
                tls.sendall(b"z" * (256 * 1024))
            import time

            for _ in range(200):
                partial = [n for n in os.listdir(uploads_dir) if n.startswith(".partial-")]
                if partial and os.path.getsize(os.path.join(uploads_dir, partial[0])) >= 2 * MiB:
                    return os.path.getsize(os.path.join(uploads_dir, partial[0]))
                time.sleep(0.02)
    return 0


@pytest_twisted.ensureDeferred
async def test_a_client_that_disconnects_mid_upload_leaves_nothing(daemon):
    uploads = str(daemon.admin_path / "home" / "sftp" / "uploads")
    url = daemon.url("/update")
    path = url[url.index("/api"):]
    written = await threads.deferToThread(
        _send_half_an_upload, daemon.port, str(daemon.service.tree.certificate), path, uploads
    )
    assert written >= 2 * MiB, "the upload should have been streaming to disk"
    await wait_until(lambda: not leftovers(daemon), timeout=5)
    assert leftovers(daemon) == [] and no_job_started(daemon)
    response = await daemon.get("/version")
    assert response.code in (200, 404)  # still serving


@pytest.fixture
def tiny_uploads_disk(memory_daemon, tmp_path):
    """The uploads folder on a 1 MiB file system (conftest.tiny_disk)."""
    with tiny_disk(memory_daemon.admin_path / "home" / "sftp" / "uploads", tmp_path):
        yield memory_daemon


@pytest_twisted.ensureDeferred
async def test_a_full_disk_is_a_clear_error_and_leaves_nothing(tiny_uploads_disk):
    daemon = tiny_uploads_disk
    response = await daemon.post_form("/update", files={"update": ("p.enc", os.urandom(3 * MiB))})
    assert response.code == 507
    assert "disk space" in (await json_of(response))["Error-Message"]
    assert leftovers(daemon) == [] and no_job_started(daemon)
    assert (await daemon.get("/health")).code == 200


@pytest_twisted.ensureDeferred
async def test_an_upload_while_an_update_runs_is_refused_with_E1004(memory_daemon):
    runner = memory_daemon.service.runner
    done = runner.start(UPDATE, [sys.executable, "-c", "import time; time.sleep(30)"])
    before = (memory_daemon.admin_path / "etc" / "status_update.json").read_bytes()
    response = await memory_daemon.post_form("/update", files={"update": ("software_package-9.9.9.enc", b"pkg")})
    assert response.code == 400
    body = await json_of(response)
    assert "E1004" in body["Error-Message"]
    assert leftovers(memory_daemon) == []
    assert (memory_daemon.admin_path / "etc" / "status_update.json").read_bytes() == before
    assert runner.is_running(UPDATE)
    status = await json_of(await memory_daemon.get("/update"))
    assert status["status"] == "running"
    runner.stop(UPDATE)
    await done


def _peak_rss_growth_during(command: list[str]) -> tuple[bytes, int]:
    """Run an upload with curl; returns (its output, growth of this process's peak RSS)."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # reset the peak RSS (VmHWM) to the current RSS
    before = _status_kib("VmRSS")
    output = subprocess.run(command, capture_output=True).stdout
    return output, (_status_kib("VmHWM") - before) * 1024


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise KeyError(field)


@pytest_twisted.ensureDeferred
async def test_a_large_upload_streams_to_disk_with_bounded_memory(daemon, tmp_path):
    package = tmp_path / "software_package-1.0.0.enc"
    with open(package, "wb") as f:
        for _ in range(50):
            f.write(os.urandom(MiB))
    # The update itself is not under test: stop the job as soon as it starts.
    daemon.service.runner.timeout = 0.01
    # curl runs in a thread so the daemon (in this process and reactor) keeps serving it.
    status, growth = await threads.deferToThread(
        _peak_rss_growth_during,
        ["curl", "-sS", "--cacert", str(daemon.service.tree.certificate), "-X", "POST",
         daemon.url("/update"), "-F", f"update=@{package}", "-o", "/dev/null", "-w", "%{http_code}"],
    )
    assert status == b"202"
    assert growth < 20 * MiB, f"peak RSS grew by {growth / MiB:.1f} MiB for a 50 MiB upload"


@pytest_twisted.ensureDeferred
async def test_failed_writes_resume_reading_and_report_the_first_error(tmp_path):
    from twisted.internet import reactor

    from jidoteki_admin.http.uploads import DiskWriter

    calls = []
    writer = DiskWriter(reactor, lambda: calls.append("pause"), lambda: calls.append("resume"))
    read_only = os.open(tmp_path / "f", os.O_RDONLY | os.O_CREAT, 0o600)
    chunk = memoryview(b"x" * MiB)
    for _ in range(12):  # past the high-water mark, every write failing
        writer.write(read_only, chunk)
    await writer.drained()
    writer.shutdown()
    os.close(read_only)
    assert calls == ["pause", "resume"]
    assert isinstance(writer.error, OSError)


@pytest.mark.parametrize("disposition", [b"attachment", b"inline"])  # either side of form-data
@pytest_twisted.ensureDeferred
async def test_a_part_that_is_not_form_data_is_refused(memory_daemon, disposition):
    body = (b"--BOUNDARY\r\nContent-Disposition: " + disposition + b'; name="update"; filename="a.enc"\r\n\r\n'
            b"abc\r\n--BOUNDARY--\r\n")
    response = await memory_daemon.client.post(
        memory_daemon.url("/update"), data=body, headers={"Content-Type": ["multipart/form-data; boundary=BOUNDARY"]}
    )
    assert response.code == 400
    assert (await json_of(response))["Error-Message"] == "Malformed multipart/form-data body: a part has no field name"
    assert leftovers(memory_daemon) == [] and no_job_started(memory_daemon)


@pytest_twisted.ensureDeferred
async def test_a_form_body_under_another_media_type_is_refused(memory_daemon):
    """A boundary does not make a body a form: only multipart/form-data (in any case) is read."""
    content_type, body = multipart(files={"update": ("p.enc", b"data")})
    for media_type in ("text/plain", "multipart/mixed"):
        response = await memory_daemon.client.post(
            memory_daemon.url("/update"), data=body,
            headers={"Content-Type": [content_type.replace("multipart/form-data", media_type)]})
        assert response.code == 400, media_type
        assert "multipart/form-data" in (await json_of(response))["Error-Message"]
    response = await memory_daemon.post_form("/update", files={"update": ("p.enc", b"")})
    assert response.code == 400  # the same body as a form is read (and the empty package refused)
    assert (await json_of(response))["Error-Message"] == "The update package is empty"
    assert leftovers(memory_daemon) == [] and no_job_started(memory_daemon)


def test_remove_partial_files_removes_only_partial_uploads_and_counts_them(tmp_path):
    from jidoteki_admin.http.uploads import PARTIAL_PREFIX, remove_partial_files

    for name in (PARTIAL_PREFIX + "a", PARTIAL_PREFIX + "b", "software_package-1.0.enc", "backup.tar"):
        (tmp_path / name).write_bytes(b"x")
    assert remove_partial_files(tmp_path) == 2
    assert sorted(os.listdir(tmp_path)) == ["backup.tar", "software_package-1.0.enc"]
    assert remove_partial_files(tmp_path / "missing") == 0


def test_an_upload_is_written_readable_by_the_daemon_alone(tmp_path):
    """Uploads include private keys (POST /certs) and licenses: mode 0600 from the first
    byte, whatever the umask."""
    from twisted.internet import reactor

    from jidoteki_admin.http.uploads import DiskWriter, _FilePart

    writer = DiskWriter(reactor, lambda: None, lambda: None)
    old = os.umask(0)
    try:
        part = _FilePart("private", "key.pem", 1024, tmp_path, writer)
    finally:
        os.umask(old)
    try:
        assert os.stat(part.upload.path).st_mode & 0o777 == 0o600
        assert part.upload.size == 0
    finally:
        part.close(remove=True)
        writer.shutdown()


@pytest_twisted.ensureDeferred
async def test_a_refused_part_takes_the_files_already_received_with_it(make_memory_daemon):
    """POST /certs: the certificate arrives whole, then the key is over its cap. The
    certificate must not stay behind in the uploads folder."""
    daemon = make_memory_daemon({"endpoints": ["certs"], "upload-limits": {"private": 1024}})
    response = await daemon.post_form("/certs", files={"public": ("cert.pem", b"p" * 5000),
                                                       "private": ("key.pem", b"k" * 5000)})
    assert response.code == 413
    assert "private" in (await json_of(response))["Error-Message"]
    await wait_until(lambda: leftovers(daemon) == [])
    assert leftovers(daemon) == []


@pytest_twisted.ensureDeferred
async def test_a_part_of_exactly_its_cap_is_accepted(make_memory_daemon):
    daemon = make_memory_daemon({"upload-limits": {"update": 64 * 1024}})
    response = await daemon.post_form("/update", files={"update": ("p.enc", b"x" * (64 * 1024))})
    assert response.code == 202  # the job then finds it is no package; the cap let it through


@pytest_twisted.ensureDeferred
async def test_a_text_field_that_is_not_utf8_is_refused_by_name(fresh_memory_daemon):
    response = await fresh_memory_daemon.post_form("/setup", fields={"newtoken": b"abc\xff\xfe"}, auth=None)
    assert response.code == 400
    assert (await json_of(response))["Error-Message"] == "Parameter newtoken is not valid UTF-8"
    assert not (fresh_memory_daemon.admin_path / "etc" / "api.token").exists()


@pytest.mark.parametrize("content_type, body, message", [
    ("multipart/form-data; boundary=xx", b"", "Missing required parameter: update"),  # no body: no form
    ("text/plain", b"", "Missing required parameter: update"),
    ("multipart/form-data; boundary=xx", b"x", "Malformed multipart/form-data body"),  # one byte is a body
    ("text/plain", b"x", "Expected a multipart/form-data body"),
])
@pytest_twisted.ensureDeferred
async def test_an_empty_body_is_no_form_and_one_byte_is_a_body(memory_daemon, content_type, body, message):
    headers = {"Content-Type": content_type, **({} if body else {"Content-Length": "0"})}
    response = await raw_request(memory_daemon, "POST", "/api/v1/admin/update?token=yourtoken", headers, body)
    assert (response.status, json.loads(response.body)["Error-Message"]) == (400, message)
    assert no_job_started(memory_daemon)


@pytest_twisted.ensureDeferred
async def test_an_upload_still_arriving_when_the_daemon_stops_is_dropped_whole(make_memory_daemon):
    """The stop aborts the form: what the client goes on sending is read and dropped, no
    later part's file is begun, and no package is left for the next daemon to install."""
    from twisted.internet.protocol import Protocol

    daemon = make_memory_daemon()
    uploads = daemon.admin_path / "home" / "sftp" / "uploads"
    content_type, body = multipart(files={"update": ("p.enc", os.urandom(600_000))})
    head = (f"POST /api/v1/admin/update?token=yourtoken HTTP/1.1\r\nHost: x\r\nContent-Type: {content_type}\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode()
    client = Protocol()
    daemon.network.attach(client)
    client.transport.write(head + body[:300_000])
    await daemon.network.settle()
    assert await wait_until(lambda: any(uploads.iterdir()))  # the part is on its way to disk
    await daemon.service.stopService()
    client.transport.write(body[300_000:])
    await daemon.network.settle()
    await threads.deferToThread(lambda: None)  # let the upload writer catch up
    await daemon.network.settle()
    assert list(uploads.iterdir()) == []
    assert no_job_started(daemon)


@pytest_twisted.ensureDeferred
async def test_an_unforeseen_failure_while_storing_an_upload_is_a_500_and_logged(memory_daemon, monkeypatch):
    """Not an APIError (a bug, say): the client gets the same clean 500 as for a lost
    uploads folder, never a traceback; the failure goes to the daemon's log."""
    from twisted.internet import defer
    from twisted.logger import globalLogPublisher

    from jidoteki_admin.http import uploads

    original = uploads.FormStream.finish

    def broken(self):
        original(self)  # its own clean-up runs; what it answers is replaced
        return defer.fail(RuntimeError("unforeseen"))

    monkeypatch.setattr(uploads.FormStream, "finish", broken)
    seen = []
    globalLogPublisher.addObserver(seen.append)
    try:
        response = await memory_daemon.post_form("/update", files={"update": ("p.enc", b"d" * 1000)})
    finally:
        globalLogPublisher.removeObserver(seen.append)
    assert response.code == 500
    body = await response.content()
    assert json.loads(body) == {"Status": "500 Internal Server Error", "Error-Message": "Could not store the upload"}
    assert b"unforeseen" not in body and b"Traceback" not in body
    failures = [event for event in seen if event.get("log_format", "").startswith("Reading the upload of")]
    assert len(failures) == 1 and failures[0]["log_failure"].check(RuntimeError)
    assert no_job_started(memory_daemon)


@pytest_twisted.ensureDeferred
async def test_an_upload_that_cannot_be_created_is_a_clear_error(memory_daemon):
    """The uploads folder gone (a mount lost, say): the part's file cannot be created."""
    import shutil

    shutil.rmtree(memory_daemon.admin_path / "home" / "sftp" / "uploads")
    # Small and large: a small body is parsed once it is all in, a large one as it arrives.
    for size in (4, 300 * 1024):
        response = await memory_daemon.post_form("/update", files={"update": ("p.enc", b"d" * size)})
        assert response.code == 500, size
        assert (await json_of(response))["Error-Message"] == "Could not store the upload"
    assert no_job_started(memory_daemon)
