"""Section 13, Cluster: settings posted through the real daemon, the cluster job as a real
child process on a temporary admin tree, the masked secret, the status and log, and every
kind of bad input refused with nothing changed."""

from __future__ import annotations

import json
import os
import stat

import pytest
import pytest_twisted

from conftest import json_of, wait_until

MASK = "********"
SECRET = "correct horse battery staple"
CLUSTER = {
    "name": "store",
    "node": "node1",
    "role": "primary",
    "peers": [{"name": "node2", "address": "10.0.0.2", "port": 7946},
              {"name": "node3", "address": "node3.example.com"}],
    "secret": SECRET,
}
# What bin/cluster.sh sees: its arguments, and etc/cluster.json as it stands when it runs.
RECORDING_HOOK = '#!/bin/sh\necho "args:$#" > "$0.ran"\ncat "$(dirname "$0")/../etc/cluster.json" >> "$0.ran"\n'


@pytest.fixture
def cluster_daemon(make_daemon):
    return make_daemon(config={"endpoints": ["cluster"]})


def hook(daemon, script: str = RECORDING_HOOK):
    path = daemon.admin_path / "bin" / "cluster.sh"
    path.write_text(script)
    path.chmod(0o755)
    return path


async def post(daemon, value):
    data = value if isinstance(value, bytes) else json.dumps(value).encode()
    return await daemon.post_form("/cluster", files={"settings": ("settings.json", data)})


async def finished(daemon) -> dict:
    assert await wait_until(lambda: not daemon.service.runner.running_in_group("cluster"), timeout=30)
    assert await wait_until(lambda: (daemon.admin_path / "etc" / "status_cluster.json").exists())
    body = await json_of(await daemon.get("/cluster"))
    assert body["status"] in ("success", "failed")
    return body


def stored(daemon) -> dict:
    return json.loads((daemon.admin_path / "etc" / "cluster.json").read_text())


def snapshot(daemon) -> dict:
    found = {}
    for directory, _dirs, files in os.walk(daemon.admin_path):
        for name in files:
            path = os.path.join(directory, name)
            if "/log/" in path and name.startswith("jidoteki"):
                continue
            with open(path, "rb") as f:
                found[os.path.relpath(path, daemon.admin_path)] = f.read()
    return found


async def refused(daemon, value, message: str) -> None:
    before = snapshot(daemon)
    response = await post(daemon, value)
    body = await json_of(response)
    assert response.code == 400, body
    assert message in body["Error-Message"], body
    assert snapshot(daemon) == before
    assert not daemon.service.runner.running_in_group("cluster")


@pytest_twisted.ensureDeferred
async def test_before_any_change_there_are_no_settings_status_or_log(cluster_daemon):
    response = await cluster_daemon.get("/cluster")
    assert response.code == 200
    assert await json_of(response) == {"cluster": None, "status": None, "log": None}
    assert (await cluster_daemon.get("/cluster/log")).code == 404


@pytest_twisted.ensureDeferred
async def test_settings_are_saved_as_a_secret_and_handed_to_cluster_sh(cluster_daemon):
    ran = hook(cluster_daemon).with_name("cluster.sh.ran")
    response = await post(cluster_daemon, {"cluster": CLUSTER})
    assert response.code == 202
    assert response.headers.getRawHeaders("Location") == ["/api/v1/admin/cluster"]
    body = await finished(cluster_daemon)
    assert body["status"] == "success", body
    assert stored(cluster_daemon) == {"cluster": CLUSTER}
    path = cluster_daemon.admin_path / "etc" / "cluster.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    lines = ran.read_text().splitlines()
    assert lines[0] == "args:0" and json.loads(lines[1]) == {"cluster": CLUSTER}
    assert body["cluster"] == {**CLUSTER, "secret": MASK}
    assert SECRET not in json.dumps(body)
    assert "Cluster settings saved and applied" in body["log"]
    assert len(body["log"].splitlines()) <= 10
    log = await cluster_daemon.get("/cluster/log")
    assert log.code == 200
    assert log.headers.getRawHeaders("Content-Type") == ["text/plain; charset=utf-8"]
    assert "Saving the cluster settings: cluster store, node node1 (primary), 2 peer(s)" in (await log.text())
    assert not (cluster_daemon.admin_path / "etc" / "jobs" / "cluster-settings.json").exists()


@pytest_twisted.ensureDeferred
async def test_without_cluster_sh_the_log_says_saved_but_not_applied(cluster_daemon):
    assert (await post(cluster_daemon, {"cluster": {**CLUSTER, "peers": []}})).code == 202
    body = await finished(cluster_daemon)
    assert body["status"] == "success"
    assert "saved but not applied" in body["log"]
    assert stored(cluster_daemon)["cluster"]["peers"] == []


