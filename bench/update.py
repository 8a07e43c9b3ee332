"""Benchmark: opening an update package, package.decrypt_and_verify against openssl.

    python bench/update.py [--size-mib 1024] [--rounds 5] [--dir DIR] [--json FILE]

Builds a package of about --size-mib MiB (a random payload, so gzip cannot shrink it) in a
temporary directory under --dir, then times, alternating the methods round after round:

  openssl, file   openssl enc -d -out outer.tar; tar -xf outer.tar; openssl dgst -sha256 -verify
  openssl, pipe   openssl enc -d | tar -x; openssl dgst -sha256 -verify
  python          package.decrypt_and_verify (decrypt, split, write, hash: one pass), in a
                  child process of its own as the update job runs it, as the openssl
                  commands run in theirs (run in this process, right after openssl's
                  runs it took three times as long as in a loop of its own: 1.3 s against
                  0.41 s for 512 MiB, a cause not found)

Each method writes software_package.tar.gz to disk and checks its signature, as an update
does. Dirty pages are flushed before every run and outputs removed after it. It prints best
and median seconds, MiB/s of package, and python's time as a ratio of each openssl way.
This is a report, not a test: nothing passes or fails.
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from cryptography.hazmat.primitives import serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import rsa  # noqa: E402

from jidoteki_admin.formats import package  # noqa: E402
from report import row, write_rows  # noqa: E402

ENC = "openssl enc -d -aes-256-cbc -md sha256 -pbkdf2 -pass file:{key} -in {pkg}"
DGST = "openssl dgst -sha256 -verify {pub} -signature {out}/software_package.tar.gz.sign {out}/software_package.tar.gz"


def make_package(work: Path, size_mib: int) -> dict[str, Path]:
    signing_key = rsa.generate_private_key(public_exponent=65537, key_size=3072)
    paths = {"key": work / "updates.key", "vendor": work / "vendor.key", "pub": work / "updates.pub",
             "pkg": work / "software_package-1.0.0.enc", "src": work / "src"}
    paths["key"].write_text(os.urandom(32).hex() + "\n")
    paths["vendor"].write_bytes(signing_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    paths["pub"].write_bytes(signing_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    paths["src"].mkdir()
    (paths["src"] / "update.sh").write_text("echo updating\n")
    with open(paths["src"] / "payload.bin", "wb") as f:
        for _ in range(size_mib):
            f.write(os.urandom(1 << 20))
    # Level 0 (stored) keeps the build quick; the inner tar.gz is opaque to what is timed.
    package.build_package(paths["src"], "1.0.0", paths["key"], paths["vendor"], paths["pkg"], compresslevel=0)
    shutil.rmtree(paths["src"])
    return paths


def shell(command: str) -> None:
    subprocess.run(["/bin/sh", "-c", command], check=True, stdout=subprocess.DEVNULL)


def openssl_file(p: dict[str, Path], out: Path) -> None:
    args = {k: shlex.quote(str(v)) for k, v in p.items()} | {"out": shlex.quote(str(out))}
    shell(ENC.format(**args) + " -out {out}/outer.tar".format(**args))
    shell("tar -xf {out}/outer.tar -C {out}".format(**args))
    shell(DGST.format(**args))


def openssl_pipe(p: dict[str, Path], out: Path) -> None:
    args = {k: shlex.quote(str(v)) for k, v in p.items()} | {"out": shlex.quote(str(out))}
    shell(ENC.format(**args) + " | tar -x -C {out}".format(**args))
    shell(DGST.format(**args))


PYTHON = ("import sys; from pathlib import Path; from jidoteki_admin.formats import package; "
          "package.decrypt_and_verify(*map(Path, sys.argv[1:]))")


def python(p: dict[str, Path], out: Path) -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    subprocess.run([sys.executable, "-c", PYTHON, str(p["pkg"]), str(p["key"]), str(p["pub"]), str(out)],
                   check=True, env=env)


METHODS = {
    "openssl enc -d; tar -x; dgst -verify": openssl_file,
    "openssl enc -d | tar -x; dgst -verify": openssl_pipe,
    "package.decrypt_and_verify": python,
}


def timed(method, paths: dict[str, Path], work: Path) -> float:
    out = work / "out"
    out.mkdir()
    os.sync()  # start every run with no dirty pages from the previous one
    start = time.perf_counter()
    method(paths, out)
    elapsed = time.perf_counter() - start
    shutil.rmtree(out)
    return elapsed


def report_rows(times: dict[str, list[float]], mib: float) -> list:
    """Median seconds of the daemon's way against both openssl ways, as report rows."""
    ours, openssl = "package.decrypt_and_verify", list(METHODS)[1::-1]  # the pipe first: the faster
    shown = {list(METHODS)[0]: "openssl enc, tar, dgst", list(METHODS)[1]: "openssl enc | tar, dgst"}
    name = f"update package of {mib:.0f} MiB: decrypt + verify"
    return [row(name, "s (median)", statistics.median(times[ours]),
                [(shown[m], statistics.median(times[m])) for m in openssl], "<= 0.8x openssl"),
            row(name, "MiB/s (median)", mib / statistics.median(times[ours]),
                [(shown[m], mib / statistics.median(times[m])) for m in openssl])]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--dir", default=None, help="where the temporary package goes (default: system temp)")
    parser.add_argument("--json", metavar="FILE", help="also write the figures as rows for bench/all.py")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-update-", dir=args.dir) as tmp:
        work = Path(tmp)
        print(f"building a {args.size_mib} MiB package in {work} ...", flush=True)
        paths = make_package(work, args.size_mib)
        size = paths["pkg"].stat().st_size
        times: dict[str, list[float]] = {name: [] for name in METHODS}
        for _ in range(args.rounds):
            for name, method in METHODS.items():
                times[name].append(timed(method, paths, work))

    mib = size / (1 << 20)
    print(f"\npackage: {mib:.0f} MiB ({size} bytes), {args.rounds} rounds, methods alternating\n")
    print(f"{'method':40} {'best s':>8} {'median s':>9} {'MiB/s':>8}")
    for name, values in times.items():
        best, median = min(values), statistics.median(values)
        print(f"{name:40} {best:8.3f} {median:9.3f} {mib / median:8.0f}")
    ours = times["package.decrypt_and_verify"]
    print()
    for name in list(METHODS)[:2]:
        print(f"ratio python / ({name}): best {min(ours) / min(times[name]):.2f}, "
              f"median {statistics.median(ours) / statistics.median(times[name]):.2f}")
    write_rows(args.json, report_rows(times, mib))


if __name__ == "__main__":
    main()
