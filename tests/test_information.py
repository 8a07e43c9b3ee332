"""Section 6 and 7: version, changelog, build, health, and services."""

import json
import os
import re
import stat
import types

import pytest
import pytest_twisted
from twisted.internet import reactor
from twisted.internet.task import Clock

from conftest import json_of
from jidoteki_admin.sections import information as information_module
from jidoteki_admin.sections import services as services_module
from jidoteki_admin.sections.information import CpuSampler, human_size

GiB, MiB = 1024**3, 1024**2


def etc(daemon):
    return daemon.admin_path / "etc"


def content_type(response) -> str:
    return response.headers.getRawHeaders("Content-Type")[0]


# /version


@pytest.mark.parametrize(
    "content,version",
    [("1.2.3\n", "1.2.3"), ("1.2.3", "1.2.3"), ("2.0.0\nsecond line\n", "2.0.0"), ("3.1\r\n", "3.1")],
)
@pytest_twisted.ensureDeferred
async def test_version_is_the_first_line(memory_daemon, content, version):
    (etc(memory_daemon) / "version.txt").write_text(content)
    response = await memory_daemon.get("/version")
    assert response.code == 200
    assert content_type(response) == "application/json"
    assert await json_of(response) == {"version": version}


@pytest_twisted.ensureDeferred
async def test_missing_version_is_404_with_a_message(memory_daemon):
    response = await memory_daemon.get("/version")
    assert response.code == 404
    body = await json_of(response)
    assert body["Status"] == "404 Not Found"
    assert body["Error-Message"]
    assert response.headers.getRawHeaders("Error-Message") == [body["Error-Message"]]


# /changelog


@pytest_twisted.ensureDeferred
async def test_changelog_is_served_as_plain_text_byte_for_byte(memory_daemon):
    text = b"# Changelog\n\n## 1.0.9 (2015-08-21)\n\n  * Update app\r\n  * caf\xc3\xa9\n\n"
    (etc(memory_daemon) / "changelog.txt").write_bytes(text)
    response = await memory_daemon.get("/changelog", auth="hash")
    assert response.code == 200
    assert content_type(response).startswith("text/plain")
    assert await response.content() == text


@pytest_twisted.ensureDeferred
async def test_large_changelog_is_served_whole(memory_daemon):
    text = os.urandom(3 * MiB)
    (etc(memory_daemon) / "changelog.txt").write_bytes(text)
    response = await memory_daemon.get("/changelog")
    assert response.length == len(text)
    assert await response.content() == text


@pytest_twisted.ensureDeferred
async def test_missing_changelog_is_404(memory_daemon):
    response = await memory_daemon.get("/changelog")
    assert response.code == 404
    body = await json_of(response)
    assert body["Status"] == "404 Not Found"
    assert "Error-Message" in body


# /build


@pytest.fixture
def build_daemon(make_memory_daemon, tmp_path):
    build_file = tmp_path / "build.json"
    daemon = make_memory_daemon(config={"build-file": str(build_file)})
    daemon.extra["build_file"] = build_file
    return daemon


@pytest_twisted.ensureDeferred
async def test_build_is_served_as_json(build_daemon):
    build_daemon.extra["build_file"].write_text('{"builddate": "123456789", "nested": {"a": [1, 2]}}')
    response = await build_daemon.get("/build")
    assert response.code == 200
    assert content_type(response) == "application/json"
    assert await json_of(response) == {"builddate": "123456789", "nested": {"a": [1, 2]}}
    # Byte for byte the file, as the original served it.
    assert await response.content() == b'{"builddate": "123456789", "nested": {"a": [1, 2]}}'


@pytest_twisted.ensureDeferred
async def test_missing_build_file_is_404(build_daemon):
    response = await build_daemon.get("/build")
    assert response.code == 404
    assert (await json_of(response))["Status"] == "404 Not Found"


@pytest.mark.parametrize("content", [b"{not json", b"", b"\xff\xfe\x00", b'{"a": 1} trailing'])
@pytest_twisted.ensureDeferred
async def test_unparsable_build_file_is_a_clear_500(build_daemon, content):
    build_daemon.extra["build_file"].write_bytes(content)
    response = await build_daemon.get("/build")
    assert response.code == 500
    raw = await response.content()
    assert b"Traceback" not in raw and b'File "' not in raw
    body = json.loads(raw)
    assert body["Status"] == "500 Internal Server Error"
    assert "build" in body["Error-Message"].lower()


# /health

