"""Section 8, Network: GET and POST /settings through the real daemon, the settings job as a
real child process, appliance hooks as small shell scripts in the tree's bin/."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest
import pytest_twisted
from twisted.internet import reactor
from twisted.internet.task import deferLater

from conftest import json_of, wait_until
from jidoteki_admin.jobs.settings import NOT_CONFIRMED, SETTINGS

STATIC = {
    "network": {
        "interface": "eth0",
        "hostname": "test.host",
        "ip_address": "192.168.1.100",
        "netmask": "255.255.255.0",
        "gateway": "192.168.1.1",
        "dns1": "192.168.1.2",
        "dns2": "192.168.1.3",
        "ntpserver": "pool.ntp.org",
    },
    "app": {"name": "testapp"},
}
STATIC_CONF = """mode=static
interface=eth0
ip=192.168.1.100
subnet=255.255.255.0
router=192.168.1.1
dns="192.168.1.2 192.168.1.3"
hostname="test.host"
ntpserver="pool.ntp.org"
"""
DHCP = {"network": {"interface": "eth0", "hostname": "test.host", "ntpserver": "pool.ntp.org"},
        "app": {"name": "testapp"}}
DHCP_CONF = 'mode=dhcp\ninterface=eth0\nhostname="test.host"\nntpserver="pool.ntp.org"\n'
NTP_ALLOWED = "Missing or invalid string for option: ntpserver. Allowed: a host name or an IP address"


@pytest.fixture
def settings_daemon(make_daemon):
    return make_daemon(config={"endpoints": ["settings"]})


def etc(daemon):
    return daemon.admin_path / "etc"


def hook(daemon, script: str) -> None:
    """bin/network.sh: records its argument in log/network-calls, then runs ``script``."""
    path = daemon.admin_path / "bin" / "network.sh"
    calls = daemon.admin_path / "log" / "network-calls"
    path.write_text(f'#!/bin/sh\necho "$1" >> "{calls}"\necho "network.sh applying $1"\n{script}\n')
    path.chmod(0o755)


def hook_calls(daemon) -> list[str]:
    calls = daemon.admin_path / "log" / "network-calls"
    return calls.read_text().split() if calls.exists() else []


def post(daemon, document, filename: str = "settings.json"):
    data = document if isinstance(document, bytes) else json.dumps(document).encode()
    return daemon.post_form("/settings", files={"settings": (filename, data)})


def running(daemon) -> bool:
    return daemon.service.runner.is_running(SETTINGS)


async def finished(daemon, seconds: float = 30):
    assert await wait_until(lambda: not running(daemon), timeout=seconds), "the settings job did not finish"
    return daemon.service.runner.status(SETTINGS)


async def applied(daemon, document) -> object:
    response = await post(daemon, document)
    assert response.code == 202, await response.content()
    return await finished(daemon)


async def confirmed(daemon, document) -> object:
    """Apply with the administrator's dashboard polling GET /settings meanwhile."""
    response = await post(daemon, document)
    assert response.code == 202, await response.content()
    while running(daemon):
        assert (await daemon.get("/settings")).code in (200, 404)
        await deferLater(reactor, 0.2, lambda: None)
    return daemon.service.runner.status(SETTINGS)


def log_text(daemon) -> str:
    log = daemon.admin_path / "log" / "update_settings.log"
    return log.read_text() if log.exists() else ""


def snapshot(daemon) -> dict[str, bytes]:
    """Every file of etc/ and bin/ (the status files included: no job may have started)."""
    found = {}
    for folder in ("etc", "bin", "tmp"):
        for directory, _dirs, files in os.walk(daemon.admin_path / folder):
            for name in files:
                path = os.path.join(directory, name)
                with open(path, "rb") as f:
                    found[path] = f.read()
    return found


async def refused(daemon, document, message: str, exact: bool = True) -> None:
    """The document gets 400 with ``message``, and nothing on disk changes."""
    before = snapshot(daemon)
    response = await post(daemon, document)
    assert response.code == 400, (document, await response.content())
    said = (await json_of(response))["Error-Message"]
    assert said == message if exact else message in said, said
    assert not running(daemon)
    assert snapshot(daemon) == before


# Saving and applying.