@pytest_twisted.ensureDeferred
async def test_the_masked_secret_sent_back_keeps_the_stored_one(cluster_daemon):
    assert (await post(cluster_daemon, {"cluster": CLUSTER})).code == 202
    shown = (await finished(cluster_daemon))["cluster"]
    changed = {**shown, "role": "secondary", "peers": shown["peers"][:1]}
    assert (await post(cluster_daemon, {"cluster": changed})).code == 202
    assert (await finished(cluster_daemon))["status"] == "success"
    assert stored(cluster_daemon) == {"cluster": {**changed, "secret": SECRET}}
    assert (await post(cluster_daemon, {"cluster": {**changed, "secret": "another secret, long enough"}})).code == 202
    assert (await finished(cluster_daemon))["status"] == "success"
    assert stored(cluster_daemon)["cluster"]["secret"] == "another secret, long enough"


@pytest_twisted.ensureDeferred
async def test_the_mask_with_no_stored_secret_is_refused(cluster_daemon):
    await refused(cluster_daemon, {"cluster": {**CLUSTER, "secret": MASK}},
                  "option: secret. ******** keeps the stored secret, and none is stored")


@pytest_twisted.ensureDeferred
async def test_a_failing_cluster_sh_fails_the_job_and_get_shows_it(cluster_daemon):
    hook(cluster_daemon, "#!/bin/sh\necho peers unreachable\nexit 4\n")
    assert (await post(cluster_daemon, {"cluster": CLUSTER})).code == 202
    body = await finished(cluster_daemon)
    assert body["status"] == "failed"
    assert "peers unreachable" in body["log"]
    assert "bin/cluster.sh failed with exit status 4" in body["log"]


def peers(*items) -> dict:
    return {"cluster": {**CLUSTER, "peers": list(items)}}


@pytest.mark.parametrize("value, message", [
    (b"{not json", "The settings file is not valid JSON"),
    (b"", "The settings file is empty"),
    (b"[]", "The settings file must hold a JSON object, not an array"),
    (b"3.5", "The settings file must hold a JSON object, not a number"),
    (b"\xc3\x28", "The settings file is not UTF-8 text"),
    (json.dumps({"cluster": CLUSTER, "pad": "x" * 70_000}).encode(), "The settings file is too large"),
    ({"cluster": "store"}, 'The settings file must hold an object "cluster", not a string'),
    ({"cluster": CLUSTER, "storage": {}}, "Unknown option in the settings file: storage. Allowed: cluster"),
    ({"cluster": {**CLUSTER, "enabled": True}}, "Unknown option in cluster: enabled. Allowed: name, node, role"),
    ({"cluster": {k: v for k, v in CLUSTER.items() if k != "name"}}, "Missing or invalid string for option: name"),
    ({"cluster": {**CLUSTER, "name": ""}}, "Missing or invalid string for option: name"),
    ({"cluster": {**CLUSTER, "name": 7}}, "Missing or invalid string for option: name"),
    ({"cluster": {**CLUSTER, "name": "-store"}}, "Missing or invalid string for option: name. Allowed: 1 to 63"),
    ({"cluster": {**CLUSTER, "name": "store.example"}}, "Missing or invalid string for option: name"),
    ({"cluster": {**CLUSTER, "name": "störe"}}, "Missing or invalid string for option: name"),
    ({"cluster": {**CLUSTER, "node": "n" * 64}}, "Missing or invalid string for option: node"),
    ({"cluster": {**CLUSTER, "role": "leader"}}, "Missing or invalid string for option: role. Allowed: primary, secondary"),
    ({"cluster": {**CLUSTER, "role": None}}, "Missing or invalid string for option: role"),
    ({"cluster": {**CLUSTER, "secret": "too short"}}, "Missing or invalid string for option: secret. Allowed: 16 to 256"),
    ({"cluster": {**CLUSTER, "secret": "x" * 257}}, "option: secret"),
    ({"cluster": {**CLUSTER, "secret": 'a quote " inside it'}}, "option: secret"),
    ({"cluster": {**CLUSTER, "secret": "a back\\slash inside it"}}, "option: secret"),
    ({"cluster": {**CLUSTER, "secret": "a newline\ninside it"}}, "option: secret"),
    ({"cluster": {**CLUSTER, "secret": "nön-ascii secret value"}}, "option: secret"),
    ({"cluster": {**CLUSTER, "secret": 1234567890123456789}}, "option: secret"),
    ({"cluster": {**CLUSTER, "peers": "node2"}}, "Missing or invalid list for option: peers"),
    ({"cluster": {**CLUSTER, "peers": {"name": "node2"}}}, "Missing or invalid list for option: peers"),
    (peers("node2"), "Peer 1 must be an object with name, address and port, not a string"),
    (peers({"name": "node2"}), "Missing or invalid string for option: peer 1 address"),
    (peers({"address": "10.0.0.2"}), "Missing or invalid string for option: peer 1 name"),
    (peers({"name": "node2", "address": "10.0.0.2", "weight": 1}), "Unknown option in peer 1: weight"),
    (peers({"name": "node2", "address": "bad_host!"}), "option: peer 1 address. Allowed: a host name or an IP"),
    (peers({"name": "node2", "address": "10.0.0.2:80"}), "option: peer 1 address"),
    (peers({"name": "node2", "address": "10.0.0.2", "port": 0}), "option: peer 1 port"),
    (peers({"name": "node2", "address": "10.0.0.2", "port": "http"}), "option: peer 1 port"),
    (peers({"name": "node2", "address": "10.0.0.2", "port": True}), "option: peer 1 port"),
    (peers({"name": "node2", "address": "a.example"}, {"name": "NODE2", "address": "b.example"}),
     "Peer 2: the peer NODE2 is listed twice"),
    (peers({"name": "a", "address": "10.0.0.2", "port": 1}, {"name": "b", "address": "10.0.0.2", "port": "1"}),
     "Peer 2: the address 10.0.0.2 is listed twice"),
    (peers({"name": "a", "address": "2001:DB8::1"}, {"name": "b", "address": "2001:db8:0::1"}),
     "Peer 2: the address 2001:db8:0::1 is listed twice"),
    (peers({"name": "a", "address": "Node2.example."}, {"name": "b", "address": "node2.example"}),
     "Peer 2: the address node2.example is listed twice"),
    (peers({"name": "Node1", "address": "10.0.0.9"}), "Peer 1 is this node itself (Node1)"),
    (peers(*[{"name": f"n{i}", "address": f"10.0.1.{i}"} for i in range(65)]), "Too many peers: 65 (at most 64)"),
])
@pytest_twisted.ensureDeferred
async def test_bad_settings_are_refused_with_a_message_and_change_nothing(cluster_daemon, value, message):
    await refused(cluster_daemon, value, message)


