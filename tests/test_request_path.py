"""What the request path keeps between requests: files it reads are cached for at most a
second, a token the daemon writes is used at once, and the access log is written in
batches that are never lost at a stop."""

import gc
import http.client
import re

import pytest
import pytest_twisted
from twisted.internet.task import Clock
from twisted.logger import formatTime

from conftest import json_of
from jidoteki_admin.http.accesslog import AccessLog
from jidoteki_admin.http.auth import expected_hash, request_hash
from jidoteki_admin.http.site import RequestIds
from jidoteki_admin.tap import Daemon, freeze_startup_objects
import test_signals
from test_signals import TOKEN, start

twistd = test_signals.twistd  # its fixture, with the run directories its start() expects


HEALTH = "/api/v1/admin/health"


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


# The access log


def test_access_lines_wait_for_the_batch_and_keep_the_time_of_their_request():
    clock, written = Clock(), []
    log = AccessLog(clock, written.append, interval=0.25, most_lines=100)
    clock.advance(1_800_000_000.5)
    log.record("first")
    clock.advance(0.125)
    log.record("second")
    assert written == []
    clock.advance(0.125)
    assert len(written) == 1  # one write for the batch
    stamp = formatTime(1_800_000_000)
    assert written[0] == (f"{stamp} [jidoteki_admin.web.AdminSite#info] first\n"
                          f"{stamp} [jidoteki_admin.web.AdminSite#info] second\n")
    assert clock.getDelayedCalls() == []  # nothing scheduled while nothing waits


def test_a_full_batch_is_written_at_once():
    clock, written = Clock(), []
    log = AccessLog(clock, written.append, interval=0.2, most_lines=3)
    for n in range(7):
        log.record(f"line {n}")
    assert [batch.count("\n") for batch in written] == [3, 3]
    log.flush()
    assert "".join(written).count("\n") == 7


def test_at_a_stop_waiting_lines_and_later_ones_are_written_at_once():
    clock, written = Clock(), []
    log = AccessLog(clock, written.append, interval=0.2)
    log.record("waiting")
    log.stop()
    assert len(written) == 1 and "waiting" in written[0]
    log.record("after the stop")
    assert len(written) == 2 and "after the stop" in written[1]
    assert clock.getDelayedCalls() == []


