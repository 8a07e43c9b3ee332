"""The Ansible collection (ansible/): built with ansible-galaxy, its modules run by
ansible-playbook against two real daemons on 127.0.0.1 as two inventory hosts."""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

import pytest
import pytest_twisted
from twisted.internet.utils import getProcessOutputAndValue

from jidoteki_admin.client import certificate_fingerprint

from test_updates import build, install_keys

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


async def run(*args: str, env: dict | None = None, cwd: Path | None = None) -> tuple[int, str]:
    out, err, code = await getProcessOutputAndValue(
        str(BIN / args[0]), list(args[1:]), env={**os.environ, **(env or {})}, path=str(cwd or ROOT))
    return code, out.decode() + err.decode()


@pytest.fixture(scope="module")
def collections(tmp_path_factory):
    """The collection as a user installs it: built into a tarball, then installed."""
    import subprocess

    work = tmp_path_factory.mktemp("ansible")
    built = subprocess.run([str(BIN / "ansible-galaxy"), "collection", "build", str(ROOT / "ansible"),
                            "--output-path", str(work)], capture_output=True, text=True, timeout=120)
    assert built.returncode == 0, built.stdout + built.stderr
    tarball = next(work.glob("jidoteki-admin-*.tar.gz"))
    installed = subprocess.run([str(BIN / "ansible-galaxy"), "collection", "install", str(tarball),
                                "-p", str(work / "collections")], capture_output=True, text=True, timeout=120)
    assert installed.returncode == 0, installed.stdout + installed.stderr
    return work / "collections"


def inventory(path: Path, daemons: dict) -> Path:
    hosts = {}
    for name, daemon in daemons.items():
        hosts[name] = {
            "appliance_url": daemon.base,
            "appliance_token": daemon.token,
            "appliance_fingerprint": certificate_fingerprint(daemon.service.tree.certificate.read_bytes()),
            "ansible_connection": "local",
            "ansible_python_interpreter": sys.executable,
        }
    path.write_text(json.dumps({"appliances": {"hosts": hosts}}))
    return path


def environment(collections: Path, tmp_path: Path) -> dict:
    """For ansible-playbook, whose modules import the client library of this tree (not
    whichever copy the environment installed)."""
    return {"PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
            "ANSIBLE_COLLECTIONS_PATH": str(collections), "ANSIBLE_LOCAL_TEMP": str(tmp_path / "ansible-tmp"),
            "ANSIBLE_HOME": str(tmp_path / "ansible-home"), "ANSIBLE_NOCOLOR": "1",
            "ANSIBLE_PYTHON_INTERPRETER": sys.executable, "ANSIBLE_HOST_KEY_CHECKING": "False",
            "ANSIBLE_STDOUT_CALLBACK": "default"}


def recap(output: str, host: str) -> dict:
    line = next(line for line in output.splitlines() if line.startswith(host + " ") and "ok=" in line)
    return {k: int(v) for k, v in (pair.split("=") for pair in line.split(":", 1)[1].split())}


@pytest_twisted.ensureDeferred
async def test_update_playbook_updates_both_then_changes_nothing(make_daemon, keys, tmp_path, collections):
    daemons = {"site-1": make_daemon(subdir="one"), "site-2": make_daemon(subdir="two")}
    for daemon in daemons.values():
        install_keys(daemon.admin_path, keys, "1.0.0")
    package = build(tmp_path, keys, "1.1.0")
    named = package.with_name("software_package-1.1.0.enc")
    shutil.move(package, named)
    env = environment(collections, tmp_path)
    hosts = inventory(tmp_path / "inventory.json", daemons)
    command = ("ansible-playbook", "-i", str(hosts), str(ROOT / "ansible" / "playbooks" / "update.yml"),
               "-e", f"package={named}")
    code, output = await run(*command, env=env)
    assert code == 0, output
    for name, daemon in daemons.items():
        assert (daemon.admin_path / "etc" / "version.txt").read_text().strip() == "1.1.0"
        assert recap(output, name)["changed"] == 1, output
        assert f"{name}: updated 1.0.0 to 1.1.0 (now 1.1.0)" in output
    code, output = await run(*command, env=env)
    assert code == 0, output
    for name in daemons:
        assert recap(output, name)["changed"] == 0, output
        assert "1.1.0 is installed, which is the package's version: nothing to do" in output


