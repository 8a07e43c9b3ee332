"""Backup speed: the daemon's backup job against `tar -cf` of the same tree.

    python bench/backup.py [--mib 1024] [--files 1024] [--rounds 3]

Builds a tree of FILES files totalling MIB MiB in a temporary directory, then, in
alternating rounds, times `tar -cf` of it and the backup job (`python -m
jidoteki_admin.jobs.backup`, which estimates the size, writes the archive with GNU tar,
hashes it and writes backup.json). Prints the medians and their ratio (goal: at most
1.3). A benchmark prints; it never fails.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mib", type=int, default=1024)
    parser.add_argument("--files", type=int, default=1024)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-backup-") as work:
        work = Path(work)
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
        for _ in range(args.rounds):
            plain.append(timed(["tar", "-C", str(data), "-cf", str(work / "plain.tar"), "app"]))
            os.unlink(work / "plain.tar")
            ours.append(timed(job, env))
            os.unlink(out)
        tar_s, job_s = statistics.median(plain), statistics.median(ours)
        print(f"backup of {args.mib} MiB in {args.files} files, median of {args.rounds} rounds")
        print(f"{'tar -cf':<28}{tar_s:8.2f} s")
        print(f"{'backup job (tar + sha256)':<28}{job_s:8.2f} s")
        print(f"{'ratio (goal <= 1.3)':<28}{job_s / tar_s:8.2f}")


if __name__ == "__main__":
    main()
