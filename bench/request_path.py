"""Request path speed: GET /version on the daemon, a minimal Klein app and bare twisted.web.

    python bench/request_path.py [--duration 5] [--rounds 3] [--connections 16,256] [--pollers 200]
                                 [--poll-seconds 10] [--dir DIR] [--json FILE]

Three servers run side by side as child processes over TLS with the same certificate:

  jidoteki-admin   the daemon (twistd -n, its log going to a file), access log, audit,
                   security headers and request ids on, GET /api/v1/admin/version
  minimal Klein    one Klein route, the same token/HMAC check, the same JSON body
  bare twisted.web a leaf resource answering the same bytes, no check at all

wrk (keep-alive, 2 threads) loads each in turn for --duration seconds, rounds interleaved,
and the median of the rounds is printed for req/s, p50 and p99, by token and by hash, at
each connection count. Also printed: each server's idle RSS and its time from start to
first answer, and the p50 and p99 of --pollers clients polling GET /update once a second
while an update job runs on the daemon. A report, not a test: nothing passes or fails.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import ssl
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from jidoteki_admin.http.auth import request_hash  # noqa: E402

TOKEN = "benchtoken"
VERSION_PATH = "/api/v1/admin/version"
BODY = b'{"version":"1.0.0"}'

MINIMAL_KLEIN = """
import hashlib, hmac, json, sys
from klein import Klein
from twisted.internet import reactor, ssl
from twisted.web import server

port, cert, key, token = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4].encode()
secret = hashlib.sha256(token).hexdigest().encode()
app = Klein()

@app.route("/api/v1/admin/version")
def version(request):
    given_hash = request.args.get(b"hash", [None])[0]
    if given_hash is not None:
        expected = hmac.new(secret, request.method + request.path, hashlib.sha256).hexdigest().encode()
        ok = hmac.compare_digest(given_hash.lower(), expected)
    else:
        ok = hmac.compare_digest(request.args.get(b"token", [b""])[0], token)
    if not ok:
        request.setResponseCode(403)
        return b'{"Status":"403 Forbidden"}'
    request.setHeader(b"Content-Type", b"application/json")
    return json.dumps({"version": "1.0.0"}, separators=(",", ":")).encode()

reactor.listenSSL(port, server.Site(app.resource()), ssl.DefaultOpenSSLContextFactory(key, cert),
                  interface="127.0.0.1")
reactor.run()
"""

BARE = """
import sys
from twisted.internet import reactor, ssl
from twisted.web import resource, server

class Version(resource.Resource):
    isLeaf = True
    def render_GET(self, request):
        request.setHeader(b"Content-Type", b"application/json")
        return b'{"version":"1.0.0"}'

port, cert, key = int(sys.argv[1]), sys.argv[2], sys.argv[3]
reactor.listenSSL(port, server.Site(Version()), ssl.DefaultOpenSSLContextFactory(key, cert),
                  interface="127.0.0.1")
