"""Section 10, License, through the real daemon: the default scheme (licenses issued with
jidoteki-admin-vendor, checked against etc/license.pub) and the bin/license.sh scheme
(the script decides, run by the license jobs as real child processes)."""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys

import pytest
import pytest_twisted
from twisted.internet import defer

from conftest import json_of, wait_until
from jidoteki_admin import vendor
from jidoteki_admin.formats import licensefile

DETAILS = {"app": "enterprise", "users": 20, "expires": "19 January 2038", "name": "Enterprise Company",
           "contact": "cto@enterprise"}
SCRIPT_OUTPUT = json.dumps(DETAILS)


# ----------------------------------------------------------------------------------------
# Keys and licenses, issued with the vendor's tool


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    """Two license key pairs: the appliance's vendor's, and someone else's."""
    base = tmp_path_factory.mktemp("license-keys")
    for name in ("ours", "theirs"):
        assert vendor.main(["license-keygen", "--out", str(base / name)]) == 0
    return base


def issue(keys, tmp_path, *, key="ours", expires="2038-01-19", extra=()) -> bytes:
    out = tmp_path / f"license-{len(list(tmp_path.glob('license-*')))}.asc"
    argv = ["license", "--key", str(keys / key / "license.key"), "--app", "enterprise", "--users", "20",
            "--expires", expires, "--name", "Enterprise Company", "--contact", "cto@enterprise",
            "--out", str(out)]
    for setting in extra:
        argv += ["--set", setting]
    assert vendor.main(argv) == 0
    return out.read_bytes()


def signed_by_hand(keys, document: bytes) -> bytes:
    """A correctly signed license holding any document, as a careless vendor might issue."""
    return licensefile.sign(document, keys / "ours" / "license.key")


@pytest.fixture
def licensed(make_daemon, keys):
    """A daemon serving /license, with the vendor's public key in etc/license.pub."""
    daemon = make_daemon(config={"endpoints": ["license"]})
    (daemon.admin_path / "etc" / "license.pub").write_bytes((keys / "ours" / "license.pub").read_bytes())
    return daemon


def license_file(daemon):
    return daemon.admin_path / "etc" / "license.asc"


async def post_license(daemon, content: bytes, name: str = "license.asc"):
    return await daemon.post_form("/license", files={"license": (name, content)})


async def error_of(response) -> str:
    body = await json_of(response)
    assert response.headers.getRawHeaders("Error-Message") == [body["Error-Message"]]
    return body["Error-Message"]


def persist_hook(daemon):
    """bin/persist.sh noting each run, as the persistence step runs it."""
    marker = daemon.admin_path / "log" / "persisted"
    hook = daemon.admin_path / "bin" / "persist.sh"
    hook.write_text(f"#!/bin/sh\necho yes >> {marker}\n")
    hook.chmod(0o755)
    return marker


# ----------------------------------------------------------------------------------------
# The default scheme


@pytest_twisted.ensureDeferred
async def test_an_issued_license_installs_and_shows_its_details(licensed, keys, tmp_path):
    daemon = licensed
    marker = persist_hook(daemon)
    response = await daemon.get("/license")
    assert response.code == 404 and await error_of(response) == "No license is installed"

    issued = issue(keys, tmp_path, extra=["tier=gold"])
    response = await post_license(daemon, issued)
    assert response.code == 200, await response.content()
    expected = {**DETAILS, "tier": "gold", "expired": False}
    assert json.loads(await response.content()) == expected
    assert list(json.loads(await response.content())) == [*DETAILS, "tier", "expired"]  # the vendor's order
    assert license_file(daemon).read_bytes() == issued
    assert await wait_until(marker.exists)  # saved for the next boot

    response = await daemon.get("/license")
    assert response.code == 200 and await json_of(response) == expected
    assert response.headers.getRawHeaders("Content-Type") == ["application/json"]


@pytest_twisted.ensureDeferred
async def test_crlf_and_whitespace_around_the_armor_are_tolerated(licensed, keys, tmp_path):
    issued = issue(keys, tmp_path)
    mangled = b"\r\n  \r\n" + b"\r\n".join(b"  " + line + b"\t" for line in issued.splitlines()) + b"\r\n\r\n"
    response = await post_license(licensed, mangled)
    assert response.code == 200, await response.content()
    assert (await json_of(response))["expires"] == "19 January 2038"


