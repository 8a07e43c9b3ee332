"""The job runner with real child processes against a temporary admin tree."""

import json
import os
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest
import pytest_twisted
from twisted.internet import reactor, threads
from twisted.internet.task import Clock, deferLater

from conftest import wait_until
from jidoteki_admin.jobs.children import KILL_GRACE_SECONDS, default_env
from jidoteki_admin.jobs.runner import (FAILED, INTERRUPTED, RUNNING, SUCCESS, AlreadyRunning, Command, JobKind,
                                        JobRunner, JobStatus)
from jidoteki_admin.layout import AdminTree

KIND = JobKind(
    name="demo",
    title="a demo",
    program="demo.program",
    log_name="demo.log",
    status_name="status_demo",
    error_message_name="status_demo_error_message.txt",
    error_code_name="status_demo_error_code.txt",
    label="DEMO",
    unexpected_code="E9000",
    timeout_code="E9001",
    interrupted_code="E9002",
)


def python(code: str) -> list[str]:
    return [sys.executable, "-c", code]


class GivenArgv:
    """Runs the arguments given to start() as the whole command: the tests' own programs."""

    reports_through_files = False

    def command(self, kind, args, script_args):
        return Command(args)

    def recovery(self, kind):
        return Command(python("print('recovering')"))

    def scripted(self, kind):
        return False

    def busy(self, kind):
        return False


# What the tests' programs write their status with: the job programs' own status files
# (the runner starts them in the tree's tmp/).
REPORT = """\
import os
from pathlib import Path
from jidoteki_admin.jobs.protocol import JobKind
from jidoteki_admin.jobs.status import JobStatus, StatusFiles
from jidoteki_admin.layout import AdminTree
_kind = JobKind(name=os.environ.get('KIND', 'demo'), title='', program='', log_name='', label='',
                status_name='status_demo', error_message_name='status_demo_error_message.txt',
                error_code_name='status_demo_error_code.txt')
_files = StatusFiles(AdminTree(Path(os.getcwd()).parent), _kind)
def report(status='running', percentage=None, code=None, message=None):
    _files.write(JobStatus(status, percentage, message, code))
"""


@pytest.fixture
def tree(tmp_path):
    tree = AdminTree(tmp_path / "admin")
    tree.lay_out()
    return tree


@pytest.fixture
def clocked_runner(tree):
    """A runner whose timeouts follow a Clock the test advances."""
    clock = Clock()
    runner = JobRunner(tree, reactor, clock, timeout=60, launcher=GivenArgv())
    runner.register(KIND)
    return runner, clock


@pytest.fixture
def runner(tree):
    runner = JobRunner(tree, reactor, timeout=30, launcher=GivenArgv())
    runner.register(KIND)
    runner.startService()
    yield runner
    pytest_twisted.blockon(runner.stopService())


def status_files(tree):
    return (
        json.loads((tree.etc / "status_demo.json").read_text()),
        (tree.etc / "status_demo.txt").read_text(),
    )


@pytest_twisted.ensureDeferred
async def test_success_appends_output_and_writes_old_format_status(runner, tree):
    code = REPORT + "report(percentage=10)\nprint('one', flush=True)\nimport sys\nprint('two', file=sys.stderr)\nreport(percentage=50)\nprint('no newline', end='')"
    status = await runner.start(KIND, python(code))
    assert status == JobStatus(SUCCESS, 100)
    # stdout and stderr are the log file itself, so their lines are in the order written.
    assert (tree.log / "demo.log").read_text() == "one\ntwo\nno newline"
    assert status_files(tree) == ({"status": "success", "percentage": 100}, "success\n")
    assert not (tree.etc / "status_demo_error_code.txt").exists()


@pytest_twisted.ensureDeferred
async def test_progress_is_visible_while_running(runner, tree):
    code = REPORT + "report(percentage=40)\nimport time\ntime.sleep(0.5)"
    done = runner.start(KIND, python(code))
    assert runner.is_running(KIND)
    await wait_until(lambda: runner.status(KIND).percentage == 40, timeout=2.5)
    assert runner.status(KIND) == JobStatus(RUNNING, 40)
    await done
    assert not runner.is_running(KIND)


