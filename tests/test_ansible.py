"""The Ansible collection (ansible/): built with ansible-galaxy, its modules run by
ansible-playbook against real daemons on 127.0.0.1 as inventory hosts, and against an
appliance that never answers; its documentation and metadata checked by ansible-test's
sanity tests that run offline, and by the tool's own validate-modules."""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import sys
import time
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
    """Daemons (or a URL, for an appliance that never answers) as hosts of "appliances"."""
    hosts = {}
    for name, daemon in daemons.items():
        url = daemon if isinstance(daemon, str) else daemon.base
        pin = "00" * 32 if isinstance(daemon, str) else certificate_fingerprint(
            daemon.service.tree.certificate.read_bytes())
        hosts[name] = {
            "appliance_url": url,
            "appliance_token": "yourtoken" if isinstance(daemon, str) else daemon.token,
            "appliance_fingerprint": pin,
            "ansible_connection": "local",
            "ansible_python_interpreter": sys.executable,
        }
        if isinstance(daemon, str):
            hosts[name]["appliance_tls_timeout"] = 1
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


def playbook(path: Path, tasks: str, preamble: str = "") -> Path:
    path.write_text(f"""---
- hosts: appliances
  gather_facts: false
{preamble}  vars:
    connection_args: &connection
      url: "{{{{ appliance_url }}}}"
      token: "{{{{ appliance_token }}}}"
      fingerprint: "{{{{ appliance_fingerprint }}}}"
  tasks:
{tasks}
""")
    return path


def audit_failures(daemon) -> list[str]:
    """The failed sign-ins the daemon's audit trail holds."""
    audit = daemon.admin_path / "log" / "jidoteki-audit.log"
    return [line for line in audit.read_text().splitlines() if '"403' in line] if audit.exists() else []


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
    dest, shared = tmp_path / "site-1.tar", tmp_path / "site-1-shared.tar"
    book = playbook(tmp_path / "play.yml", f"""
    - jidoteki.admin.info:
        <<: *connection
      register: facts
    - ansible.builtin.assert:
        that: ["facts.version == '7.0.0'", "'/api/v1/admin/backup' in facts.endpoints", "not facts.changed",
               "facts.fingerprint == appliance_fingerprint", "facts.jobs | map(attribute='name') | list | length > 3"]
    - jidoteki.admin.backup:
        <<: *connection
        dest: "{dest}"
    - jidoteki.admin.backup:
        <<: *connection
        dest: "{shared}"
        mode: "0640"
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
    assert stat.S_IMODE(dest.stat().st_mode) == 0o600 and stat.S_IMODE(shared.stat().st_mode) == 0o640
    assert "yourtoken" not in output and "rotated-token" not in output
    assert audit_failures(daemon) == []  # the rotation signed in with the token in use


@pytest_twisted.ensureDeferred
async def test_check_mode_changes_nothing_and_signs_in_once(make_daemon, keys, tmp_path, collections):
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
      register: token
    - jidoteki.admin.reboot:
        <<: *connection
      register: reboot
    - ansible.builtin.assert:
        that: ["would.changed", "would.msg == 'would update 1.0.0 to 1.1.0'", "token.changed",
               "reboot.msg == 'would reboot'"]
""")
    code, output = await run("ansible-playbook", "--check", "-i",
                             str(inventory(tmp_path / "inventory.json", {"site-1": daemon})), str(book),
                             env=environment(collections, tmp_path))
    assert code == 0, output
    assert (daemon.admin_path / "etc" / "version.txt").read_text().strip() == "1.0.0"
    assert daemon.service.tree.token_file.read_text().strip() == "yourtoken"
    assert audit_failures(daemon) == []


