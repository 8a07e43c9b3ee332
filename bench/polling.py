"""Clients polling GET /update once a second while an update job runs: the latency an
operator's dashboard sees during an update.

    python bench/polling.py [--clients 200] [--seconds 10] [--dir DIR] [--json FILE]

Starts the daemon alone (as bench/request_path.py does, which also runs this after its
loads unless given --pollers 0), starts an update whose update.sh sleeps past the end of
the polling, and has each client, on its own kept-alive TLS connection (the handshakes
are not timed), send one GET a second, the clients spread over the second. It prints the
p50, p99 and max of the answers' latencies (goal: p99 under 50 ms), how many were not 200,
and whether every answer said the update was running. A report: nothing passes or fails.
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

from jidoteki_admin import package  # noqa: E402

UPDATE_PATH = "/api/v1/admin/update"


def install_slow_update(work: Path, admin: Path, seconds: float) -> Path:
    """Vendor keys in the admin tree and a package whose update.sh runs for ``seconds``."""
    signing = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    (admin / "etc" / "updates.key").write_text(os.urandom(32).hex() + "\n")
    (admin / "etc" / "updates.pub").write_bytes(signing.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    vendor = work / "vendor.key"
    vendor.write_bytes(signing.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    src = work / "update-src"
    src.mkdir()
    (src / "update.sh").write_text(f"#!/bin/sh\nsleep {seconds:g}\n")
    out = work / "software_package-9.0.0.enc"
    package.build_package(src, "9.0.0", admin / "etc" / "updates.key", vendor, out)
    return out


async def _connect(port: int):
    context = ssl.create_default_context()
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    return await asyncio.open_connection("127.0.0.1", port, ssl=context)


async def _poll(connection, offset: float, target: str, until: float, latencies: list[float],
                errors: list[str], bodies: set[bytes]) -> None:
    """One client: a kept-alive TLS connection, one GET a second."""
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
        latencies.append(time.perf_counter() - started)
        if not head.startswith(b"HTTP/1.1 200"):
            errors.append(head.split(b"\r\n")[0].decode())
        next_at += 1.0
    writer.close()


async def _poll_all(port: int, target: str, clients: int, seconds: float):
    """(latencies, statuses that were not 200, the distinct bodies)"""
    bodies: set[bytes] = set()
    latencies: list[float] = []
    errors: list[str] = []
    connections = [await _connect(port) for _ in range(clients)]  # the handshakes are not timed
    until = time.monotonic() + seconds
    await asyncio.gather(*(_poll(connection, n / clients, target, until, latencies, errors, bodies)
                           for n, connection in enumerate(connections)))
    return latencies, errors, bodies


def poll_during_update(port: int, work: Path, admin: Path, token: str, clients: int, seconds: float) -> dict:
    """Start an update that runs for longer than ``seconds``, poll, print the latencies and
    return them (an empty dict when the update did not start)."""
    pkg = install_slow_update(work, admin, seconds + 60)  # still running when the polling ends
    started = subprocess.run(
        ["curl", "-sSk", "-o", "/dev/null", "-w", "%{http_code}", "-X", "POST",
         f"https://127.0.0.1:{port}{UPDATE_PATH}?token={token}", "-F", f"update=@{pkg}"],
        capture_output=True, text=True)
    if started.stdout.strip() != "202":
        print(f"\nPOST /update answered {started.stdout!r} {started.stderr}: polling not measured")
        return {}
    latencies, errors, bodies = asyncio.run(_poll_all(port, f"{UPDATE_PATH}?token={token}", clients, seconds))
    ms = sorted(value * 1000 for value in latencies)
    p99 = ms[min(len(ms) - 1, int(len(ms) * 0.99))]
    result = {"clients": clients, "seconds": seconds, "answers": len(ms), "p50": statistics.median(ms),
              "p99": p99, "max": ms[-1], "not_200": len(errors),
              "always_running": all(b'"running"' in body for body in bodies)}
    print(f"\n{clients} clients polling GET /update once a second for {seconds:g} s while an update runs:"
          f" {len(ms)} answers, p50 {result['p50']:.2f} ms, p99 {p99:.2f} ms, max {ms[-1]:.2f} ms,"
          f" {len(errors)} not 200 {sorted(set(errors))[:3]}; answers seen: {sorted(bodies)[:3]}")
    return result


def poll_rows(result: dict) -> list:
    """Report rows for bench/all.py; the goal has no baseline to hold it against."""
    from report import row  # bench/, beside this file
    if not result:
        return [row("GET /update polled during an update", "p99 ms", None, goal="< 50 ms")]
    name = f"{result['clients']} clients polling GET /update 1/s during an update"
    if not result["always_running"]:
        name += " (the update ended before the polling did)"
    return [row(name, "p50 ms", result["p50"]),
            row(name, "p99 ms", result["p99"], goal="< 50 ms"),
            row(name, "max ms", result["max"]),
            row(name, "answers not 200", result["not_200"], goal="0")]


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
