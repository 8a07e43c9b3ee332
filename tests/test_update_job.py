"""The update job, run as the runner runs it: a child process that writes its own status files."""

from __future__ import annotations

import io
import json
import os
import re
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from jidoteki_admin.formats import package

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
STEPS = [10, 20, 30, 40, 50, 60, 70, 80, 100]
LOG_LINE = re.compile(rb"^\[\d{10,}\]\[SYSTEM\] ")

UPDATE_SH = """\
echo "update script running"
{
  echo "cwd=$(pwd)"
  echo "JIDO_ADMIN_PATH=$JIDO_ADMIN_PATH"
  echo "JIDO_UPDATE_VERSION=$JIDO_UPDATE_VERSION"
  echo "JIDO_UPDATE_DIR=$JIDO_UPDATE_DIR"
  echo "PATH=$PATH"
  echo "update.sh here: $(test -f update.sh && echo yes)"
  env | cut -d= -f1 | sort | tr '\\n' ' '
} > "$JIDO_ADMIN_PATH/log/update-env.txt"
printf 'no newline at the end'
"""


@pytest.fixture(scope="session")
def keys(tmp_path_factory):
    d = tmp_path_factory.mktemp("keys")
    (d / "updates.key").write_text(os.urandom(32).hex() + "\n")
    for name, key in [("vendor", rsa.generate_private_key(public_exponent=65537, key_size=2048)),
                      ("other", ec.generate_private_key(ec.SECP256R1()))]:
        (d / f"{name}.key").write_bytes(key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
        (d / f"{name}.pub").write_bytes(key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    return d


@pytest.fixture
def tree(tmp_path, keys):
    root = tmp_path / "admin"
    for sub in ("etc", "log", "home/sftp/uploads", "tmp", "bin"):
        (root / sub).mkdir(parents=True)
    (root / "etc" / "updates.key").write_bytes((keys / "updates.key").read_bytes())
    (root / "etc" / "updates.pub").write_bytes((keys / "vendor.pub").read_bytes())
    (root / "etc" / "version.txt").write_text("1.0.0\n")
    (root / "etc" / "changelog.txt").write_text("old changelog\n")
    return root


def upload(tree: Path, keys: Path, tmp_path: Path, version: str, *, update_sh: str | None = UPDATE_SH,
           signer: str = "vendor", legacy_md5: bool = False, label: str | None = None) -> Path:
    src = tmp_path / f"src-{version}-{signer}"
    src.mkdir()
    (src / "changelog.txt").write_text(f"{version}: new things\n")
    if update_sh is not None:
        (src / "update.sh").write_text(update_sh)
    out = tree / "home/sftp/uploads" / f"software_package-{label or version}.enc"
    package.build_package(src, version, keys / "updates.key", keys / f"{signer}.key", out,
                          legacy_md5=legacy_md5)
    return out


def job_status(root: Path) -> dict:
    """What the job left in its status files: the old appliance's four."""
    etc = root / "etc"
    status = json.loads((etc / "status_update.json").read_text())
    assert (etc / "status_update.txt").read_text() == status["status"] + "\n"
    for name, key in (("status_error_code.txt", "error-code"), ("status_error_message.txt", "error-message")):
        if (etc / name).exists():
            status[key] = (etc / name).read_text().rstrip("\n")
    return status


def run_job(root: Path):
    """Run the job as a child; returns (exit status, stdout lines, its status files)."""
    command = [sys.executable, "-m", "jidoteki_admin.jobs.update", "--admin-path", str(root)]
    done = subprocess.run(command, cwd=root / "tmp", env=ENV, capture_output=True, timeout=60)
    return done.returncode, done.stdout.splitlines(), job_status(root)


def assert_cleaned_up(root: Path) -> None:
    assert list((root / "home/sftp/uploads").glob("software_package-*.enc")) == []
    assert list((root / "tmp").iterdir()) == []


def assert_failed(root: Path, result, code: str, last_step: int) -> str:
    status, lines, written = result
    assert status == 1
    assert set(written) == {"status", "percentage", "error-code", "error-message"}
    assert (written["status"], written["percentage"], written["error-code"]) == ("failed", last_step, code)
    assert LOG_LINE.match(lines[-1]) and b"Failed updating system: " in lines[-1]
    assert written["error-message"].encode() in lines[-1]
    assert_cleaned_up(root)
    return written["error-message"]


def test_success(tree, keys, tmp_path):
    older = upload(tree, keys, tmp_path, "1.9.0", update_sh=None)
    upload(tree, keys, tmp_path, "1.10.0")
    status, lines, messages = run_job(tree)

    assert status == 0, lines
    assert messages == {"status": "success", "percentage": 100}
    steps = [line for line in lines if LOG_LINE.match(line)]
    assert len(steps) >= len(STEPS)  # a line for each step
    assert (tree / "etc/version.txt").read_text() == "1.10.0\n"  # 1.10.0 beats 1.9.0
    assert (tree / "etc/changelog.txt").read_text() == "1.10.0: new things\n"
    assert (tree / "etc/version.txt").stat().st_mode & 0o777 == 0o644
    assert lines[0].endswith(b"[SYSTEM] Updating system. Please wait..")
    assert lines[-1].endswith(b"[SYSTEM] Updating system successful") and LOG_LINE.match(lines[-1])
    assert b"update script running" in lines  # the script's output, verbatim, on its own line
    assert b"no newline at the end" in lines
    assert all(LOG_LINE.match(line) for line in lines
               if line not in (b"update script running", b"no newline at the end"))

    env = dict(line.split("=", 1) for line in (tree / "log/update-env.txt").read_text().splitlines()[:5])
    assert env["JIDO_ADMIN_PATH"] == str(tree.resolve())
    assert env["JIDO_UPDATE_VERSION"] == "1.10.0"
    assert env["cwd"] == env["JIDO_UPDATE_DIR"]
    assert Path(env["cwd"]).parent.parent == tree.resolve() / "tmp"
    assert env["PATH"] == os.environ["PATH"]
    assert "update.sh here: yes" in (tree / "log/update-env.txt").read_text()
    names = set((tree / "log/update-env.txt").read_text().splitlines()[-1].split())
    # The documented environment, and nothing else of the daemon's (the shell adds its own).
    assert names - {"PWD", "SHLVL", "_", "OLDPWD"} == {
        "JIDO_ADMIN_PATH", "JIDO_UPDATE_VERSION", "JIDO_UPDATE_DIR", "JIDO_INSTALLED_VERSION", "PATH", "HOME", "LANG"}
    assert not older.exists()
    assert_cleaned_up(tree)


def test_legacy_md5_package(tree, keys, tmp_path):
    upload(tree, keys, tmp_path, "1.0.1", update_sh=None, legacy_md5=True)
    status, lines, messages = run_job(tree)
    assert status == 0, lines
    assert messages == {"status": "success", "percentage": 100}
    assert (tree / "etc/version.txt").read_text() == "1.0.1\n"
    assert_cleaned_up(tree)


def test_missing_installed_version_is_accepted(tree, keys, tmp_path):
    (tree / "etc/version.txt").unlink()
    upload(tree, keys, tmp_path, "0.0.1", update_sh=None)
    status, lines, _ = run_job(tree)
    assert status == 0, lines
    assert (tree / "etc/version.txt").read_text() == "0.0.1\n"


@pytest.mark.parametrize("installed, version", [
    ("1.0.0", "1.0.0-1"), ("1.0.0", "1.0.0.1"), ("1.0", "1.0.0"), ("2020.12.31", "2021.03.01"),
    ("1.9", "1.10"), ("build 7", "build 12"),
])
def test_newer_as_sort_v_sees_it_is_installed(tree, keys, tmp_path, installed, version):
    (tree / "etc/version.txt").write_text(installed + "\n")
    upload(tree, keys, tmp_path, version, update_sh=None)
    status, lines, _ = run_job(tree)
    assert status == 0, lines
    assert (tree / "etc/version.txt").read_text() == version + "\n"
    assert any(line.endswith(f"Updating from version {installed} to {version}".encode()) for line in lines)


def test_package_without_version_is_installed_without_comparing(tree, keys, tmp_path):
    inner = tmp_path / "software_package.tar.gz"
    with tarfile.open(inner, "w:gz") as tar:
        data = b"echo installed > \"$JIDO_ADMIN_PATH/log/ran\"\n"
        info = tarfile.TarInfo("update.sh")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    package.seal(inner, keys / "vendor.key", keys / "updates.key",
                 tree / "home/sftp/uploads/software_package-any.enc")
    status, lines, messages = run_job(tree)
    assert status == 0, lines
    assert messages == {"status": "success", "percentage": 100}
    assert (tree / "log/ran").read_text() == "installed\n"
    assert (tree / "etc/version.txt").read_text() == "1.0.0\n"
    assert any(b"has no version.txt: installing without comparing versions" in line for line in lines)


def test_missing_package_E1003(tree):
    message = assert_failed(tree, run_job(tree), "E1003", 10)
    assert message == "Missing update package"


def test_run_by_hand_on_a_tree_without_status_files_it_writes_them(tree):
    status, lines, written = run_job(tree)
    assert status == 1
    assert lines[-1].endswith(b"Failed updating system: Missing update package")
    assert written["status"] == "failed" and written["error-code"] == "E1003"


@pytest.mark.parametrize("version", ["1.0.0", "0.9.9", "1.0.0~rc1", "1.0"])
def test_not_newer_E1001(tree, keys, tmp_path, version):
    upload(tree, keys, tmp_path, version)
    message = assert_failed(tree, run_job(tree), "E1001", 60)
    assert version in message and "1.0.0" in message
    assert (tree / "etc/version.txt").read_text() == "1.0.0\n"
    assert (tree / "etc/changelog.txt").read_text() == "old changelog\n"
    assert not (tree / "log/update-env.txt").exists()  # update.sh never ran


def test_update_script_failure_E1002(tree, keys, tmp_path):
    upload(tree, keys, tmp_path, "2.0.0", update_sh="echo 'about to fail'\nexit 3\n")
    status, lines, messages = result = run_job(tree)
    message = assert_failed(tree, result, "E1002", 70)
    assert "exit status 3" in message
    assert b"about to fail" in lines
    assert (tree / "etc/version.txt").read_text() == "1.0.0\n"


def test_tampered_package_E1005(tree, keys, tmp_path):
    pkg = upload(tree, keys, tmp_path, "2.0.0")
    data = bytearray(pkg.read_bytes())
    data[16 + 512 + 64] ^= 0x40  # inside software_package.tar.gz, the outer tar's first member
    pkg.write_bytes(data)
    assert_failed(tree, run_job(tree), "E1005", 40)
    assert (tree / "etc/version.txt").read_text() == "1.0.0\n"
    assert not (tree / "log/update-env.txt").exists()


def test_other_signer_E1005(tree, keys, tmp_path):
    upload(tree, keys, tmp_path, "2.0.0", signer="other")
    message = assert_failed(tree, run_job(tree), "E1005", 40)
    assert message == "Invalid update package signature"
    assert (tree / "etc/version.txt").read_text() == "1.0.0\n"


def test_wrong_key_E1005(tree, keys, tmp_path):
    upload(tree, keys, tmp_path, "2.0.0")
    (tree / "etc/updates.key").write_text("not the key\n")
    message = assert_failed(tree, run_job(tree), "E1005", 20)
    assert "wrong key" in message


def test_unsafe_member_E1005(tree, keys, tmp_path):
    inner = tmp_path / "software_package.tar.gz"
    with tarfile.open(inner, "w:gz") as tar:
        for name, data in [("version.txt", b"2.0.0\n"), ("../../../etc/version.txt", b"6.6.6\n")]:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    package.seal(inner, keys / "vendor.key", keys / "updates.key",
                 tree / "home/sftp/uploads/software_package-2.0.0.enc")
    message = assert_failed(tree, run_job(tree), "E1005", 50)
    assert "Refusing" in message
    assert (tree / "etc/version.txt").read_text() == "1.0.0\n"


def test_package_with_links_inside_installs(tree, keys, tmp_path):
    src = tmp_path / "src-links"
    (src / "scripts").mkdir(parents=True)
    (src / "scripts" / "install.sh").write_text('echo "installed via link" > "$JIDO_ADMIN_PATH/log/ran"\n')
    (src / "update.sh").symlink_to("scripts/install.sh")
    package.build_package(src, "2.0", keys / "updates.key", keys / "vendor.key",
                          tree / "home/sftp/uploads/software_package-2.0.enc")
    status, lines, _ = run_job(tree)
    assert status == 0, lines
    assert (tree / "log/ran").read_text() == "installed via link\n"
    assert (tree / "etc/version.txt").read_text() == "2.0\n"


def test_unexpected_error_E1000(tree, keys, tmp_path):
    upload(tree, keys, tmp_path, "2.0.0", update_sh=None)
    (tree / "etc/version.txt").unlink()
    (tree / "etc/version.txt").mkdir()  # cannot be read: not a case the job knows
    message = assert_failed(tree, run_job(tree), "E1000", 60)
    assert message.startswith("Unexpected error: IsADirectoryError")


def _alive(pid: int) -> bool:
    """Whether a process still runs (a zombie waiting for its reaper does not)."""
    deadline = time.monotonic() + 2  # SIGKILL is delivered asynchronously
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except FileNotFoundError:
            return False
        if state in ("Z", "X"):
            return False
        time.sleep(0.05)
    return True


def test_sigterm_cleans_up_E1002(tree, keys, tmp_path):
    pids = tree / "log" / "pids"
    upload(tree, keys, tmp_path, "2.0.0",
           update_sh=f'echo $$ > {pids}; sleep 30 & echo $! >> {pids}; echo started; wait\n')
    # In a session of its own, as the runner starts jobs; a supervisor stopping the daemon
    # signals the whole group.
    job = subprocess.Popen([sys.executable, "-m", "jidoteki_admin.jobs.update", "--admin-path", str(tree)],
                           cwd=tree / "tmp", env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           start_new_session=True)
    try:
        while job.stdout.readline() != b"started\n":
            assert job.poll() is None
        started = time.monotonic()
        os.killpg(job.pid, signal.SIGTERM)
        out, _ = job.communicate(timeout=20)
    finally:
        if job.poll() is None:
            job.kill()

    assert job.returncode == 1
    assert time.monotonic() - started < 10  # did not wait for the script's sleep
    assert job_status(tree) == {"status": "failed", "percentage": 70, "error-code": "E1002",
                                "error-message": "Update interrupted by SIGTERM"}
    assert out.splitlines()[-1].endswith(b"Failed updating system: Update interrupted by SIGTERM")
    assert not any(_alive(int(pid)) for pid in pids.read_text().split())
    assert (tree / "etc/version.txt").read_text() == "1.0.0\n"
    assert_cleaned_up(tree)


def test_update_script_runs_with_its_own_shebang(tree, keys, tmp_path):
    script = "#!/usr/bin/env python3\nimport os, sys\nprint('python update script', sys.version_info[0], os.getcwd())\n"
    upload(tree, keys, tmp_path, "2.0.0", update_sh=script)
    status, lines, messages = run_job(tree)
    assert status == 0, lines
    assert any(line.startswith(b"python update script 3 ") and line.endswith(b"/software_package")
               for line in lines), lines


def test_error_files_the_update_script_writes_are_its_word(tree, keys, tmp_path):
    script = ('printf "E1077\\n" > "$JIDO_ADMIN_PATH/etc/status_error_code.txt"\n'
              'printf "Disk too small for this version\\n" > "$JIDO_ADMIN_PATH/etc/status_error_message.txt"\n'
              "exit 1\n")
    upload(tree, keys, tmp_path, "2.0.0", update_sh=script)
    message = assert_failed(tree, run_job(tree), "E1077", 70)
    assert message == "Disk too small for this version"


def test_the_package_is_decrypted_in_the_work_dir_given(tree, keys, tmp_path):
    work = tmp_path / "big-disk"
    script = 'pwd > "$JIDO_ADMIN_PATH/log/where.txt"\n'
    package_path = upload(tree, keys, tmp_path, "2.0.0", update_sh=script)
    command = [sys.executable, "-m", "jidoteki_admin.jobs.update", "--admin-path", str(tree),
               "--package", str(package_path), "--work-dir", str(work)]
    done = subprocess.run(command, cwd=tree / "tmp", env=ENV, capture_output=True, timeout=60)
    assert done.returncode == 0, done.stdout
    assert (tree / "log/where.txt").read_text().startswith(str(work) + "/update-")
    assert list(work.iterdir()) == []  # and cleaned up there


def test_a_package_outside_the_uploads_folder_is_refused_and_left_alone(tree, keys, tmp_path):
    elsewhere = tmp_path / "software_package-2.0.0.enc"
    upload(tree, keys, tmp_path, "2.0.0").rename(elsewhere)
    command = [sys.executable, "-m", "jidoteki_admin.jobs.update", "--admin-path", str(tree),
               "--package", str(elsewhere)]
    done = subprocess.run(command, cwd=tree / "tmp", env=ENV, capture_output=True, timeout=60)
    assert done.returncode == 1
    assert b"must be in the uploads folder" in done.stdout
    assert elsewhere.exists()


SIGTERM_AT = """
import os, signal, sys
from jidoteki_admin.jobs.persist import PersistProgram
from jidoteki_admin.jobs.program import main

class Program(PersistProgram):
    def __init__(self, *args):
        if sys.argv[1] == "construction":
            os.kill(os.getpid(), signal.SIGTERM)  # while the program is being made
        super().__init__(*args)

    def run(self):
        os.kill(os.getpid(), signal.SIGTERM)  # as soon as it runs
        signal.pause()

sys.exit(main(Program, ["--admin-path", sys.argv[2]]))
"""


@pytest.mark.parametrize("moment, status", [("construction", -signal.SIGTERM), ("run", 1)])
def test_a_sigterm_at_any_moment_of_a_jobs_start_never_ends_in_a_traceback(tmp_path, moment, status):
    """The runner stops a job whenever it is told to, even while the program starts: the
    SIGTERM ends it by the signal (before the program can clean up anything), or as an
    Interrupted it handles, never as an exception nobody catches."""
    root = tmp_path / "admin"
    (root / "log").mkdir(parents=True)
    done = subprocess.run([sys.executable, "-c", SIGTERM_AT, moment, str(root)], env=ENV,
                          capture_output=True, timeout=30)
    assert b"Traceback" not in done.stdout + done.stderr, done.stderr.decode()
    assert done.returncode == status
