"""Backup speed: the daemon's backup job against `tar -cf` of the same tree, and
GET /backup/download of the archive against a bare twisted.web serving the same file.

    python bench/backup.py [--mib 1024] [--files 1024] [--rounds 3] [--dir DIR] [--json FILE]

Builds a tree of FILES files totalling MIB MiB in a temporary directory, then, in
alternating rounds, times `tar -cf` of it and the backup job (`python -m
jidoteki_admin.jobs.backup`, which estimates the size, writes the archive with GNU tar,
hashes it and writes backup.json). Then it starts the daemon (twistd, backup endpoints
on) and a bare twisted.web `static.File` serving the same backup.tar over TLS with the
same certificate, and curl downloads the archive from each in alternating rounds.
Prints the medians and their ratios (goal for the job: at most 1.3x tar). A benchmark
prints; it never fails.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))

from report import row, write_rows  # noqa: E402
from request_path import Server, free_port  # noqa: E402

TOKEN = "benchtoken"
MiB = 1024 * 1024

BARE_FILE = """
import sys
from twisted.internet import reactor, ssl
from twisted.web import server, static

# The folder the archive is in: "/" answers a listing, to tell when the server is up.
port, cert, key, path = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
reactor.listenSSL(port, server.Site(static.File(path, defaultType="application/octet-stream")),
                  ssl.DefaultOpenSSLContextFactory(key, cert), interface="127.0.0.1")
reactor.run()
"""


def make_tree(root: Path, mib: int, files: int) -> None:
    size = mib * 1024 * 1024 // files
    for i in range(files):
        directory = root / "app" / f"d{i // 64:03d}"
        directory.mkdir(parents=True, exist_ok=True)
        (directory / f"f{i:05d}.bin").write_bytes(os.urandom(size))


def timed(command: list[str], env: dict | None = None) -> float:
    started = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True, env=env)
    return time.perf_counter() - started


def download(url: str, size: int) -> float:
    """MiB/s of one curl download to /dev/null (the certificate is the bench's own)."""
    started = time.perf_counter()
    result = subprocess.run(["curl", "-sSk", "-o", "/dev/null", "-w", "%{http_code} %{size_download}", url],
                            capture_output=True, text=True)
    elapsed = time.perf_counter() - started
    if result.stdout.split() != ["200", str(size)]:
        raise SystemExit(f"download from {url} answered {result.stdout!r} {result.stderr}")
    return size / MiB / elapsed


def download_rounds(work: Path, tree: Path, data: Path, archive: Path, rounds: int) -> tuple[list, list]:
    """(daemon MiB/s, bare MiB/s) for GET /backup/download against static.File, alternating."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    (tree / "etc" / "api.token").write_text(TOKEN + "\n")
    (tree / "etc" / "version.txt").write_text("1.0.0\n")  # GET /version tells when it is up
    config = work / "config.json"
    config.write_text(json.dumps({"endpoints": ["backup"], "backup-root": str(data)}))
    path = "/api/v1/admin/backup/download"
    twistd = [sys.executable, "-c", "from twisted.scripts.twistd import run; run()", "-n", "--pidfile="]
    port = free_port()
    servers = [Server("jidoteki-admin", twistd + [
        "jidoteki-admin", "--admin-path", str(tree), "--config", str(config), "--https", str(port),
        "--interface", "127.0.0.1"], port, f"/api/v1/admin/version?token={TOKEN}", work, env, work / "daemon.log")]
    try:
        cert, key = tree / "etc" / "ssl" / "cert.pem", tree / "etc" / "ssl" / "key.pem"
        bare_port = free_port()
        servers.append(Server("bare twisted.web", [sys.executable, "-c", BARE_FILE, str(bare_port), str(cert),
                                                   str(key), str(archive.parent)],
                              bare_port, "/", work, env, work / "bare.log"))
        size = archive.stat().st_size
        ours, bare = [], []
        for _ in range(rounds):
            ours.append(download(f"https://127.0.0.1:{port}{path}?token={TOKEN}", size))
            bare.append(download(f"https://127.0.0.1:{bare_port}/{archive.name}", size))
        return ours, bare
    finally:
        for server in servers:
            server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mib", type=int, default=1024)
    parser.add_argument("--files", type=int, default=1024)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--dir", help="where the tree and the archives go [default: system temp]")
    parser.add_argument("--json", metavar="FILE", help="also write the figures as rows for bench/all.py")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-backup-", dir=args.dir))
    try:
        data, tree = work / "data", work / "admin"
        make_tree(data, args.mib, args.files)
        for sub in ("etc", "log", "home/sftp/uploads", "tmp"):
            (tree / sub).mkdir(parents=True)
        (tree / "etc" / "backup.txt").write_text("app\n")
        out, status = tree / "home/sftp/uploads/backup.tar", tree / "home/sftp/uploads/backup.json"
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        job = [sys.executable, "-m", "jidoteki_admin.jobs.backup", "--admin-path", str(tree), "--root", str(data),
               "--out", str(out), "--status", str(status)]
        plain, ours = [], []
        for number in range(args.rounds):
            plain.append(timed(["tar", "-C", str(data), "-cf", str(work / "plain.tar"), "app"]))
            os.unlink(work / "plain.tar")
            ours.append(timed(job, env))
            if number < args.rounds - 1:
                os.unlink(out)  # the last archive stays, for the downloads
        tar_s, job_s = statistics.median(plain), statistics.median(ours)
        print(f"backup of {args.mib} MiB in {args.files} files, median of {args.rounds} rounds")
        print(f"{'tar -cf':<28}{tar_s:8.2f} s")
        print(f"{'backup job (tar + sha256)':<28}{job_s:8.2f} s")
        print(f"{'ratio (goal <= 1.3)':<28}{job_s / tar_s:8.2f}")
        down, bare = download_rounds(work, tree, data, out, args.rounds)
        down_mib, bare_mib = statistics.median(down), statistics.median(bare)
        print(f"\ndownload of the {out.stat().st_size / MiB:.0f} MiB archive over TLS with curl, median of"
              f" {args.rounds} rounds")
        print(f"{'GET /backup/download':<28}{down_mib:8.0f} MiB/s")
        print(f"{'bare twisted.web static.File':<28}{bare_mib:8.0f} MiB/s")
        print(f"{'ratio':<28}{down_mib / bare_mib:8.2f}")
        name = f"backup of {args.mib} MiB in {args.files} files"
        write_rows(args.json, [
            row(name, "s (median)", job_s, [("tar -cf", tar_s)], "<= 1.3x tar"),
            row("GET /backup/download of that archive over TLS (curl)", "MiB/s (median)", down_mib,
                [("bare twisted.web static.File", bare_mib)]),
        ])
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