@pytest_twisted.ensureDeferred
async def test_static_ipv4_settings_are_saved_in_the_originals_formats_and_applied(settings_daemon):
    daemon = settings_daemon
    hook(daemon, "")
    response = await post(daemon, STATIC)
    assert response.code == 202
    assert await response.content() == b'{"Status":"202 Accepted","Location":"/api/v1/admin/settings"}'
    assert response.headers.getRawHeaders("Location") == ["/api/v1/admin/settings"]
    status = await finished(daemon)
    assert status.status == "success", status
    network_json = (etc(daemon) / "network.json").read_text()
    assert network_json.startswith('{"mode": "static", ')
    assert json.loads(network_json) == {"mode": "static", **STATIC["network"]}
    assert json.loads((etc(daemon) / "app.json").read_text()) == {"name": "testapp"}
    assert (etc(daemon) / "network.conf").read_text() == STATIC_CONF
    assert hook_calls(daemon) == ["static"]
    assert "network.sh applying static" in log_text(daemon) and "Updating settings successful" in log_text(daemon)
    assert json.loads((etc(daemon) / "status_settings.json").read_text())["status"] == "success"
    shown = await json_of(await daemon.get("/settings"))
    assert shown == {"network": {"mode": "static", **STATIC["network"]}, "app": {"name": "testapp"}}
    assert oct(os.stat(etc(daemon) / "app.json").st_mode & 0o777) == oct(0o640)
    assert not (daemon.admin_path / "tmp" / "settings.json").exists()  # the handed-over document is gone


@pytest_twisted.ensureDeferred
async def test_static_ipv6_settings_write_subnet_ipv6(settings_daemon):
    daemon = settings_daemon
    document = {"network": {"interface": "ens3", "hostname": "v6.example.com", "ip_address": "2001:db8::10",
                            "netmask": "64", "gateway": "2001:db8::1", "dns1": "2001:db8::53",
                            "ntpserver": "[2001:db8::123]:123"}}
    assert (await applied(daemon, document)).status == "success"
    assert (etc(daemon) / "network.conf").read_text() == (
        'mode=static\ninterface=ens3\nip=2001:db8::10\nsubnet_ipv6=64\nrouter=2001:db8::1\n'
        'dns="2001:db8::53"\nhostname="v6.example.com"\nntpserver="[2001:db8::123]:123"\n')
    assert json.loads((etc(daemon) / "app.json").read_text()) == {}  # no app: an empty one
    assert "Settings saved but not applied: the appliance has no bin/network.sh" in log_text(daemon)


@pytest_twisted.ensureDeferred
async def test_dhcp_settings_and_empty_strings_count_as_absent(settings_daemon):
    daemon = settings_daemon
    hook(daemon, "")
    assert (await applied(daemon, DHCP)).status == "success"
    assert (etc(daemon) / "network.conf").read_text() == DHCP_CONF
    assert hook_calls(daemon) == ["dhcp"]
    # What the original's dashboard sends for a DHCP change: "" for every field left empty.
    dashboard = {"network": {"interface": "eth1", "hostname": "dash.example", "ip_address": "", "netmask": "",
                             "gateway": "", "dns1": "", "dns2": "", "ntpserver": ""}, "app": {}}
    assert (await applied(daemon, dashboard)).status == "success"
    assert (etc(daemon) / "network.conf").read_text() == 'mode=dhcp\ninterface=eth1\nhostname="dash.example"\n' \
                                                         'ntpserver=""\n'
    assert json.loads((etc(daemon) / "network.json").read_text()) == {"mode": "dhcp", **dashboard["network"]}
    assert hook_calls(daemon) == ["dhcp", "dhcp"]


@pytest_twisted.ensureDeferred
async def test_a_static_change_with_only_some_dns_servers(settings_daemon):
    daemon = settings_daemon
    document = json.loads(json.dumps(STATIC))
    document["network"].update(dns1="", dns2="9.9.9.9", mode="dhcp")  # a stale mode is recomputed
    assert (await applied(daemon, document)).status == "success"
    conf = (etc(daemon) / "network.conf").read_text()
    assert 'dns="9.9.9.9"\n' in conf and conf.startswith("mode=static\n")
    assert json.loads((etc(daemon) / "network.json").read_text())["mode"] == "static"


