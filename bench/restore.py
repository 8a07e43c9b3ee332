"""Restore speed: the restore job against `tar -xf` of the same archive, and how fast an
archive that expands past the limit is refused.

    python bench/restore.py [--members 100000] [--member-bytes 1024] [--rounds 3]
                            [--bomb-mib 2048] [--limit-mib 256] [--dir DIR] [--json FILE]

Builds a backup archive of MEMBERS small files (MEMBER_BYTES each, in folders of 100),
then, in rounds, times `tar -xf` of it into an empty folder and the restore
job (`python -m jidoteki_admin.jobs.restore`, every check on: names, links, depth, the
size and member limits, the staging folder and the swap into place), each into a new
folder, first one then the other, nothing removed until the end. Then an archive of
one member whose header declares BOMB_MIB MiB of zeros, gzip-compressed, against
`--max-bytes` LIMIT_MIB: the job must refuse it at once, from the header, where `gzip -dc
| head -c LIMIT` (the time to expand to the limit) is the baseline. Each child's peak RSS
comes from os.wait4: the job's, against its interpreter importing it and nothing more,
and tar's. A benchmark prints; it never fails.
"""

from __future__ import annotations

import argparse
import io
import os
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))

from report import row, write_rows  # noqa: E402

MiB = 1024 * 1024


def make_archive(path: Path, members: int, size: int) -> None:
    with tarfile.open(path, "w", format=tarfile.GNU_FORMAT) as tar:
        for n in range(members):
            if n % 100 == 0:
                folder = tarfile.TarInfo(f"app/d{n // 100:05d}")
                folder.type, folder.mode = tarfile.DIRTYPE, 0o755
                tar.addfile(folder)
            info = tarfile.TarInfo(f"app/d{n // 100:05d}/f{n:06d}.txt")
            info.size, info.mode, info.mtime = size, 0o644, 1_700_000_000
            tar.addfile(info, io.BytesIO(os.urandom(size)))


def make_bomb(path: Path, mib: int) -> None:
    """One member declaring ``mib`` MiB of zeros, gzip-compressed (about 1/1000 of it)."""
    raw = path.with_suffix("")
    with open(raw, "wb") as f:
        header = tarfile.TarInfo("zeros.bin")
        header.size, header.mode = mib * MiB, 0o644
        f.write(header.tobuf(format=tarfile.GNU_FORMAT))
        zeros = bytes(MiB)
        for _ in range(mib):
            f.write(zeros)
        f.write(bytes(1024))
    subprocess.run(["gzip", "-1", "-f", str(raw)], check=True)
    raw.with_suffix(raw.suffix + ".gz").rename(path)


PEAK_RSS: dict[str, list[float]] = {}  # MiB, by what ran: os.wait4 gives each child's own


def timed(command: list[str], env: dict | None = None, check: bool = True, name: str = "") -> float:
    started = time.perf_counter()
    child = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(child.pid, 0)
    elapsed = time.perf_counter() - started
    child.returncode = os.waitstatus_to_exitcode(status)
    if check and child.returncode:
        raise subprocess.CalledProcessError(child.returncode, command)
    if name:
        PEAK_RSS.setdefault(name, []).append(usage.ru_maxrss / 1024)
    return elapsed