@pytest_twisted.ensureDeferred
async def test_reported_failure_keeps_code_message_and_percentage(runner, tree):
    code = REPORT + "report(percentage=20)\nreport('failed', 20, 'E9005', 'bad package')\nraise SystemExit(1)"
    status = await runner.start(KIND, python(code))
    assert status == JobStatus(FAILED, 20, "bad package", "E9005")
    assert runner.status(KIND) == status
    assert (tree.etc / "status_demo_error_code.txt").read_text() == "E9005\n"
    assert (tree.etc / "status_demo_error_message.txt").read_text() == "bad package\n"


@pytest_twisted.ensureDeferred
async def test_silent_crash_is_the_unexpected_code(runner, tree):
    status = await runner.start(KIND, python("raise SystemExit(3)"))
    assert status.status == FAILED and status.error_code == "E9000"
    assert "exit status 3" in status.error_message
    assert "[DEMO] Failed: The job ended with exit status 3" in (tree.log / "demo.log").read_text()


@pytest_twisted.ensureDeferred
async def test_one_job_of_a_kind_at_a_time(runner):
    done = runner.start(KIND, python("import time; time.sleep(0.3)"))
    with pytest.raises(AlreadyRunning):
        runner.start(KIND, python("pass"))
    assert (await done).status == SUCCESS
    assert (await runner.start(KIND, python("pass"))).status == SUCCESS


@pytest_twisted.ensureDeferred
async def test_timeout_kills_the_whole_process_group(clocked_runner, tmp_path):
    runner, clock = clocked_runner
    pidfile = tmp_path / "grandchild.pid"
    code = (
        "import subprocess, time\n"
        f"p = subprocess.Popen(['sleep', '300'])\nopen({str(pidfile)!r}, 'w').write(str(p.pid))\n"
        "time.sleep(300)"
    )
    done = runner.start(KIND, python(code))
    assert await wait_until(lambda: pidfile.exists() and pidfile.read_text())
    grandchild = int(pidfile.read_text())
    clock.advance(60)
    status = await done
    assert status.status == FAILED and status.error_code == "E9001"
    assert "longer than 60 seconds" in status.error_message
    assert await wait_until(lambda: not _alive(grandchild), timeout=2)


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split()[2] != "Z"
    except FileNotFoundError:
        return False


def test_a_job_left_running_is_marked_failed_at_start(tree):
    runner = JobRunner(tree, reactor, launcher=GivenArgv())
    files = runner.register(KIND)
    files.write(JobStatus(RUNNING, 30))
    runner.startService()
    try:
        status = runner.status(KIND)
        assert status == JobStatus(FAILED, 30, INTERRUPTED, "E9002")
        assert INTERRUPTED in (tree.log / "demo.log").read_text()
        assert not runner.is_running(KIND)
    finally:
        runner.stopService()


@pytest_twisted.ensureDeferred
async def test_stopping_the_runner_stops_its_jobs(tree):
    runner = JobRunner(tree, reactor, launcher=GivenArgv())
    runner.register(KIND)
    runner.startService()
    done = runner.start(KIND, python("import time; time.sleep(300)"))
    started = time.monotonic()
    await runner.stopService()  # in the same reactor turn as the start
    status = await done
    assert status.status == FAILED and status.error_code == "E9002"
    assert runner.status(KIND).status == FAILED
    # The SIGTERM reaches a child that has not even exec'd yet: no waiting out the
    # grace period for a SIGKILL.
    assert time.monotonic() - started < KILL_GRACE_SECONDS / 2


@pytest_twisted.ensureDeferred
async def test_status_files_are_replaced_atomically(runner, tree):
    status_json = tree.etc / "status_demo.json"
    code = REPORT + "import time\nfor p in range(1, 100):\n    report(percentage=p)\n    time.sleep(0.002)\n"
    done = runner.start(KIND, python(code))
    reads = await threads.deferToThread(_read_while, status_json, done)
    await done
    assert len(reads) > 50, "the reader should have seen the file many times"
    seen = set()
    for data in reads:  # never empty, never a partial JSON document
        seen.add(json.loads(data)["percentage"])
    assert len(seen) > 3, "the reader should have seen the file replaced while it read"
    leftovers = [name for name in os.listdir(tree.etc) if name.startswith(".")]
    assert leftovers == []