@pytest.mark.parametrize("log_option", [(), ("--logfile=twistd.log",)], ids=["stdout", "logfile"])
def test_under_twistd_every_access_line_reaches_the_log_before_it_exits(twistd, tmp_path, log_option):
    daemon, admin, port, _ = start(twistd, tmp_path, *log_option)
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    for _ in range(40):  # one kept-alive connection, as fast as the daemon answers
        connection.request("GET", f"/api/v1/admin/version?x=1&token={TOKEN}")
        assert connection.getresponse().read() == b'{"version":"1.2.3"}'
    connection.request("GET", "/api/v1/admin/version?newtoken=s3cret-new")
    assert connection.getresponse().status == 403
    connection.close()
    daemon.stop()  # SIGTERM at once: the last batch is still waiting
    text = daemon.text() + daemon.logfile_text()
    lines = [line for line in text.splitlines() if "[jidoteki_admin.web.AdminSite#info]" in line]
    assert sum('"GET /api/v1/admin/version?x=1&token=REDACTED HTTP/1.1" 200 19 id=' in line
               for line in lines) == 40, text
    assert sum("?newtoken=REDACTED HTTP/1.1\" 403" in line for line in lines) == 1, text
    assert TOKEN not in text and "s3cret-new" not in text
    assert all(re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d{4} \[", line) for line in lines), lines


# Per-request work done once


def test_request_ids_are_16_hex_digits_and_never_repeat_across_batches():
    ids = RequestIds()
    drawn = [ids.next() for _ in range(RequestIds.BATCH * 3 + 5)]
    assert all(re.fullmatch(r"[0-9a-f]{16}", value) for value in drawn)
    assert len(set(drawn)) == len(drawn)


@pytest_twisted.ensureDeferred
async def test_a_replaced_token_leaves_no_cached_hash_of_the_old_one(memory_daemon):
    assert (await memory_daemon.get("/health", auth="hash")).code == 200
    assert expected_hash.cache_info().currsize >= 1
    assert (await memory_daemon.post_form("/setup", {"newtoken": "next-token"}, auth="token")).code == 200
    assert (await memory_daemon.get("/health", auth=None, hash=request_hash("yourtoken", "GET", HEALTH))).code == 403
    hits = expected_hash.cache_info().hits
    expected_hash("yourtoken", "GET", HEALTH)
    assert expected_hash.cache_info().hits == hits  # a miss: the old token's hash was dropped


class Recorder:
    """A reactor that only records what is to run once it runs."""

    def __init__(self):
        self.when_running = []

    def callWhenRunning(self, f, *args):
        self.when_running.append(f)


def test_under_twistd_the_objects_made_at_start_up_are_frozen_once_the_reactor_runs():
    daemon = Daemon()
    daemon.reactor = Recorder()
    daemon.startService()
    assert daemon.reactor.when_running == [freeze_startup_objects]
    gc.unfreeze()
    try:
        freeze_startup_objects()
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()


@pytest_twisted.ensureDeferred
async def test_a_reload_writes_the_waiting_access_lines_before_the_logs_are_reopened(memory_daemon):
    access_log, written = memory_daemon.service.site.access_log, []
    access_log.output, access_log.batching = written.append, True  # as under twistd
    assert (await memory_daemon.get("/health")).code == 200
    assert written == []  # waiting for its batch: the daemon's clock has not moved
    memory_daemon.service.reload()  # what SIGHUP runs
    assert len(written) == 1 and '"GET /api/v1/admin/health?token=REDACTED HTTP/1.1" 200' in written[0]


@pytest_twisted.ensureDeferred
async def test_over_tls_every_request_on_a_connection_is_secure_and_knows_its_listener(make_daemon):
    """The channel asks the transport once per connection whether it is TLS and where it
    listens (the wrappers make each answer cost): every request must still get the truth."""
    from jidoteki_admin.http.catalogue import JSON, Endpoint, Reply, Section, get
    from jidoteki_admin.http.responses import document

    daemon = make_daemon()

    def where(request):
        return document(request, {"secure": request.isSecure(), "port": request.getHost().port})

    daemon.service.catalogue.add(Section("where", "Where", (
        Endpoint("/where", (get(where, "Where", Reply(JSON)),)),)))
    for _ in range(3):  # one kept-alive connection: the cached answers are used again
        assert await json_of(await daemon.get("/where")) == {"secure": True, "port": daemon.port}


@pytest_twisted.ensureDeferred
async def test_a_failure_while_logging_a_request_neither_loses_the_answer_nor_the_connection(memory_daemon):
    """The access line and the audit run as the request finishes: an error in them is
    logged, and the request and the next one on the connection are answered all the same."""
    import dataclasses

    from twisted.logger import globalLogPublisher

    from conftest import parse_responses, raw_request_bytes

    site = memory_daemon.service.site

    def broken(*args):
        raise RuntimeError("audit trail unavailable")

    site.policy = dataclasses.replace(site.policy, finished=broken)
    write_version(memory_daemon, "1.0.0")
    seen = []
    globalLogPublisher.addObserver(seen.append)
    try:
        two = (raw_request_bytes(b"GET", b"/api/v1/admin/version?token=yourtoken", close=False)
               + raw_request_bytes(b"GET", b"/api/v1/admin/version?token=yourtoken"))
        answers = parse_responses(await memory_daemon.network.exchange(two, 5.0))
    finally:
        globalLogPublisher.removeObserver(seen.append)
    assert [(a.status, a.body) for a in answers] == [(200, b'{"version":"1.0.0"}')] * 2
    failures = [e for e in seen if e.get("log_format", "").startswith("Could not log request")]
    assert len(failures) == 2 and all(e["log_failure"].check(RuntimeError) for e in failures)