@pytest_twisted.ensureDeferred
async def test_an_expired_license_still_shows_its_details(licensed, keys, tmp_path):
    response = await post_license(licensed, issue(keys, tmp_path, expires="2020-02-29"))
    assert response.code == 200
    assert await json_of(response) == {**DETAILS, "expires": "29 February 2020", "expired": True}
    response = await licensed.get("/license")
    assert (await json_of(response))["expired"] is True


@pytest_twisted.ensureDeferred
async def test_a_check_answers_the_details_and_installs_nothing(licensed, keys, tmp_path):
    """POST /license/check (an addition): what POST /license would say, so a client can ask
    before an expired license replaces a valid one."""
    installed = issue(keys, tmp_path)
    assert (await post_license(licensed, installed)).code == 200
    expired = issue(keys, tmp_path, expires="2020-02-29")
    response = await licensed.post_form("/license/check", files={"license": ("license.asc", expired)})
    assert response.code == 200
    assert await json_of(response) == {**DETAILS, "expires": "29 February 2020", "expired": True}
    refused = await licensed.post_form("/license/check", files={"license": ("license.asc", tampered(expired))})
    assert refused.code == 404 and (await error_of(refused)).startswith("Invalid license signature")
    assert license_file(licensed).read_bytes() == installed  # nothing installed
    assert (await json_of(await licensed.get("/license")))["expired"] is False


def tampered(issued: bytes) -> bytes:
    """The same signature over a document that says 2000 users."""
    armored = licensefile.parse(issued)
    document = armored.document.replace(b'"users": 20', b'"users": 2000')
    assert document != armored.document
    return licensefile.armor(document, armored.signature)


@pytest_twisted.ensureDeferred
async def test_a_tampered_license_is_refused_and_the_old_one_kept(licensed, keys, tmp_path):
    daemon = licensed
    good = issue(keys, tmp_path)
    assert (await post_license(daemon, good)).code == 200
    response = await post_license(daemon, tampered(good))
    assert response.code == 404
    assert await error_of(response) == "Invalid license signature (checked with etc/license.pub)"
    assert license_file(daemon).read_bytes() == good
    assert (await json_of(await daemon.get("/license")))["users"] == 20


@pytest_twisted.ensureDeferred
async def test_a_license_signed_with_another_key_is_refused(licensed, keys, tmp_path):
    response = await post_license(licensed, issue(keys, tmp_path, key="theirs"))
    assert response.code == 404
    assert "Invalid license signature" in await error_of(response)
    assert not license_file(licensed).exists()


@pytest_twisted.ensureDeferred
async def test_a_tampered_installed_license_reads_as_none(licensed, keys, tmp_path):
    license_file(licensed).write_bytes(tampered(issue(keys, tmp_path)))
    response = await licensed.get("/license")
    assert response.code == 404 and "Invalid license signature" in await error_of(response)


@pytest_twisted.ensureDeferred
async def test_without_a_public_key_no_license_can_be_checked(licensed, keys, tmp_path):
    daemon = licensed
    good = issue(keys, tmp_path)
    license_file(daemon).write_bytes(good)
    (daemon.admin_path / "etc" / "license.pub").unlink()
    expected = "No license can be checked: the license public key etc/license.pub is missing"
    response = await post_license(daemon, good)
    assert response.code == 404 and await error_of(response) == expected
    response = await daemon.get("/license")
    assert response.code == 404 and await error_of(response) == expected
    (daemon.admin_path / "etc" / "license.pub").write_text("not a key\n")
    response = await daemon.get("/license")
    assert response.code == 404 and await error_of(response) == "Not a PEM public key: etc/license.pub"