def _read_while(path, done, limit: float = 20.0) -> list[bytes]:
    """Read a file as fast as possible, in a thread, until a job ends: every read of a
    file replaced atomically is a whole version of it."""
    reads, deadline = [], time.monotonic() + limit
    while not done.called and time.monotonic() < deadline:
        try:
            reads.append(path.read_bytes())
        except FileNotFoundError:
            pass
    return reads


@pytest_twisted.ensureDeferred
async def test_a_child_that_ignores_sigterm_is_killed_after_the_grace_period(clocked_runner, tmp_path):
    runner, clock = clocked_runner
    ready = tmp_path / "ready"
    code = (
        "import signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        f"open({str(ready)!r}, 'w').close()\ntime.sleep(300)"
    )
    done = runner.start(KIND, python(code))
    assert await wait_until(ready.exists)
    clock.advance(60)  # the timeout: SIGTERM, which the child ignores
    await deferLater(reactor, 0.3, lambda: None)
    assert runner.is_running(KIND)
    clock.advance(KILL_GRACE_SECONDS)  # then SIGKILL
    status = await done
    assert status.status == FAILED and status.error_code == "E9001"


@pytest_twisted.ensureDeferred
async def test_a_job_that_explains_its_failure_is_not_explained_twice(runner, tree):
    code = REPORT + "print('[1][DEMO] Failed: broken', flush=True)\nreport('failed', 0, 'E9005', 'broken')\nraise SystemExit(1)"
    await runner.start(KIND, python(code))
    assert (tree.log / "demo.log").read_text().count("Failed") == 1


def test_a_job_that_cannot_be_spawned_is_failed_not_left_running(tree):
    class CannotFork:
        """A reactor whose process table is full."""

        def spawnProcess(self, *args, **kwargs):
            raise OSError(11, "Resource temporarily unavailable")

    runner = JobRunner(tree, CannotFork(), clock=Clock(), launcher=GivenArgv())
    runner.register(KIND)
    failures = []
    runner.start(KIND, python("pass")).addCallback(failures.append)
    assert not runner.is_running(KIND)
    assert failures == [runner.status(KIND)]
    assert failures[0].status == FAILED and failures[0].error_code == "E9000"


@pytest_twisted.ensureDeferred
async def test_a_job_runs_in_the_trees_tmp_directory(runner, tree):
    await runner.start(KIND, python("import os; print(os.getcwd())"))
    assert (tree.log / "demo.log").read_text().splitlines()[-1] == str(tree.tmp)


@pytest_twisted.ensureDeferred
async def test_one_job_of_a_group_at_a_time_and_the_refusal_names_the_running_one(runner):
    restore = replace(KIND, name="restore", title="a restore", log_name="restore.log",
                      status_name="status_restore", busy_code="E9100")
    runner.register(restore)
    done = runner.start(KIND, python("import time; time.sleep(0.3)"))
    with pytest.raises(AlreadyRunning) as refused:
        runner.start(restore, python("pass"))
    assert refused.value.message == "E9100: Cannot start a restore while a demo is running"
    with pytest.raises(AlreadyRunning) as again:
        runner.start(KIND, python("pass"))
    assert again.value.message == "A demo is already running"
    other_group = replace(restore, name="logs", log_name="logs.log", status_name=None, group="logs")
    assert (await runner.start(other_group, python("pass"))).status == SUCCESS
    assert (await done).status == SUCCESS
    assert (await runner.start(restore, python("pass"))).status == SUCCESS


@pytest_twisted.ensureDeferred
async def test_a_kind_the_old_appliance_kept_no_status_for_has_one_json_file(runner, tree):
    logs = replace(KIND, name="logs", log_name="logs.log", status_name=None,
                   error_message_name=None, error_code_name=None)
    runner.register(logs)
    before = set(os.listdir(tree.etc))
    status = await runner.start(logs, python(REPORT.replace("'status_demo'", "None").replace("os.environ.get('KIND', 'demo')", "'logs'")
                                        + "report(percentage=50)\nraise SystemExit(2)"))
    assert status.status == FAILED and runner.status(logs) == status
    assert set(os.listdir(tree.etc)) - before == {"status_logs.json"}
    assert json.loads((tree.etc / "status_logs.json").read_text()) == {
        "status": "failed", "percentage": 50, "error-code": "E9000", "error-message": "The job ended with exit status 2"}


