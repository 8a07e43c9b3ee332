"""Upload throughput and memory: the daemon's POST /update against nginx and bare twisted.web.

The servers run as child processes over TLS with the same certificate: nginx storing the
body in a file (client_body_in_file_only, as an upload module in front of an application
does; skipped with a note when nginx is not installed), twisted.web writing it to a
temporary file, and twisted.web discarding it (the ceiling). curl uploads the same file to
each, in alternating rounds, so machine noise hits all alike. For each upload
it prints the throughput and how much the server's peak RSS grew (reset through
/proc/PID/clear_refs before each upload; needs Linux).

    python bench/upload.py [--size-mib 1024] [--rounds 2] [--dir DIR] [--json FILE]
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))

from report import write_rows  # noqa: E402
MiB = 1024 * 1024

BASELINE_SERVER = """
import sys
from twisted.internet import reactor, ssl
from twisted.web import resource, server

class Discard(resource.Resource):
    isLeaf = True
    def render_POST(self, request):
        return b'{"Status":"202 Accepted"}'

port, cert, key, mode = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
context = ssl.DefaultOpenSSLContextFactory(key, cert)
site = server.Site(Discard(), parsePOSTFormSubmission=False)
# "discard": a content file that drops everything, so the baseline does no disk work.
# "disk": the body goes to a file on disk, as an upload must (Twisted's own temp file).
class Null:
    def write(self, data): pass
    def seek(self, *a): return 0
    def tell(self): return 0
    def read(self, *a): return b''
    def close(self): pass
if mode == "discard":
    site.getContentFile = lambda length: Null()
else:
    import tempfile
    site.getContentFile = lambda length: tempfile.TemporaryFile(dir=sys.argv[5])