@pytest_twisted.ensureDeferred
async def test_a_failed_update_stops_the_play(make_daemon, keys, tmp_path, collections):
    daemons = {"site-1": make_daemon(subdir="one"), "site-2": make_daemon(subdir="two")}
    install_keys(daemons["site-1"].admin_path, keys, "1.0.0")
    install_keys(daemons["site-2"].admin_path, keys, "1.0.0")
    package = build(tmp_path, keys, "1.1.0", update_sh="#!/bin/sh\necho broken >&2\nexit 3\n")
    named = package.with_name("software_package-1.1.0.enc")
    shutil.move(package, named)
    code, output = await run("ansible-playbook", "-i", str(inventory(tmp_path / "inv.json", daemons)),
                             str(ROOT / "ansible" / "playbooks" / "update.yml"), "-e", f"package={named}", "-e",
                             "batch=1", env=environment(collections, tmp_path))
    assert code != 0
    assert "E1002" in output, output
    assert (daemons["site-2"].admin_path / "etc" / "version.txt").read_text().strip() == "1.0.0"
    assert "site-2" not in [line.split()[0] for line in output.splitlines() if "ok=" in line and "changed=1" in line]


def playbook(path: Path, tasks: str) -> Path:
    path.write_text(f"""---
- hosts: appliances
  gather_facts: false
  vars:
    connection_args: &connection
      url: "{{{{ appliance_url }}}}"
      token: "{{{{ appliance_token }}}}"
      fingerprint: "{{{{ appliance_fingerprint }}}}"
  tasks:
{tasks}
""")
    return path


@pytest_twisted.ensureDeferred
async def test_info_token_and_backup_modules(make_daemon, tmp_path, collections):
    data = tmp_path / "data"
    (data / "app").mkdir(parents=True)
    (data / "app" / "db").write_bytes(os.urandom(50_000))
    daemon = make_daemon(config={"endpoints": ["backup"], "backup-root": str(data)}, subdir="one")
    (daemon.admin_path / "etc" / "backup.txt").write_text("app\n")
    (daemon.admin_path / "etc" / "version.txt").write_text("7.0.0\n")
    env = environment(collections, tmp_path)
    hosts = inventory(tmp_path / "inventory.json", {"site-1": daemon})
    dest = tmp_path / "site-1.tar"
    book = playbook(tmp_path / "play.yml", f"""
    - jidoteki.admin.info:
        <<: *connection
      register: facts
    - ansible.builtin.assert:
        that: ["facts.version == '7.0.0'", "'/api/v1/admin/backup' in facts.endpoints", "not facts.changed"]
    - jidoteki.admin.backup:
        <<: *connection
        dest: "{dest}"
    - jidoteki.admin.token:
        <<: *connection
        new_token: rotated-token
      register: rotated
    - jidoteki.admin.token:
        url: "{{{{ appliance_url }}}}"
        fingerprint: "{{{{ appliance_fingerprint }}}}"
        token: rotated-token
        new_token: rotated-token
      register: again
    - ansible.builtin.assert:
        that: ["rotated.changed", "not again.changed"]
""")
    code, output = await run("ansible-playbook", "-i", str(hosts), str(book), env=env)
    assert code == 0, output
    assert daemon.service.tree.token_file.read_text().strip() == "rotated-token"
    assert dest.stat().st_size > 50_000
    assert "yourtoken" not in output and "rotated-token" not in output


@pytest_twisted.ensureDeferred
async def test_check_mode_changes_nothing(make_daemon, keys, tmp_path, collections):
    daemon = make_daemon(subdir="one")
    install_keys(daemon.admin_path, keys, "1.0.0")
    package = build(tmp_path, keys, "1.1.0")
    named = package.with_name("software_package-1.1.0.enc")
    shutil.move(package, named)
    book = playbook(tmp_path / "play.yml", f"""
    - jidoteki.admin.update:
        <<: *connection
        package: "{named}"
      register: would
    - jidoteki.admin.token:
        <<: *connection
        new_token: other-token
    - ansible.builtin.assert:
        that: ["would.changed", "would.msg == 'would update 1.0.0 to 1.1.0'"]
""")
    code, output = await run("ansible-playbook", "--check", "-i",
                             str(inventory(tmp_path / "inventory.json", {"site-1": daemon})), str(book),
                             env=environment(collections, tmp_path))
    assert code == 0, output
    assert (daemon.admin_path / "etc" / "version.txt").read_text().strip() == "1.0.0"
    assert daemon.service.tree.token_file.read_text().strip() == "yourtoken"