@pytest_twisted.ensureDeferred
async def test_a_reboot_interrupted_by_the_daemon_stopping_succeeded(tree):
    reboot = replace(KIND, name="reboot", log_name="reboot.log", status_name="status_reboot",
                     interrupted_outcome=SUCCESS)
    runner = JobRunner(tree, reactor, launcher=GivenArgv())
    runner.register(reboot)
    runner.startService()
    done = runner.start(reboot, python("import time; time.sleep(300)"))
    await runner.stopService()
    assert (await done).status == SUCCESS
    # And one that the daemon's death left "running" is settled as success at start-up.
    runner.files(reboot).write(JobStatus(RUNNING, 40))
    again = JobRunner(tree, reactor, launcher=GivenArgv())
    again.register(reboot)
    again.startService()
    try:
        assert again.status(reboot) == JobStatus(SUCCESS, 100)
    finally:
        await again.stopService()


def test_the_built_in_launcher_runs_the_kinds_program_on_the_absolute_tree(tree):
    from jidoteki_admin.jobs.runner import BuiltinPrograms

    command = BuiltinPrograms(tree).command(KIND, ["--package", "/x.enc"])
    assert command.argv == [sys.executable, "-m", "demo.program", "--admin-path", str(tree.root), "--package", "/x.enc"]
    assert command.env == {}


def test_child_programs_find_first_the_package_the_daemon_runs():
    """A job program imports the very code that started it, installed or not: the folder
    holding the package comes first on the child's path, wherever children.py sits in it."""
    import jidoteki_admin

    first = Path(default_env()["PYTHONPATH"].split(os.pathsep)[0])
    assert (first / "jidoteki_admin" / "__init__.py").samefile(jidoteki_admin.__file__)


def test_the_built_in_launcher_goes_through_the_privileged_entry_point_for_root_jobs(tree):
    from jidoteki_admin.jobs.runner import BuiltinPrograms

    entry = ("/usr/bin/sudo", "-n", "/venv/bin/jidoteki-admin-privileged", "--admin-path", "/t")
    launcher = BuiltinPrograms(tree, entry)
    assert launcher.command(KIND, ["--package", "/x"]).argv == [*entry, "demo.program", "--package", "/x"]
    unprivileged = replace(KIND, privileged=False)
    assert launcher.command(unprivileged, []).argv[:3] == [sys.executable, "-m", "demo.program"]


@pytest_twisted.ensureDeferred
async def test_a_job_killed_with_sigkill_is_failed_and_frees_its_group(runner, tree):
    """SIGKILL leaves the job no chance to report: the runner says why it failed, keeps the
    last percentage, and the group is free for the next job (of another kind too)."""
    restore = replace(KIND, name="restore", title="a restore", log_name="restore.log",
                      status_name="status_restore", busy_code="E9100")
    runner.register(restore)
    code = REPORT + "import os, signal\nreport(percentage=30)\nos.kill(os.getpid(), signal.SIGKILL)\n"
    status = await runner.start(KIND, python(code))
    assert (status.status, status.error_code, status.percentage) == (FAILED, "E9000", 30)
    assert status.error_message == "The job was killed by signal 9 (SIGKILL)"
    assert not runner.is_running(KIND)
    on_disk, text = status_files(tree)
    assert on_disk == {"status": "failed", "percentage": 30} and text == "failed\n"
    assert (tree.etc / "status_demo_error_code.txt").read_text() == "E9000\n"
    assert (await runner.start(restore, python("pass"))).status == SUCCESS
    assert (await runner.start(KIND, python("pass"))).status == SUCCESS


@pytest_twisted.ensureDeferred
async def test_a_hung_job_is_failed_at_its_timeout_and_frees_its_group(clocked_runner):
    runner, clock = clocked_runner
    runner.startService()
    try:
        done = runner.start(KIND, python("import time; time.sleep(300)"))
        await deferLater(reactor, 0.2, lambda: None)
        clock.advance(60)
        status = await done
        assert (status.status, status.error_code) == (FAILED, "E9001")
        assert not runner.is_running(KIND)
        assert (await runner.start(KIND, python("pass"))).status == SUCCESS
    finally:
        await runner.stopService()


