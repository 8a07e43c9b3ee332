"""Every benchmark, one after the other, and one table of the daemon against its baselines.

    python bench/all.py [--quick] [--only request_path,polling,upload,update,backup,restore] [--dir DIR]

Runs bench/request_path.py (GET /version against a minimal Klein app and bare twisted.web,
idle RSS, start to first answer), bench/polling.py (clients polling GET /update while an
update runs), bench/upload.py (POST /update against nginx and bare twisted.web storing the
body), bench/update.py (decrypt + verify against the openssl CLI), bench/backup.py (the
backup job against tar, GET /backup/download against a bare static file server) and
bench/restore.py (the restore job against tar -x, refusing an archive that expands past
its limit against expanding it to the limit), each as a
child process with --json, never two at once so they do not measure each other. Their own
output goes to a log file; this prints the machine, the command and one markdown table.
The defaults are the full sizes (about 15 minutes on two cores); --quick uses small sizes
and short runs to try it out. A report, not a test: a benchmark that breaks shows as "not
measured" with the reason, and the exit status is 0.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from report import Row, machine, row, table  # noqa: E402

ORDER = ("request_path", "polling", "upload", "update", "backup", "restore")

# (full, quick) for each size option.
SIZES = {
    "duration": (5.0, 1.0),
    "request_rounds": (3, 1),
    "connections": ("16,256", "16,256"),
    "pollers": (200, 200),
    "poll_seconds": (10.0, 3.0),
    "size_mib": (1024, 32),
    "upload_rounds": (2, 1),
    "update_rounds": (5, 1),
    "backup_mib": (1024, 32),
    "backup_files": (1024, 64),
    "backup_rounds": (3, 1),
    "restore_members": (100_000, 5_000),
    "restore_rounds": (3, 1),
    "bomb_mib": (2048, 1024),
}


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes and short runs, to try it out")
    parser.add_argument("--only", default=",".join(ORDER), help="the benchmarks to run, comma separated")
    parser.add_argument("--dir", help="where the benchmarks put their files [default: system temp]")
    parser.add_argument("--log", help="where the benchmarks' own output goes [default: a file in the temp dir]")
    parser.add_argument("--duration", type=float, help="seconds per wrk run (5; quick 1)")
    parser.add_argument("--request-rounds", type=int, help="wrk rounds per server (3; quick 1)")
    parser.add_argument("--connections", help="wrk connection counts (16,256)")
    parser.add_argument("--pollers", type=int, help="clients polling GET /update (200)")
    parser.add_argument("--poll-seconds", type=float, help="how long they poll (10; quick 3)")
    parser.add_argument("--size-mib", type=int, help="upload and update package size (1024; quick 32)")
    parser.add_argument("--upload-rounds", type=int, help="(2; quick 1)")
    parser.add_argument("--update-rounds", type=int, help="(5; quick 1)")
    parser.add_argument("--backup-mib", type=int, help="size of the tree backed up (1024; quick 32)")
    parser.add_argument("--backup-files", type=int, help="files in that tree (1024; quick 64)")
    parser.add_argument("--backup-rounds", type=int, help="(3; quick 1)")
    parser.add_argument("--restore-members", type=int, help="small files in the restored archive (100000; quick 5000)")
    parser.add_argument("--restore-rounds", type=int, help="(3; quick 1)")
    parser.add_argument("--bomb-mib", type=int, help="what the refused archive declares (2048; quick 1024)")
    args = parser.parse_args(argv)
    for name, (full, quick) in SIZES.items():
        if getattr(args, name) is None:
            setattr(args, name, quick if args.quick else full)
    unknown = set(args.only.split(",")) - set(ORDER)
    if unknown:
        parser.error(f"unknown benchmark {sorted(unknown)[0]!r}; known: {', '.join(ORDER)}")
    return args


def commands(args: argparse.Namespace) -> dict[str, list[str]]:
    """Each benchmark's command line, --json and --dir left to run()."""
    return {
        "request_path": ["--duration", str(args.duration), "--rounds", str(args.request_rounds),
                         "--connections", args.connections, "--pollers", "0"],
        "polling": ["--clients", str(args.pollers), "--seconds", str(args.poll_seconds)],
        "upload": ["--size-mib", str(args.size_mib), "--rounds", str(args.upload_rounds)],
        "update": ["--size-mib", str(args.size_mib), "--rounds", str(args.update_rounds)],
        "backup": ["--mib", str(args.backup_mib), "--files", str(args.backup_files),
                   "--rounds", str(args.backup_rounds)],
        "restore": ["--members", str(args.restore_members), "--rounds", str(args.restore_rounds),
                    "--bomb-mib", str(args.bomb_mib)],
    }


def run(name: str, extra: list[str], work: Path, log, directory: str | None) -> list[Row]:
    """One benchmark in a child process; its rows, or one "not measured" row saying why."""
    out = work / f"{name}.json"
    argv = [sys.executable, str(HERE / f"{name}.py"), *extra, "--json", str(out)]
    if directory:
        argv += ["--dir", directory]
    log.write(f"\n$ {shlex.join(argv)}\n")
    log.flush()
    started = time.monotonic()
    done = subprocess.run(argv, stdout=log, stderr=subprocess.STDOUT)
    elapsed = time.monotonic() - started
    print(f"bench/{name}.py: {elapsed:.0f} s, exit status {done.returncode}", file=sys.stderr, flush=True)
    if done.returncode == 0 and out.exists():
        return json.loads(out.read_text())
    return [row(f"bench/{name}.py (exit status {done.returncode}; see {log.name})", "-", None)]


def main(argv: list[str] | None = None) -> None:
    args = parse(argv)
    command = shlex.join(["python", "bench/all.py", *(sys.argv[1:] if argv is None else argv)])
    where = machine()
    work = Path(tempfile.mkdtemp(prefix="jido-bench-all-", dir=args.dir))
    log_path = Path(args.log) if args.log else work / "bench.log"
    rows: list[Row] = []
    with open(log_path, "a") as log:
        print(f"running {args.only} one after the other; their output goes to {log_path}", file=sys.stderr)
        for name, extra in commands(args).items():
            if name in args.only.split(","):
                rows += run(name, extra, work, log, args.dir)
    for leftover in work.glob("*.json"):
        leftover.unlink()
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    # A list, so that pasted into markdown each line stays a line.
    print(f"\n- Machine: {where}; load average {load:.2f} at the end.")
    print(f"- Command: `{command}`")
    print(f"- Sizes: wrk {args.duration:g} s x {args.request_rounds} rounds at {args.connections} connections; "
          f"{args.pollers} pollers for {args.poll_seconds:g} s; upload and update package {args.size_mib} MiB "
          f"({args.upload_rounds} and {args.update_rounds} rounds); backup of {args.backup_mib} MiB in "
          f"{args.backup_files} files ({args.backup_rounds} rounds); restore of {args.restore_members} "
          f"files of 1 KiB ({args.restore_rounds} rounds); an archive declaring {args.bomb_mib} MiB refused.")
    print("- Ratio: jidoteki-admin's figure / the baseline's, for each baseline in turn.\n")
    print(table(rows))


if __name__ == "__main__":
    main()