def test_ansible_test_sanity(tmp_path):
    """``ansible-test sanity`` on the collection, as a collection's CI runs it.

    ansible-test bootstraps pip into each test's virtual environment with a get-pip.py it
    downloads from its own server; where only the package index is reachable, a stand-in
    (tests/ansible/get_pip.py) takes its place in ansible-test's cache, in a HOME of the
    test's own.
    """
    import re
    import subprocess

    import ansible_test

    requirements = Path(ansible_test.__file__).parent / "_internal" / "python_requirements.py"
    home = tmp_path / "home"
    cache = home / ".ansible" / "test" / "cache"
    cache.mkdir(parents=True)
    for version in set(re.findall(r"pip='([0-9.]+)'", requirements.read_text())):
        shutil.copy(ROOT / "tests" / "ansible" / "get_pip.py", cache / f"get_pip_{version.replace('.', '_')}.py")
    collection = tmp_path / "ansible_collections" / "jidoteki" / "admin"
    shutil.copytree(ROOT / "ansible", collection)
    done = subprocess.run([str(BIN / "ansible-test"), "sanity", "--python", f"{sys.version_info[0]}.{sys.version_info[1]}",
                           "--requirements", "--color", "no"], cwd=collection, capture_output=True, text=True,
                          env={**os.environ, "HOME": str(home)}, timeout=1200)
    errors = [line for line in (done.stdout + done.stderr).splitlines() if line.startswith("ERROR")]
    assert done.returncode == 0, "\n".join(errors) or done.stdout[-3000:] + done.stderr[-3000:]


@pytest_twisted.ensureDeferred
async def test_settings_module_posts_once_then_changes_nothing(make_daemon, tmp_path, collections):
    daemon = make_daemon(config={"endpoints": ["settings"]}, subdir="one")
    book = playbook(tmp_path / "play.yml", """
    - jidoteki.admin.settings:
        <<: *connection
        network:
          interface: eth0
          hostname: site1.example.com
          ip_address: 192.168.1.100
          netmask: 255.255.255.0
          gateway: 192.168.1.1
          dns1: 192.168.1.2
          ntpserver: ""
        app:
          name: testapp
      register: first
    - jidoteki.admin.settings:
        <<: *connection
        network:
          interface: eth0
          hostname: site1.example.com
          ip_address: 192.168.1.100
          netmask: 255.255.255.0
          gateway: 192.168.1.1
          dns1: 192.168.1.2
        app:
          name: testapp
      register: second
    - ansible.builtin.assert:
        that: ["first.changed", "not second.changed", "second.settings.network.mode == 'static'"]
""")
    code, output = await run("ansible-playbook", "--diff", "-i",
                             str(inventory(tmp_path / "inventory.json", {"site-1": daemon})), str(book),
                             env=environment(collections, tmp_path))
    assert code == 0, output
    network = json.loads((daemon.admin_path / "etc" / "network.json").read_text())
    assert network["ip_address"] == "192.168.1.100" and network["mode"] == "static"
    assert '"hostname": "site1.example.com"' in output  # the diff shows the change


@pytest_twisted.ensureDeferred
async def test_certs_module_swaps_once_then_finds_the_certificate_presented(make_daemon, tmp_path, collections):
    from test_certs import issue

    root = issue("Fleet Root CA", ca=True)
    leaf = issue("site1.example.test", root)
    (tmp_path / "site.crt").write_bytes(leaf.pem)
    (tmp_path / "site.key").write_bytes(leaf.key_pem)
    (tmp_path / "ca.crt").write_bytes(root.pem)
    new_fingerprint = certificate_fingerprint(leaf.pem)
    daemon = make_daemon(config={"endpoints": ["certs"]}, subdir="one")
    book = playbook(tmp_path / "play.yml", f"""
    - jidoteki.admin.certs:
        <<: *connection
        public: "{tmp_path / 'site.crt'}"
        private: "{tmp_path / 'site.key'}"
        ca_certificate: "{tmp_path / 'ca.crt'}"
      register: first
    - jidoteki.admin.certs:
        url: "{{{{ appliance_url }}}}"
        token: "{{{{ appliance_token }}}}"
        fingerprint: "{new_fingerprint}"
        public: "{tmp_path / 'site.crt'}"
        private: "{tmp_path / 'site.key'}"
      register: second
    - ansible.builtin.assert:
        that: ["first.changed", "not second.changed", "second.fingerprint == '{new_fingerprint}'"]
""")
    code, output = await run("ansible-playbook", "-i", str(inventory(tmp_path / "inventory.json", {"site-1": daemon})),
                             str(book), env=environment(collections, tmp_path))
    assert code == 0, output
    assert daemon.service.tls.served().subject == "CN=site1.example.test"
    assert certificate_fingerprint((daemon.admin_path / "etc" / "ssl" / "cert.pem").read_bytes()) == new_fingerprint