@pytest_twisted.ensureDeferred
async def test_an_outcome_is_shown_only_once_the_job_has_ended_and_the_daemon_has_taken_it_in(runner, tree):
    """A job writes "success" before it exits: until its process ends and every listener
    has run, every status answer still says "running"."""
    seen = []
    runner.when_finished(KIND, lambda outcome: seen.append((outcome, runner.status(KIND))))
    written = tree.tmp / "written"
    code = REPORT + f"report('success', 100)\nopen({str(written)!r}, 'w').close()\nimport time\ntime.sleep(0.4)\n"
    done = runner.start(KIND, python(code))
    assert await wait_until(written.exists)
    assert status_files(tree)[0] == {"status": "success", "percentage": 100}  # on disk already
    assert runner.status(KIND) == JobStatus(RUNNING, None)
    assert runner.report(KIND)[1]["status"] == "running"
    assert await done == JobStatus(SUCCESS, 100)
    # The listener ran before the status said so.
    assert seen == [(JobStatus(SUCCESS, 100), JobStatus(RUNNING, None))]
    assert runner.status(KIND) == JobStatus(SUCCESS, 100)


@pytest_twisted.ensureDeferred
async def test_a_job_may_ask_for_another_which_runs_once_it_has_ended(runner, tree):
    persist = replace(KIND, name="persist", log_name="persist.log", status_name=None, group="persist")
    runner.register(persist)
    ran = tree.tmp / "persist-ran"
    marker = tree.request_marker("persist")
    code = f"open({str(marker)!r}, 'w').close()"
    assert (await runner.start(KIND, python(code))).status == SUCCESS
    # The runner starts what was asked for with the kind's own command (here: the test's).
    runner.launcher = type("L", (GivenArgv,), {"command": lambda self, k, a, s: Command(
        python(f"open({str(ran)!r}, 'a').write('x')"))})()
    assert await wait_until(lambda: ran.exists() and not runner.is_running(persist))
    assert ran.read_text() == "x" and not marker.exists()


@pytest_twisted.ensureDeferred
async def test_a_request_left_by_a_dead_daemon_is_acted_on_at_start(tree):
    persist = replace(KIND, name="persist", log_name="persist.log", status_name=None, group="persist")
    ran = tree.tmp / "persist-ran"
    tree.request_marker("persist").write_bytes(b"")

    class Launcher(GivenArgv):
        def command(self, kind, args, script_args):
            return Command(python(f"open({str(ran)!r}, 'a').write('x')"))

    runner = JobRunner(tree, reactor, launcher=Launcher())
    runner.register(persist)
    runner.startService()
    try:
        assert runner.is_running(persist) and not tree.request_marker("persist").exists()
        assert await wait_until(lambda: not runner.is_running(persist))
        assert ran.read_text() == "x"
    finally:
        await runner.stopService()


@pytest_twisted.ensureDeferred
async def test_a_job_killed_in_the_middle_of_a_change_is_recovered_before_its_outcome_is_shown(runner, tree):
    """A job that dies with its journal on disk: the runner runs the kind's recovery at
    once, and the recovery's word is the job's outcome."""
    journal = tree.journal(KIND.name)

    class Recovering(GivenArgv):
        def recovery(self, kind):
            return Command(python(REPORT + f"import os\nos.unlink({str(journal)!r})\n"
                                  "report('failed', 40, 'E9002', 'undone')\n"))

    runner.launcher = Recovering()
    code = REPORT + f"report(percentage=40)\nopen({str(journal)!r}, 'w').write('{{}}')\n" \
                    "import os, signal\nos.kill(os.getpid(), signal.SIGKILL)\n"
    status = await runner.start(KIND, python(code))
    assert status == JobStatus(FAILED, 40, "undone", "E9002")
    assert not journal.exists() and runner.status(KIND) == status
    assert "finishing or undoing it" in (tree.log / "demo.log").read_text()