SIZE = r"\d+(\.\d)?[KMGTPE]"


@pytest_twisted.ensureDeferred
async def test_health_has_the_documented_shape(memory_daemon):
    response = await memory_daemon.get("/health")
    assert response.code == 200
    assert content_type(response) == "application/json"
    assert response.headers.getRawHeaders("Cache-Control") == ["no-cache"]
    health = await json_of(response)
    assert set(health) == {"disk", "memory", "cpu", "certificate"}
    assert set(health["disk"]) == set(health["memory"]) == {"used", "total", "percentage"}
    assert set(health["cpu"]) == {"num", "load", "cpu5min", "cpu5minPercent"}
    assert re.fullmatch(SIZE, health["disk"]["used"])
    assert re.fullmatch(SIZE, health["disk"]["total"])
    assert re.fullmatch(r"\d+M", health["memory"]["used"])
    assert re.fullmatch(r"\d+M", health["memory"]["total"])
    for section in ("disk", "memory"):
        percentage = health[section]["percentage"]
        assert type(percentage) is int and 0 <= percentage <= 100
    assert type(health["cpu"]["num"]) is int and health["cpu"]["num"] == os.cpu_count()
    assert re.fullmatch(r"\d+\.\d\d, \d+\.\d\d, \d+\.\d\d", health["cpu"]["load"])
    cpu5min = health["cpu"]["cpu5min"]
    assert type(cpu5min) in (int, float) and cpu5min >= 0
    percent = health["cpu"]["cpu5minPercent"]
    assert type(percent) is int and 0 <= percent <= 100


@pytest_twisted.ensureDeferred
async def test_health_cpu5min_is_the_five_minute_load_in_cores(daemon, monkeypatch):
    # The original dashboard marks the CPU red at cpu5min >= cpu.num: the unit is cores.
    monkeypatch.setattr(information_module.os, "getloadavg", lambda: (0.5, 3.14159, 1.0))
    sampler_of(daemon).samples.extend([90.0])
    cpu = (await json_of(await daemon.get("/health")))["cpu"]
    assert cpu["cpu5min"] == 3.14
    assert cpu["load"] == "0.50, 3.14, 1.00"
    assert cpu["cpu5minPercent"] == 90


@pytest_twisted.ensureDeferred
async def test_health_figures_are_live(memory_daemon):
    health = await json_of(await memory_daemon.get("/health"))
    statvfs = os.statvfs("/")
    total = statvfs.f_blocks * statvfs.f_frsize
    assert health["disk"]["total"] == human_size(total)
    with open("/proc/meminfo") as f:
        mem_total_kib = int(f.readline().split()[1])
    assert health["memory"]["total"] == f"{round(mem_total_kib / 1024)}M"


def sampler_of(daemon) -> CpuSampler:
    return next(s for s in daemon.service if isinstance(s, CpuSampler))


@pytest_twisted.ensureDeferred
async def test_health_cpu5min_percent_comes_from_the_sampler(memory_daemon):
    sampler_of(memory_daemon).samples.extend([40.0, 60.0])
    health = await json_of(await memory_daemon.get("/health"))
    assert health["cpu"]["cpu5minPercent"] == 50


@pytest_twisted.ensureDeferred
async def test_health_needs_no_file(memory_daemon):
    """Health is measured when asked: the daemon neither needs nor reads a health file
    (the original appliance's scripts wrote one), so a stale one changes nothing."""
    assert not (etc(memory_daemon) / "health.json").exists()
    response = await memory_daemon.get("/health")
    assert response.code == 200
    assert set(await json_of(response)) == {"disk", "memory", "cpu", "certificate"}
    (etc(memory_daemon) / "health.json").write_text('{"disk": "stale", "stale": true}')
    health = await json_of(await memory_daemon.get("/health"))
    assert set(health) == {"disk", "memory", "cpu", "certificate"} and isinstance(health["disk"], dict)


# The CPU sampler


class FakeCpu:
    def __init__(self):
        self.value = 0.0
        self.reads = 0

    def __call__(self):
        self.reads += 1
        return self.value


def started_sampler():
    clock, cpu = Clock(), FakeCpu()
    sampler = CpuSampler(clock, read_percent=cpu)
    sampler.startService()
    return sampler, clock, cpu


def advance(clock, cpu, value, samples):
    cpu.value = value
    for _ in range(samples):
        clock.advance(10)


def test_sampler_reports_zero_before_any_sample():
    sampler, clock, cpu = started_sampler()
    assert sampler.average() == 0
    clock.advance(9.9)
    assert sampler.average() == 0


