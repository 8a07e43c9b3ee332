"""Clients polling GET /update once a second while an update job runs (imported by
request_path.py): the latency an operator's dashboard sees during an update."""

from __future__ import annotations

import asyncio
import os
import ssl
import statistics
import subprocess
import time
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from jidoteki_admin import package

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


def poll_during_update(port: int, work: Path, admin: Path, token: str, clients: int, seconds: float) -> None:
    """Start an update that runs for longer than ``seconds``, poll, and print the latencies."""
    pkg = install_slow_update(work, admin, seconds + 60)  # still running when the polling ends
    started = subprocess.run(
        ["curl", "-sSk", "-o", "/dev/null", "-w", "%{http_code}", "-X", "POST",
         f"https://127.0.0.1:{port}{UPDATE_PATH}?token={token}", "-F", f"update=@{pkg}"],
        capture_output=True, text=True)
    if started.stdout.strip() != "202":
        print(f"\nPOST /update answered {started.stdout!r} {started.stderr}: polling not measured")
        return
    latencies, errors, bodies = asyncio.run(_poll_all(port, f"{UPDATE_PATH}?token={token}", clients, seconds))
    ms = sorted(value * 1000 for value in latencies)
    p99 = ms[min(len(ms) - 1, int(len(ms) * 0.99))]
    print(f"\n{clients} clients polling GET /update once a second for {seconds:g} s while an update runs:"
          f" {len(ms)} answers, p50 {statistics.median(ms):.2f} ms, p99 {p99:.2f} ms, max {ms[-1]:.2f} ms,"
          f" {len(errors)} not 200 {sorted(set(errors))[:3]}; answers seen: {sorted(bodies)[:3]}")