@pytest_twisted.ensureDeferred
async def test_64_peers_with_the_same_address_on_other_ports_are_accepted(cluster_daemon):
    many = [{"name": f"n{i}", "address": "10.0.0.2", "port": 7000 + i} for i in range(64)]
    assert (await post(cluster_daemon, peers(*many))).code == 202
    assert (await finished(cluster_daemon))["status"] == "success"
    assert stored(cluster_daemon)["cluster"]["peers"] == many


@pytest_twisted.ensureDeferred
async def test_a_missing_settings_field_or_a_huge_body_is_refused(cluster_daemon):
    before = snapshot(cluster_daemon)
    response = await cluster_daemon.post_form("/cluster", files={"cluster": ("x.json", b"{}")})
    assert response.code == 400
    assert (await json_of(response))["Error-Message"] == "Missing required parameter: settings"
    response = await post(cluster_daemon, b"[" + b" " * (1024 * 1024 + 10) + b"]")
    assert response.code == 413
    assert snapshot(cluster_daemon) == before


@pytest_twisted.ensureDeferred
async def test_a_second_post_while_the_job_runs_is_refused(cluster_daemon):
    release = cluster_daemon.admin_path / "tmp" / "release"
    hook(cluster_daemon, f'#!/bin/sh\nfor i in $(seq 400); do [ -f "{release}" ] && exit 0; sleep 0.05; done\nexit 1\n')
    assert (await post(cluster_daemon, {"cluster": CLUSTER})).code == 202
    assert await wait_until(lambda: (cluster_daemon.admin_path / "etc" / "cluster.json").exists())
    status = await json_of(await cluster_daemon.get("/cluster"))
    assert status["status"] == "running"
    response = await post(cluster_daemon, {"cluster": {**CLUSTER, "role": "secondary"}})
    assert response.code == 400
    assert (await json_of(response))["Error-Message"] == "A cluster settings change is already running"
    release.write_text("")
    assert (await finished(cluster_daemon))["status"] == "success"
    assert stored(cluster_daemon) == {"cluster": CLUSTER}


@pytest_twisted.ensureDeferred
async def test_a_corrupt_cluster_json_is_a_500(cluster_daemon):
    (cluster_daemon.admin_path / "etc" / "cluster.json").write_text("{oops")
    response = await cluster_daemon.get("/cluster")
    assert response.code == 500
    assert (await json_of(response))["Error-Message"] == "cluster.json is not valid JSON"
    (cluster_daemon.admin_path / "etc" / "cluster.json").write_text("[]")
    assert (await cluster_daemon.get("/cluster")).code == 500
