"""Section 11, Storage: settings posted through the real daemon, the storage job as a real
child process on a temporary admin tree, storage.conf sourced by sh, the masked password,
the options file in both forms, and every kind of bad input refused with nothing changed."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys

import pytest
import pytest_twisted

from conftest import json_of, wait_until

MASK = "********"
ALL_TYPES = ["local", "nfs", "nbd", "iscsi", "aoe"]
EXAMPLES = {
    "local": {"type": "local"},
    "nfs": {"type": "nfs", "mount_options": "noacl,sync", "ip": "192.168.1.100", "share": "/nfs/storage"},
    "aoe": {"type": "aoe", "device": "e0.1"},
    "iscsi": {"type": "iscsi", "target": "iqn.2016-01.com.example:storage.lun1", "ip": "192.168.1.100",
              "username": "user", "password": "pass"},
    "nbd": {"type": "nbd", "export_name": "otherexport", "ip": "192.168.1.100", "port": "1043"},
}
# What bin/storage.sh sees: its arguments, and storage.conf as it stands when it runs.
RECORDING_HOOK = '#!/bin/sh\necho "args:$#" > "$0.ran"\ncat "$(dirname "$0")/../etc/storage.conf" >> "$0.ran"\n'


def options_file(tmp_path, value) -> str:
    path = tmp_path / "storage-options.json"
    path.write_text(json.dumps(value))
    return str(path)


@pytest.fixture
def storage_daemon(make_daemon, tmp_path):
    """A daemon serving /storage, whose options file is in the appliances' object form."""
    return make_daemon(config={"endpoints": ["storage"],
                               "storage-options-file": options_file(tmp_path, {"options": ALL_TYPES})})


def hook(daemon, script: str = RECORDING_HOOK):
    path = daemon.admin_path / "bin" / "storage.sh"
    path.write_text(script)
    path.chmod(0o755)
    return path


def settings(value) -> dict:
    data = value if isinstance(value, bytes) else json.dumps(value).encode()
    return {"settings": ("settings.json", data)}


async def post(daemon, value):
    return await daemon.post_form("/storage", files=settings(value))


def job_status(daemon) -> str | None:
    path = daemon.admin_path / "etc" / "status_storage.json"
    return json.loads(path.read_text())["status"] if path.exists() else None


async def finished(daemon) -> str:
    assert await wait_until(lambda: job_status(daemon) not in (None, "running") and not
                            daemon.service.runner.running_in_group("storage"), timeout=30)
    return job_status(daemon)


def stored(daemon) -> dict:
    return json.loads((daemon.admin_path / "etc" / "storage.json").read_text())


def conf(daemon) -> str:
    return (daemon.admin_path / "etc" / "storage.conf").read_text()


def log(daemon) -> str:
    return (daemon.admin_path / "log" / "update_storage.log").read_text()


def sourced(path, keys) -> dict:
    """The variables sh gets from sourcing the file: what bin/storage.sh sees."""
    script = '. "$1"; shift; for k in "$@"; do eval "printf \'%s\\0\' \\"\\$$k\\""; done'
    out = subprocess.run(["sh", "-c", script, "sh", str(path), *keys], capture_output=True, check=True,
                         cwd=path.parent).stdout
    return dict(zip(keys, out.decode().split("\0")[:-1]))


def snapshot(daemon) -> dict:
    """Every file of the admin tree but the daemon's own logs, with its bytes."""
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
    assert response.headers.getRawHeaders("Error-Message")[0]
    assert snapshot(daemon) == before
    assert not daemon.service.runner.running_in_group("storage")


# Every type, end to end.