def restore_command(admin: Path, root: Path, archive: Path, max_bytes: int) -> list[str]:
    return [sys.executable, "-m", "jidoteki_admin.jobs.restore", "--admin-path", str(admin), "--root", str(root),
            "--archive", str(archive), "--max-bytes", str(max_bytes)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--members", type=int, default=100_000)
    parser.add_argument("--member-bytes", type=int, default=1024)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--bomb-mib", type=int, default=2048)
    parser.add_argument("--limit-mib", type=int, default=256)
    parser.add_argument("--dir", default=None)
    parser.add_argument("--json", metavar="FILE")
    args = parser.parse_args()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}

    with tempfile.TemporaryDirectory(prefix="bench-restore-", dir=args.dir) as tmp:
        work = Path(tmp)
        archive = work / "backup.tar"
        print(f"building an archive of {args.members} members of {args.member_bytes} bytes ...", flush=True)
        make_archive(archive, args.members, args.member_bytes)
        admin = work / "admin"
        (admin / "etc").mkdir(parents=True)
        times: dict[str, list[float]] = {"tar -xf": [], "restore job": []}
        for round_ in range(args.rounds):
            # Each run extracts into a folder of its own, and nothing is removed until the
            # end: ext4 is slow to create files for minutes after many were removed (the
            # time tar took went from 0.7 to 15 s from one round to the next when each
            # round removed the last one's files), and who ran just after a removal paid
            # for it. The order alternates, so a drift in the filesystem's state falls on
            # both sides alike.
            runs = [("tar -xf", lambda out: ["tar", "-xf", str(archive), "-C", str(out)]),
                    ("restore job", lambda out: restore_command(admin, out, archive, 64 * 1024 * MiB))]
            for name, command in runs if round_ % 2 == 0 else runs[::-1]:
                out = work / f"{name.split()[0]}-{round_}"
                out.mkdir()
                os.sync()
                times[name].append(timed(command(out), env, name=name))
                print(f"  round {round_ + 1}: {name} {times[name][-1]:.3f} s", flush=True)
            restored = sum(1 for _ in (work / f"restore-{round_}" / "app").rglob("*.txt"))
            assert restored == args.members, f"the restore put back {restored} of {args.members} files"

        # What the job's interpreter takes before it reads anything: its growth is the rest.
        timed([sys.executable, "-c", "import jidoteki_admin.jobs.restore"], env, name="the interpreter, no archive")

        bomb = work / "bomb.tar.gz"
        print(f"building an archive that expands to {args.bomb_mib} MiB ...", flush=True)
        make_bomb(bomb, args.bomb_mib)
        bomb_times: dict[str, list[float]] = {"gzip -dc | head -c LIMIT": [], "restore job refusing": []}
        for _ in range(args.rounds):
            bomb_times["gzip -dc | head -c LIMIT"].append(timed(
                ["sh", "-c", f"gzip -dc {bomb} | head -c {args.limit_mib * MiB} > /dev/null"], check=False))
            data = work / "data"
            data.mkdir()
            bomb_times["restore job refusing"].append(timed(
                restore_command(admin, data, bomb, args.limit_mib * MiB), env, check=False))
            assert not any(data.iterdir()), "a refused archive left something behind"
            shutil.rmtree(data)

    print(f"\n{args.members} members of {args.member_bytes} bytes, {args.rounds} rounds, alternating\n")
    for name, values in {**times, **bomb_times}.items():
        print(f"{name:28} best {min(values):8.3f} s   median {statistics.median(values):8.3f} s")
    for name, values in PEAK_RSS.items():
        print(f"{name:28} peak RSS {max(values):8.1f} MiB")
    ratio = statistics.median(times["restore job"]) / statistics.median(times["tar -xf"])
    print(f"\nrestore job / tar -xf: {ratio:.2f} (goal: at most 1.5)")
    write_rows(args.json, [
        row(f"restore of {args.members:,} members of {args.member_bytes} bytes", "s (median)",
            statistics.median(times["restore job"]), [("tar -xf", statistics.median(times["tar -xf"]))],
            "<= 1.5x tar"),
        row(f"restore of {args.members:,} members of {args.member_bytes} bytes", "peak RSS MiB",
            max(PEAK_RSS["restore job"]), [("the job's interpreter, no archive", max(PEAK_RSS["the interpreter, no archive"])),
                                           ("tar -xf", max(PEAK_RSS["tar -xf"]))], "<= 64 MiB growth"),
        row(f"refusing an archive declaring {args.bomb_mib} MiB, limit {args.limit_mib} MiB", "s (median)",
            statistics.median(bomb_times["restore job refusing"]),
            [("gzip -dc | head -c limit", statistics.median(bomb_times["gzip -dc | head -c LIMIT"]))],
            "<= 1x expanding to the limit"),
    ])


if __name__ == "__main__":
    main()