@pytest_twisted.ensureDeferred
async def test_unknown_network_keys_are_kept_but_never_written_to_network_conf(settings_daemon):
    daemon = settings_daemon
    document = {"network": {**DHCP["network"], "mtu": 1500, "vlan": "", "ipv6_enabled": False,
                            "domain": "corp.example", "note": None}, "app": {"deep": {"list": [1, 2]}}}
    assert (await applied(daemon, document)).status == "success"
    assert json.loads((etc(daemon) / "network.json").read_text()) == {"mode": "dhcp", **document["network"]}
    assert (etc(daemon) / "network.conf").read_text() == DHCP_CONF
    assert (await json_of(await daemon.get("/settings")))["app"] == {"deep": {"list": [1, 2]}}


@pytest_twisted.ensureDeferred
async def test_a_failing_hook_fails_the_job_and_leaves_the_previous_settings(settings_daemon):
    daemon = settings_daemon
    hook(daemon, "echo cannot bring eth0 up; exit 3")
    status = await applied(daemon, STATIC)
    assert status.status == "failed"
    assert status.error_message == "bin/network.sh failed with exit status 3; previous settings restored"
    assert "cannot bring eth0 up" in log_text(daemon)
    assert (etc(daemon) / "status_settings.txt").read_text() == "failed\n"
    # There were none: GET /settings must not show the values that failed as current.
    assert not (etc(daemon) / "network.json").exists() and not (etc(daemon) / "network.conf").exists()
    assert (await daemon.get("/settings")).code == 404


@pytest_twisted.ensureDeferred
async def test_a_second_post_while_the_job_runs_is_refused(settings_daemon):
    daemon = settings_daemon
    hook(daemon, "sleep 3")
    assert (await post(daemon, STATIC)).code == 202
    assert await wait_until(lambda: hook_calls(daemon) == ["static"])
    before = snapshot(daemon)
    again = await post(daemon, DHCP)
    assert again.code == 400
    assert (await json_of(again))["Error-Message"] == "A settings update is already running"
    assert snapshot(daemon) == before
    assert (await finished(daemon)).status == "success"
    assert (etc(daemon) / "network.conf").read_text() == STATIC_CONF


# GET.

@pytest_twisted.ensureDeferred
async def test_get_answers_404_naming_the_missing_file(settings_daemon):
    daemon = settings_daemon
    response = await daemon.get("/settings")
    assert response.code == 404 and (await json_of(response))["Error-Message"] == "network.json not found"
    (etc(daemon) / "network.json").write_text('{"mode":"dhcp","interface":"eth0","hostname":"a.b"}\n')
    response = await daemon.get("/settings")
    assert response.code == 404 and (await json_of(response))["Error-Message"] == "app.json not found"
    (etc(daemon) / "app.json").write_text("{}\n")
    response = await daemon.get("/settings")
    assert response.code == 200
    assert await json_of(response) == {"network": {"mode": "dhcp", "interface": "eth0", "hostname": "a.b"},
                                       "app": {}}
    (etc(daemon) / "app.json").write_text("[1]\n")
    assert (await daemon.get("/settings")).code == 500


@pytest_twisted.ensureDeferred
async def test_the_section_is_off_unless_enabled(daemon):
    assert (await daemon.get("/settings")).code == 404
    assert (await post(daemon, STATIC)).code == 404


# Refused input: 400 naming the problem, nothing changed.