@pytest.mark.parametrize("kind", ALL_TYPES)
@pytest_twisted.ensureDeferred
async def test_each_storage_type_is_saved_written_for_the_shell_and_handed_to_storage_sh(storage_daemon, kind):
    ran = hook(storage_daemon).with_name("storage.sh.ran")
    response = await post(storage_daemon, {"storage": EXAMPLES[kind]})
    assert response.code == 202
    assert response.headers.getRawHeaders("Location") == ["/api/v1/admin/storage"]
    assert await json_of(response) == {"Status": "202 Accepted", "Location": "/api/v1/admin/storage"}
    assert await finished(storage_daemon) == "success", log(storage_daemon)
    assert stored(storage_daemon) == {"storage": EXAMPLES[kind]}
    lines = conf(storage_daemon).splitlines()
    assert lines[0] == f'type="{kind}"'
    assert lines == [f'{key}="{value}"' for key, value in EXAMPLES[kind].items()]
    assert sourced(storage_daemon.admin_path / "etc" / "storage.conf", list(EXAMPLES[kind])) == EXAMPLES[kind]
    assert ran.read_text().splitlines() == ["args:0", *lines]  # no arguments; storage.conf already written
    assert "applied after a reboot" in log(storage_daemon)
    assert not (storage_daemon.admin_path / "etc" / "jobs" / "storage-settings.json").exists()

    answer = await storage_daemon.get("/storage")
    assert answer.code == 200
    expected = {**EXAMPLES[kind], **({"password": MASK} if kind == "iscsi" else {})}
    assert await json_of(answer) == {"storage": expected, "options": ALL_TYPES}


@pytest_twisted.ensureDeferred
async def test_without_storage_sh_the_settings_are_saved_and_the_log_says_not_applied(storage_daemon):
    response = await post(storage_daemon, {"storage": EXAMPLES["nfs"]})
    assert response.code == 202
    assert await finished(storage_daemon) == "success"
    assert stored(storage_daemon) == {"storage": EXAMPLES["nfs"]}
    assert "saved but not applied" in log(storage_daemon)


@pytest_twisted.ensureDeferred
async def test_empty_strings_count_as_absent_and_the_stored_document_leaves_them_out(storage_daemon):
    posted = {"type": "nfs", "mount_options": "", "ip": "10.0.0.1", "share": "/s", "device": "", "port": None}
    assert (await post(storage_daemon, {"storage": posted})).code == 202
    assert await finished(storage_daemon) == "success"
    assert stored(storage_daemon) == {"storage": {"type": "nfs", "ip": "10.0.0.1", "share": "/s"}}
    assert conf(storage_daemon) == 'type="nfs"\nip="10.0.0.1"\nshare="/s"\n'


@pytest_twisted.ensureDeferred
async def test_a_failing_storage_sh_fails_the_job_with_its_exit_status(storage_daemon):
    hook(storage_daemon, "#!/bin/sh\necho cannot mount\nexit 3\n")
    assert (await post(storage_daemon, {"storage": EXAMPLES["aoe"]})).code == 202
    assert await finished(storage_daemon) == "failed"
    message = (storage_daemon.admin_path / "etc" / "status_storage_error_message.txt").read_text()
    assert "bin/storage.sh failed with exit status 3" in message
    assert "cannot mount" in log(storage_daemon)
    assert not (storage_daemon.admin_path / "etc" / "jobs" / "storage-settings.json").exists()


# The password.

@pytest_twisted.ensureDeferred
async def test_the_password_is_masked_and_sending_the_mask_back_keeps_it(storage_daemon):
    first = {**EXAMPLES["iscsi"], "password": "s3cret pass"}
    assert (await post(storage_daemon, {"storage": first})).code == 202
    assert await finished(storage_daemon) == "success"
    etc = storage_daemon.admin_path / "etc"
    assert stat.S_IMODE((etc / "storage.json").stat().st_mode) == 0o600
    assert stat.S_IMODE((etc / "storage.conf").stat().st_mode) == 0o600
    shown = await json_of(await storage_daemon.get("/storage"))
    assert shown["storage"]["password"] == MASK
    assert "s3cret" not in json.dumps(shown)

    # The dashboard sends back what it was shown, with another target.
    again = {**shown["storage"], "target": "iqn.2020-02.org.example:other"}
    assert (await post(storage_daemon, {"storage": again})).code == 202
    assert await finished(storage_daemon) == "success"
    assert stored(storage_daemon)["storage"] == {**first, "target": "iqn.2020-02.org.example:other"}
    assert sourced(etc / "storage.conf", ["password", "target"]) == {
        "password": "s3cret pass", "target": "iqn.2020-02.org.example:other"}

    # A new password replaces it; a type without a password leaves a file anyone may read.
    assert (await post(storage_daemon, {"storage": {**again, "password": "other"}})).code == 202
    assert await finished(storage_daemon) == "success"
    assert stored(storage_daemon)["storage"]["password"] == "other"
    assert (await post(storage_daemon, {"storage": EXAMPLES["local"]})).code == 202
    assert await finished(storage_daemon) == "success"
    assert stat.S_IMODE((etc / "storage.json").stat().st_mode) == 0o644