def test_sampler_samples_every_ten_seconds():
    sampler, clock, cpu = started_sampler()
    reads = cpu.reads
    advance(clock, cpu, 30.0, 6)
    assert cpu.reads == reads + 6
    assert sampler.average() == 30


def test_sampler_averages_the_samples_so_far():
    sampler, clock, cpu = started_sampler()
    advance(clock, cpu, 20.0, 1)
    advance(clock, cpu, 80.0, 3)
    assert sampler.average() == 65


def test_sampler_averages_only_the_last_five_minutes():
    sampler, clock, cpu = started_sampler()
    advance(clock, cpu, 100.0, 30)
    assert sampler.average() == 100
    advance(clock, cpu, 40.0, 15)
    assert sampler.average() == 70
    advance(clock, cpu, 40.0, 15)
    assert sampler.average() == 40


def test_sampler_rounds_to_an_integer():
    sampler, clock, cpu = started_sampler()
    advance(clock, cpu, 33.4, 3)
    assert sampler.average() == 33
    assert type(sampler.average()) is int


def test_sampler_stops_with_the_service():
    sampler, clock, cpu = started_sampler()
    advance(clock, cpu, 50.0, 2)
    sampler.stopService()
    reads = cpu.reads
    clock.advance(100)
    assert cpu.reads == reads
    assert clock.getDelayedCalls() == []


# human_size


@pytest.mark.parametrize(
    "size,expected",
    [
        (int(3.4 * GiB), "3.4G"),
        (234 * GiB, "234G"),
        (int(1.5 * 1024**4), "1.5T"),
        (10 * MiB, "10M"),
        (int(9.94 * 1024), "9.9K"),
        (1024, "1.0K"),
        (512, "512B"),
        (0, "0B"),
    ],
)
def test_human_size_like_df(size, expected):
    assert human_size(size) == expected


@pytest.mark.parametrize(
    "size,expected", [(260 * MiB, "260M"), (1000 * MiB, "1000M"), (int(259.6 * MiB), "260M"), (0, "0M")]
)
def test_human_size_in_megabytes_like_free(size, expected):
    assert human_size(size, "M") == expected


# /services