BAD = [
    (b"{not json", "The settings file is not valid JSON: line 1 column 2: Expecting property name enclosed in "
                   "double quotes"),
    (b"[1, 2]", "The settings file must hold a JSON object, not an array"),
    (b"42", "The settings file must hold a JSON object, not a number"),
    (b"", "The settings file is empty"),
    (b'{"network": {"interface": "eth0"}, "network": {}}',
     "The settings file is not valid JSON: the key 'network' is given twice"),
    (b"\xff\xfe{}", "The settings file is not UTF-8 text (byte 0)"),
    (b"x" * (64 * 1024 + 1), "The settings file is too large: 65537 bytes (at most 65536)"),
    ({"network": DHCP["network"], "extra": 1}, "Unknown option in the settings file: extra. Allowed: network, app"),
    ({"app": {}}, "Missing or invalid object for option: network. Allowed: an object with interface, hostname "
                  "and the other network settings"),
    ({"network": [1]}, "Missing or invalid object for option: network. Allowed: an object with interface, "
                       "hostname and the other network settings"),
    ({"network": DHCP["network"], "app": []}, "Missing or invalid object for option: app. Allowed: an object "
                                              "(the application's own settings)"),
    ({"network": DHCP["network"], "app": {f"x{n}": "y" * 100 for n in range(400)}},
     "Missing or invalid object for option: app. Allowed: an object of at most 32768 bytes as JSON"),
    ({"network": DHCP["network"], "app": {"x": "y" * 33_000}},
     "The settings file is refused at app.x: a string of 33000 characters (at most 4096)"),
    ({"network": {"hostname": "test.host"}},
     "Missing or invalid string for option: interface. Allowed: 3 to 14 letters and digits, like eth0"),
    ({"network": {"interface": 5, "hostname": "test.host"}},
     "Missing or invalid string for option: interface. Allowed: 3 to 14 letters and digits, like eth0"),
    ({"network": {"interface": "eth0;reboot", "hostname": "test.host"}},
     "Missing or invalid string for option: interface. Allowed: 3 to 14 letters and digits, like eth0"),
    ({"network": {"interface": "eth0"}}, "Missing or invalid string for option: hostname. Allowed: a host name"),
    ({"network": {"interface": "eth0", "hostname": "hôst.example"}},
     "Missing or invalid string for option: hostname. Allowed: a host name"),
    ({"network": {"interface": "eth0", "hostname": "a" * 64 + ".example"}},
     "Missing or invalid string for option: hostname. Allowed: a host name"),
    ({"network": {"interface": "eth0", "hostname": "$(reboot)"}},
     "Missing or invalid string for option: hostname. Allowed: a host name"),
    ({"network": {**DHCP["network"], "ntpserver": "<script>alert('test')</script>"}}, NTP_ALLOWED),
    ({"network": {**DHCP["network"], "ntpserver": "pool.ntp.org:99999"}}, NTP_ALLOWED),
    ({"network": {**DHCP["network"], "ntpserver": "pool.ntp.org\nreboot"}}, NTP_ALLOWED),
    ({"network": {**DHCP["network"], "ntpserver": "`reboot`"}}, NTP_ALLOWED),
    ({"network": {**DHCP["network"], "ntpserver": ["pool.ntp.org"]}}, NTP_ALLOWED),
    ({"network": {**STATIC["network"], "ip_address": "192.168.1.300"}},
     "Missing or invalid string for option: ip_address. Allowed: an IPv4 address"),
    ({"network": {**STATIC["network"], "ip_address": "fe80::1%eth0"}},
     "Missing or invalid string for option: ip_address. Allowed: an IPv4 address"),
    ({"network": {**STATIC["network"], "netmask": "255.0.255.0"}},
     "Missing or invalid string for option: netmask. Allowed: a prefix length from 0 to 32 or a netmask"),
    ({"network": {**STATIC["network"], "netmask": "33"}},
     "Missing or invalid string for option: netmask. Allowed: a prefix length from 0 to 32"),
    ({"network": {**STATIC["network"], "ip_address": "2001:db8::5", "netmask": "255.255.255.0",
                  "gateway": "2001:db8::1"}},
     "Missing or invalid string for option: netmask. Allowed: a prefix length from 0 to 128 (this is an IPv6"),
    ({"network": {**STATIC["network"], "gateway": "2001:db8::1"}},
     "Missing or invalid string for option: gateway. Allowed: an IPv4 address, like ip_address"),
    ({"network": {**STATIC["network"], "dns2": "8.8.8.8 9.9.9.9"}},
     "Missing or invalid string for option: dns2. Allowed: an IPv4 address"),
    ({"network": {**STATIC["network"], "dns1": True}},
     "Missing or invalid string for option: dns1. Allowed: an IP address"),
    ({"network": {**DHCP["network"], "mode": "bridge"}},
     "Missing or invalid string for option: mode. Allowed: static or dhcp"),
    ({"network": {**DHCP["network"], "vlan": {"id": 5}}}, "Missing or invalid value for option: vlan. Allowed: a "
                                                          "number, true, false, null or a string"),
    ({"network": {**DHCP["network"], "vlan": [5]}}, "Missing or invalid value for option: vlan."),
    ({"network": {**DHCP["network"], "banner": "<b>hi</b>"}}, "Missing or invalid string for option: banner."),
    ({"network": {**DHCP["network"], "post-up": "x; reboot"}}, "Missing or invalid string for option: post-up."),
    ({"network": {**DHCP["network"], "bad key": 1}}, "Invalid option name in network: 'bad key'."),
]