@pytest_twisted.ensureDeferred
async def test_the_oddest_values_allowed_stay_literal_when_sh_sources_storage_conf(storage_daemon, tmp_path):
    marker = tmp_path / "ran"
    odd = {"type": "iscsi", "target": "iqn.2016-01.com.example:a.b-c_d:e", "ip": "2001:db8::1",
           "username": f"~/{marker}=x+y@z:w", "password": f" !#*?()[]{{}}~^%+=,:/.-_ {marker} *"}
    assert (await post(storage_daemon, {"storage": odd})).code == 202
    assert await finished(storage_daemon) == "success"
    path = storage_daemon.admin_path / "etc" / "storage.conf"
    assert sourced(path, list(odd)) == odd
    assert not marker.exists()
    odd_nfs = {"type": "nfs", "mount_options": "vers=4.1,sec=krb5p,_netdev,x-systemd.automount",
               "ip": "10.0.0.1", "share": "/exports/~a+b@c:d=e,f-g_h.i"}
    assert (await post(storage_daemon, {"storage": odd_nfs})).code == 202
    assert await finished(storage_daemon) == "success"
    assert sourced(path, list(odd_nfs)) == odd_nfs


@pytest_twisted.ensureDeferred
async def test_the_mask_with_no_stored_password_is_refused(storage_daemon):
    await refused(storage_daemon, {"storage": {**EXAMPLES["iscsi"], "password": MASK}},
                  "option: password. ******** keeps the stored password, and none is stored")
    (storage_daemon.admin_path / "etc" / "storage.json").write_text(json.dumps({"storage": EXAMPLES["nfs"]}))
    await refused(storage_daemon, {"storage": {**EXAMPLES["iscsi"], "password": MASK}}, "and none is stored")


@pytest_twisted.ensureDeferred
async def test_the_mask_cannot_keep_a_stored_password_storage_conf_cannot_hold(storage_daemon):
    # Saved by the original, which took any password.
    (storage_daemon.admin_path / "etc" / "storage.json").write_text(
        json.dumps({"storage": {**EXAMPLES["iscsi"], "password": 'pa"$(reboot)'}}))
    await refused(storage_daemon, {"storage": {**EXAMPLES["iscsi"], "password": MASK}},
                  "******** keeps the stored password, and the stored one is not allowed")
    assert (await post(storage_daemon, {"storage": EXAMPLES["iscsi"]})).code == 202
    assert await finished(storage_daemon) == "success"


# The options file.

@pytest_twisted.ensureDeferred
async def test_a_type_the_options_file_does_not_offer_is_refused_naming_those_it_does(make_daemon, tmp_path):
    daemon = make_daemon(config={"endpoints": ["storage"],
                                 "storage-options-file": options_file(tmp_path, ["nfs", "local", "zfs"])})
    await refused(daemon, {"storage": EXAMPLES["iscsi"]},
                  "Missing or invalid string for option: type. Allowed: local, nfs")
    await refused(daemon, {"storage": {"type": "zfs"}}, "Allowed: local, nfs")
    assert (await post(daemon, {"storage": EXAMPLES["nfs"]})).code == 202
    assert await finished(daemon) == "success"
    body = await json_of(await daemon.get("/storage"))
    assert body["options"] == ["nfs", "local", "zfs"]  # as the file lists them