INVALID_LICENSES = {
    "not armored": (lambda good, keys: b"app=enterprise users=20\n",
                    "The license file is not armored text: expected -----BEGIN JIDOTEKI LICENSE-----, "
                    "found 'app=enterprise users=20'"),
    "non-ASCII": (lambda good, keys: "Lizenz für Enterprise\n".encode(),
                  "The license file is not armored text: a non-ASCII byte at offset 8"),
    "not UTF-8": (lambda good, keys: b"\xff\xfe" + good,
                  "The license file is not armored text: a non-ASCII byte at offset 0"),
    "no signature": (lambda good, keys: good.split(b"-----BEGIN JIDOTEKI LICENSE SIGNATURE")[0],
                     "The license file is not armored text: expected -----BEGIN JIDOTEKI LICENSE SIGNATURE-----, "
                     "found the end of the file"),
    "bad base64": (lambda good, keys: good.replace(b"-----END JIDOTEKI LICENSE-----", b"!!\n-----END JIDOTEKI LICENSE-----"),
                   "The license block of the license file is not valid base64"),
    "trailing text": (lambda good, keys: good + b"P.S. be nice\n",
                      "The license file has text after -----END JIDOTEKI LICENSE SIGNATURE-----"),
    "an array": (lambda good, keys: signed_by_hand(keys, b"[1, 2]"),
                 "The license document file must hold a JSON object, not an array"),
    "not JSON": (lambda good, keys: signed_by_hand(keys, b"app: enterprise"),
                 "The license document file is not valid JSON: line 1 column 1: Expecting value"),
    "missing keys": (lambda good, keys: signed_by_hand(keys, b'{"app": "enterprise", "users": 20}'),
                     "The license document lacks expires, name, contact"),
    "users a string": (lambda good, keys: signed_by_hand(
        keys, b'{"app":"a","users":"20","expires":"2038-01-19","name":"n","contact":"c"}'),
        "The license document's users must be a whole number, 0 or more"),
    "a date in words": (lambda good, keys: signed_by_hand(
        keys, b'{"app":"a","users":20,"expires":"19 January 2038","name":"n","contact":"c"}'),
        "The license document's expires must be a date like 2038-01-19, not '19 January 2038'"),
}


@pytest.mark.parametrize("case", sorted(INVALID_LICENSES))
@pytest_twisted.ensureDeferred
async def test_an_invalid_license_is_404_and_changes_nothing(licensed, keys, tmp_path, case):
    daemon = licensed
    good = issue(keys, tmp_path)
    license_file(daemon).write_bytes(good)
    make, message = INVALID_LICENSES[case]
    response = await post_license(daemon, make(good, keys))
    assert response.code == 404
    assert await error_of(response) == message
    assert license_file(daemon).read_bytes() == good
    assert sorted(os.listdir(daemon.admin_path / "etc")) == ["api.token", "jidoteki-admin.lock", "jobs", "license.asc",
                                                             "license.pub", "ssl"]


@pytest.mark.parametrize("form, code, message", [
    ({}, 400, "Missing required parameter: license"),
    ({"fields": {"license": "-----BEGIN JIDOTEKI LICENSE-----"}}, 400,
     "Parameter license must be a file upload (curl -F license=@FILE)"),
    ({"files": {"license": ("license.asc", b"")}}, 400, "The license file is empty"),
    ({"files": {"license": ("license.asc", b"A" * (1024 * 1024 + 1))}}, 413, None),
    ({"files": {"settings": ("license.asc", b"x")}}, 400, "Missing required parameter: license"),
])
@pytest_twisted.ensureDeferred
async def test_bad_forms_are_refused_and_change_nothing(licensed, keys, tmp_path, form, code, message):
    daemon = licensed
    good = issue(keys, tmp_path)
    license_file(daemon).write_bytes(good)
    response = await daemon.post_form("/license", **form)
    assert response.code == code
    if message is not None:
        assert await error_of(response) == message
    else:
        await response.content()
    assert license_file(daemon).read_bytes() == good
    assert not (daemon.admin_path / "log" / "update_license.log").exists()  # no job ran


@pytest_twisted.ensureDeferred
async def test_the_uploaded_file_name_does_not_matter(licensed, keys, tmp_path):
    issued = issue(keys, tmp_path)
    response = await post_license(licensed, issued, name="Lizenz für Enterprise (2038).txt")
    assert response.code == 200, await response.content()
    assert license_file(licensed).read_bytes() == issued


@pytest_twisted.ensureDeferred
async def test_a_license_that_cannot_be_written_is_400(licensed, keys, tmp_path):
    if os.geteuid() == 0:
        # root writes anywhere: make etc/license.asc a directory instead
        license_file(licensed).mkdir()
    else:
        (licensed.admin_path / "etc").chmod(0o500)
    try:
        response = await post_license(licensed, issue(keys, tmp_path))
    finally:
        (licensed.admin_path / "etc").chmod(0o755)
    assert response.code == 400
    assert (await error_of(response)).startswith("Could not install the license: ")


