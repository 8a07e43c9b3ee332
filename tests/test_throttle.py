"""Failed authentication is slowed down per client address, and audited per episode."""

import json
import socket
import time

import pytest
import pytest_twisted
from twisted.internet.defer import gatherResults
from twisted.internet.task import Clock
from twisted.internet.threads import deferToThread

from conftest import multipart, parse_responses, raw_request, raw_request_bytes, tls_client_context
from jidoteki_admin.config import AuthThrottle
from jidoteki_admin.http.throttle import FailureThrottle, client_key

VERSION = "/api/v1/admin/version"


def make(burst=3, refill=10.0, max_delay=8.0, max_clients=100):
    clock, episodes = Clock(), []
    throttle = FailureThrottle(clock, AuthThrottle(burst, refill, max_delay),
                               lambda *episode: episodes.append(episode), max_clients)
    return clock, throttle, episodes


def test_failures_past_the_burst_wait_longer_each_time_up_to_the_limit():
    clock, throttle, _ = make()
    delays = [throttle.failed("10.0.0.1") for _ in range(10)]
    assert delays == [0, 0, 0, 1, 2, 4, 8, 8, 8, 8]


def test_other_addresses_are_not_delayed():
    clock, throttle, _ = make()
    for _ in range(10):
        throttle.failed("10.0.0.1")
    assert throttle.failed("10.0.0.2") == 0
    assert not throttle.throttled("10.0.0.2")


def test_the_budget_comes_back_with_time():
    clock, throttle, _ = make(refill=10.0)
    for _ in range(5):
        throttle.failed("10.0.0.1")  # two in debt
    clock.advance(30)  # three earned back: one free failure
    assert throttle.failed("10.0.0.1") == 0
    assert throttle.failed("10.0.0.1") == 1


def test_an_episode_is_reported_once_as_it_starts_and_once_as_it_ends():
    clock, throttle, episodes = make(burst=3, refill=10.0)
    for _ in range(3):
        throttle.failed("10.0.0.1")
    assert episodes == [] and not throttle.throttled("10.0.0.1")
    for _ in range(50):
        throttle.failed("10.0.0.1")
    assert episodes == [("10.0.0.1", "start", 0)]
    assert throttle.throttled("10.0.0.1")
    clock.advance(10 * (3 + 32) - 1)  # the debt is bounded: the bucket is full after 350 s
    assert len(episodes) == 1
    clock.advance(2)
    assert episodes[-1] == ("10.0.0.1", "end", 50)
    assert not throttle.throttled("10.0.0.1") and len(throttle) == 0
    assert clock.getDelayedCalls() == []


def test_the_table_of_addresses_is_bounded():
    clock, throttle, episodes = make(burst=1, max_clients=50)
    for n in range(1000):
        throttle.failed(f"10.0.{n // 250}.{n % 250}")
        throttle.failed(f"10.0.{n // 250}.{n % 250}")
    assert len(throttle) == 50
    assert len(clock.getDelayedCalls()) == 50
    assert sum(1 for _, event, _ in episodes if event == "end") == 950  # forgotten ones are reported


def test_ipv6_clients_are_counted_per_64():
    assert client_key("2001:db8:1:2:aaaa::1") == client_key("2001:db8:1:2:bbbb::2") == "2001:db8:1:2::/64"
    assert client_key("::ffff:10.0.0.1") == "10.0.0.1"
    assert client_key("10.0.0.1") == "10.0.0.1"
    clock, throttle, _ = make(burst=2)
    throttle.failed("2001:db8::1")
    throttle.failed("2001:db8::2")
    assert throttle.failed("2001:db8::3") == 1


def test_stop_cancels_every_pending_check():
    clock, throttle, _ = make(burst=1)
    for host in ("10.0.0.1", "10.0.0.2"):
        throttle.failed(host)
        throttle.failed(host)
    throttle.stop()
    assert clock.getDelayedCalls() == [] and len(throttle) == 0


# Through the real daemon


def request_from(port: int, source: str, target: str) -> tuple[int, float]:
    """GET target from a given local address; (status, seconds to the answer)."""
    start = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=10, source_address=(source, 0)) as raw:
        with tls_client_context().wrap_socket(raw) as tls:
            tls.sendall(raw_request_bytes(b"GET", target.encode()))
            data = b""
            while chunk := tls.recv(65536):
                data += chunk
    return parse_responses(data)[0].status, time.monotonic() - start


def audit_lines(daemon) -> list[dict]:
    path = daemon.admin_path / "log" / "jidoteki-audit.log"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


@pytest_twisted.ensureDeferred
async def test_parallel_guesses_are_slowed_while_the_right_token_elsewhere_is_not(make_daemon):
    daemon = make_daemon({"auth-throttle": {"burst": 3, "refill-seconds": 60, "max-delay": 1}})
    (daemon.admin_path / "etc" / "version.txt").write_text("1.2.3\n")
    guesses = [deferToThread(request_from, daemon.port, "127.0.0.30", f"{VERSION}?token=guess{n}")
               for n in range(8)]
    right = await deferToThread(request_from, daemon.port, "127.0.0.31", f"{VERSION}?token=yourtoken")
    answers = await gatherResults(guesses)
    assert {status for status, _ in answers} == {403}
    seconds = sorted(s for _, s in answers)
    assert all(s < 0.5 for s in seconds[:3]), seconds
    assert all(s >= 1.0 for s in seconds[3:]), seconds
    assert right[0] == 200 and right[1] < 0.5, right
    lines = audit_lines(daemon)
    assert len([e for e in lines if e["outcome"].startswith("403")]) == 3
    assert [e["outcome"] for e in lines if e["action"] == "THROTTLE"] == \
        ["throttled: repeated authentication failures"]
    assert all("guess" not in json.dumps(e) for e in lines)


@pytest_twisted.ensureDeferred
async def test_setup_guesses_wait_at_least_two_seconds_and_are_throttled(make_daemon):
    daemon = make_daemon({"auth-throttle": {"burst": 1, "refill-seconds": 60, "max-delay": 4}})
    start = time.monotonic()
    responses = await gatherResults(
        [daemon.post_form("/setup", {"newtoken": "x"}, auth=None, token=f"g{n}") for n in range(4)])
    elapsed = time.monotonic() - start
    assert [r.code for r in responses] == [403] * 4
    assert 4.0 <= elapsed < 8.0  # the 2 s floor for /setup, and 4 s for the last guesses
    assert (daemon.admin_path / "etc" / "api.token").read_text() == "yourtoken\n"


@pytest.mark.parametrize("method,path", [
    ("GET", "/api/v1/admin/version"), ("GET", "/api/v1/admin/health"), ("GET", "/api/v1/admin/update"),
    ("GET", "/api/v1/admin/update/log"), ("POST", "/api/v1/admin/update"),
])
@pytest_twisted.ensureDeferred
async def test_a_wrong_token_elsewhere_than_setup_is_answered_at_once(memory_daemon, method, path):
    """Only a refused POST /setup waits 2 s: the first failures (the burst) on any other
    endpoint are answered without the daemon waiting on its clock, which this test never
    moves, so a delayed 403 could not arrive at all."""
    content_type, body = multipart({"x": "1"})
    headers = {"Content-Type": content_type} if method == "POST" else {}
    for attempt in range(5):
        response = await raw_request(memory_daemon, method, f"{path}?token=wrong{attempt}", headers,
                                     body if method == "POST" else b"", timeout=2.0)
        assert response.status == 403
        assert not memory_daemon.waiting_on_clock()