@pytest.mark.parametrize("form", [ALL_TYPES, {"options": ALL_TYPES}], ids=["bare list", "object"])
@pytest_twisted.ensureDeferred
async def test_both_forms_of_the_options_file_are_read(make_daemon, tmp_path, form):
    daemon = make_daemon(config={"endpoints": ["storage"], "storage-options-file": options_file(tmp_path, form)})
    assert (await post(daemon, {"storage": EXAMPLES["nbd"]})).code == 202
    assert await finished(daemon) == "success"
    assert await json_of(await daemon.get("/storage")) == {"storage": EXAMPLES["nbd"], "options": ALL_TYPES}


@pytest_twisted.ensureDeferred
async def test_without_an_options_file_or_settings_get_answers_404(make_daemon, tmp_path):
    missing = str(tmp_path / "nowhere.json")
    daemon = make_daemon(config={"endpoints": ["storage"], "storage-options-file": missing})
    response = await daemon.get("/storage")
    assert response.code == 404
    assert (await json_of(response))["Error-Message"] == f"Storage options not found: {missing}"
    response = await post(daemon, {"storage": EXAMPLES["local"]})
    assert response.code == 404
    assert not (daemon.admin_path / "etc" / "storage.json").exists()

    other = make_daemon(config={"endpoints": ["storage"], "storage-options-file": options_file(tmp_path, ALL_TYPES)},
                        subdir="other")
    response = await other.get("/storage")
    assert response.code == 404
    assert (await json_of(response))["Error-Message"] == "storage.json not found"


@pytest.mark.parametrize("content", [b"{not json", b'"nfs"', b'{"options": "nfs"}', b"[1, 2]", b'{"types": []}'])
@pytest_twisted.ensureDeferred
async def test_a_malformed_options_file_is_a_500_naming_the_file(make_daemon, tmp_path, content):
    path = tmp_path / "storage-options.json"
    path.write_bytes(content)
    daemon = make_daemon(config={"endpoints": ["storage"], "storage-options-file": str(path)})
    for response in (await daemon.get("/storage"), await post(daemon, {"storage": EXAMPLES["local"]})):
        assert response.code == 500
        assert str(path) in (await json_of(response))["Error-Message"]
    assert not (daemon.admin_path / "etc" / "storage.json").exists()


# Bad input: 400 naming the problem, and nothing on disk changes.

HOSTILE = [
    ("share", '/nfs/$(touch /tmp/pwned)'), ("share", "/nfs/`id`"), ("share", '/nfs"; reboot; "'),
    ("share", "/nfs/a b"), ("share", "nfs/relative"), ("share", "/nfs/../etc"), ("share", "/nfs\nreboot"),
    ("mount_options", "noacl,sync;reboot"), ("mount_options", "-o,remount"), ("mount_options", "a,,b"),
    ("mount_options", "rw $HOME"), ("mount_options", "x=$(id)"), ("ip", "192.168.1.1; reboot"),
    ("ip", "storage.example.com"), ("ip", "fe80::1%eth0"), ("ip", "999.1.1.1"),
]


