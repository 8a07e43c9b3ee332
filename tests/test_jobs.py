"""GET /jobs: every kind of job's state, and its log read from a position, so a client
follows a job's log whole: every line once, none of another run's."""

from __future__ import annotations

import pytest
import pytest_twisted
from twisted.internet import reactor
from twisted.internet.task import deferLater

from conftest import json_of
from test_updates import build, install_keys

LINES = 10_000
NOISY = (f"i=0; while [ $i -lt {LINES} ]; do echo \"line $i of the update script\"; i=$((i+1)); "
         "[ $((i % 500)) -eq 0 ] && sleep 0.05; done\n")


async def follow(daemon, kind: str) -> tuple[list[str], set[str]]:
    """Read /jobs/<kind>/log from 0 until the run is complete, as a client would."""
    lines, runs, position = [], set(), 0
    for _ in range(20_000):
        part = await json_of(await daemon.get(f"/jobs/{kind}/log", **{"from": str(position)}))
        assert part["from"] == position
        lines += part["lines"]
        runs.add(part["run"])
        position = part["next"]
        if part["complete"]:
            return lines, runs
        await deferLater(reactor, 0.01, lambda: None)
    raise AssertionError("the log never completed")


@pytest_twisted.ensureDeferred
async def test_a_log_of_ten_thousand_lines_is_read_whole_while_the_job_writes_it(daemon, keys, tmp_path):
    install_keys(daemon.admin_path, keys)
    package = build(tmp_path, keys, "1.1.0", update_sh="echo 'the previous run'\n")
    assert (await daemon.post_form("/update", files={"update": (package.name, package.read_bytes())})).code == 202
    first, _ = await follow(daemon, "update")
    assert "the previous run" in first

    package = build(tmp_path, keys, "1.2.0", update_sh=NOISY)
    assert (await daemon.post_form("/update", files={"update": (package.name, package.read_bytes())})).code == 202
    lines, runs = await follow(daemon, "update")
    assert len(runs) == 1  # one run followed from its first line to its last
    script = [line for line in lines if line.endswith("of the update script")]
    assert script == [f"line {n} of the update script" for n in range(LINES)]  # none lost, none twice
    assert "the previous run" not in lines
    assert lines[-1].endswith("Updating system successful")
    # The whole run is what the log file holds from where the run began.
    log = (daemon.admin_path / "log" / "update.log").read_text().splitlines()
    assert log[-len(lines):] == lines
    # The status answer's tail is this run's too.
    tail = (await json_of(await daemon.get("/update")))["log"]
    assert "the previous run" not in tail and tail.endswith("Updating system successful\\n")


@pytest_twisted.ensureDeferred
async def test_every_kind_has_its_state_and_the_list_names_them(daemon, keys, tmp_path):
    listed = await json_of(await daemon.get("/jobs"))
    names = [job["name"] for job in listed["jobs"]]
    assert {"update", "persist", "logs", "debug", "reboot"} <= set(names)
    before = await json_of(await daemon.get("/jobs/update"))
    assert before == {"name": "update", "title": "an update", "status": None, "percentage": None, "run": None,
                      "started": None, "ended": None, "seconds": None}
    install_keys(daemon.admin_path, keys)
    package = build(tmp_path, keys, "0.9.0")  # not newer: E1001
    assert (await daemon.post_form("/update", files={"update": (package.name, package.read_bytes())})).code == 202
    await follow(daemon, "update")
    state = await json_of(await daemon.get("/jobs/update"))
    assert state["status"] == "failed" and state["error-code"] == "E1001"
    assert state["run"] and state["started"].endswith("Z") and state["ended"].endswith("Z")
    assert 0 < state["seconds"] < 60


@pytest.mark.parametrize("value", ["-1", "x", "1.5", "9" * 30, ""])
@pytest_twisted.ensureDeferred
async def test_a_bad_position_is_refused_by_name(memory_daemon, value):
    response = await memory_daemon.get("/jobs/update/log", **{"from": value})
    assert response.code == 400
    assert (await json_of(response))["Error-Message"] == \
        "Parameter from must be a whole number of bytes, as the last answer's next gave it"


@pytest_twisted.ensureDeferred
async def test_a_position_past_the_end_answers_nothing_more(memory_daemon):
    part = await json_of(await memory_daemon.get("/jobs/update/log", **{"from": "123456"}))
    assert part == {"run": None, "status": None, "from": 0, "next": 0, "lines": [], "complete": True}