@pytest_twisted.ensureDeferred
async def test_the_section_is_off_unless_enabled(make_daemon, keys, tmp_path):
    daemon = make_daemon()
    assert (await daemon.get("/license")).code == 404
    endpoints = await json_of(await daemon.get("/endpoints"))
    assert "license" not in json.dumps(endpoints)


# ----------------------------------------------------------------------------------------
# bin/license.sh decides


def license_script(daemon, delay: float = 0.0, extra: str = ""):
    """The appliance's checker: the details when etc/license.asc starts with VALID, else nothing."""
    script = daemon.admin_path / "bin" / "license.sh"
    runs = daemon.admin_path / "log" / "license-runs"
    script.write_text(
        "#!/bin/sh\n"
        f'here="$(dirname "$0")"; echo run >> "{runs}"\n'
        f"sleep {delay}\n{extra}\n"
        "if grep -q '^VALID' \"$here/../etc/license.asc\" 2>/dev/null; then\n"
        f"  printf '%s' '{SCRIPT_OUTPUT}'\n"
        "fi\n")
    script.chmod(0o755)
    return runs


@pytest.fixture
def scripted(make_daemon):
    """A daemon serving /license on an appliance with bin/license.sh (and no license.pub)."""
    daemon = make_daemon(config={"endpoints": ["license"]})
    license_script(daemon)
    return daemon


@pytest_twisted.ensureDeferred
async def test_the_script_accepts_a_license(scripted):
    daemon = scripted
    marker = persist_hook(daemon)
    response = await post_license(daemon, b"VALID license for enterprise\n")
    assert response.code == 200, await response.content()
    assert await response.content() == json.dumps(DETAILS, separators=(",", ":")).encode()
    assert license_file(daemon).read_bytes() == b"VALID license for enterprise\n"
    assert await wait_until(marker.exists)  # the job persisted it
    log = (daemon.admin_path / "log" / "update_license.log").read_text()
    assert "License installed" in log
    assert not [name for name in os.listdir(daemon.admin_path / "tmp") if name.startswith("license-previous")]
    response = await daemon.get("/license")
    assert response.code == 200 and await json_of(response) == DETAILS


@pytest_twisted.ensureDeferred
async def test_the_script_refuses_a_license_and_the_old_one_comes_back(scripted):
    daemon = scripted
    license_file(daemon).write_bytes(b"VALID old license\n")
    marker = persist_hook(daemon)
    response = await post_license(daemon, b"INVALID license\n")
    assert response.code == 404
    assert await error_of(response) == "The license is not valid: bin/license.sh printed nothing"
    assert license_file(daemon).read_bytes() == b"VALID old license\n"
    assert not marker.exists()
    assert not [name for name in os.listdir(daemon.admin_path / "tmp") if name.startswith("license-previous")]
    assert (await daemon.get("/license")).code == 200


@pytest_twisted.ensureDeferred
async def test_a_refused_first_license_leaves_none(scripted):
    response = await post_license(scripted, b"nonsense\n")
    assert response.code == 404
    assert not license_file(scripted).exists()
    response = await scripted.get("/license")
    assert response.code == 404
    assert await error_of(response) == "The license is not valid: bin/license.sh printed nothing"


@pytest.mark.parametrize("extra, message", [
    ("echo '{\"app\": \"x\"}'; exit 3", "The license is not valid: bin/license.sh exited with status 3"),
    ("echo '[\"enterprise\"]'; exit 0", "The license is not valid: The bin/license.sh output file must hold "
                                        "a JSON object, not an array"),
    ("echo 'app=enterprise'; exit 0", "The license is not valid: The bin/license.sh output file is not valid "
                                      "JSON: line 1 column 1: Expecting value"),
])
@pytest_twisted.ensureDeferred
async def test_what_the_script_prints_must_be_a_json_object(scripted, extra, message):
    daemon = scripted
    license_file(daemon).write_bytes(b"VALID old license\n")
    license_script(daemon, extra=extra)
    response = await post_license(daemon, b"VALID new license\n")
    assert response.code == 404
    assert await error_of(response) == message
    assert license_file(daemon).read_bytes() == b"VALID old license\n"
    response = await daemon.get("/license")
    assert response.code == 404 and await error_of(response) == message