@pytest.mark.parametrize("document, message", BAD, ids=range(len(BAD)))
@pytest_twisted.ensureDeferred
async def test_bad_input_is_refused_and_changes_nothing(settings_daemon, document, message):
    daemon = settings_daemon
    hook(daemon, "")
    (etc(daemon) / "network.json").write_text(json.dumps({"mode": "static", **STATIC["network"]}))
    (etc(daemon) / "app.json").write_text('{"name": "testapp"}')
    (etc(daemon) / "network.conf").write_text(STATIC_CONF)
    await refused(daemon, document, message, exact=False)
    assert hook_calls(daemon) == []


@pytest_twisted.ensureDeferred
async def test_the_script_regression_gets_400_and_changes_nothing(settings_daemon):
    daemon = settings_daemon
    document = {"network": {**DHCP["network"], "ntpserver": "<script>alert('test')</script>"}, "app": {}}
    await refused(daemon, document, NTP_ALLOWED + ", optionally followed by :port")
    assert not (etc(daemon) / "network.json").exists()


@pytest.mark.parametrize("missing, document", [
    ("netmask, gateway", {"ip_address": "192.168.1.100"}),
    ("ip_address", {"netmask": "24", "gateway": "192.168.1.1"}),
    ("ip_address, netmask", {"gateway": "192.168.1.1", "ip_address": ""}),
])
@pytest_twisted.ensureDeferred
async def test_partial_static_settings_name_what_is_missing(settings_daemon, missing, document):
    await refused(settings_daemon, {"network": {**DHCP["network"], **document}},
                  f"Missing option for static network settings: {missing}. Allowed: ip_address, netmask and "
                  "gateway all given (static), or none of them (DHCP)")


@pytest_twisted.ensureDeferred
async def test_a_missing_or_textual_settings_field_is_refused(settings_daemon):
    daemon = settings_daemon
    response = await daemon.post_form("/settings", {"other": "x"})
    assert response.code == 400
    assert (await json_of(response))["Error-Message"] == "Missing required parameter: settings"
    response = await daemon.post_form("/settings", {"settings": json.dumps(STATIC)})
    assert response.code == 400
    assert "must be a file upload" in (await json_of(response))["Error-Message"]
    assert not (etc(daemon) / "network.json").exists()


@pytest_twisted.ensureDeferred
async def test_a_huge_upload_is_refused_before_it_is_read(settings_daemon):
    daemon = settings_daemon
    response = await post(daemon, b"{" + b" " * (2 * 1024 * 1024) + b"}")
    assert response.code == 413
    assert not (etc(daemon) / "network.json").exists()


# Values that pass are safe in a shell.

@pytest_twisted.ensureDeferred
async def test_the_written_network_conf_round_trips_through_a_shell(settings_daemon, tmp_path):
    daemon = settings_daemon
    document = {"network": {"interface": "wlan0", "hostname": "a-1.b-2.example.", "ip_address": "10.0.0.2",
                            "netmask": "8", "gateway": "10.0.0.1", "dns1": "::1", "dns2": "10.0.0.53",
                            "ntpserver": "[::ffff:10.0.0.9]:123"}}
    assert (await applied(daemon, document)).status == "success"
    shell = tmp_path / "shell"
    shell.mkdir()
    values = source(etc(daemon) / "network.conf", shell)
    assert values == {"mode": "static", "interface": "wlan0", "ip": "10.0.0.2", "subnet": "8",
                      "router": "10.0.0.1", "dns": "::1 10.0.0.53", "hostname": "a-1.b-2.example.",
                      "ntpserver": "[::ffff:10.0.0.9]:123"}
    assert list(shell.iterdir()) == []  # nothing ran


NAMES = ("mode", "interface", "ip", "subnet", "subnet_ipv6", "router", "dns", "hostname", "ntpserver")


def source(conf, cwd) -> dict[str, str]:
    """What a shell that sources ``conf`` (from ``cwd``, as ./network.conf would be) sees,
    by name (set ones only)."""
    printed = "; ".join(f'[ -n "${{{n}+x}}" ] && printf "%s=%s\\0" {n} "${n}"' for n in NAMES)
    done = subprocess.run(["sh", "-c", f'. "$1"; {printed}; true', "sh", str(conf)], cwd=cwd,
                          capture_output=True, check=True)
    assert done.stderr == b""
    return dict(item.split("=", 1) for item in done.stdout.decode().split("\0") if item)


# Safe apply: a change nobody confirms is undone.

@pytest.fixture
def confirming_daemon(make_daemon):
    return make_daemon(config={"endpoints": ["settings"], "settings-confirm-seconds": 2})