@pytest_twisted.ensureDeferred
async def test_a_host_that_never_answers_fails_within_its_timeout_and_stops_the_batch(
        make_daemon, keys, black_hole, tmp_path, collections):
    daemon = make_daemon(subdir="one")
    install_keys(daemon.admin_path, keys, "1.0.0")
    package = build(tmp_path, keys, "1.1.0")
    named = package.with_name("software_package-1.1.0.enc")
    shutil.move(package, named)
    hosts = inventory(tmp_path / "inventory.json", {"site-1": daemon, "hung": black_hole})
    begun = time.monotonic()
    code, output = await run("ansible-playbook", "-i", str(hosts), str(ROOT / "ansible" / "playbooks" / "update.yml"),
                             "-e", f"package={named}", env=environment(collections, tmp_path))
    assert code != 0 and time.monotonic() - begun < 60, output
    assert re.search(r'fatal: \[hung -> localhost\]: FAILED! => .*"failure": "unreachable"', output), output
    assert "no TLS handshake with" in output and "within 1 s" in output
    assert (daemon.admin_path / "etc" / "version.txt").read_text().strip() == "1.0.0"  # the play stopped


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
async def test_certs_module_signs_in_first_swaps_once_then_finds_the_certificate_presented(
        make_daemon, tmp_path, collections):
    from test_certs import issue

    root = issue("Fleet Root CA", ca=True)
    leaf = issue("site1.example.test", root)
    (tmp_path / "site.crt").write_bytes(leaf.pem)
    (tmp_path / "site.key").write_bytes(leaf.key_pem)
    (tmp_path / "ca.crt").write_bytes(root.pem)
    new_fingerprint = certificate_fingerprint(leaf.pem)
    daemon = make_daemon(config={"endpoints": ["certs"]}, subdir="one")
    files = f"""public: "{tmp_path / 'site.crt'}"
        private: "{tmp_path / 'site.key'}\""""
    book = playbook(tmp_path / "play.yml", f"""
    - jidoteki.admin.certs:
        <<: *connection
        token: wrong-token
        {files}
      register: wrong_token
      ignore_errors: true
    - jidoteki.admin.certs:
        <<: *connection
        fingerprint: "{'00' * 32}"
        {files}
      register: zero_pin
      ignore_errors: true
    - ansible.builtin.assert:
        that: ["wrong_token.failed", "wrong_token.failure == 'refused'", "wrong_token.status == 403",
               "zero_pin.failed", "zero_pin.failure == 'untrusted'", "zero_pin.presented == appliance_fingerprint"]
    - jidoteki.admin.certs:
        <<: *connection
        {files}
        ca_certificate: "{tmp_path / 'ca.crt'}"
      register: first
    - jidoteki.admin.certs:
        url: "{{{{ appliance_url }}}}"
        token: "{{{{ appliance_token }}}}"
        fingerprint: "{new_fingerprint}"
        {files}
      register: second
    - ansible.builtin.assert:
        that: ["first.changed", "first.fingerprint == '{new_fingerprint}'", "not second.changed",
               "second.fingerprint == '{new_fingerprint}'"]
""")
    code, output = await run("ansible-playbook", "-i", str(inventory(tmp_path / "inventory.json", {"site-1": daemon})),
                             str(book), env=environment(collections, tmp_path))
    assert code == 0, output
    assert daemon.service.tls.served().subject == "CN=site1.example.test"
    assert certificate_fingerprint((daemon.admin_path / "etc" / "ssl" / "cert.pem").read_bytes()) == new_fingerprint