@pytest_twisted.ensureDeferred
async def test_the_script_cannot_check_a_license_without_installing_it(scripted):
    daemon = scripted
    response = await daemon.post_form("/license/check", files={"license": ("license.asc", b"VALID x\n")})
    assert response.code == 400
    assert "only by installing it" in await error_of(response)
    assert not license_file(daemon).exists()


@pytest_twisted.ensureDeferred
async def test_get_runs_the_script_each_time(scripted):
    daemon = scripted
    runs = license_script(daemon)
    license_file(daemon).write_bytes(b"VALID\n")
    assert (await daemon.get("/license")).code == 200
    license_file(daemon).write_bytes(b"expired\n")
    assert (await daemon.get("/license")).code == 404
    assert runs.read_text() == "run\nrun\n"


@pytest_twisted.ensureDeferred
async def test_concurrent_gets_share_one_check(scripted):
    daemon = scripted
    runs = license_script(daemon, delay=0.5)
    license_file(daemon).write_bytes(b"VALID\n")
    responses = await defer.gatherResults([defer.ensureDeferred(daemon.get("/license")) for _ in range(8)])
    assert [r.code for r in responses] == [200] * 8
    for response in responses:
        assert await json_of(response) == DETAILS
    assert len(runs.read_text().split()) < 8  # they waited for a check in flight


@pytest_twisted.ensureDeferred
async def test_a_second_post_while_one_runs_is_refused(scripted):
    daemon = scripted
    license_script(daemon, delay=1.5)
    first = defer.ensureDeferred(post_license(daemon, b"VALID first\n"))
    assert await wait_until(lambda: (daemon.admin_path / "log" / "license-runs").exists())
    second = await post_license(daemon, b"VALID second\n")
    assert second.code == 400
    assert await error_of(second) == "A license installation is already running"
    reading = defer.ensureDeferred(daemon.get("/license"))  # waits for the installation
    assert (await first).code == 200
    got = await reading
    assert got.code == 200 and await json_of(got) == DETAILS
    assert license_file(daemon).read_bytes() == b"VALID first\n"


@pytest_twisted.ensureDeferred
async def test_a_post_during_a_check_waits_for_it(scripted):
    daemon = scripted
    runs = license_script(daemon, delay=1.0)
    license_file(daemon).write_bytes(b"VALID old\n")
    reading = defer.ensureDeferred(daemon.get("/license"))
    assert await wait_until(runs.exists)
    response = await post_license(daemon, b"VALID new\n")
    assert response.code == 200, await response.content()
    assert (await reading).code == 200
    assert license_file(daemon).read_bytes() == b"VALID new\n"
    assert runs.read_text() == "run\nrun\n"


@pytest.mark.parametrize("previous", [b"VALID old\n", None])
@pytest_twisted.ensureDeferred
async def test_an_installation_killed_outright_is_undone_at_once(scripted, previous, checkpoints):
    """A license job killed with SIGKILL once the candidate is in place and before the
    script accepted it: the daemon has the job's own program undo it from its journal
    before it answers, so the candidate never stays."""
    daemon = scripted
    if previous is not None:
        license_file(daemon).write_bytes(previous)
    hold = checkpoints.hold("license.50")  # swapped in, bin/license.sh not yet run
    answer = defer.ensureDeferred(post_license(daemon, b"VALID but never accepted\n"))
    assert await wait_until(hold.reached)
    assert license_file(daemon).read_bytes() == b"VALID but never accepted\n"
    os.killpg(daemon.service.runner._running["license"].child.pid, signal.SIGKILL)
    response = await answer
    assert response.code == 400
    assert await error_of(response) == "Interrupted before it finished; the previous state is back in place"
    assert (license_file(daemon).read_bytes() if previous else license_file(daemon).exists()) == (previous or False)
    assert not (daemon.admin_path / "etc" / "jobs" / "license.journal").exists()
    assert (await daemon.get("/license")).code == (200 if previous else 404)


@pytest_twisted.ensureDeferred
async def test_bad_forms_never_reach_the_script(scripted):
    daemon = scripted
    runs = daemon.admin_path / "log" / "license-runs"
    for form in ({}, {"fields": {"license": "VALID"}}, {"files": {"license": ("l.asc", b"")}}):
        response = await daemon.post_form("/license", **form)
        assert response.code == 400
    assert not runs.exists() and not license_file(daemon).exists()


# ----------------------------------------------------------------------------------------
# The job programs by hand, and the vendor's tool