@pytest_twisted.ensureDeferred
async def test_hostile_values_never_reach_storage_conf(storage_daemon):
    (storage_daemon.admin_path / "etc" / "storage.conf").write_text('type="local"\n')
    for key, value in HOSTILE:
        await refused(storage_daemon, {"storage": {**EXAMPLES["nfs"], key: value}},
                      f"Missing or invalid string for option: {key}")
    for key, value in [("device", "e0.1;id"), ("device", "e65535.1"), ("device", "e0.255"), ("device", "sda")]:
        await refused(storage_daemon, {"storage": {"type": "aoe", key: value}}, f"option: {key}")
    iscsi = EXAMPLES["iscsi"]
    for key, value in [("target", "iqn.2016-01.com.example:$(id)"), ("target", "iqn.16-01.com.example"),
                       ("target", "IQN.2016-01.com.example"), ("username", "us er"), ("username", "u'ser"),
                       ("password", 'pa"ss'), ("password", "pa$s"), ("password", "pa`s"), ("password", "p\\s"),
                       ("password", "p\ns"), ("password", "x" * 256)]:
        await refused(storage_daemon, {"storage": {**iscsi, key: value}}, f"option: {key}")
    nbd = EXAMPLES["nbd"]
    for key, value in [("port", "0"), ("port", "65536"), ("port", "-1"), ("port", True), ("port", "80 81"),
                       ("export_name", "a b"), ("export_name", "$(id)")]:
        await refused(storage_daemon, {"storage": {**nbd, key: value}}, f"option: {key}")
    assert conf(storage_daemon) == 'type="local"\n'


@pytest.mark.parametrize("value, message", [
    (b"{not json", "The settings file is not valid JSON: line 1 column 2"),
    (b"", "The settings file is empty"),
    (b"[]", "The settings file must hold a JSON object, not an array"),
    (b"42", "The settings file must hold a JSON object, not a number"),
    (b'{"storage": {"type": "local"}, "storage": {"type": "nfs"}}', "the key 'storage' is given twice"),
    (b"\xff\xfe{}", "The settings file is not UTF-8 text"),
    (b'{"storage": {"type": "local"}, "x": NaN}', "NaN is not a JSON value"),
    ({"storage": "nfs"}, 'The settings file must hold an object "storage", not a string'),
    ({"storage": None}, 'The settings file must hold an object "storage", not null'),
    ({}, 'The settings file must hold an object "storage", not null'),
    ({"storage": {"type": "local"}, "network": {}}, "Unknown option in the settings file: network. Allowed: storage"),
    ({"storage": {}}, "Missing or invalid string for option: type. Allowed: local, nfs, aoe, iscsi, nbd"),
    ({"storage": {"type": 5}}, "Missing or invalid string for option: type"),
    ({"storage": {"type": ["nfs"]}}, "Missing or invalid string for option: type"),
    ({"storage": {"type": "NFS"}}, "Missing or invalid string for option: type"),
    ({"storage": {"type": "nfs", "ip": "10.0.0.1"}}, "Missing option for storage type nfs: share"),
    ({"storage": {"type": "nfs", "ip": "", "share": ""}}, "Missing option for storage type nfs: ip, share"),
    ({"storage": {"type": "aoe"}}, "Missing option for storage type aoe: device"),
    ({"storage": {"type": "iscsi", "ip": "10.0.0.1"}}, "Missing option for storage type iscsi: target"),
    ({"storage": {"type": "nbd", "ip": "10.0.0.1"}}, "Missing option for storage type nbd: export_name"),
    ({"storage": {**EXAMPLES["iscsi"], "password": ""}}, "username and password go together"),
    ({"storage": {"type": "local", "share": "/x"}}, "Unknown option in storage of type local: share. Allowed: type"),
    ({"storage": {**EXAMPLES["aoe"], "ip": "10.0.0.1"}}, "Unknown option in storage of type aoe: ip"),
    ({"storage": {**EXAMPLES["nfs"], "port": "2049"}}, "Unknown option in storage of type nfs: port"),
    ({"storage": {**EXAMPLES["nfs"], "ip": 192}}, "Missing or invalid string for option: ip"),
    ({"storage": {**EXAMPLES["nfs"], "share": ["/a"]}}, "Missing or invalid string for option: share"),
    ({"storage": {**EXAMPLES["nfs"], "share": {"path": "/a"}}}, "Missing or invalid string for option: share"),
    ({"storage": {**EXAMPLES["nfs"], "share": "/nfs/störage"}}, "Missing or invalid string for option: share"),
    ({"storage": {**EXAMPLES["iscsi"], "password": "pässword"}}, "Missing or invalid string for option: password"),
    ({"storage": {**EXAMPLES["nfs"], "share": "/" + "a" * 2000}}, "Missing or invalid string for option: share"),
    (json.dumps({"storage": {"type": "local"}, "pad": "x" * 70_000}).encode(), "The settings file is too large"),
])
@pytest_twisted.ensureDeferred
async def test_bad_settings_are_refused_with_a_message_and_change_nothing(storage_daemon, value, message):
    await refused(storage_daemon, value, message)


