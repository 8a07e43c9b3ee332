"""The audit log and job logs rotate by size, keep a few generations, and survive
logrotate (copytruncate, or a move followed by a reopen)."""

import json
import os
import sys

import pytest_twisted

from conftest import raw_request
from jidoteki_admin.config import LogRotate
from jidoteki_admin.files import RotatingLog
from jidoteki_admin.sections.updates import UPDATE


from test_runner import GivenArgv  # noqa: E402 (runs the arguments given to start() as the command)


def generations(path) -> dict[str, int]:
    """Name -> size of a log and its rotated generations."""
    return {p.name: p.stat().st_size for p in sorted(path.parent.glob(path.name + "*"))}


def test_a_log_rotates_by_size_and_keeps_its_generations(tmp_path):
    path = tmp_path / "x.log"
    log = RotatingLog(path, LogRotate(bytes=1000, keep=3))
    for n in range(100):
        log.write(b"%05d %s\n" % (n, b"x" * 93))  # 100 bytes a line
    log.close()
    assert generations(path) == {"x.log": 1000, "x.log.1": 1000, "x.log.2": 1000, "x.log.3": 1000}
    assert path.read_bytes().startswith(b"00090 ")
    assert (tmp_path / "x.log.3").read_bytes().startswith(b"00060 ")


def test_after_copytruncate_lines_go_to_the_new_end(tmp_path):
    path = tmp_path / "x.log"
    log = RotatingLog(path, LogRotate())
    log.write(b"before\n" * 100)
    os.truncate(path, 0)  # what logrotate's copytruncate does after copying
    log.write(b"after\n")
    log.close()
    assert path.read_bytes() == b"after\n"


def test_after_a_move_a_reopen_writes_a_new_file(tmp_path):
    path = tmp_path / "x.log"
    log = RotatingLog(path, LogRotate())
    log.write(b"old\n")
    path.rename(tmp_path / "x.log-20260101")
    log.write(b"still old\n")  # the file is still open until reopened
    log.reopen()
    log.write(b"new\n")
    log.close()
    assert path.read_bytes() == b"new\n"
    assert (tmp_path / "x.log-20260101").read_bytes() == b"old\nstill old\n"


def test_new_limits_apply_to_an_open_log(tmp_path):
    path = tmp_path / "x.log"
    log = RotatingLog(path, LogRotate(bytes=10_000, keep=1))
    log.write(b"x" * 600)
    log.limits = LogRotate(bytes=1000, keep=1)
    log.write(b"y" * 600)
    log.close()
    assert generations(path) == {"x.log": 600, "x.log.1": 600}


@pytest_twisted.ensureDeferred
async def test_the_audit_log_rotates(make_daemon):
    daemon = make_daemon({"log-rotate": {"bytes": 2000, "keep": 2}})
    for _ in range(40):  # each a 400, audited: about 190 bytes a line
        response = await raw_request(daemon, "PUT", "/api/v1/admin/version?token=yourtoken")
        assert response.status == 400
    audit = daemon.admin_path / "log" / "jidoteki-audit.log"
    sizes = generations(audit)
    assert set(sizes) == {"jidoteki-audit.log", "jidoteki-audit.log.1", "jidoteki-audit.log.2"}
    assert all(0 < size <= 2000 for size in sizes.values()), sizes
    for name in sizes:
        for line in (audit.parent / name).read_text().splitlines():
            assert json.loads(line)["outcome"].startswith("400")


@pytest_twisted.ensureDeferred
async def test_a_job_log_rotates_when_the_next_job_starts_and_one_jobs_lines_stay_in_one_file(make_daemon):
    """A job writes its log itself (nothing is lost if the daemon goes): the log is
    rotated before a job starts, never under one, so a run's lines are all in one file."""
    daemon = make_daemon({"log-rotate": {"bytes": 10_000, "keep": 2}})
    runner = daemon.service.runner
    runner.launcher = GivenArgv()
    log = daemon.admin_path / "log" / "update.log"
    for run in range(3):
        code = f"import sys\nfor n in range(300): print('{run}-%04d' % n, 'y' * 45)\n"  # 16 kB in 53-byte lines
        status = await runner.start(UPDATE, [sys.executable, "-c", code])
        assert status.status == "success"
        lines = log.read_text().splitlines()
        assert (lines[0], lines[-1]) == (f"{run}-0000 " + "y" * 45, f"{run}-0299 " + "y" * 45)
        assert len(lines) == 300
    assert set(generations(log)) == {"update.log", "update.log.1", "update.log.2"}
    assert (log.parent / "update.log.1").read_text().splitlines()[-1].startswith("1-0299 ")
    response = await daemon.get("/update/log")
    assert (await response.content()).decode().splitlines()[-1].startswith("2-0299 ")