@pytest_twisted.ensureDeferred
async def test_reboot_license_restore_storage_and_cluster_through_module_defaults_and_the_environment(
        make_daemon, tmp_path, collections):
    """The modules added for the sections the collection lacked, set up once for the play
    with module_defaults for the action group, and the URL and token from the environment."""
    from test_license import issue as issue_license
    from test_storage import options_file

    license_keys = tmp_path / "license-keys"
    from jidoteki_admin import vendor

    assert vendor.main(["license-keygen", "--out", str(license_keys / "ours")]) == 0
    licence = tmp_path / "licenses"
    licence.mkdir()
    license_file = tmp_path / "site.asc"
    license_file.write_bytes(issue_license(license_keys, licence))
    data = tmp_path / "data"
    (data / "app").mkdir(parents=True)
    (data / "app" / "db").write_bytes(b"the data")
    daemon = make_daemon(config={"endpoints": ["backup", "license", "storage", "cluster"], "backup-root": str(data),
                                 "storage-options-file": options_file(tmp_path, {"options": ["local", "iscsi"]})},
                         subdir="one")
    (daemon.admin_path / "etc" / "backup.txt").write_text("app\n")
    (daemon.admin_path / "etc" / "license.pub").write_bytes((license_keys / "ours" / "license.pub").read_bytes())
    archive = tmp_path / "backup.tar"
    storage = """storage:
          type: iscsi
          target: iqn.2016-01.com.example:storage.lun1
          ip: 192.168.1.100
          username: user
          password: a-password"""
    cluster = """name: store
        node: node1
        role: primary
        peers: [{name: node2, address: 10.0.0.2, port: 7946}]
        secret: correct horse battery staple"""
    book = playbook(tmp_path / "play.yml", f"""
    - jidoteki.admin.reboot:
      register: reboot
      ignore_errors: true
    - ansible.builtin.assert:
        that: ["reboot.failed", "reboot.failure == 'job_failed'", "'No reboot command configured' in reboot.msg"]
    - jidoteki.admin.license:
        license: "{license_file}"
      register: first_license
    - jidoteki.admin.license:
        license: "{license_file}"
      register: second_license
    - jidoteki.admin.backup:
        dest: "{archive}"
    - jidoteki.admin.restore:
        archive: "{archive}"
      register: restored
    - jidoteki.admin.storage:
        {storage}
      register: first_storage
    - jidoteki.admin.storage:
        {storage}
      register: second_storage
    - jidoteki.admin.cluster:
        {cluster}
      register: first_cluster
    - jidoteki.admin.cluster:
        {cluster}
      register: second_cluster
    - ansible.builtin.assert:
        that: ["first_license.changed", "not second_license.changed", "second_license.details.users == 20",
               "restored.changed", "first_storage.changed", "not second_storage.changed",
               "second_storage.storage.password == '********'", "first_cluster.changed",
               "not second_cluster.changed", "second_cluster.cluster.peers[0].port == 7946"]
""", preamble="""  module_defaults:
    group/jidoteki.admin.appliance:
      fingerprint: "{{ appliance_fingerprint }}"
      tls_timeout: 5
""")
    env = {**environment(collections, tmp_path), "JIDOTEKI_ADMIN_URL": daemon.base, "JIDOTEKI_ADMIN_TOKEN": "yourtoken"}
    (data / "app" / "db").write_bytes(b"the data")
    code, output = await run("ansible-playbook", "-i", str(inventory(tmp_path / "inventory.json", {"site-1": daemon})),
                             str(book), env=env)
    assert code == 0, output
    assert json.loads((daemon.admin_path / "etc" / "storage.json").read_text())["storage"]["password"] == "a-password"
    assert json.loads((daemon.admin_path / "etc" / "cluster.json").read_text())["cluster"]["node"] == "node1"
    assert "a-password" not in output and "correct horse" not in output
    assert (data / "app" / "db").read_bytes() == b"the data"


# The collection's documentation and metadata


def collection_copy(tmp_path: Path) -> Path:
    """The collection where ansible-test looks for it: ansible_collections/NAMESPACE/NAME."""
    collection = tmp_path / "ansible_collections" / "jidoteki" / "admin"
    shutil.copytree(ROOT / "ansible", collection)
    return collection


def test_ansible_test_sanity_runs_offline(tmp_path):
    """``ansible-test sanity`` on the collection, every one of its tests that runs without
    installing anything: the others need packages ansible-test installs into virtual
    environments of its own, bootstrapping pip with a script from its own server, which a
    machine offline cannot reach. Those are checked in the next test, with the packages of
    this environment."""
    import subprocess

    import ansible_test

    collection = collection_copy(tmp_path)
    env = {**os.environ, "HOME": str(tmp_path / "home")}
    listed = subprocess.run([str(BIN / "ansible-test"), "sanity", "--list-tests"], cwd=collection,
                            capture_output=True, text=True, env=env, timeout=120)
    requirements = Path(ansible_test.__file__).parent / "_data" / "requirements"
    tests = listed.stdout.split()
    needing = [t for t in tests if (requirements / f"sanity.{t}.txt").exists()]
    assert {"compile", "line-endings", "shebang", "action-plugin-docs", "ignores"} <= set(tests) - set(needing)
    skips = [arg for name in needing for arg in ("--skip-test", name)]
    done = subprocess.run([str(BIN / "ansible-test"), "sanity", "--python", f"{sys.version_info[0]}.{sys.version_info[1]}",
                           "--color", "no", *skips], cwd=collection, capture_output=True, text=True, env=env,
                          timeout=600)
    output = done.stdout + done.stderr
    errors = [line for line in output.splitlines() if line.startswith("ERROR")]
    assert done.returncode == 0, "\n".join(errors) or output[-3000:]
    ran = set(re.findall(r'Running sanity test "([^"]+)"', output))
    assert ran == set(tests) - set(needing), output