reactor.run()
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def get(port: int, target: str, timeout: float = 5.0) -> tuple[int, float]:
    """One GET over a new TLS connection: (status, seconds), status 0 when nothing answered."""
    context = ssl.create_default_context()
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    started = time.perf_counter()
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as raw:
            with context.wrap_socket(raw) as tls:
                tls.sendall(f"GET {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
                data = b""
                while chunk := tls.recv(65536):
                    data += chunk
    except OSError:
        return 0, time.perf_counter() - started
    return int(data.split(b" ", 2)[1]) if data.startswith(b"HTTP/") else 0, time.perf_counter() - started


class Server:
    """A server child process and the time it took to answer its first request."""

    def __init__(self, name: str, argv: list[str], port: int, target: str, cwd: Path, env: dict, log: Path):
        self.name, self.port, self.target = name, port, target
        started = time.perf_counter()
        with open(log, "ab") as out:
            self.process = subprocess.Popen(argv, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT)
        while get(port, target, timeout=1.0)[0] != 200:
            if self.process.poll() is not None or time.perf_counter() - started > 30:
                self.process.kill()  # no one else holds it to stop it later
                self.process.wait()
                raise SystemExit(f"{name} did not answer; see {log}")
            time.sleep(0.01)
        self.first_answer = time.perf_counter() - started
        time.sleep(0.5)
        self.idle_rss = rss_mib(self.process.pid)

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(15)


def wrk(url: str, connections: int, duration: float) -> tuple[float, float, float]:
    """(req/s, p50 ms, p99 ms) from one wrk run."""
    out = subprocess.run(["wrk", "-t2", f"-c{connections}", f"-d{max(1, round(duration))}s", "--latency", url],
                         capture_output=True, text=True, check=True).stdout
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    if re.search(r"Non-2xx", out):
        raise SystemExit(f"{url} answered errors:\n{out}")
    return rate, _latency(out, "50"), _latency(out, "99")


def _latency(out: str, percent: str) -> float:
    value, unit = re.search(rf"^\s+{percent}%\s+([\d.]+)(us|ms|s)\s*$", out, re.M).groups()
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def start_daemon(work: Path, env: dict) -> Server:
    """The daemon under twistd, its admin tree in ``work``, answering GET /version."""
    admin = work / "admin"
    (admin / "etc").mkdir(parents=True)
    (admin / "etc" / "api.token").write_text(TOKEN + "\n")
    (admin / "etc" / "version.txt").write_text("1.0.0\n")
    config = work / "config.json"
    config.write_text(json.dumps({"connections": {"max": 2048, "max-per-client": 1024}}))
    twistd = [sys.executable, "-c", "from twisted.scripts.twistd import run; run()", "-n", "--pidfile="]
    port = free_port()
    return Server(
        "jidoteki-admin", twistd + ["jidoteki-admin", "--admin-path", str(admin), "--config", str(config),
                                    "--https", str(port), "--interface", "127.0.0.1"],
        port, f"{VERSION_PATH}?token={TOKEN}", work, env, work / "daemon.log")


def start_servers(work: Path, env: dict) -> dict[str, Server]:
    servers = {"jidoteki-admin": start_daemon(work, env)}
    admin = work / "admin"
    cert, key = str(admin / "etc" / "ssl" / "cert.pem"), str(admin / "etc" / "ssl" / "key.pem")
    for name, code, extra in (("minimal Klein", MINIMAL_KLEIN, [TOKEN]), ("bare twisted.web", BARE, [])):
        port = free_port()
        servers[name] = Server(name, [sys.executable, "-c", code, str(port), cert, key, *extra],
                               port, f"{VERSION_PATH}?token={TOKEN}", work, env, work / f"{name}.log")
    return servers


def load_runs(servers: dict[str, Server], connections: list[int], rounds: int, duration: float) -> dict:
    """(server, auth, connections) -> [(req/s, p50, p99)], the rounds interleaved."""
    queries = {"token": f"token={TOKEN}", "hash": "hash=" + request_hash(TOKEN, "GET", VERSION_PATH)}
    results: dict = {}
    for _ in range(rounds):
        for count in connections:
            for name, server in servers.items():
                for auth, query in queries.items():
                    if name == "bare twisted.web" and auth == "hash":
                        continue  # it checks nothing: one row for both
                    url = f"https://127.0.0.1:{server.port}{VERSION_PATH}?{query}"
                    label = "-" if name == "bare twisted.web" else auth
                    results.setdefault((name, label, count), []).append(wrk(url, count, duration))
    return results


def medians_of(results: dict) -> dict:
    return {key: [statistics.median(r[i] for r in rows) for i in range(3)] for key, rows in results.items()}


def print_table(servers: dict[str, Server], results: dict, rounds: int, duration: float) -> None:
    print(f"\nGET {VERSION_PATH} over TLS, keep-alive, wrk -t2, {duration:g} s rounds, median of {rounds}"
          f" interleaved rounds ({os.cpu_count()} cores)\n")
    print("| server | auth | connections | req/s | p50 ms | p99 ms | vs minimal Klein | vs bare |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    medians = medians_of(results)
    for (name, auth, count), (rate, p50, p99) in medians.items():
        klein = medians.get(("minimal Klein", auth if auth != "-" else "hash", count))
        bare = medians[("bare twisted.web", "-", count)]
        print(f"| {name} | {auth} | {count} | {rate:,.0f} | {p50:.2f} | {p99:.2f} | "
              f"{rate / klein[0]:.2f} | {rate / bare[0]:.2f} |")
    print("\n| server | idle RSS MiB | start to first answer s |")
    print("| --- | ---: | ---: |")
    for server in servers.values():
        print(f"| {server.name} | {server.idle_rss:.1f} | {server.first_answer:.2f} |")


# The goals these figures are held to (docs/performance.md); the other rows are for comparison.
GOALS = {("req/s", 16): ">= 0.9x minimal Klein", ("p99 ms", 16): "< 5 ms"}


def rows(servers: dict[str, Server], results: dict, rounds: int, duration: float) -> list:
    """The same figures as print_table, as report rows: the daemon against both baselines."""
    from report import row  # bench/, beside this file
    medians = medians_of(results)
    counts = sorted({count for _, _, count in medians})
    found = []
    for count in counts:
        for auth in ("token", "hash"):
            ours, klein = medians[("jidoteki-admin", auth, count)], medians[("minimal Klein", auth, count)]
            bare = medians[("bare twisted.web", "-", count)]
            for index, figure in enumerate(("req/s", "p50 ms", "p99 ms")):
                found.append(row(f"GET /version by {auth}, {count} connections", figure, ours[index],
                                 [("minimal Klein", klein[index]), ("bare twisted.web", bare[index])],
                                 GOALS.get((figure, count), "")))
    others = [servers["minimal Klein"], servers["bare twisted.web"]]
    daemon = servers["jidoteki-admin"]
    found.append(row("idle server", "RSS MiB", daemon.idle_rss, [(s.name, s.idle_rss) for s in others]))
    found.append(row("server start (the daemon under twistd)", "s to first answer", daemon.first_answer,
                     [(s.name, s.first_answer) for s in others]))
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per wrk run")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", default="16,256")
    parser.add_argument("--pollers", type=int, default=200, help="clients polling GET /update (0: none)")
    parser.add_argument("--poll-seconds", type=float, default=10.0)
    parser.add_argument("--dir", help="where the admin tree lives [default: system temp]")
    parser.add_argument("--json", metavar="FILE", help="also write the figures as rows for bench/all.py")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("bench/request_path.py needs wrk (apt-get install wrk)")
    work = Path(tempfile.mkdtemp(prefix="jido-bench-requests-", dir=args.dir))
    env = dict(os.environ, PYTHONPATH=str(REPO))
    servers: dict[str, Server] = {}
    try:
        servers = start_servers(work, env)
        connections = [int(c) for c in args.connections.split(",")]
        results = load_runs(servers, connections, args.rounds, args.duration)
        print_table(servers, results, args.rounds, args.duration)
        found = rows(servers, results, args.rounds, args.duration)
        if args.pollers:
            from polling import poll_during_update, poll_rows  # bench/, beside this file
            polled = poll_during_update(servers["jidoteki-admin"].port, work, work / "admin", TOKEN,
                                        args.pollers, args.poll_seconds)
            found += poll_rows(polled)
        from report import write_rows
        write_rows(args.json, found)
    finally:
        for server in servers.values():
            server.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