def write_hook(daemon, script: str):
    hook = daemon.admin_path / "bin" / "service-status"
    hook.write_text("#!/bin/sh\n" + script)
    hook.chmod(hook.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return hook


@pytest_twisted.ensureDeferred
async def test_services_without_configured_services_lists_the_daemon(memory_daemon):
    response = await memory_daemon.get("/services")
    assert response.code == 200
    assert await json_of(response) == {"services": [{"jidoteki-admin-api": "running"}]}


@pytest_twisted.ensureDeferred
async def test_services_asks_the_hook_in_configured_order(make_memory_daemon):
    daemon = make_memory_daemon(config={"services": ["openssh", "nginx", "app", "db"]})
    write_hook(daemon, 'case "$1" in openssh|app|jidoteki-admin-api) exit 0;; *) exit 3;; esac\n')
    response = await daemon.get("/services")
    assert await json_of(response) == {
        "services": [
            {"openssh": "running"},
            {"nginx": "not running"},
            {"app": "running"},
            {"db": "not running"},
            {"jidoteki-admin-api": "running"},
        ]
    }


@pytest_twisted.ensureDeferred
async def test_services_gives_the_hook_the_name_as_one_argument(make_memory_daemon, tmp_path):
    daemon = make_memory_daemon(config={"services": ["two words", "$(touch x)"]})
    record = tmp_path / "args"
    write_hook(daemon, f'printf "%s|" "$#" "$1" >> "{record}"\nexit 0\n')
    body = await json_of(await daemon.get("/services"))
    assert body["services"][:-1] == [{"two words": "running"}, {"$(touch x)": "running"}]
    assert sorted(record.read_text().split("|")[:-1]) == sorted(["1", "two words", "1", "$(touch x)",
                                                                 "1", "jidoteki-admin-api"])


@pytest_twisted.ensureDeferred
async def test_the_daemon_is_listed_once_and_last_as_its_own_status_says(make_memory_daemon):
    # As API.md's example shows it; asked like every other service, so an appliance whose
    # check says the daemon is not running (a stale pid file, say) is shown as it is.
    daemon = make_memory_daemon(config={"services": ["jidoteki-admin-api", "openssh"]})
    write_hook(daemon, "exit 1\n")
    body = await json_of(await daemon.get("/services"))
    assert body == {"services": [{"openssh": "not running"}, {"jidoteki-admin-api": "not running"}]}
    write_hook(daemon, '[ "$1" = jidoteki-admin-api ]\n')
    body = await json_of(await daemon.get("/services"))
    assert body == {"services": [{"openssh": "not running"}, {"jidoteki-admin-api": "running"}]}


@pytest_twisted.ensureDeferred
async def test_with_nothing_to_ask_the_daemon_is_running_it_is_answering(make_memory_daemon, monkeypatch):
    monkeypatch.setattr(services_module, "shutil", types.SimpleNamespace(which=lambda name: "/nonexistent"))
    daemon = make_memory_daemon(config={"services": ["openssh"], "init-directory": "/nonexistent"})
    body = await json_of(await daemon.get("/services"))
    assert body["services"][-1] == {"jidoteki-admin-api": "running"}  # systemctl is not asked about it


@pytest_twisted.ensureDeferred
async def test_without_hook_or_systemctl_services_are_not_running(make_memory_daemon, monkeypatch):
    monkeypatch.setattr(services_module, "shutil", types.SimpleNamespace(which=lambda name: None))
    daemon = make_memory_daemon(config={"services": ["openssh", "nginx"]})
    body = await json_of(await daemon.get("/services"))
    assert body == {
        "services": [{"openssh": "not running"}, {"nginx": "not running"}, {"jidoteki-admin-api": "running"}]
    }


@pytest_twisted.ensureDeferred
async def test_a_hook_that_is_not_executable_is_not_used(make_memory_daemon, monkeypatch):
    monkeypatch.setattr(services_module, "shutil", types.SimpleNamespace(which=lambda name: None))
    daemon = make_memory_daemon(config={"services": ["openssh"]})
    hook = write_hook(daemon, "exit 0\n")
    hook.chmod(0o644)
    body = await json_of(await daemon.get("/services"))
    assert body["services"][0] == {"openssh": "not running"}


@pytest_twisted.ensureDeferred
async def test_systemctl_is_asked_when_there_is_no_hook(make_memory_daemon, monkeypatch, tmp_path):
    fake = tmp_path / "systemctl"
    fake.write_text('#!/bin/sh\n[ "$1" = is-active ] && [ "$3" = openssh ] && exit 0\nexit 3\n')
    fake.chmod(0o755)
    monkeypatch.setattr(services_module, "shutil", types.SimpleNamespace(which=lambda name: str(fake)))
    daemon = make_memory_daemon(config={"services": ["openssh", "nginx"]})
    body = await json_of(await daemon.get("/services"))
    assert body["services"][:-1] == [{"openssh": "running"}, {"nginx": "not running"}]


@pytest_twisted.ensureDeferred
async def test_a_slow_hook_blocks_nobody(make_memory_daemon):
    daemon = make_memory_daemon(config={"services": ["slow"]})
    write_hook(daemon, "sleep 1\nexit 0\n")
    started = reactor.seconds()
    services = daemon.get("/services")
    health = await daemon.get("/health")
    assert health.code == 200 and reactor.seconds() - started < 0.8
    body = await json_of(await services)
    assert body["services"][0] == {"slow": "running"}


# /services on appliances without systemd: allservices.txt and init scripts


def init_scripts(tmp_path, scripts: dict[str, str]) -> dict:
    """An init.d directory of scripts and a services file naming them: the config keys."""
    init = tmp_path / "init.d"
    init.mkdir(exist_ok=True)
    for name, body in scripts.items():
        (init / name).write_text("#!/bin/sh\n" + body)
        (init / name).chmod(0o755)
    return {"services-file": str(tmp_path / "allservices.txt"), "init-directory": str(init)}


def fake_systemctl(monkeypatch, tmp_path, running: set[str]):
    fake = tmp_path / "systemctl"
    cases = "|".join(running) or "no-such-service"
    fake.write_text(f'#!/bin/sh\ncase "$3" in {cases}) exit 0;; esac\nexit 3\n')
    fake.chmod(0o755)
    monkeypatch.setattr(services_module, "shutil", types.SimpleNamespace(which=lambda name: str(fake)))


@pytest_twisted.ensureDeferred
async def test_services_file_names_are_asked_through_their_init_scripts(make_daemon, tmp_path, monkeypatch):
    fake_systemctl(monkeypatch, tmp_path, running=set())
    config = init_scripts(tmp_path, {
        "openssh": 'echo "openssh is running (pid 42)"\n',
        "nginx": 'echo "nginx is not running"\n',
        "db": 'echo "checking"; echo "database online" >&2; exit 3\n',  # the output decides
        "quiet": "exit 0\n",
        "jidoteki-admin-api": "echo offline\n",
    })
    (tmp_path / "allservices.txt").write_text(
        "# services of this appliance\nopenssh\nnginx db\n\nquiet jidoteki-admin-api\n")
    daemon = make_daemon(config={**config, "services": ["app"]})
    body = await json_of(await daemon.get("/services"))
    assert body == {"services": [
        {"app": "not running"},
        {"openssh": "running"},
        {"nginx": "not running"},
        {"db": "running"},
        {"quiet": "not running"},
        {"jidoteki-admin-api": "not running"},  # its init script says "offline"
    ]}


@pytest_twisted.ensureDeferred
async def test_init_scripts_are_asked_status(make_daemon, tmp_path):
    record = tmp_path / "args"
    config = init_scripts(tmp_path, {"openssh": f'echo "$#:$1" >> "{record}"\necho online\n'})
    (tmp_path / "allservices.txt").write_text("openssh\n")
    daemon = make_daemon(config=config)
    assert (await json_of(await daemon.get("/services")))["services"][0] == {"openssh": "running"}
    assert record.read_text() == "1:status\n"


@pytest_twisted.ensureDeferred
async def test_the_hook_comes_before_init_scripts(make_daemon, tmp_path):
    config = init_scripts(tmp_path, {"openssh": "echo online\n"})
    (tmp_path / "allservices.txt").write_text("openssh\n")
    daemon = make_daemon(config=config)
    write_hook(daemon, "exit 1\n")
    assert (await json_of(await daemon.get("/services")))["services"][0] == {"openssh": "not running"}


@pytest_twisted.ensureDeferred
async def test_init_scripts_come_before_systemctl(make_daemon, tmp_path, monkeypatch):
    fake_systemctl(monkeypatch, tmp_path, running={"nginx"})
    config = init_scripts(tmp_path, {"openssh": "echo 'openssh is running'\n", "nginx": "echo stopped\n"})
    (tmp_path / "allservices.txt").write_text("openssh nginx cron\n")
    daemon = make_daemon(config={**config, "services": ["cron"]})
    body = await json_of(await daemon.get("/services"))
    # cron has no init script: systemctl is asked, and says no.
    assert body["services"] == [{"cron": "not running"}, {"openssh": "running"}, {"nginx": "not running"},
                                {"jidoteki-admin-api": "running"}]


@pytest_twisted.ensureDeferred
async def test_names_are_never_paths_out_of_the_init_directory(make_daemon, tmp_path, monkeypatch):
    fake_systemctl(monkeypatch, tmp_path, running=set())
    ran = tmp_path / "ran"
    outside = tmp_path / "evil"
    outside.write_text(f'#!/bin/sh\ntouch "{ran}"\necho online\n')
    outside.chmod(0o755)
    config = init_scripts(tmp_path, {})
    (tmp_path / "allservices.txt").write_text("../evil\n..\n.\n")
    daemon = make_daemon(config=config)
    body = await json_of(await daemon.get("/services"))
    assert body["services"] == [{"../evil": "not running"}, {"..": "not running"}, {".": "not running"},
                                {"jidoteki-admin-api": "running"}]
    assert not ran.exists()


@pytest_twisted.ensureDeferred
async def test_a_missing_services_file_lists_the_configured_names(make_daemon, tmp_path, monkeypatch):
    fake_systemctl(monkeypatch, tmp_path, running={"openssh"})
    config = init_scripts(tmp_path, {})
    daemon = make_daemon(config={**config, "services": ["openssh"]})
    body = await json_of(await daemon.get("/services"))
    assert body["services"] == [{"openssh": "running"}, {"jidoteki-admin-api": "running"}]


@pytest_twisted.ensureDeferred
async def test_a_slow_init_script_blocks_nobody(make_daemon, tmp_path):
    config = init_scripts(tmp_path, {"slow": "sleep 1\necho online\n"})
    (tmp_path / "allservices.txt").write_text("slow\n")
    daemon = make_daemon(config=config)
    started = reactor.seconds()
    services = daemon.get("/services")
    health = await daemon.get("/health")
    assert health.code == 200 and reactor.seconds() - started < 0.8
    assert (await json_of(await services))["services"][0] == {"slow": "running"}