@pytest_twisted.ensureDeferred
async def test_a_confirmed_change_stays(confirming_daemon):
    daemon = confirming_daemon
    hook(daemon, "")
    assert (await confirmed(daemon, DHCP)).status == "success"
    status = await confirmed(daemon, STATIC)
    assert status.status == "success", status
    assert (etc(daemon) / "network.conf").read_text() == STATIC_CONF
    assert hook_calls(daemon) == ["dhcp", "static"]
    assert "The new settings are confirmed" in log_text(daemon)


@pytest_twisted.ensureDeferred
async def test_an_unconfirmed_change_is_undone(confirming_daemon):
    daemon = confirming_daemon
    hook(daemon, "")
    assert (await confirmed(daemon, DHCP)).status == "success"
    before = {name: (etc(daemon) / name).read_bytes() for name in ("network.json", "app.json", "network.conf")}
    started = time.monotonic()
    assert (await post(daemon, {**STATIC, "app": {"name": "other"}})).code == 202
    status = await finished(daemon)  # nobody asks anything meanwhile
    assert time.monotonic() - started >= 2
    assert status.status == "failed" and status.error_message == NOT_CONFIRMED
    assert {name: (etc(daemon) / name).read_bytes() for name in before} == before
    assert hook_calls(daemon) == ["dhcp", "static", "dhcp"]
    assert (await json_of(await daemon.get("/settings")))["app"] == {"name": "testapp"}


@pytest_twisted.ensureDeferred
async def test_an_unconfirmed_first_change_removes_what_it_wrote(confirming_daemon):
    daemon = confirming_daemon
    hook(daemon, "")
    status = await applied(daemon, STATIC)
    assert status.status == "failed" and status.error_message == NOT_CONFIRMED
    assert not any((etc(daemon) / name).exists() for name in ("network.json", "app.json", "network.conf"))
    assert hook_calls(daemon) == ["static"]  # no previous mode to go back to
    assert "There were no previous network settings to apply again" in log_text(daemon)


async def post_explicit(daemon, document):
    response = await daemon.post_form("/settings", fields={"confirm": "explicit"},
                                      files={"settings": ("settings.json", json.dumps(document).encode())})
    assert response.code == 202, await response.content()


async def waits(daemon) -> dict:
    """GET /settings/confirm once the job waits (the requests asking it confirm nothing)."""
    for _ in range(200):
        answer = await json_of(await daemon.get("/settings/confirm"))
        if answer["waiting"]:
            return answer
        await deferLater(reactor, 0.05, lambda: None)
    raise AssertionError("the settings job never waited for a confirmation")


@pytest.fixture
def patient_daemon(make_daemon):
    return make_daemon(config={"endpoints": ["settings"], "settings-confirm-seconds": 6})


@pytest_twisted.ensureDeferred
async def test_an_explicit_change_is_kept_by_keep_and_by_no_other_request(patient_daemon):
    """The dashboard's countdown: its polling does not confirm, its "Keep" does."""
    daemon = patient_daemon
    hook(daemon, "")
    assert (await json_of(await daemon.get("/settings/confirm"))) == {
        "waiting": False, "explicit": False, "seconds": 6, "deadline": None, "seconds-left": None}
    refused = await daemon.post_form("/settings/confirm", fields={"action": "KEEP"})
    assert refused.code == 400 and (await json_of(refused))["Error-Message"] == "No network change is waiting to " \
        "be confirmed"
    await post_explicit(daemon, DHCP)
    answer = await waits(daemon)
    assert answer["explicit"] is True and 0 < answer["seconds-left"] <= 6 and answer["deadline"].endswith("Z")
    for _ in range(5):  # a page polling meanwhile confirms nothing
        assert (await daemon.get("/settings")).code in (200, 404)
        await deferLater(reactor, 0.2, lambda: None)
    assert running(daemon) and "The new settings are confirmed" not in log_text(daemon)
    kept = await daemon.post_form("/settings/confirm", fields={"action": "keep"})
    assert kept.code == 200
    status = await finished(daemon, 5)
    assert status.status == "success" and "The new settings are confirmed" in log_text(daemon)
    assert not (await json_of(await daemon.get("/settings/confirm")))["waiting"]