reactor.listenSSL(port, site, context, interface="127.0.0.1")
reactor.run()
"""


NGINX_CONF = """
daemon off;
master_process off;
worker_processes 1;
pid {work}/nginx.pid;
error_log {work}/nginx-error.log;
events {{}}
http {{
    access_log off;
    client_body_temp_path {work}/nginx-bodies;
    client_max_body_size 0;
    ssl_protocols TLSv1.2 TLSv1.3;
    server {{
        listen 127.0.0.1:{port} ssl;
        ssl_certificate {cert};
        ssl_certificate_key {key};
        location / {{
            # The whole body to a file, then its name to the application: nginx's own way
            # to take an upload off an application's hands.
            client_body_in_file_only clean;
            client_body_buffer_size 1m;
            proxy_pass http://127.0.0.1:{backend};
            proxy_pass_request_body off;
            proxy_set_header Content-Length "";
            proxy_set_header X-Body-File $request_body_file;
        }}
    }}
    server {{
        listen 127.0.0.1:{backend};
        location / {{ return 202 '{{"Status":"202 Accepted"}}'; }}
    }}
}}
"""


def start_nginx(work: Path, cert: Path, key: Path) -> tuple[subprocess.Popen, int] | None:
    """nginx storing each body in a file, or None (with a note) when it is not installed."""
    nginx = shutil.which("nginx") or ("/usr/sbin/nginx" if os.access("/usr/sbin/nginx", os.X_OK) else None)
    if nginx is None:
        print("nginx is not installed: its baseline is not measured (apt-get install nginx-light)")
        return None
    port, backend = free_port(), free_port()
    conf = work / "nginx.conf"
    conf.write_text(NGINX_CONF.format(work=work, port=port, backend=backend, cert=cert, key=key))
    server = subprocess.Popen([nginx, "-p", str(work), "-e", str(work / "nginx-error.log"), "-c", str(conf)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for_port(port)
    return server, port


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"server on port {port} did not start")


def status_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def upload(pid: int, url: str, cafile: Path, package: Path) -> tuple[float, float, float]:
    """One upload; returns (MiB/s, peak RSS growth in MiB, server CPU seconds)."""
    Path(f"/proc/{pid}/clear_refs").write_text("5")
    before = status_kib(pid, "VmRSS")
    cpu_before = cpu_seconds(pid)
    started = time.perf_counter()
    result = subprocess.run(
        ["curl", "-sS", "--cacert", str(cafile), "-o", "/dev/null", "-w", "%{http_code}",
         "-X", "POST", url, "-F", f"update=@{package}"],
        capture_output=True, text=True,
    )
    elapsed = time.perf_counter() - started
    if result.stdout.strip() not in ("200", "202"):
        raise SystemExit(f"upload to {url} answered {result.stdout!r} {result.stderr}")
    growth = (status_kib(pid, "VmHWM") - before) / 1024
    return package.stat().st_size / MiB / elapsed, growth, cpu_seconds(pid) - cpu_before


# The baselines, in the order the report shows them: nginx and the one writing to disk do
# what an upload must; the one discarding the body is the ceiling.
NGINX = "nginx (to disk)"
BASELINES = (NGINX, "bare twisted.web (to disk)", "bare twisted.web (discards)")
DAEMON = "jidoteki-admin POST /update"


def report_rows(results: dict[str, list[tuple[float, float, float]]], size_mib: int) -> list:
    """Medians as report rows: throughput, the largest peak RSS growth, CPU seconds per GiB."""
    from report import row  # bench/, beside this file
    name = f"upload of {size_mib} MiB over TLS (curl -F)"
    figures = (("MiB/s (median)", lambda r: statistics.median(s for s, _, _ in r), ">= 0.9x nginx"),
               ("peak RSS growth MiB", lambda r: max(g for _, g, _ in r), "<= 64 MiB"),
               ("server CPU s per GiB", lambda r: statistics.median(c for _, _, c in r) * 1024 / size_mib, ""))
    shown = {NGINX: "nginx storing the body", "bare twisted.web (to disk)": "bare twisted.web writing to disk",
             "bare twisted.web (discards)": "bare twisted.web discarding"}
    return [row(name, figure, measure(results[DAEMON]),
                [(shown[b], measure(results[b]) if results.get(b) else None) for b in BASELINES], goal)
            for figure, measure, goal in figures]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--dir", help="where the admin tree and the test file live [default: system temp]")
    parser.add_argument("--json", metavar="FILE", help="also write the figures as rows for bench/all.py")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="jido-bench-upload-", dir=args.dir))
    servers = []
    try:
        package = work / "software_package-1.0.0.enc"
        with open(package, "wb") as f:
            chunk = os.urandom(MiB)
            for _ in range(args.size_mib):
                f.write(chunk)
        admin = work / "admin"
        env = dict(os.environ, PYTHONPATH=str(REPO))
        daemon_port, baseline_port = free_port(), free_port()
        twistd = [sys.executable, "-c", "from twisted.scripts.twistd import run; run()"]
        daemon = subprocess.Popen(
            twistd + ["-n", "--pidfile=", "jidoteki-admin", "--admin-path", str(admin),
                      "--https", str(daemon_port), "--interface", "127.0.0.1"],
            cwd=work, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        servers.append(daemon)
        wait_for_port(daemon_port)
        (admin / "etc" / "api.token").write_text("benchtoken\n")
        cert, key = admin / "etc" / "ssl" / "cert.pem", admin / "etc" / "ssl" / "key.pem"
        baseline = subprocess.Popen(
            [sys.executable, "-c", BASELINE_SERVER, str(baseline_port), str(cert), str(key), "discard"],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        servers.append(baseline)
        disk_port = free_port()
        on_disk = subprocess.Popen(
            [sys.executable, "-c", BASELINE_SERVER, str(disk_port), str(cert), str(key), "disk", str(work)],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        servers.append(on_disk)
        wait_for_port(baseline_port)
        wait_for_port(disk_port)

        targets = {}
        nginx = start_nginx(work, cert, key)
        if nginx is not None:
            servers.append(nginx[0])
            targets[NGINX] = (nginx[0].pid, f"https://127.0.0.1:{nginx[1]}/")
        targets |= {
            "bare twisted.web (discards)": (baseline.pid, f"https://127.0.0.1:{baseline_port}/"),
            "bare twisted.web (to disk)": (on_disk.pid, f"https://127.0.0.1:{disk_port}/"),
            "jidoteki-admin POST /update": (
                daemon.pid, f"https://127.0.0.1:{daemon_port}/api/v1/admin/update?token=benchtoken"),
        }
        results: dict[str, list[tuple[float, float, float]]] = {name: [] for name in targets}
        for _ in range(args.rounds):
            for name, (pid, url) in targets.items():
                results[name].append(upload(pid, url, cert, package))
                time.sleep(1)  # let the failed update job (random bytes) clean up

        print(f"\nUpload of {args.size_mib} MiB over TLS with curl, {args.rounds} rounds, alternating\n")
        print(f"{'server':32} {'median MiB/s':>13} {'best MiB/s':>11} {'peak RSS growth MiB':>20}"
              f" {'server CPU s':>13}")
        medians = {}
        for name, rows in results.items():
            speeds = [speed for speed, _, _ in rows]
            medians[name] = statistics.median(speeds)
            print(f"{name:32} {medians[name]:13.1f} {max(speeds):11.1f} {max(g for _, g, _ in rows):20.1f}"
                  f" {statistics.median(c for _, _, c in rows):13.2f}")
        daemon_speed = medians["jidoteki-admin POST /update"]
        for name in BASELINES:
            if name in medians:
                print(f"ratio daemon / {name}: {daemon_speed / medians[name]:.2f}")
        write_rows(args.json, report_rows(results, args.size_mib))
    finally:
        for server in servers:
            server.terminate()
            server.wait()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
