"""Clients polling GET /update once a second while an update job runs: the latency an
operator's dashboard sees during an update.

    python bench/polling.py [--clients 200] [--seconds 10] [--dir DIR] [--json FILE]

Starts the daemon alone (as bench/request_path.py does, which also runs this after its
loads unless given --pollers 0). The baseline first: an update that fails at once (its
version is not newer), then the same clients poll its `failed` status with no job
running. Then an update whose update.sh sleeps past the end of the polling, polled the
same way. Each client, on its own kept-alive TLS connection (the handshakes are not
timed), sends one GET a second, the clients spread over the second. It prints the p50,
p99 and max of the answers' latencies of both (goal: p99 under 50 ms during the update),
the slowest answer of each second (a stall of the machine shows in both runs; one of the
daemon's, during the update only), how many were not 200, and whether every answer during
the update said it was running. A report: nothing passes or fails.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import sys
import tempfile
import ssl
import statistics
import subprocess
import time
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from jidoteki_admin.formats import package  # noqa: E402

UPDATE_PATH = "/api/v1/admin/update"


def install_slow_update(work: Path, admin: Path, seconds: float, version: str = "9.0.0") -> Path:
    """Vendor keys in the admin tree (once) and a package of ``version`` whose update.sh
    runs for ``seconds``."""
    vendor = work / "vendor.key"
    if not vendor.exists():
        signing = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        (admin / "etc" / "updates.key").write_text(os.urandom(32).hex() + "\n")
        (admin / "etc" / "updates.pub").write_bytes(signing.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
        vendor.write_bytes(signing.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    src = work / f"update-src-{version}"
    src.mkdir()
    (src / "update.sh").write_text(f"#!/bin/sh\nsleep {seconds:g}\n")
    out = work / f"software_package-{version}.enc"
    package.build_package(src, version, admin / "etc" / "updates.key", vendor, out)
    return out


def post_update(port: int, token: str, pkg: Path) -> str:
    """POST /update with ``pkg``: the status code curl saw, or what went wrong."""
    started = subprocess.run(
        ["curl", "-sSk", "-o", "/dev/null", "-w", "%{http_code}", "-X", "POST",
         f"https://127.0.0.1:{port}{UPDATE_PATH}?token={token}", "-F", f"update=@{pkg}"],
        capture_output=True, text=True)
    return started.stdout.strip() or started.stderr.strip()


def wait_for_update_to_end(port: int, token: str, seconds: float = 30) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        status = subprocess.run(["curl", "-sSk", f"https://127.0.0.1:{port}{UPDATE_PATH}?token={token}"],
                                capture_output=True, text=True).stdout
        if '"failed"' in status or '"success"' in status:
            return True
        time.sleep(0.2)
    return False


async def _connect(port: int):
    context = ssl.create_default_context()
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    return await asyncio.open_connection("127.0.0.1", port, ssl=context)


async def _poll(connection, offset: float, target: str, start: float, until: float,
                latencies: list[tuple[float, float]], errors: list[str], bodies: set[bytes]) -> None:
    """One client: a kept-alive TLS connection, one GET a second; each answer's latency is
    kept with when its request went out (seconds since ``start``)."""
    reader, writer = connection
    request = f"GET {target} HTTP/1.1\r\nHost: x\r\n\r\n".encode()
    next_at = time.monotonic() + offset  # the clients spread over the second
    while next_at < until:
        await asyncio.sleep(max(0.0, next_at - time.monotonic()))
        started = time.perf_counter()
        writer.write(request)
        head = await reader.readuntil(b"\r\n\r\n")
        length = int(next(line.split(b":")[1] for line in head.split(b"\r\n")
                          if line.lower().startswith(b"content-length:")))
        bodies.add((await reader.readexactly(length))[:100])
        latencies.append((started - start, time.perf_counter() - started))
        if not head.startswith(b"HTTP/1.1 200"):
            errors.append(head.split(b"\r\n")[0].decode())
        next_at += 1.0
    writer.close()


async def _poll_all(port: int, target: str, clients: int, seconds: float):
    """(latencies, statuses that were not 200, the distinct bodies)"""
    bodies: set[bytes] = set()
    latencies: list[tuple[float, float]] = []
    errors: list[str] = []
    connections = [await _connect(port) for _ in range(clients)]  # the handshakes are not timed
    start, until = time.perf_counter(), time.monotonic() + seconds
    await asyncio.gather(*(_poll(connection, n / clients, target, start, until, latencies, errors, bodies)
                           for n, connection in enumerate(connections)))
    return latencies, errors, bodies


def summary(latencies: list[tuple[float, float]], errors: list[str]) -> dict:
    ms = sorted(latency * 1000 for _, latency in latencies)
    slowest: dict[int, float] = {}
    for at, latency in latencies:
        slowest[int(at)] = max(slowest.get(int(at), 0.0), latency * 1000)
    return {"answers": len(ms), "p50": statistics.median(ms), "p99": ms[min(len(ms) - 1, int(len(ms) * 0.99))],
            "max": ms[-1], "not_200": len(errors), "slowest_by_second": [slowest[k] for k in sorted(slowest)]}


def describe(label: str, figures: dict) -> str:
    return (f"{label}: {figures['answers']} answers, p50 {figures['p50']:.2f} ms, p99 {figures['p99']:.2f} ms,"
            f" max {figures['max']:.2f} ms, {figures['not_200']} not 200; slowest answer of each second (ms): "
            + " ".join(f"{value:.0f}" for value in figures["slowest_by_second"]))


def poll_during_update(port: int, work: Path, admin: Path, token: str, clients: int, seconds: float) -> dict:
    """Poll with no job running (after an update that failed at once), then during an update
    that runs for longer than ``seconds``; print and return both (an empty dict when an
    update did not start)."""
    target = f"{UPDATE_PATH}?token={token}"
    failing = install_slow_update(work, admin, 0, version=(admin / "etc" / "version.txt").read_text().strip())
    if post_update(port, token, failing) != "202" or not wait_for_update_to_end(port, token):
        print("\nthe baseline's update (one that fails at once) did not start or end: polling not measured")
        return {}
    idle = summary(*asyncio.run(_poll_all(port, target, clients, seconds))[:2])
    pkg = install_slow_update(work, admin, seconds + 60)  # still running when the polling ends
    answered = post_update(port, token, pkg)
    if answered != "202":
        print(f"\nPOST /update answered {answered!r}: polling not measured")
        return {}
    latencies, errors, bodies = asyncio.run(_poll_all(port, target, clients, seconds))
    result = {"clients": clients, "seconds": seconds, **summary(latencies, errors), "idle": idle,
              "always_running": all(b'"running"' in body for body in bodies)}
    print(f"\n{clients} clients polling GET /update once a second for {seconds:g} s")
    print(describe("  no job running (baseline)", idle))
    print(describe("  while an update runs", result))
    if not result["always_running"]:
        print(f"  not every answer said running: {sorted(bodies)[:3]}")
    return result


def poll_rows(result: dict) -> list:
    """Report rows for bench/all.py; the goal has no baseline to hold it against."""
    from report import row  # bench/, beside this file
    if not result:
        return [row("GET /update polled during an update", "p99 ms", None, goal="< 50 ms")]
    name = f"{result['clients']} clients polling GET /update 1/s during an update"
    if not result["always_running"]:
        name += " (the update ended before the polling did)"
    idle = result["idle"]
    baseline = "the same polling, no job running"
    return [row(name, "p50 ms", result["p50"], [(baseline, idle["p50"])]),
            row(name, "p99 ms", result["p99"], [(baseline, idle["p99"])], goal="< 50 ms"),
            row(name, "max ms", result["max"], [(baseline, idle["max"])]),
            row(name, "answers not 200", result["not_200"], [(baseline, idle["not_200"])], goal="0")]


def main() -> None:
    from report import write_rows
    from request_path import TOKEN, start_daemon  # bench/, beside this file
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--dir", help="where the admin tree lives [default: system temp]")
    parser.add_argument("--json", metavar="FILE", help="also write the figures as rows for bench/all.py")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="jido-bench-polling-", dir=args.dir))
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    daemon = None
    try:
        daemon = start_daemon(work, env)
        result = poll_during_update(daemon.port, work, work / "admin", TOKEN, args.clients, args.seconds)
        write_rows(args.json, poll_rows(result))
    finally:
        if daemon is not None:
            daemon.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