@pytest_twisted.ensureDeferred
async def test_undo_puts_the_previous_settings_back_at_once(patient_daemon):
    daemon = patient_daemon
    hook(daemon, "")
    assert (await confirmed(daemon, DHCP)).status == "success"  # the default: any request confirms
    before = {name: (etc(daemon) / name).read_bytes() for name in ("network.json", "app.json", "network.conf")}
    await post_explicit(daemon, STATIC)
    await waits(daemon)
    started = time.monotonic()
    assert (await daemon.post_form("/settings/confirm", fields={"action": "UNDO"})).code == 200
    status = await finished(daemon, 5)
    assert time.monotonic() - started < 5
    assert status.status == "failed" and status.error_message.endswith("previous settings restored")
    assert {name: (etc(daemon) / name).read_bytes() for name in before} == before
    assert hook_calls(daemon) == ["dhcp", "static", "dhcp"]


@pytest_twisted.ensureDeferred
async def test_without_a_hook_there_is_nothing_to_confirm(confirming_daemon):
    daemon = confirming_daemon
    started = time.monotonic()
    assert (await applied(daemon, STATIC)).status == "success"
    assert time.monotonic() - started < 2
    assert (etc(daemon) / "network.conf").read_text() == STATIC_CONF


# With "jobs": "appliance": the appliance's own update_settings.sh does the job.

@pytest_twisted.ensureDeferred
async def test_the_appliances_own_scripts_get_the_files_and_command_the_original_gave_them(make_daemon, tmp_path):
    locks = tmp_path / "locks"
    locks.mkdir()
    daemon = make_daemon(config={"endpoints": ["settings"], "jobs": "appliance", "appliance-lock-dir": str(locks)})
    tree = daemon.admin_path
    wrapper = tree / "bin" / "wrapper.sh"
    # What the original's wrapper.sh and update_settings.sh do, in short.
    wrapper.write_text(f"""#!/bin/sh
echo "args=$* command=$SSH_ORIGINAL_COMMAND" > {tree}/log/wrapper.calls
cd {tree}/home/sftp/uploads && mv -f app.json network.json network.conf {tree}/etc/
printf '{{"status":"success","percentage":100}}' > {tree}/etc/status_settings.json
""")
    wrapper.chmod(0o755)
    assert (await post(daemon, STATIC)).code == 202
    assert (await finished(daemon)).status == "success"
    assert (tree / "log" / "wrapper.calls").read_text() == "args=static command=settings\n"
    assert (etc(daemon) / "network.conf").read_text() == STATIC_CONF
    assert json.loads((etc(daemon) / "network.json").read_text()) == {"mode": "static", **STATIC["network"]}
    assert json.loads((etc(daemon) / "app.json").read_text()) == STATIC["app"]
    assert not (tree / "tmp" / "settings.json").exists()


@pytest_twisted.ensureDeferred
async def test_persisted_files_that_are_links_stay_links(settings_daemon, tmp_path):
    daemon = settings_daemon
    mount = tmp_path / "mount"
    mount.mkdir()
    for name in ("network.json", "app.json", "network.conf"):
        (mount / name).write_text("{}\n")
        (mount / name).chmod(0o600)
        (etc(daemon) / name).symlink_to(mount / name)
    assert (await applied(daemon, DHCP)).status == "success"
    for name in ("network.json", "app.json", "network.conf"):
        assert (etc(daemon) / name).is_symlink()
        assert os.stat(mount / name).st_mode & 0o777 == 0o600  # the mode it had
    assert (mount / "network.conf").read_text() == DHCP_CONF


@pytest_twisted.ensureDeferred
async def test_a_daemon_stopped_during_the_wait_puts_the_previous_settings_back(make_daemon):
    daemon = make_daemon(config={"endpoints": ["settings"], "settings-confirm-seconds": 30})
    hook(daemon, "")
    (etc(daemon) / "network.conf").write_text(DHCP_CONF)
    assert (await post(daemon, STATIC)).code == 202
    assert await wait_until(lambda: "Waiting 30 seconds" in log_text(daemon))
    started = time.monotonic()
    await daemon.service.stopService()
    assert time.monotonic() - started < 10  # restored well within the grace before SIGKILL
    assert (etc(daemon) / "network.conf").read_text() == DHCP_CONF
    assert not (etc(daemon) / "network.json").exists()
    assert hook_calls(daemon) == ["static", "dhcp"]
    assert daemon.service.runner.status(SETTINGS).status == "failed"


# The job program run by hand (as root it must write and remove nothing it was not meant to).