def test_validate_modules_runtime_metadata_pep8_yamllint_and_ansible_doc_with_the_packages_at_hand(tmp_path):
    """The sanity tests that need packages, run as ansible-test runs them but with this
    environment's packages: its own validate-modules (documentation against argument specs,
    attributes, action groups), runtime-metadata and yamllint scripts, pycodestyle with its
    settings (pep8), and ansible-doc on every module, which must say nothing on stderr (the
    ansible-doc test). Not run: pylint, import and changelog."""
    import subprocess

    import ansible_test
    import yaml

    collection = collection_copy(tmp_path)
    sanity = Path(ansible_test.__file__).parent / "_util" / "controller" / "sanity"
    env = {**os.environ, "ANSIBLE_COLLECTIONS_PATH": str(tmp_path), "PYTHONUTF8": "1",
           "PYTHONPATH": os.pathsep.join([str(sanity / "validate-modules"), str(ROOT)])}
    modules = sorted(p.stem for p in (collection / "plugins" / "modules").glob("*.py"))
    version = yaml.safe_load((collection / "galaxy.yml").read_text())["version"]
    checked = subprocess.run([sys.executable, str(sanity / "validate-modules" / "validate.py"), "--format", "json",
                              "--arg-spec", "--collection", "ansible_collections/jidoteki/admin", "--collection-version",
                              version, *[f"plugins/modules/{m}.py" for m in modules]],
                             cwd=collection, capture_output=True, text=True, env=env, timeout=300)
    assert checked.returncode in (0, 3) and not checked.stderr, checked.stderr
    ignored = {line.split()[0] + " " + line.split()[1] for line in
               (collection / "tests" / "sanity" / "ignore-2.19.txt").read_text().splitlines()}
    found = [f"{path} validate-modules:{problem['code']} {problem['msg']}"
             for path, report in json.loads(checked.stdout).items()
             for problem in report["errors"] + report["warnings"]
             if f"{path} validate-modules:{problem['code']}" not in ignored]
    assert found == []
    metadata = subprocess.run([sys.executable, str(sanity / "code-smell" / "runtime-metadata.py")], input="meta/runtime.yml",
                              cwd=collection, capture_output=True, text=True, env=env, timeout=120)
    assert metadata.returncode == 0 and metadata.stdout == metadata.stderr == "", metadata.stdout + metadata.stderr
    ignore = sorted(line for line in (sanity / "pep8" / "current-ignore.txt").read_text().splitlines()
                    if line.strip() and not line.startswith("#"))
    python_files = sorted(str(p.relative_to(collection)) for p in (collection / "plugins").rglob("*.py"))
    styled = subprocess.run([sys.executable, "-m", "pycodestyle", "--max-line-length", "160", "--config", "/dev/null",
                             "--ignore", ",".join(ignore), *python_files], cwd=collection, capture_output=True,
                            text=True, timeout=120)
    assert styled.returncode == 0, styled.stdout + styled.stderr
    yaml_files = sorted(str(p.relative_to(collection)) for p in collection.rglob("*.y*ml"))
    plugin_files = [f for f in python_files if "/module_utils/" not in f and not f.endswith("__init__.py")]
    linted = subprocess.run([sys.executable, str(sanity / "yamllint" / "yamllinter.py")],
                            input="\n".join(yaml_files + plugin_files), cwd=collection, capture_output=True, text=True,
                            env=env, timeout=120)
    assert linted.returncode == 0 and json.loads(linted.stdout)["messages"] == [], linted.stdout + linted.stderr
    runtime = yaml.safe_load((collection / "meta" / "runtime.yml").read_text())
    assert sorted(runtime["action_groups"]["appliance"]) == modules
    documented = subprocess.run([str(BIN / "ansible-doc"), "--json", *[f"jidoteki.admin.{m}" for m in modules]],
                                capture_output=True, text=True, env=env, timeout=120)
    assert documented.returncode == 0 and "WARNING" not in documented.stderr.replace("locale", ""), documented.stderr
    for name, doc in json.loads(documented.stdout).items():
        assert doc["doc"]["attributes"]["check_mode"]["support"] in ("full", "partial"), name
        assert doc["doc"]["attributes"]["action_group"]["membership"] == ["jidoteki.admin.appliance"], name
        assert doc["doc"]["seealso"], name
        assert isinstance(yaml.safe_load(doc["examples"]), list) and isinstance(doc["return"], dict), name
    changelog = yaml.safe_load((collection / "changelogs" / "changelog.yaml").read_text())
    assert version in changelog["releases"]
    assert f'<a id="v{version.replace(".", "-")}"></a>' in (collection / "CHANGELOG.md").read_text()
    assert yaml.safe_load((collection / "meta" / "execution-environment.yml").read_text())["dependencies"]["python"] \
        == "requirements.txt"