@pytest_twisted.ensureDeferred
async def test_a_missing_or_misplaced_settings_field_or_a_huge_body_is_refused(storage_daemon):
    before = snapshot(storage_daemon)
    response = await storage_daemon.post_form("/storage", files={"other": ("x.json", b"{}")})
    assert response.code == 400
    assert (await json_of(response))["Error-Message"] == "Missing required parameter: settings"
    response = await storage_daemon.post_form("/storage", fields={"settings": json.dumps({"storage": {"type": "local"}})})
    assert response.code == 400
    assert "must be a file upload" in (await json_of(response))["Error-Message"]
    response = await post(storage_daemon, b"{" + b" " * (1024 * 1024 + 10) + b"}")
    assert response.code == 413
    assert snapshot(storage_daemon) == before


@pytest_twisted.ensureDeferred
async def test_a_second_post_while_the_job_runs_is_refused_and_changes_nothing(storage_daemon):
    release = storage_daemon.admin_path / "tmp" / "release"
    hook(storage_daemon, f'#!/bin/sh\nfor i in $(seq 400); do [ -f "{release}" ] && exit 0; sleep 0.05; done\nexit 1\n')
    assert (await post(storage_daemon, {"storage": EXAMPLES["nfs"]})).code == 202
    assert await wait_until(lambda: (storage_daemon.admin_path / "etc" / "storage.json").exists())
    before = stored(storage_daemon), conf(storage_daemon)
    response = await post(storage_daemon, {"storage": EXAMPLES["aoe"]})
    assert response.code == 400
    assert (await json_of(response))["Error-Message"] == "A storage settings change is already running"
    assert (stored(storage_daemon), conf(storage_daemon)) == before
    release.write_text("")
    assert await finished(storage_daemon) == "success"
    assert stored(storage_daemon) == {"storage": EXAMPLES["nfs"]}


# The job checks again what it is handed: run by hand, it writes nothing it would refuse.

def run_job(admin_path, settings_path, conf_path):
    return subprocess.run([sys.executable, "-m", "jidoteki_admin.jobs.storage", "--admin-path", str(admin_path),
                           "--settings", str(settings_path), "--conf", str(conf_path)],
                          capture_output=True, text=True, check=False)


def test_the_job_run_by_hand_refuses_a_hostile_document_and_writes_nothing(tmp_path):
    admin = tmp_path / "admin"
    for sub in ("etc", "bin", "log", "tmp"):
        (admin / sub).mkdir(parents=True)
    staged = tmp_path / "staged.json"
    staged.write_text(json.dumps({"storage": {"type": "nfs", "ip": "10.0.0.1", "share": "/a/$(reboot)"}}))
    done = run_job(admin, staged, tmp_path / "storage.conf")
    assert done.returncode == 1
    assert "Invalid or missing settings file: Missing or invalid string for option: share" in done.stdout
    assert not (admin / "etc" / "storage.json").exists() and not (tmp_path / "storage.conf").exists()
    assert not staged.exists()

    staged.write_text(json.dumps({"storage": EXAMPLES["nfs"]}))
    done = run_job(admin, staged, tmp_path / "storage.conf")
    assert done.returncode == 0, done.stdout
    assert json.loads((admin / "etc" / "storage.json").read_text()) == {"storage": EXAMPLES["nfs"]}
    assert (tmp_path / "storage.conf").read_text().startswith('type="nfs"\n')