def run_job(tmp_path, *args: str) -> subprocess.CompletedProcess:
    tree = tmp_path / "tree"
    for sub in ("etc", "log", "tmp", "bin"):
        (tree / sub).mkdir(parents=True, exist_ok=True)
    return subprocess.run([sys.executable, "-m", SETTINGS.program, "--admin-path", str(tree), *args],
                          capture_output=True, text=True, check=False)


def test_the_job_writes_no_file_but_one_named_network_conf(tmp_path):
    settings = tmp_path / "mine.json"
    settings.write_text(json.dumps(DHCP))
    victim = tmp_path / "passwd"
    victim.write_text("root:x:0:0\n")
    done = run_job(tmp_path, "--settings", str(settings), "--network-conf", str(victim))
    assert done.returncode == 1
    assert "not an absolute path to a file named network.conf" in done.stdout
    assert victim.read_text() == "root:x:0:0\n"
    assert not (tmp_path / "tree" / "etc" / "network.json").exists()


def test_the_job_run_by_hand_keeps_the_document_it_was_given(tmp_path):
    settings = tmp_path / "mine.json"
    settings.write_text(json.dumps(DHCP))
    conf = tmp_path / "tree" / "etc" / "network.conf"
    done = run_job(tmp_path, "--settings", str(settings), "--network-conf", str(conf))
    assert done.returncode == 0, done.stdout + done.stderr
    assert settings.exists() and conf.read_text() == DHCP_CONF
    assert "Settings saved but not applied" in done.stdout
    settings.write_text('{"network": {"interface": "eth0", "hostname": "$(reboot)"}}')
    done = run_job(tmp_path, "--settings", str(settings), "--network-conf", str(conf))
    assert done.returncode == 1 and "Missing or invalid string for option: hostname" in done.stdout
    assert conf.read_text() == DHCP_CONF


@pytest_twisted.ensureDeferred
async def test_new_settings_files_get_the_admin_group(make_daemon):
    if os.geteuid() != 0:
        pytest.skip("giving a file another group needs root")
    daemon = make_daemon(config={"endpoints": ["settings"], "admin-group": 65534})
    assert (await applied(daemon, DHCP)).status == "success"
    for name in ("network.json", "app.json", "network.conf"):
        st = os.stat(etc(daemon) / name)
        assert (st.st_gid, st.st_mode & 0o777) == (65534, 0o640), name


@pytest_twisted.ensureDeferred
async def test_a_hook_that_cannot_put_the_previous_settings_back_says_so(confirming_daemon):
    daemon = confirming_daemon
    (etc(daemon) / "network.conf").write_text(DHCP_CONF)
    hook(daemon, '[ "$1" = static ] || exit 4')
    status = await applied(daemon, STATIC)
    assert status.status == "failed"
    assert status.error_message == f"{NOT_CONFIRMED}, but applying them failed: bin/network.sh failed with exit " \
                                   "status 4"
    assert (etc(daemon) / "network.conf").read_text() == DHCP_CONF


def test_a_file_that_cannot_be_written_leaves_the_previous_settings_whole(tmp_path):
    settings = tmp_path / "mine.json"
    settings.write_text(json.dumps(STATIC))
    etc_dir = tmp_path / "tree" / "etc"
    etc_dir.mkdir(parents=True)
    (etc_dir / "network.json").write_text('{"mode": "dhcp"}\n')
    done = run_job(tmp_path, "--settings", str(settings), "--network-conf", str(tmp_path / "gone" / "network.conf"))
    assert done.returncode == 1 and "Cannot save the settings" in done.stdout
    assert (etc_dir / "network.json").read_text() == '{"mode": "dhcp"}\n'
    assert not (etc_dir / "app.json").exists()


@pytest_twisted.ensureDeferred
async def test_the_section_is_in_the_openapi_document_and_endpoints_when_enabled(settings_daemon):
    from openapi_spec_validator import validate as validate_openapi

    daemon = settings_daemon
    response = await daemon.client.get(daemon.base + "/docs/openapi.json")
    document = await json_of(response)
    validate_openapi(document)
    item = document["paths"]["/api/v1/admin/settings"]
    assert set(item) == {"get", "post"}
    form = item["post"]["requestBody"]["content"]["multipart/form-data"]["schema"]
    assert form["required"] == ["settings"] and form["properties"]["settings"].get("contentMediaType")
    assert "/api/v1/admin/settings" in (await json_of(await daemon.get("/endpoints")))["endpoints"]