@pytest_twisted.ensureDeferred
async def test_update_knows_a_package_by_its_contents_not_its_name(make_daemon, keys, tmp_path, collections):
    """software_package-1.enc holds 2.0.0: the appliance's check says so, and it installs;
    a manifest says what a package is without sending it; one that lies is refused."""
    import subprocess

    daemon = make_daemon(subdir="one")
    install_keys(daemon.admin_path, keys, "1.0.0")
    misleading = tmp_path / "software_package-1.enc"
    shutil.move(build(tmp_path, keys, "2.0.0"), misleading)
    book = playbook(tmp_path / "play.yml", f"""
    - jidoteki.admin.update:
        <<: *connection
        package: "{misleading}"
      register: first
    - jidoteki.admin.update:
        <<: *connection
        package: "{misleading}"
      register: again
    - ansible.builtin.assert:
        that: ["first.changed", "first.version == '2.0.0'", "first.check.installable",
               "not again.changed", "again.version == '2.0.0'"]
""")
    hosts = inventory(tmp_path / "inventory.json", {"site-1": daemon})
    code, output = await run("ansible-playbook", "-i", str(hosts), str(book), env=environment(collections, tmp_path))
    assert code == 0, output
    assert (daemon.admin_path / "etc" / "version.txt").read_text().strip() == "2.0.0"

    # With a manifest (and the vendor's key), check mode asks the appliance nothing of the package.
    shipped = tmp_path / "software_package-3.0.0.enc"
    shutil.move(build(tmp_path, keys, "3.0.0"), shipped)
    done = subprocess.run([sys.executable, "-m", "jidoteki_admin.vendor", "manifest", str(shipped), "--version",
                           "3.0.0", "--signing-key", str(keys["vendor"])], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0, done.stderr
    checks = daemon.admin_path / "log" / "update-check.log"
    before = checks.read_text()
    book = playbook(tmp_path / "manifest.yml", f"""
    - jidoteki.admin.update:
        <<: *connection
        package: "{shipped}"
        manifest_public_key: "{keys['pub']}"
      register: would
    - ansible.builtin.assert:
        that: ["would.changed", "would.msg == 'would update 2.0.0 to 3.0.0'", "would.check is not defined"]
""")
    code, output = await run("ansible-playbook", "--check", "-i", str(hosts), str(book),
                             env=environment(collections, tmp_path))
    assert code == 0, output
    assert checks.read_text() == before  # no check ran: nothing was uploaded

    # A manifest that is not the package's, or not signed by the vendor: refused, nothing sent.
    manifest = shipped.with_name(shipped.name + ".manifest.json")
    manifest.write_text(manifest.read_text().replace('"3.0.0"', '"9.9.9"'))
    code, output = await run("ansible-playbook", "--check", "-i", str(hosts), str(book),
                             env=environment(collections, tmp_path))
    assert code != 0 and "is not the signature of" in output, output