@pytest_twisted.ensureDeferred
async def test_storage_conf_goes_where_the_config_says(make_daemon, tmp_path):
    target = tmp_path / "usr-local-etc" / "storage.conf"
    target.parent.mkdir()
    daemon = make_daemon(config={"endpoints": ["storage"], "storage-conf": str(target),
                                 "storage-options-file": options_file(tmp_path, ALL_TYPES)})
    assert (await post(daemon, {"storage": EXAMPLES["aoe"]})).code == 202
    assert await finished(daemon) == "success"
    assert target.read_text() == 'type="aoe"\ndevice="e0.1"\n'
    assert not (daemon.admin_path / "etc" / "storage.conf").exists()


# With "jobs": "appliance", the checked files wait in the uploads folder for the appliance's script.

@pytest_twisted.ensureDeferred
async def test_with_the_appliances_scripts_the_checked_files_wait_in_uploads(make_daemon, tmp_path):
    locks = tmp_path / "locks"
    locks.mkdir()
    daemon = make_daemon(config={"endpoints": ["storage"], "jobs": "appliance", "appliance-lock-dir": str(locks),
                                 "storage-options-file": options_file(tmp_path, ALL_TYPES)})
    (daemon.admin_path / "etc" / "storage.json").write_text(json.dumps({"storage": EXAMPLES["iscsi"]}))
    seen = tmp_path / "seen"
    hook(daemon, "")  # bin/storage.sh is the appliance script's business, not the daemon's
    wrapper = daemon.admin_path / "bin" / "wrapper.sh"
    wrapper.write_text(f'#!/bin/sh\ntree="$(dirname "$(dirname "$0")")"\nup="$tree/home/sftp/uploads"\n'
                       f'echo "command=$SSH_ORIGINAL_COMMAND args=$#" > {seen}\ncat "$up/storage.json" "$up/storage.conf" >> {seen}\n'
                       'printf \'{"status":"success","percentage":100}\' > "$tree/etc/status_storage.json"\n')
    wrapper.chmod(0o755)
    posted = {**EXAMPLES["iscsi"], "password": MASK, "target": "iqn.2020-01.org.example:t"}
    assert (await post(daemon, {"storage": posted})).code == 202
    assert await finished(daemon) == "success"
    lines = seen.read_text().splitlines()
    assert lines[0] == "command=storage args=1"  # one empty argument, as the original passed it
    expected = {**posted, "password": "pass"}  # the stored password, for the script to write
    assert json.loads(lines[1]) == {"storage": expected}
    assert lines[2:] == [f'{key}="{value}"' for key, value in expected.items()]
    uploads = daemon.admin_path / "home" / "sftp" / "uploads"
    assert stat.S_IMODE((uploads / "storage.json").stat().st_mode) == 0o600


@pytest.mark.skipif(os.geteuid() != 0, reason="only root can give a file away")
def test_a_secret_written_as_root_belongs_to_the_owner_of_etc_and_no_one_else_reads_it(tmp_path):
    admin = tmp_path / "admin"
    for sub in ("etc", "bin", "log", "tmp"):
        (admin / sub).mkdir(parents=True)
    os.chown(admin / "etc", 65534, 65534)  # the daemon's user owns etc/; the job runs as root
    staged = tmp_path / "staged.json"
    staged.write_text(json.dumps({"storage": EXAMPLES["iscsi"]}))
    done = run_job(admin, staged, tmp_path / "storage.conf")
    assert done.returncode == 0, done.stdout
    info = (admin / "etc" / "storage.json").stat()
    assert (info.st_uid, info.st_gid, stat.S_IMODE(info.st_mode)) == (65534, 65534, 0o600)
    conf = (tmp_path / "storage.conf").stat()  # sourced by root's script: root's own
    assert (conf.st_uid, stat.S_IMODE(conf.st_mode)) == (0, 0o600)
    os.chown(admin / "etc", 0, 0)
    staged.write_text(json.dumps({"storage": EXAMPLES["iscsi"]}))
    assert run_job(admin, staged, tmp_path / "storage.conf").returncode == 0
    assert (admin / "etc" / "storage.json").stat().st_uid == 0