def run_job(module: str, admin, *args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", module, "--admin-path", str(admin), *map(str, args)],
                          capture_output=True, text=True, timeout=60)


def test_the_install_job_by_hand_checks_the_default_scheme_too(tmp_path, keys):
    admin = tmp_path / "admin"
    (admin / "etc").mkdir(parents=True)
    (admin / "etc" / "license.pub").write_bytes((keys / "ours" / "license.pub").read_bytes())
    bad = tmp_path / "bad.asc"
    bad.write_bytes(issue(keys, tmp_path, key="theirs"))
    out = tmp_path / "details.json"
    done = run_job("jidoteki_admin.jobs.license", admin, "--candidate", bad, "--out", out)
    assert done.returncode == 1 and "Invalid license signature" in done.stdout
    assert not (admin / "etc" / "license.asc").exists() and not out.exists()
    good = tmp_path / "good.asc"
    good.write_bytes(issue(keys, tmp_path))
    done = run_job("jidoteki_admin.jobs.license", admin, "--candidate", good, "--out", out)
    assert done.returncode == 0, done.stdout
    assert json.loads(out.read_text()) == {**DETAILS, "expired": False}
    assert (admin / "etc" / "license.asc").read_bytes() == good.read_bytes()
    out.unlink()
    done = run_job("jidoteki_admin.jobs.license_check", admin, "--out", out)
    assert done.returncode == 0 and json.loads(out.read_text())["users"] == 20


def test_an_issued_license_verifies_with_plain_openssl(tmp_path, keys):
    armored = licensefile.parse(issue(keys, tmp_path))
    (tmp_path / "doc.json").write_bytes(armored.document)
    (tmp_path / "doc.sig").write_bytes(armored.signature)
    done = subprocess.run(["openssl", "dgst", "-sha256", "-verify", str(keys / "ours" / "license.pub"),
                           "-signature", str(tmp_path / "doc.sig"), str(tmp_path / "doc.json")],
                          capture_output=True, text=True)
    assert done.returncode == 0 and "Verified OK" in done.stdout
    assert json.loads(armored.document)["expires"] == "2038-01-19"


def test_license_keygen_never_overwrites(keys, capsys):
    assert vendor.main(["license-keygen", "--out", str(keys / "ours")]) == 1
    assert "refusing to overwrite existing keys" in capsys.readouterr().err
    assert oct((keys / "ours" / "license.key").stat().st_mode & 0o777) == "0o600"


@pytest.mark.parametrize("change, fragment", [
    (["--expires", "19 January 2038"], "expires must be a date like 2038-01-19"),
    (["--users", "-1"], "users must be a whole number"),
    (["--app", ""], "app must be a non-empty string"),
    (["--set", "users=3"], "'users' cannot be set twice or by hand"),
    (["--set", "expired=no"], "'expired' cannot be set twice or by hand"),
    (["--set", "novalue"], "--set wants KEY=VALUE, not 'novalue'"),
])
def test_the_vendor_tool_refuses_what_an_appliance_would(tmp_path, keys, capsys, change, fragment):
    argv = ["license", "--key", str(keys / "ours" / "license.key"), "--app", "enterprise", "--users", "20",
            "--expires", "2038-01-19", "--name", "n", "--contact", "c", "--out", str(tmp_path / "l.asc")]
    for i in range(0, len(change), 2):
        if change[i] in argv:
            argv[argv.index(change[i]) + 1] = change[i + 1]
        else:
            argv += change[i:i + 2]
    assert vendor.main(argv) == 1
    assert fragment in capsys.readouterr().err
    assert not (tmp_path / "l.asc").exists()


def test_the_vendor_tool_wants_a_private_key(tmp_path, keys, capsys):
    argv = ["license", "--key", str(keys / "ours" / "license.pub"), "--app", "a", "--users", "1",
            "--expires", "2038-01-19", "--name", "n", "--contact", "c", "--out", str(tmp_path / "l.asc")]
    assert vendor.main(argv) == 1
    assert "--key wants the PEM private key licenses are signed with (license.key)" in capsys.readouterr().err


def test_the_armor_is_base64_of_the_exact_document(keys, tmp_path):
    issued = issue(keys, tmp_path)
    body = issued.split(b"-----\n", 1)[1].split(b"\n-----END", 1)[0]
    assert base64.b64decode(body) == licensefile.parse(issued).document
    assert max(len(line) for line in issued.splitlines()) <= 64
