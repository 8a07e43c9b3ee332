"""The Admin Dashboard in real headless Chromium against the real daemon (twistd, over TLS
on 127.0.0.1): sign in, see the version, install an update, back up and download, change
the network, install a certificate and a license, choose the storage and the cluster, change
the token, sign out; and its modules' logic checked in the same browser.

One daemon and one browser serve the whole module; each test has a fresh browser context
(its own storage). Every page is saved as a screenshot in test-screenshots/ (git ignores
it), at a laptop's size and a phone's, and checked at both sizes by axe-core against WCAG
2.2 AA (axe-playwright-python bundles it): a violation fails the test.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import math
import os
import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from axe_playwright_python.sync_playwright import Axe
from playwright import sync_api as playwright_api

from conftest import REPO, Twistd, free_port
from jidoteki_admin import vendor
from jidoteki_admin.formats import licensefile, validate
from jidoteki_admin.formats.healthhistory import HealthHistory
from test_certs import issue
from test_updates import build, install_keys

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
SCREENSHOTS = REPO / "test-screenshots"
TOKEN = "yourtoken"
LAPTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}
WAIT_MS = 30_000
AXE = Axe()
WCAG = {"runOnly": {"type": "tag", "values": ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "wcag22a", "wcag22aa"]},
        "resultTypes": ["violations"]}
AXE_REPORT = SCREENSHOTS / "axe.txt"


# What the appliance serves besides the default endpoints, and the storage types it offers.
ENDPOINTS = ["settings", "certs", "license", "storage", "cluster", "backup"]
STORAGE_OPTIONS = ["nfs", "iscsi"]
# The appliance's scripts that apply settings: here they only say they ran.
HOOKS = ("network.sh", "storage.sh", "cluster.sh", "certs.sh")


@dataclass
class Appliance:
    base: str
    admin: Path
    data: Path
    port: int
    license_key: Path

    @property
    def etc(self) -> Path:
        return self.admin / "etc"


def a_day_of_history() -> HealthHistory:
    """A day of samples ending now, such as a day of running leaves behind."""
    import math

    history, now = HealthHistory(), int(time.time())
    for t in range(now - 86400, now - 20, 10):
        wave = math.sin(t / 3000)
        history.add((t, round(1 + wave, 2), round(40 + 30 * wave), round(50 + 10 * wave), 61,
                     round(200_000 + 150_000 * wave), round(50_000 + 40_000 * wave)))
    return history


@pytest.fixture(scope="module")
def appliance(tmp_path_factory, keys):
    """The daemon as appliances run it, serving every optional section but updates' own,
    with update keys and the license vendor's public key installed, and hooks that apply
    settings by saying so."""
    work = tmp_path_factory.mktemp("dashboard")
    admin, data = work / "admin", work / "data"
    (data / "app").mkdir(parents=True)
    (data / "app" / "main.db").write_bytes(os.urandom(50_000))
    install_keys(admin, keys, version="1.0.0")
    assert vendor.main(["license-keygen", "--out", str(work / "license-keys")]) == 0
    (admin / "etc" / "license.pub").write_bytes((work / "license-keys" / "license.pub").read_bytes())
    (admin / "bin").mkdir()
    for hook in HOOKS:
        (admin / "bin" / hook).write_text('#!/bin/sh\necho "$0 $*"\n')
        (admin / "bin" / hook).chmod(0o755)
    (work / "storage-options.json").write_text(json.dumps({"options": STORAGE_OPTIONS}))
    (admin / "etc" / "api.token").write_text(TOKEN + "\n")
    (admin / "etc" / "backup.txt").write_text("app\n")
    (admin / "etc" / "changelog.txt").write_text("# Changelog\n\n## 1.0.0\n\n  * The first release\n")
    (admin / "etc" / "health-history.json").write_bytes(a_day_of_history().dumps())
    config = work / "config.json"
    # Credentials in the query are turned off: every request the dashboard makes must be signed.
    config.write_text(json.dumps({"endpoints": ENDPOINTS, "backup-root": str(data), "query-credentials": False,
                                  "storage-options-file": str(work / "storage-options.json")}))
    port = free_port()
    daemon = Twistd(work, ["--admin-path", str(admin), "--https", str(port), "--interface", "127.0.0.1",
                           "--config", str(config)])
    daemon.wait_listening(port)
    yield Appliance(f"https://127.0.0.1:{port}", admin, data, port, work / "license-keys" / "license.key")
    daemon.stop()
    assert "Traceback" not in daemon.text(), daemon.text()


def start_twistd(work: Path, config: dict) -> tuple[Twistd, str]:
    port = free_port()
    (work / "config.json").write_text(json.dumps(config))
    daemon = Twistd(work, ["--admin-path", str(work / "admin"), "--https", str(port), "--interface", "127.0.0.1",
                           "--config", str(work / "config.json")])
    daemon.wait_listening(port)
    return daemon, f"https://127.0.0.1:{port}"


@pytest.fixture
def other_appliance(tmp_path):
    """Another daemon, for a configuration of its own (first-run, no token yet)."""
    started = []

    def start(config: dict) -> str:
        daemon, base = start_twistd(tmp_path, config)
        started.append(daemon)
        return base

    yield start
    for daemon in started:
        daemon.stop()


@pytest.fixture(scope="module")
def browser():
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: install Debian's chromium (.ci/run does)")
    if SCREENSHOTS.exists():
        shutil.rmtree(SCREENSHOTS)
    SCREENSHOTS.mkdir()
    with playwright_api.sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM)
        yield chromium
        chromium.close()


def new_page(browser, base: str, viewport=LAPTOP):
    """A page of a fresh context, which records what should never happen: script errors
    and refusals by the Content-Security-Policy (``page.failures``), and every console
    error, a failed request included (``page.console_errors``)."""
    context = browser.new_context(ignore_https_errors=True, viewport=viewport, accept_downloads=True)
    context.set_default_timeout(WAIT_MS)
    page = context.new_page()
    page.failures, page.console_errors = [], []
    page.on("pageerror", lambda error: page.failures.append(str(error)))
    page.on("console", lambda m: page.failures.append(m.text) if "Content Security Policy" in m.text else None)
    page.on("console", lambda m: page.console_errors.append(m.text) if m.type == "error" else None)
    page.goto(base + "/")
    return page


@pytest.fixture
def page(browser, appliance):
    page = new_page(browser, appliance.base)
    yield page
    page.context.close()
    assert not page.failures, page.failures


def accessible(page, name: str) -> None:
    """axe-core finds no WCAG 2.2 AA violation in the page as it is now."""
    found = AXE.run(page, options=WCAG).response["violations"]
    with open(AXE_REPORT, "a") as report:
        report.write(f"{name}: {len(found)} violations\n")
    assert not found, [(v["id"], v["help"], [n["target"] for n in v["nodes"]][:5]) for v in found]


def shoot(page, name: str) -> None:
    """The page at a laptop's size and at a phone's, each checked by axe-core."""
    page.wait_for_timeout(150)  # let the last answer render
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)
    accessible(page, name)
    page.set_viewport_size(PHONE)
    # Laid out again for the width (the charts are drawn again): two frames later it is painted.
    page.evaluate("() => new Promise(done => requestAnimationFrame(() => requestAnimationFrame(done)))")
    page.wait_for_timeout(50)
    page.screenshot(path=str(SCREENSHOTS / f"{name}-phone.png"), full_page=True)
    accessible(page, f"{name}-phone")
    page.set_viewport_size(LAPTOP)
    page.evaluate("() => new Promise(done => requestAnimationFrame(() => requestAnimationFrame(done)))")


def until(condition, seconds: float = 10) -> None:
    """Poll a condition on the page from here (the page's policy refuses evaluated strings)."""
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "the page never got there"
        time.sleep(0.05)


def sign_in(page, token: str = TOKEN, remember: bool = False) -> None:
    page.fill("input[name=token]", token)
    if remember:
        page.check("#remember")
    page.click("#login button[type=submit]")
    page.wait_for_selector("header.topbar")


def open_page(page, page_id: str, title: str):
    page.click(f"nav a[data-page={page_id}]")
    page.wait_for_selector(f"h1.page-title:text-is('{title}')")
    page.wait_for_selector("main .card")
    return page


# Signing in and out


def test_sign_in_shows_the_version_and_health(page, appliance):
    shoot(page, "01-sign-in")
    page.fill("input[name=token]", "not-the-token")
    page.click("#login button[type=submit]")
    page.wait_for_selector(".field-error:text('not accepted')")
    shoot(page, "02-sign-in-refused")
    sign_in(page)
    page.wait_for_selector(".version-badge:text('v1.0.0')")
    page.wait_for_selector(".facts dd:text-is('1.0.0')")
    page.wait_for_selector("pre.changelog:has-text('The first release')")
    page.wait_for_selector(".topbar .meter[data-figure=disk]")
    page.wait_for_selector(".services li:has-text('jidoteki-admin-api')")
    page.wait_for_selector("section.card:has(h2:text-is('License')) >> text=No valid license is installed.")
    page.wait_for_selector("section.card:has(h2:text-is('TLS certificate')) dt:text-is('Expires')")
    assert re.search(r"Disk\n[0-9.]+ (KB|MB|GB|TB) used of [0-9.]+ (KB|MB|GB|TB)", page.inner_text("main"))
    shoot(page, "03-home")
    # The key, never the token, is kept; and only for this tab unless remembered.
    stored = page.evaluate("sessionStorage.getItem('jidoteki-admin-key')")
    assert stored == hashlib.sha256(TOKEN.encode()).hexdigest()
    assert page.evaluate("localStorage.length") == 0
    assert TOKEN not in json.dumps(page.evaluate("Object.entries(sessionStorage)"))


def test_signing_in_logs_nothing_in_the_console(browser, appliance):
    """The sign-in page asks GET /setup/state, which answers: nothing is refused on the way
    in. Home then asks for what this appliance has not saved yet (its network settings,
    license, build file), which the API answers 404, and nothing else."""
    page = new_page(browser, appliance.base)
    refused: list[str] = []
    page.on("response", lambda r: refused.append(r.url.split("?")[0]) if r.status >= 400 else None)
    try:
        page.wait_for_selector("#login")
        page.wait_for_timeout(300)
        assert page.console_errors == [] and refused == []
        sign_in(page)
        page.wait_for_selector(".services li")
        page.wait_for_timeout(300)
        not_yet = {appliance.base + "/api/v1/admin/" + name for name in ("settings", "license", "build")}
        assert set(refused) <= not_yet, refused
        assert len(page.console_errors) == len(refused)
    finally:
        page.context.close()


def test_the_menu_has_a_page_for_each_served_endpoint_and_no_other(page):
    sign_in(page)
    pages = page.eval_on_selector_all("nav a", "links => links.map(a => a.dataset.page)")
    assert pages == ["home", "monitor", "update", "network", "certs", "storage", "cluster", "license", "backup",
                     "token", "logs", "support", "restart"]
    page.set_viewport_size(PHONE)  # on a phone the menu folds behind a button
    assert not page.is_visible("nav a[data-page=update]")
    page.click(".menu-toggle")
    page.wait_for_selector("nav a[data-page=update]:visible")
    page.screenshot(path=str(SCREENSHOTS / "03-menu-phone.png"))
    page.click("nav a[data-page=update]")
    page.wait_for_selector("h1.page-title:text-is('Update')")
    assert not page.is_visible("nav a[data-page=update]")
    page.click(".menu-toggle")  # Escape closes it again, and the focus goes back to its button
    page.wait_for_selector("nav a[data-page=update]:visible")
    page.keyboard.press("Escape")
    assert not page.is_visible("nav a[data-page=update]")
    assert page.evaluate("document.activeElement.className") == "menu-toggle"
    page.click(".menu-toggle")
    page.click("nav .menu-signout")
    page.wait_for_selector("#login")


def test_requests_are_signed_and_no_url_carries_a_credential(page, appliance):
    sent: list = []
    page.on("request", lambda request: sent.append(request))
    sign_in(page)
    open_page(page, "update", "Update")
    api = [r for r in sent if "/api/v1/admin/" in r.url]
    assert api and TOKEN not in " ".join(r.url for r in sent)
    assert [r.url for r in api if re.search(r"[?&](token|hash)=", r.url)] == []
    unsigned = [r.url for r in api if not re.match(r'sig=\("@method" "@target-uri"', r.headers.get("signature-input", ""))]
    assert unsigned == [], unsigned
    page.click("#logout")  # the sign-in page asks the API's folder, unsigned, whether first-run is on
    page.wait_for_selector("#login")
    unsigned = [r.url for r in sent if "/api/v1/admin/" in r.url and "signature" not in r.headers]
    assert unsigned == [appliance.base + "/api/v1/admin/setup/state"]


def test_a_browser_whose_clock_is_an_hour_off_still_signs_at_the_appliances_time(browser, appliance):
    page = new_page(browser, appliance.base)
    page.add_init_script("const real = Date.now; Date.now = () => real() + 3600 * 1000;")
    page.reload()
    sign_in(page)
    open_page(page, "update", "Update")
    assert page.locator("text=1.0.0").first.is_visible()
    page.context.close()


def test_remember_me_keeps_the_key_for_30_days_and_sign_out_forgets_it(page, appliance):
    sign_in(page, remember=True)
    kept = json.loads(page.evaluate("localStorage.getItem('jidoteki-admin-key')"))
    assert kept["key"] == hashlib.sha256(TOKEN.encode()).hexdigest()
    assert 29.9 * 86400e3 < kept["expires"] - time.time() * 1000 <= 30 * 86400e3
    other = page.context.new_page()  # a new tab of the same browser is signed in
    other.goto(appliance.base + "/")
    other.wait_for_selector("header.topbar")
    other.close()
    page.click("#logout")
    page.wait_for_selector("#login")
    page.wait_for_selector(".message:text('signed out')")
    assert page.evaluate("localStorage.length + sessionStorage.length") == 0
    page.reload()
    page.wait_for_selector("#login")


# Update


def test_an_update_is_uploaded_with_progress_and_followed_to_success(page, appliance, keys, tmp_path):
    package = build(tmp_path, keys, "1.0.1", update_sh="#!/bin/sh\necho installing things\n", payload=3_000_000)
    sign_in(page)
    open_page(page, "update", "Update")
    page.wait_for_selector("text=No update has run on this appliance yet.")
    shoot(page, "04-update")
    page.set_input_files("input[name=update]", str(package))
    captions = "document.querySelector('#update-form ~ .progress .progress-text')"
    page.evaluate(f"""() => {{ window.captions = []; new MutationObserver(() => window.captions.push(
        {captions}.textContent)).observe({captions}, {{childList: true, characterData: true, subtree: true}}); }}""")
    page.click("#update-form button[type=submit]")  # checked first: nothing is installed yet
    page.wait_for_selector("#update-install:text('Install 1.0.1')")
    assert any(re.match(r"Uploading: [1-9][0-9.]* [KM]B of 3\.0 MB", c) for c in page.evaluate("window.captions"))
    assert "The appliance would install 1.0.1 over 1.0.0." in page.inner_text("#update-staged")
    assert (appliance.admin / "etc" / "version.txt").read_text().strip() == "1.0.0"
    shoot(page, "04b-update-checked")
    page.click("#update-install")
    page.wait_for_selector(".job .badge-success", timeout=WAIT_MS)
    page.wait_for_selector(".job-result .message-success:text('The update is installed')")
    page.wait_for_selector(".version-badge:text('v1.0.1')")
    assert page.locator(".progress-text:visible:has-text('Installing')").count() == 0  # not "Installing: 100 %"
    assert page.locator("text=The package is uploaded").count() == 0  # the outcome replaces it
    log = page.text_content(".job pre.log")
    assert "Updating system" in log and not re.search(r"\[\d{10}\]", log)  # times readable, not Unix seconds
    shoot(page, "05-update-done")
    assert (appliance.admin / "etc" / "version.txt").read_text().strip() == "1.0.1"
    page.wait_for_selector("#update-history td:text('Installed')")
    row = page.inner_text("#update-history tbody tr")
    assert "1.0.0" in row and "1.0.1" in row, row


def test_a_package_that_would_not_install_is_said_so_and_offers_no_install(page, appliance, keys, tmp_path):
    package = build(tmp_path, keys, "0.9.0")  # older than what is installed
    sign_in(page)
    open_page(page, "update", "Update")
    page.set_input_files("input[name=update]", str(package))
    page.click("#update-form button[type=submit]")
    page.wait_for_selector("#update-staged .message-error")
    said = page.inner_text("#update-staged")
    assert "would not install this package" in said and "'0.9.0' is not newer" in said, said
    assert page.locator("#update-install").count() == 0


def test_a_failed_update_shows_its_error_code_and_message(page, appliance, keys, tmp_path):
    installed = (appliance.admin / "etc" / "version.txt").read_text().strip()
    package = build(tmp_path, keys, "9.9.9", update_sh="#!/bin/sh\necho 'the migration failed' >&2\nexit 3\n")
    sign_in(page)
    open_page(page, "update", "Update")
    page.set_input_files("input[name=update]", str(package))
    page.click("#update-form button[type=submit]")
    page.click("#update-install")
    page.wait_for_selector(".job .badge-failed")
    failure = page.inner_text(".job-result .message-error")
    assert "exit status 3" in failure and "not rolled back" in failure, failure
    log = page.text_content(".job pre.log")
    assert "the migration failed" in log and "Updating system successful" not in log  # this run's lines only
    shoot(page, "06-update-failed")
    page.reload()  # the failure is the appliance's state: it is still shown
    page.wait_for_selector(".job .badge-failed")
    assert "exit status 3" in page.inner_text(".job-result .message-error")
    page.wait_for_selector("#update-history td:text('Failed')")
    assert "E1002" in page.inner_text("#update-history tbody tr") and installed in page.inner_text("#update-history")
    assert (appliance.admin / "etc" / "version.txt").read_text().strip() == installed


# Backup


def test_a_backup_is_started_followed_downloaded_restored_and_deleted(page, appliance):
    database = (appliance.data / "app" / "main.db").read_bytes()
    sign_in(page)
    open_page(page, "backup", "Backup and restore")
    page.wait_for_selector("text=There is no backup on the appliance.")
    assert page.locator("#backup-stop:visible").count() == 0  # nothing to stop or delete
    shoot(page, "07-backup")
    page.click("#backup-start")
    page.wait_for_selector(".job[data-job=backup] .badge-success")
    page.wait_for_selector("#backup-download:visible")
    expected = json.loads((appliance.admin / "home" / "sftp" / "uploads" / "backup.json").read_text())
    assert expected["sha256"] in page.inner_text("main")
    made = page.inner_text("#backup-details dt:text-is('Made') + dd")
    assert "just now" in made or "s ago" in made, made
    assert re.fullmatch(r"[0-9.]+ KB", page.inner_text("#backup-details dt:text-is('Size') + dd"))
    assert page.inner_text("#backup-stop") == "Delete the backup"
    shoot(page, "08-backup-done")
    with page.expect_download() as info:
        page.click("#backup-download")
    download = info.value
    assert download.suggested_filename == "backup.tar"
    saved = Path(download.path()).read_bytes()
    assert hashlib.sha256(saved).hexdigest() == expected["sha256"]
    # Put it back: the data as it was when backed up, the upload's progress shown.
    (appliance.data / "app" / "main.db").write_bytes(b"changed since")
    page.set_input_files("input[name=archive]", str(download.path()))
    page.click("#restore-form button[type=submit]")
    page.click("dialog button.danger")
    page.wait_for_selector(".job[data-job=restore] .message-success:text('The backup is restored')")
    assert page.locator("text=Uploaded; the appliance is restoring").count() == 0
    assert (appliance.data / "app" / "main.db").read_bytes() == database
    # Delete deletes it.
    page.click("#backup-stop")
    page.click("dialog button.danger")
    page.wait_for_selector(".message-success:text('The backup is deleted')")
    page.wait_for_selector("text=There is no backup on the appliance.")
    assert page.locator("#backup-download:visible").count() == 0
    assert not (appliance.admin / "home" / "sftp" / "uploads" / "backup.tar").exists()


def test_restore_asks_first_and_shows_why_an_archive_is_refused(page, appliance, tmp_path):
    bad = tmp_path / "backup.tar"
    bad.write_bytes(b"this is not a tar archive" * 100)
    sign_in(page)
    open_page(page, "backup", "Backup and restore")
    page.set_input_files("input[name=archive]", str(bad))
    page.click("#restore-form button[type=submit]")
    page.wait_for_selector("dialog[open]")
    shoot(page, "09-restore-confirm")
    page.click("dialog button.danger")
    page.wait_for_selector(".job[data-job=restore] .badge-failed")
    said = field_error(page, "archive")
    assert said.startswith("This file is not a backup this appliance can restore"), said
    assert page.locator("text=Uploaded; the appliance is restoring").count() == 0  # not left under the error
    shoot(page, "09-restore-refused")


# Support and restart


def test_support_downloads_the_logs(page, appliance):
    (appliance.admin / "etc" / "logs.txt").write_text("")
    sign_in(page)
    open_page(page, "support", "Support")
    shoot(page, "10-support")
    with page.expect_download() as info:
        page.click("button:text('Download the logs')")
    assert info.value.suggested_filename == "logs.tar.gz"
    assert Path(info.value.path()).read_bytes()[:2] == b"\x1f\x8b"


def test_restart_is_behind_a_confirmation(page, appliance):
    sign_in(page)
    open_page(page, "restart", "Restart")
    page.click("#restart")
    page.wait_for_selector("dialog[open]")
    shoot(page, "11-restart-confirm")
    page.click("dialog button:text('Cancel')")
    assert page.locator("dialog").count() == 0
    assert not (appliance.admin / "log" / "reboot.log").exists()


def test_the_monitor_draws_the_appliances_history_from_an_hour_to_a_year(page):
    sign_in(page)
    open_page(page, "monitor", "Monitor")
    page.wait_for_selector("svg.chart path.series-0")
    assert page.locator("svg.chart").count() == 4
    assert page.locator("text=keeps no health history").count() == 0
    memory = "svg[aria-label^='Memory use'] path.series-0"
    hour = page.get_attribute(memory, "d")
    assert hour.count("L") > 300  # 10-second samples
    assert page.locator("svg[aria-label^='Network traffic'] path.series-1").count() == 1
    # Text a person can read, at the size it is drawn: 11 px at least, on round ticks.
    sizes = page.eval_on_selector_all("svg.chart text", "ts => ts.map(t => t.getBoundingClientRect().height)")
    assert sizes and min(sizes) >= 11, sizes
    ticks = page.eval_on_selector_all("svg[aria-label^='CPU load'] text.value-tick", "ts => ts.map(t => t.textContent)")
    values = [float(t) for t in ticks]
    steps = {round(b - a, 6) for a, b in zip(values, values[1:])}
    assert len(values) >= 3 and values[0] == 0 and len(steps) == 1, ticks
    assert steps.pop() / 10 ** math.floor(math.log10(values[1])) in (1, 2, 2.5, 5), ticks  # 0, 0.5, 1, not 1.3
    memory_ticks = page.eval_on_selector_all("svg[aria-label^='Memory use'] text.value-tick",
                                             "ts => ts.map(t => t.textContent)")
    assert memory_ticks == ["0 %", "25 %", "50 %", "75 %", "100 %"]
    assert page.locator("svg[aria-label^='Memory use'] text.limit-text:text-is('limit 90 %')").count() == 1
    # The value now beside each chart, and a read-out under the pointer.
    assert re.fullmatch(r"Now: \d+ %", page.text_content("section:has(h2:text-is('Memory')) .now"))
    box = page.locator(".chart-box").nth(1).bounding_box()
    page.mouse.move(box["x"] + box["width"] * 0.6, box["y"] + 80)
    page.wait_for_selector(".chart-tip:visible")
    assert re.search(r"\d+ %", page.inner_text(".chart-tip:visible"))
    shoot(page, "12-monitor")
    page.click("button:text('Last day')")
    until(lambda: page.get_attribute(memory, "d").count("L") > 1000)  # minutes
    labels = page.eval_on_selector_all("svg[aria-label^='Memory use'] text[text-anchor=middle]", "ts => ts.map(t => t.textContent)")
    assert any(re.search(r"[A-Za-z]", label) for label in labels), labels  # midnight says which day
    shoot(page, "12-monitor-day")
    page.click("button:text('Last year')")
    until(lambda: page.get_attribute(memory, "d").count("L") < 30)  # hours
    shoot(page, "12-monitor-year")


# The token


def test_changing_the_token_signs_out_and_the_new_one_signs_in(page, appliance):
    sign_in(page)
    open_page(page, "token", "API token")
    shoot(page, "13-token")
    page.fill("input[name=newtoken]", "a new token")
    page.fill("input[name=newtoken2]", "a new token")
    page.click("main form button[type=submit]")
    page.wait_for_selector(".field-error:text('without spaces')")
    for new, then in (("second-Token!", TOKEN), (TOKEN, None)):
        page.fill("input[name=newtoken]", new)
        page.fill("input[name=newtoken2]", new)
        page.click("main form button[type=submit]")
        page.wait_for_selector(".message-success:text('Sign in with the new token')")
        assert (appliance.admin / "etc" / "api.token").read_text().strip() == new
        sign_in(page, new)
        if then:
            open_page(page, "token", "API token")


# The settings sections, against the real daemon: each page's form makes what its section
# takes, shows its refusals next to the field they name, and keeps what it masks.


def stored(path: Path) -> dict:
    return json.loads(path.read_text()) if path.exists() else {}


def saved(path: Path, condition, before: int | None = None) -> dict:
    """The document a job writes, once it holds what is expected (and, given the inode
    of the file before, once the job has written it again)."""
    until(lambda: path.exists() and (before is None or path.stat().st_ino != before) and condition(stored(path)))
    return stored(path)


def field_error(page, name: str) -> str:
    """The error shown next to the input called ``name``."""
    return page.inner_text(f".field:has([name={name}]) > .field-error")


def test_network_shows_the_appliances_refusal_at_its_field_and_saves_a_static_address(page, appliance):
    posted: list[str] = []
    page.on("request", lambda r: posted.append(r.url) if r.method == "POST" else None)
    sign_in(page)
    open_page(page, "network", "Network")  # never saved: GET /settings is 404, the form starts empty
    assert page.input_value("input[name=interface]") == "" and page.is_checked("#mode-dhcp")
    page.fill("input[name=interface]", "eth0")
    page.fill("input[name=hostname]", "admin.example.test")
    page.check("#mode-static")
    # The address is the one the page came from, so it does not move to another.
    page.fill("input[name=ip_address]", "127.0.0.1")
    page.fill("input[name=netmask]", "255.0.255.0")
    page.fill("input[name=gateway]", "2001:db8::1")
    page.click("#network-form button[type=submit]")
    page.wait_for_selector("#network-form .field-error:text('Type a netmask like 255.255.255.0')")
    assert posted == []  # the page's own check, in words for people
    assert page.evaluate("document.activeElement.name") == "netmask"
    page.fill("input[name=netmask]", "8")
    # Each address is one: only the appliance checks the gateway is of the address's family.
    page.click("#network-form button[type=submit]")
    page.wait_for_selector("input[name=gateway][aria-invalid=true]")
    assert field_error(page, "gateway") == "Type the gateway's address, an IPv4 or IPv6 address like the IP address."
    assert len(posted) == 1 and not (appliance.etc / "network.json").exists()
    shoot(page, "21-network-refused")
    page.fill("input[name=gateway]", "127.0.0.254")
    page.fill("input[name=dns1]", "127.0.0.53")
    page.fill("input[name=ntpserver]", "ntp.example.test:123")  # a port, as the appliance allows
    page.fill("input[name=app_name]", "R&D's app")  # app.json takes any text
    page.click("#network-form button[type=submit]")
    page.wait_for_selector(".job[data-job=settings] .message-success:text('The network settings are applied')")
    assert page.locator("#network-form .field-error:visible").count() == 0
    page.wait_for_selector("#network-in-effect dd:text-is('127.0.0.254')")
    network = saved(appliance.etc / "network.json", lambda d: d.get("mode") == "static")
    assert network == {"mode": "static", "interface": "eth0", "hostname": "admin.example.test",
                       "ip_address": "127.0.0.1", "netmask": "8", "gateway": "127.0.0.254", "dns1": "127.0.0.53",
                       "ntpserver": "ntp.example.test:123"}
    assert stored(appliance.etc / "app.json") == {"name": "R&D's app"}
    page.reload()  # what GET /settings answers now
    page.wait_for_selector("#network-form")
    assert page.is_checked("#mode-static") and page.input_value("input[name=gateway]") == "127.0.0.254"
    shoot(page, "22-network")
    page.check("#mode-dhcp")
    page.click("#network-form button[type=submit]")
    page.wait_for_selector(".message-info:text('takes its address from DHCP')")
    assert saved(appliance.etc / "network.json", lambda d: d.get("mode") == "dhcp") == {
        "mode": "dhcp", "interface": "eth0", "hostname": "admin.example.test", "ntpserver": "ntp.example.test:123"}


def test_a_certificate_is_installed_and_served_to_the_next_connection(page, appliance, tmp_path):
    import ssl

    from cryptography.hazmat.primitives import hashes

    root = issue("Dashboard Test Root", ca=True)
    leaf = issue("appliance.example.test", root)
    for name, content in (("server.pem", leaf.pem), ("server.key", leaf.key_pem), ("ca.pem", root.pem)):
        (tmp_path / name).write_bytes(content)
    sign_in(page)
    open_page(page, "certs", "TLS certificates")
    page.wait_for_selector(".facts dt:text-is('Subject')")
    shoot(page, "23-certs")
    page.set_input_files("input[name=public]", str(tmp_path / "server.pem"))
    page.set_input_files("input[name=private]", str(tmp_path / "server.key"))
    page.set_input_files("input[name=ca]", str(tmp_path / "ca.pem"))
    page.click("#certs-form button[type=submit]")
    page.wait_for_selector(".job-result .message-success:text('The certificate is installed')")
    assert page.locator(".job .badge-success").count() == 1
    page.wait_for_selector(".facts dd:text-is('CN=appliance.example.test')")
    assert "null" not in page.inner_text("main")
    shown = dict(zip(page.eval_on_selector_all("#certs-in-service dt", "e => e.map(x => x.textContent)"),
                     page.eval_on_selector_all("#certs-in-service dd", "e => e.map(x => x.textContent)")))
    assert shown["Issued by"] == "CN=Dashboard Test Root"
    assert shown["Names"] == "localhost, appliance.example.test"
    assert shown["SHA-256 fingerprint"] == leaf.certificate.fingerprint(hashes.SHA256()).hex(":").upper()
    assert str(leaf.certificate.not_valid_after_utc.year) in shown["Expires"]
    assert page.locator(".message-success:text('valid for 36')").count() == 1
    shoot(page, "24-certs-installed")
    served = ssl.get_server_certificate(("127.0.0.1", appliance.port))
    assert ssl.PEM_cert_to_DER_cert(served) == leaf.der
    # One that expires sooner is shown first, and installed only if the administrator says so.
    sooner = issue("sooner.example.test", root, not_after=datetime.datetime.now(datetime.timezone.utc)
                   + datetime.timedelta(days=20))
    (tmp_path / "sooner.pem").write_bytes(sooner.pem)
    (tmp_path / "sooner.key").write_bytes(sooner.key_pem)
    page.set_input_files("input[name=public]", str(tmp_path / "sooner.pem"))
    page.set_input_files("input[name=private]", str(tmp_path / "sooner.key"))
    page.click("#certs-form button[type=submit]")
    page.wait_for_selector("dialog[open]:has-text('sooner than the one in service')")
    assert page.locator("dialog dd:text-is('CN=sooner.example.test')").count() == 1
    shoot(page, "24-certs-sooner-confirm")
    page.click("dialog button:text('Cancel')")
    page.wait_for_selector(".message-info:text('Nothing was installed')")
    assert ssl.PEM_cert_to_DER_cert(ssl.get_server_certificate(("127.0.0.1", appliance.port))) == leaf.der


def test_a_vendor_license_installs_and_a_tampered_one_is_refused_readably(page, appliance, tmp_path):
    good = tmp_path / "license.asc"
    assert vendor.main(["license", "--key", str(appliance.license_key), "--app", "enterprise", "--users", "20",
                        "--expires", "2038-01-19", "--name", "Enterprise Company", "--contact", "cto@enterprise",
                        "--out", str(good)]) == 0
    armored = licensefile.parse(good.read_bytes())
    bad = tmp_path / "tampered.asc"
    bad.write_bytes(licensefile.armor(armored.document.replace(b'"users": 20', b'"users": 2000'), armored.signature))
    sign_in(page)
    open_page(page, "license", "License")
    page.wait_for_selector("text=No valid license is installed.")
    page.set_input_files("input[name=license]", str(good))
    page.click("#license-form button[type=submit]")
    page.wait_for_selector(".message-success:text('The license is installed')")
    for shown in ("Enterprise Company", "cto@enterprise", "19 January 2038"):
        page.wait_for_selector(f".facts dd:text-is('{shown}')")
    assert "null" not in page.inner_text("main") and page.locator(".message-error").count() == 0  # not expired
    shoot(page, "25-license")
    page.set_input_files("input[name=license]", str(bad))
    page.click("#license-form button[type=submit]")
    page.wait_for_selector(".message-error:text('This license was not installed')")
    assert field_error(page, "license").startswith("This license was not signed by this appliance's vendor")
    assert page.locator(".facts dd:text-is('20')").count() == 1  # the installed one still shown
    assert (appliance.etc / "license.asc").read_bytes() == good.read_bytes()
    shoot(page, "26-license-refused")
    # An expired license does not replace a valid one without a question.
    expired = tmp_path / "expired.asc"
    assert vendor.main(["license", "--key", str(appliance.license_key), "--app", "enterprise", "--users", "5",
                        "--expires", "2020-02-29", "--name", "Enterprise Company", "--contact", "cto@enterprise",
                        "--out", str(expired)]) == 0
    page.set_input_files("input[name=license]", str(expired))
    page.click("#license-form button[type=submit]")
    page.wait_for_selector("dialog[open]:has-text('This license expired on 29 February 2020')")
    shoot(page, "26-license-expired-confirm")
    page.click("dialog button:text('Cancel')")
    page.wait_for_selector(".message-info:text('the valid license stays')")
    assert (appliance.etc / "license.asc").read_bytes() == good.read_bytes()
    page.click("#license-form button[type=submit]")
    page.click("dialog button.danger")
    page.wait_for_selector(".message-warning:text('it has expired')")
    assert page.locator(".message-success:text('The license is installed')").count() == 0  # no green beside red
    page.wait_for_selector("#license-details .message-error:text('This license expired on 29 February 2020')")
    assert (appliance.etc / "license.asc").read_bytes() == expired.read_bytes()


def test_storage_offers_the_allowed_types_and_keeps_a_masked_password(page, appliance):
    settings = appliance.etc / "storage.json"
    sign_in(page)
    open_page(page, "storage", "Storage")
    # Never saved: GET /storage is 404, so every type is offered and the appliance says which it allows.
    page.wait_for_selector(".message-info:text('No storage settings are saved yet')")
    page.select_option("select[name=type]", "local")
    page.click("#storage-form button[type=submit]")
    page.wait_for_selector("select[name=type][aria-invalid=true]")
    assert field_error(page, "type") == "Choose one of the storage types this appliance allows: nfs, iscsi."
    page.select_option("select[name=type]", "nfs")
    page.fill("input[name=ip]", "192.168.1.100")
    page.click("#storage-form button[type=submit]")
    page.wait_for_selector("input[name=share][aria-invalid=true]")
    assert field_error(page, "share") == "This storage type needs the share."
    page.fill("input[name=share]", "/nfs/storage")
    page.click("#storage-form button[type=submit]")
    page.wait_for_selector(".job-result .message-success:text('next restart')")
    assert saved(settings, lambda d: True) == {"storage": {"type": "nfs", "ip": "192.168.1.100",
                                                           "share": "/nfs/storage"}}
    page.reload()
    page.wait_for_selector("#storage-form")
    options = page.eval_on_selector_all("select[name=type] option", "o => o.map(x => x.value)")
    assert options == STORAGE_OPTIONS and page.input_value("input[name=share]") == "/nfs/storage"
    page.select_option("select[name=type]", "iscsi")
    page.fill("input[name=ip]", "192.168.1.101")
    page.fill("input[name=target]", "iqn.2016-01.com.example:storage.lun1")
    page.fill("input[name=username]", "user")
    page.fill("input[name=password]", "s3cret pass!")
    page.click("#storage-form button[type=submit]")
    page.wait_for_selector(".job-result .message-success:text('next restart')")
    saved(settings, lambda d: d["storage"]["type"] == "iscsi")
    page.reload()
    page.wait_for_selector("#storage-form")
    assert page.get_attribute("input[name=password]", "type") == "password"
    assert page.input_value("input[name=password]") == "********"
    shoot(page, "27-storage")
    before = settings.stat().st_ino
    page.click("#storage-form button[type=submit]")
    assert saved(settings, lambda d: True, before) == {"storage": {
        "type": "iscsi", "ip": "192.168.1.101", "target": "iqn.2016-01.com.example:storage.lun1",
        "username": "user", "password": "s3cret pass!"}}


def test_cluster_keeps_its_secret_when_saved_again_without_it(page, appliance):
    settings = appliance.etc / "cluster.json"
    secret = "correct horse battery staple"
    sign_in(page)
    open_page(page, "cluster", "Cluster")
    page.fill("input[name=name]", "store")
    page.fill("input[name=node]", "node1")
    page.select_option("select[name=role]", "secondary")
    page.click("button:text('Add a peer')")
    page.fill("input[name=peer-name]", "node2")
    page.fill("input[name=peer-address]", "10.0.0.2")
    page.fill("input[name=peer-port]", "7946")
    page.click("#cluster-form button[type=submit]")  # no secret stored yet: one is needed
    page.wait_for_selector("input[name=secret][aria-invalid=true]")
    assert field_error(page, "secret").startswith("Type the shared secret: 16 to 256 characters")
    page.fill("input[name=secret]", secret)
    page.click("#cluster-form button[type=submit]")
    page.wait_for_selector(".job-result .message-success:text('The cluster settings are applied')")
    page.wait_for_selector(".job .badge-success")
    first = saved(settings, lambda d: True)
    assert first["cluster"]["secret"] == secret and first["cluster"]["role"] == "secondary"
    page.reload()
    page.wait_for_selector("#cluster-form")
    assert page.input_value("input[name=secret]") == ""
    assert page.get_attribute("input[name=secret]", "placeholder") == "unchanged"
    assert page.input_value("select[name=role]") == "secondary"
    shoot(page, "28-cluster")
    page.click("button:text('Add a peer')")
    page.locator("input[name=peer-name]").nth(1).fill("node3")
    page.locator("input[name=peer-address]").nth(1).fill("node3 example")
    page.click("#cluster-form button[type=submit]")
    page.wait_for_selector(".peer:nth-child(2) input[name=peer-address][aria-invalid=true]")
    assert page.inner_text(".peer:nth-child(2) .field:has([name=peer-address]) .field-error") == \
        "Type the peer's host name or IP address, like node2.example.com or 10.0.0.2."
    page.locator("input[name=peer-address]").nth(1).fill("node3.example.test")
    before = settings.stat().st_ino
    page.click("#cluster-form button[type=submit]")
    assert saved(settings, lambda d: True, before) == {"cluster": {
        "name": "store", "node": "node1", "role": "secondary", "secret": secret,
        "peers": [{"name": "node2", "address": "10.0.0.2", "port": 7946},
                  {"name": "node3", "address": "node3.example.test"}]}}
    page.wait_for_selector(".facts dd:has-text('node3 (node3.example.test)')")


# The modules' logic, in the same browser


@pytest.fixture(scope="module")
def js(browser, appliance):
    """One page for the checks of the modules' logic, which change nothing in it."""
    context = browser.new_context(ignore_https_errors=True)
    page = context.new_page()
    page.goto(appliance.base + "/")
    page.wait_for_selector("#login")
    yield page
    context.close()


def module(page, name: str, expression: str, *args):
    """Evaluate ``expression`` (a function of the module ``m`` and args) in the page."""
    return page.evaluate(f"async (args) => {{ const m = await import('/dashboard/{name}'); return ({expression})(m, ...args); }}",
                         list(args))


def test_the_key_and_the_signature_are_those_of_api_md(js):
    key = module(js, "api.js", "(m, token) => m.deriveKey(token)", TOKEN)
    assert key == "13e2ff941bbc8692cad141c8d293dda2c4f1c1a3c51b93d54f1a1693e1206107"
    headers = module(js, "api.js", "(m, k) => m.signatureHeaders(k, 'GET', "
                     "'https://appliance.example:8443/api/v1/admin/version', null, 1796644800, "
                     "'4f1c0b2a9d8e7f6a5b4c3d2e1f0a9b8c')", key)
    assert headers == {
        "Signature-Input": 'sig=("@method" "@target-uri");created=1796644800;keyid="admin";alg="hmac-sha256";'
                           'nonce="4f1c0b2a9d8e7f6a5b4c3d2e1f0a9b8c"',
        "Signature": "sig=:AnAciuRNsxY1T+06H9gAFeIGX5AO3RaKj77/zjcWBnY=:"}


def test_a_large_body_is_digested_in_slices_as_sha256_does(js):
    """The slice-at-a-time SHA-256 (for uploads of gigabytes) against Python's, at the
    lengths where padding changes."""
    for length in (0, 55, 56, 63, 64, 65, 119, 120, 4 * 1024 * 1024 + 3, 9 * 1024 * 1024):
        digest = module(js, "sha256.js", "async (m, n) => { const data = new Uint8Array(n); "
                        "for (let i = 0; i < n; i++) data[i] = (i * 31 + 7) & 255; "
                        "return Array.from(await m.blobDigest(new Blob([data])), b => b.toString(16).padStart(2, '0'))"
                        ".join(''); }", length)
        expected = hashlib.sha256(bytes((i * 31 + 7) & 255 for i in range(length))).hexdigest()
        assert digest == expected, length


def test_error_messages_are_sentences_not_json(js):
    cases = [
        (400, "Bad Request", "E1004: An update is already running",
         '{"Status":"400 Bad Request","Error-Message":"E1004: An update is already running"}'),
        (404, "Not Found", None, '{"Status":"404 Not Found"}'),
        (403, "Forbidden", "Authentication error", '{"Status":"403 Forbidden","Error-Message":"Authentication error",'
                                                   '"First-Run":true}'),
        (502, "Bad Gateway", None, "<html>proxy</html>"),
    ]
    answers = [module(js, "api.js", "(m, s, t, h, b) => { const e = m.errorMessage(s, t, h, b);"
                                      " return [e.message, e.firstRun]; }", *case) for case in cases]
    assert answers[0] == ["E1004: An update is already running", None]
    assert answers[1][0].startswith("Not found")
    assert answers[2] == ["Authentication error", True]
    assert answers[3] == ["The appliance answered 502 Bad Gateway", None]


@pytest.mark.parametrize("health, red", [
    ({"cpu": {"num": 2, "cpu5min": 1.99}, "memory": {"percentage": 89}, "disk": {"percentage": 97}}, []),
    ({"cpu": {"num": 2, "cpu5min": 2.0}, "memory": {"percentage": 89}, "disk": {"percentage": 97}}, ["cpu"]),
    ({"cpu": {"num": 1, "cpu5min": 0.1}, "memory": {"percentage": 90}, "disk": {"percentage": 98}}, ["disk", "memory"]),
])
def test_the_health_figures_turn_red_at_the_original_limits(js, health, red):
    alerts = module(js, "health.js", "(m, h) => m.healthAlerts(h)", health)
    assert sorted(name for name, on in alerts.items() if on) == red


def test_the_menu_follows_the_endpoint_catalogue(js):
    everything = ["/api/v1/admin/" + n for n in ("backup", "build", "certs", "changelog", "cluster", "debug", "endpoints",
                                                 "health", "license", "logs", "reboot", "services", "settings",
                                                 "setup", "storage", "update", "version")] + ["/docs"]
    ids = module(js, "app.js", "(m, l) => m.availablePages(l).map(p => p.id)", everything)
    assert ids == ["home", "monitor", "update", "network", "certs", "storage", "cluster", "license", "backup", "token",
                   "logs", "support", "restart"]
    few = ["/api/v1/admin/version", "/api/v1/admin/debug", "/docs"]
    assert module(js, "app.js", "(m, l) => m.availablePages(l).map(p => p.id)", few) == ["home", "support"]


VALUES = ["eth0", "e0", "enp0s31f6", "eth-0", "a" * 15, "host", "ab", "test.host", "-bad.host", "a..b", "1.2.3.4",
          "1.2.3", "256.1.1.1", "01.2.3.4", "192.168.1.100", "::1", "2001:db8::10", "2001:db8::g", "fe80::1%eth0",
          "fe80::1%", "fe80::1%a%b", "fe80::1%a/b", "1.2.3.4%x", "::ffff:1.2.3.4", "1::2::3", "1:2:3:4:5:6:7:8:9", "255.255.255.0", "255.0.255.0", "24", "33", "0", "128", "129", "024", "", " ", "x" * 64 + ".com",
          "host.", "h_st.example", "pool.ntp.org", "10.0.0.1:123", "example.com:80", "[2001:db8::1]:123", "[::1]",
          "[1.2.3.4]:1", "host:0", "host:65536", "host:", "a:b:c", "pool.ntp.org time.example", "[::1]:x"]


def test_the_network_checks_give_the_servers_verdicts(js):
    def verdict(check, *args):
        try:
            check(*args)
            return None
        except validate.Invalid as problem:
            return str(problem)

    got = js.evaluate("""async (values) => {
        const m = await import('/dashboard/rules.js');
        return values.map(v => [m.checkInterface(v), m.checkHostname(v), m.checkAddress(v, 'gateway'),
                                m.checkNetmask(v, 4), m.checkNetmask(v, 6), m.checkHostOrAddress(v, 'ntpserver'),
                                m.checkHostOrAddress(v, 'ntpserver', true)]);
    }""", VALUES)
    for value, answers in zip(VALUES, got):
        expected = [verdict(validate.interface, value), verdict(validate.hostname, value),
                    verdict(validate.ip_address, value, "gateway"), verdict(validate.netmask, value, 4),
                    verdict(validate.netmask, value, 6), verdict(validate.host_or_address, value, "ntpserver"),
                    verdict(validate.host_or_address, value, "ntpserver", True)]
        assert answers == expected, value


def refusals() -> list[str]:
    """What the appliance's checks say of bad network, storage and cluster settings, and of
    bad certificates: the messages the dashboard must put in words for people."""
    from jidoteki_admin.formats import certificates, cluster_settings, storage_settings

    said = []

    def record(check, *args):
        try:
            check(*args)
        except (validate.Invalid, ValueError) as problem:
            said.append(str(problem))

    for value in VALUES:
        for check, args in ((validate.interface, ()), (validate.hostname, ()), (validate.ip_address, ("gateway",)),
                            (validate.netmask, (4,)), (validate.netmask, (6,)),
                            (validate.host_or_address, ("ntpserver", True))):
            record(check, value, *args)
    record(validate.settings_document, {"network": {"interface": "eth0", "hostname": "a.b.c", "ip_address": "1.2.3.4"}})
    allowed = ("nfs", "iscsi")
    for document in ({"storage": {"type": "local"}}, {"storage": {"type": "nfs", "ip": "1.2.3.4"}},
                     {"storage": {"type": "nfs", "ip": "host", "share": "/x"}},
                     {"storage": {"type": "nfs", "ip": "1.2.3.4", "share": "x"}},
                     {"storage": {"type": "nfs", "ip": "1.2.3.4", "share": "/x", "device": "e0.1"}},
                     {"storage": {"type": "iscsi", "ip": "1.2.3.4", "target": "iqn.2016-01.com.example:x",
                                  "username": "u"}},
                     {"storage": {"type": "iscsi", "ip": "1.2.3.4", "target": "nope"}},
                     {"storage": {"type": "iscsi", "ip": "1.2.3.4", "target": "iqn.2016-01.com.example:x",
                                  "username": "u", "password": "a$b"}}):
        record(storage_settings.storage_settings, document, allowed)
    good = {"name": "store", "node": "node1", "role": "primary", "secret": "s" * 20}
    for cluster in ({**good, "name": "-x"}, {**good, "role": "boss"}, {**good, "secret": "short"},
                    {**good, "peers": [{"name": "node1", "address": "10.0.0.2"}]},
                    {**good, "peers": [{"name": "n2", "address": "bad address"}]},
                    {**good, "peers": [{"name": "n2", "address": "10.0.0.2"}, {"name": "n2", "address": "10.0.0.3"}]},
                    {**good, "peers": [{"name": f"n{i}", "address": f"10.0.0.{i}"} for i in range(2, 70)]}):
        record(cluster_settings.cluster_settings, {"cluster": cluster})
    root, leaf = issue("Words Root", ca=True), issue("words.example.test")
    other = issue("other.example.test")
    now = datetime.datetime.now(datetime.timezone.utc)
    for public, private, ca in ((b"", leaf.key_pem, None), (b"junk", leaf.key_pem, None),
                                (leaf.pem, b"junk", None), (leaf.pem, other.key_pem, None),
                                (leaf.pem, leaf.key_pem, root.pem)):
        record(certificates.validate, public, private, ca, now)
    return said


def test_every_refusal_of_the_appliances_checks_is_put_in_words(js):
    said = refusals()
    assert len(said) > 100
    explained = js.evaluate("""async (messages) => {
        const m = await import('/dashboard/words.js');
        return messages.map(text => [text, m.explain(text)]);
    }""", sorted(set(said)))
    unknown = [text for text, answer in explained if not answer["known"]]
    assert unknown == []
    assert all("option:" not in answer["text"] for _, answer in explained)  # people's words, not the API's


def test_a_static_network_needs_its_address_netmask_and_gateway(js):
    problems = module(js, "rules.js", "(m, v) => m.networkProblems(v)",
                      {"mode": "static", "interface": "eth0", "hostname": "test.host", "ip_address": "192.168.1.10"})
    assert sorted(problems) == ["gateway", "netmask"]
    assert module(js, "rules.js", "(m, v) => m.networkProblems(v)",
                  {"mode": "dhcp", "interface": "eth0", "hostname": "test.host", "ip_address": "junk"}) == {}
    document = module(js, "network.js", "(m, v, p) => m.settingsDocument(v, p)",
                      {"mode": "dhcp", "interface": "eth0", "hostname": "test.host", "ip_address": "192.168.1.10",
                       "app_name": "testapp"},
                      {"network": {"mode": "static", "ip_address": "192.168.1.9", "custom": "kept"}, "app": {"x": 1}})
    assert document == {"network": {"interface": "eth0", "hostname": "test.host", "custom": "kept"},
                        "app": {"x": 1, "name": "testapp"}}
    assert module(js, "network.js", "(m, a) => m.newLocation(a, {protocol: 'https:', port: '8443'})",
                  "2001:db8::10") == "https://[2001:db8::10]:8443/"


def test_storage_offers_only_the_allowed_types_and_cluster_documents_are_typed(js):
    assert module(js, "storage.js", "(m, a) => m.allowedTypes(a)",
                  {"storage": {"type": "nfs"}, "options": ["nfs", "unknown", "local"]}) == ["nfs", "local"]
    assert module(js, "storage.js", "(m, t, v) => m.storageDocument(t, v)", "nbd",
                  {"ip": "192.168.1.100", "port": "1043", "export_name": "", "stray": "x"}) == {
        "storage": {"type": "nbd", "ip": "192.168.1.100", "port": "1043"}}
    assert module(js, "cluster.js", "(m, v, p) => m.clusterDocument(v, p)",
                  {"name": "c1", "role": "primary", "node": "n1", "secret": ""},
                  [{"name": "n2", "address": "10.0.0.2", "port": "7000"}, {"name": "", "address": "", "port": ""}]) == {
        "cluster": {"name": "c1", "role": "primary", "node": "n1",
                    "peers": [{"name": "n2", "address": "10.0.0.2", "port": 7000}]}}
    kept = module(js, "cluster.js", "(m, v) => m.clusterDocument(v, [], true)",
                  {"name": "c1", "role": "primary", "node": "n1", "secret": ""})
    assert kept["cluster"]["secret"] == "********"  # the appliance keeps the secret it has
    named = [module(js, "rules.js", "(m, t) => m.optionNamed(t)", text) for text in (
        "Missing or invalid string for option: gateway. Allowed: x", "Unknown option in storage of type aoe: ip.",
        "Missing option for storage type nfs: share", "Invalid license signature")]
    assert named == ["gateway", "ip", "share", None]


def test_storage_before_its_settings_are_saved_offers_every_type_and_without_options_none(js):
    answers = js.evaluate("""async () => {
        const m = await import('/dashboard/storage.js');
        const refusing = (status, message) => ({json: async () => {
            throw Object.assign(new Error(message), {status}); }});
        const loaded = [];
        for (const [status, message] of [[404, 'storage.json not found'], [404, 'Storage options not found: /x']]) {
            loaded.push(await m.loadStorage(refusing(status, message)));
        }
        try { await m.loadStorage(refusing(500, 'storage.json is not valid JSON')); } catch (e) { loaded.push(e.status); }
        return loaded;
    }""")
    assert answers == [{"answer": {"storage": {}, "options": ["local", "nfs", "aoe", "iscsi", "nbd"]}, "unsaved": True},
                       None, 500]


def test_chart_lines_break_at_gaps_and_stay_inside_the_plot(js):
    path = module(js, "chart.js", "(m, p) => m.linePath(p, 0, 100, 10)", [[0, 0], [50, 20], [60, None], [100, 5]])
    assert path.count("M") == 2 and path.count("L") == 1
    numbers = [float(n) for n in re.findall(r"[\d.]+", path)]
    assert all(0 <= n <= 640 for n in numbers)
    assert module(js, "chart.js", "(m, v) => [0, 0.3, 7, 10, 11, 1234].map(m.niceMax)", 0) == [1, 0.5, 10, 10, 20, 2000]


# What a real daemon cannot show (a lost connection, a disk 98 % full, an appliance moving
# to a new address, a restart), against answers shaped as API.md documents them: the
# browser's requests are answered by the test, not by a daemon.

FAKE_HEALTH = {"disk": {"used": "230G", "total": "234G", "percentage": 98},
               "memory": {"used": "260M", "total": "1000M", "percentage": 26},
               "cpu": {"num": 2, "load": "0.66, 0.28, 0.14", "cpu5min": 0.28, "cpu5minPercent": 3}}
FAKE = {
    "/version": {"version": "2.3.0"},
    "/endpoints": {"endpoints": ["/api/v1/admin/" + n for n in ("endpoints", "health", "settings", "setup", "version")]
                   + ["/docs"]},
    "/health": FAKE_HEALTH,
    "/settings": {"network": {"mode": "static", "interface": "eth0", "hostname": "test.host",
                              "ip_address": "192.168.1.100", "netmask": "255.255.255.0", "gateway": "192.168.1.1",
                              "dns1": "192.168.1.2", "ntpserver": "pool.ntp.org"}, "app": {"name": "testapp"}},
}


class FakeApi:
    """Answers the dashboard's requests as an appliance whose disk is nearly full would."""

    def __init__(self):
        self.posted: dict[str, list[bytes]] = {}

    def __call__(self, route):
        request = route.request
        path = re.sub(r"\?.*", "", request.url.split("/api/v1/admin", 1)[1])
        if "signature" not in request.headers:
            return route.fulfill(status=403, content_type="application/json",
                                 body='{"Status":"403 Forbidden","Error-Message":"Authentication error"}')
        if request.method == "POST":
            self.posted.setdefault(path, []).append(request.post_data_buffer or b"")
            return route.fulfill(status=202, content_type="application/json",
                                 body=json.dumps({"Status": "202 Accepted", "Location": "/api/v1/admin" + path}))
        if path in FAKE:
            return route.fulfill(status=200, content_type="application/json", body=json.dumps(FAKE[path]))
        return route.fulfill(status=404, content_type="application/json", body='{"Status":"404 Not Found"}')


@pytest.fixture
def fake(page):
    api = FakeApi()
    page.route("**/api/v1/admin/**", api)
    page.reload()
    sign_in(page)
    return api


def test_the_health_bar_is_red_at_98_percent_disk(page, fake):
    page.wait_for_selector(".topbar .health.alert .meter.alert[data-figure=disk]")
    assert page.locator(".topbar .meter.alert").count() == 1
    shoot(page, "40-fake-home")


def test_a_lost_connection_says_so_over_the_whole_page(page, fake):
    open_page(page, "network", "Network")
    page.route("**/api/v1/admin/**", lambda route: route.abort("connectionrefused"))
    page.wait_for_selector(".disconnected:visible h2:text-is('Disconnected')", timeout=4000)
    assert page.evaluate("document.querySelector('.frame').inert")
    shoot(page, "41-fake-connection-lost")


def test_after_an_address_change_the_page_moves_to_the_new_address(page, fake):
    port = page.url.split(":")[2].split("/")[0]
    page.clock.install()  # the page waits between polls: its clock is moved on, not waited for
    page.reload()
    page.wait_for_selector("header.topbar")
    arrived = []
    page.route("https://192.168.1.50:*/**", lambda route: (arrived.append(route.request.url), route.fulfill(
        status=200, content_type="text/html", body="<!doctype html><title>moved</title><p>moved</p>")))
    open_page(page, "network", "Network")
    page.fill("input[name=ip_address]", "192.168.1.50")
    page.click("#network-form button[type=submit]")
    page.wait_for_selector(f".message-warning a[href='https://192.168.1.50:{port}/']")
    shoot(page, "42-fake-network-moving")
    page.clock.run_for(2100)
    assert arrived == []  # the old address still answers: the page stays
    page.route("**/api/v1/admin/version**", lambda route: route.abort("connectionrefused"))  # the old address is gone
    until(lambda: page.clock.run_for(500) or bool(arrived))
    page.wait_for_url(f"https://192.168.1.50:{port}/")
    assert arrived == [f"https://192.168.1.50:{port}/"]


def test_restart_waits_for_the_appliance_to_go_and_come_back(page, fake):
    page.click("nav a[data-page=home]")  # the fake serves no /reboot: the menu has no Restart
    assert page.locator("nav a[data-page=restart]").count() == 0
    FAKE["/endpoints"]["endpoints"].append("/api/v1/admin/reboot")
    FAKE["/reboot"] = {"Status": "202 Accepted"}
    try:
        page.clock.install()  # the page waits between polls: its clock is moved on, not waited for
        page.reload()
        page.wait_for_selector("header.topbar")
        open_page(page, "restart", "Restart")
        page.click("#restart")
        page.click("dialog button.danger")
        page.wait_for_selector(".message-warning:text('Restarting')")
        page.route("**/api/v1/admin/version**", lambda route: route.abort("connectionrefused"))
        page.clock.run_for(2100)
        page.wait_for_selector(".message-warning:text('is down')")
        shoot(page, "43-fake-restarting")
        page.unroute("**/api/v1/admin/version**")
        page.clock.run_for(2100)
        page.wait_for_selector(".message-success:text('restarted')")
    finally:
        FAKE["/endpoints"]["endpoints"].remove("/api/v1/admin/reboot")
        del FAKE["/reboot"]


# First run and the first token


def test_first_run_signs_in_with_the_passphrase_and_sets_a_new_token(browser, other_appliance, tmp_path):
    base = other_appliance({"first-run": {"enabled": True, "word-length": 4}})
    etc = tmp_path / "admin" / "etc"
    passphrase = (etc / "api.token").read_text().strip()
    context = browser.new_context(ignore_https_errors=True, viewport=LAPTOP)
    try:
        page = context.new_page()
        page.goto(base + "/")
        page.wait_for_selector("h2:text('First run: sign in with the passphrase')")
        shoot(page, "30-first-run")
        sign_in_form = page.locator("#login")
        sign_in_form.locator("input[name=token]").fill(passphrase)
        sign_in_form.locator("button[type=submit]").click()
        page.wait_for_selector("h2:text('Choose a new API token')")
        page.reload()  # signed in with the passphrase: still no way round choosing a token
        page.wait_for_selector("h2:text('Choose a new API token')")
        shoot(page, "31-first-run-new-token")
        page.fill("input[name=newtoken]", "my-own-token")
        page.fill("input[name=newtoken2]", "my-own-token")
        page.click("form button[type=submit]")
        page.wait_for_selector("header.topbar")
        assert (etc / "api.token").read_text().strip() == "my-own-token"
        assert (etc / "api.token.setup").read_text() == ""
        assert page.evaluate("sessionStorage.getItem('jidoteki-admin-key')") == \
            hashlib.sha256(b"my-own-token").hexdigest()
        page.reload()  # first-run is over: the ordinary sign-in page
        page.click("#logout")
        page.wait_for_selector("h2:text-is('Sign in')")
    finally:
        context.close()


def test_an_appliance_without_a_token_takes_its_first_one_from_the_page(browser, other_appliance, tmp_path):
    base = other_appliance({})
    context = browser.new_context(ignore_https_errors=True, viewport=LAPTOP)
    try:
        page = context.new_page()
        page.goto(base + "/")  # no token: the page says so and asks for the first one
        page.wait_for_selector("h2:text('Set the first API token')")
        shoot(page, "32-first-token")
        page.fill("input[name=newtoken]", "the-first-token")
        page.fill("input[name=newtoken2]", "the-first-token")
        page.click("form button[type=submit]")
        page.wait_for_selector(".message-success:text('The token is set')")
        assert (tmp_path / "admin" / "etc" / "api.token").read_text().strip() == "the-first-token"
        sign_in(page, "the-first-token")
    finally:
        context.close()


# What the appliance is, not what the page assumed: a failure stays a failure, a daemon that
# is gone is shown at once and found again, a change waits for the administrator's word.


def test_a_failing_network_hook_is_shown_as_a_failure_until_the_next_change(page, appliance):
    hook = appliance.admin / "bin" / "network.sh"
    sign_in(page)
    open_page(page, "network", "Network")
    page.fill("input[name=interface]", "eth0")
    page.fill("input[name=hostname]", "good.example.test")
    page.check("#mode-dhcp")
    page.click("#network-form button[type=submit]")
    page.wait_for_selector(".job[data-job=settings] .message-success")
    hook.write_text('#!/bin/sh\nif grep -q eth9 "$(dirname "$0")/../etc/network.json"; then\n'
                    '  echo "no such interface: eth9" >&2; exit 3\nfi\n')
    try:
        page.fill("input[name=interface]", "eth9")
        page.fill("input[name=hostname]", "bad.example.test")
        page.click("#network-form button[type=submit]")
        page.wait_for_selector(".job[data-job=settings] .badge-failed")
        said = page.inner_text(".job[data-job=settings] .job-result .message-error")
        assert "could not apply the settings (its network.sh failed with status 3)" in said, said
        assert "put the previous ones back" in said
        assert page.locator(".message-success:visible").count() == 0  # no green "saved" for a failure
        log = page.text_content(".job[data-job=settings] pre.log")
        assert "no such interface: eth9" in log
        # In effect: the previous settings, which the appliance put back.
        page.wait_for_selector("#network-in-effect dd:text-is('good.example.test')")
        shoot(page, "29-network-hook-failed")
        page.reload()  # the failure is the appliance's state, not the page's memory
        page.wait_for_selector(".job[data-job=settings] .badge-failed")
        assert page.input_value("input[name=hostname]") == "good.example.test"
        assert "previous ones back" in page.inner_text(".job-result .message-error")
    finally:
        hook.write_text('#!/bin/sh\necho "$0 $*"\n')
    page.click("#network-form button[type=submit]")  # the next change clears it
    page.wait_for_selector(".job[data-job=settings] .badge-success")
    assert page.locator(".job-result .message-error").count() == 0


def test_the_first_click_on_apply_is_not_lost_when_an_error_appears(page):
    """A field checked when it is left grows an error, which pushes the button down: the
    click that left the field must still reach the button."""
    sign_in(page)
    open_page(page, "network", "Network")
    page.fill("input[name=interface]", "eth0")
    page.fill("input[name=hostname]", "admin.example.test")
    page.fill("input[name=app_name]", "app")
    page.fill("input[name=ntpserver]", "not a host name")  # the field just above the button
    page.focus("input[name=ntpserver]")
    page.click("#network-form button[type=submit]")  # a real press and release, where it was
    page.wait_for_selector(".message-error:text('Some settings are not valid')", timeout=3000)
    assert field_error(page, "ntpserver").startswith("Type a time server's name or address")


def restartable(tmp_path, config: dict) -> tuple[callable, str]:
    """A daemon of its own, which can be stopped and started again on the same port."""
    port = free_port()
    admin = tmp_path / "admin"
    (tmp_path / "config.json").write_text(json.dumps(config))
    args = ["--admin-path", str(admin), "--https", str(port), "--interface", "127.0.0.1",
            "--config", str(tmp_path / "config.json")]
    running = []

    def start():
        running.append(Twistd(tmp_path, args))
        running[-1].wait_listening(port)
        return running[-1]

    return start, running, f"https://127.0.0.1:{port}"


def test_a_stopped_daemon_is_shown_at_once_and_found_again(browser, tmp_path):
    start, running, base = restartable(tmp_path, {"endpoints": ["settings"]})
    (tmp_path / "admin" / "etc").mkdir(parents=True)
    (tmp_path / "admin" / "etc" / "api.token").write_text(TOKEN + "\n")
    daemon = start()
    page = new_page(browser, base)
    try:
        sign_in(page)
        page.wait_for_selector(".services li:has-text('jidoteki-admin-api')")
        daemon.stop()
        stopped = time.monotonic()
        page.wait_for_selector(".disconnected:visible h2:text-is('Disconnected')", timeout=5000)
        assert time.monotonic() - stopped < 4.5  # the page asks every 3 s: it is told at once
        assert page.evaluate("document.querySelector('.frame').classList.contains('stale')")
        assert "may no longer be true" in page.inner_text(".disconnected")
        shoot(page, "44-disconnected")
        # A page not opened yet still opens (its module was loaded with the rest), and says why it is empty.
        page.evaluate("location.hash = '#/network'")
        page.wait_for_selector("h1.page-title:text-is('Network')")
        assert "Failed to fetch" not in page.inner_text("body")
        start()
        page.wait_for_selector(".disconnected", state="hidden", timeout=15000)
        page.wait_for_selector("#network-form")  # the page is read again from the appliance
        assert not page.evaluate("document.querySelector('.frame').inert")
    finally:
        page.context.close()
        for each in running:
            each.stop()
    assert not page.failures, page.failures


def test_a_network_change_waits_for_keep_or_undo_with_a_countdown(browser, tmp_path):
    start, running, base = restartable(tmp_path, {"endpoints": ["settings"], "settings-confirm-seconds": 30})
    (tmp_path / "admin" / "etc").mkdir(parents=True)
    (tmp_path / "admin" / "bin").mkdir(parents=True)
    (tmp_path / "admin" / "etc" / "api.token").write_text(TOKEN + "\n")
    (tmp_path / "admin" / "bin" / "network.sh").write_text('#!/bin/sh\necho "network.sh $*"\n')
    (tmp_path / "admin" / "bin" / "network.sh").chmod(0o755)
    start()
    page = new_page(browser, base)
    network = tmp_path / "admin" / "etc" / "network.json"
    try:
        sign_in(page)
        open_page(page, "network", "Network")
        page.fill("input[name=interface]", "eth0")
        page.fill("input[name=hostname]", "kept.example.test")
        page.click("#network-form button[type=submit]")
        page.wait_for_selector(".confirm-banner:visible h2:text('Keep the new network settings?')")
        count = page.inner_text(".countdown")
        assert re.fullmatch(r"The previous settings come back in (2\d|30) s\.", count), count
        page.wait_for_timeout(1200)
        assert page.inner_text(".countdown") != count  # it counts down
        assert page.evaluate("document.activeElement.id") == "confirm-keep"
        shoot(page, "45-network-keep-or-undo")
        page.keyboard.press("Enter")  # Keep
        page.wait_for_selector(".job[data-job=settings] .badge-success")
        assert json.loads(network.read_text())["hostname"] == "kept.example.test"
        page.fill("input[name=hostname]", "undone.example.test")
        page.click("#network-form button[type=submit]")
        page.click("#confirm-undo")
        page.wait_for_selector(".job[data-job=settings] .badge-failed")
        assert "The change was undone" in page.inner_text(".job-result .message-error")
        assert json.loads(network.read_text())["hostname"] == "kept.example.test"
        page.wait_for_selector(".confirm-banner", state="hidden")
    finally:
        page.context.close()
        for each in running:
            each.stop()
    assert not page.failures, page.failures


# Keyboard only


def focused(page) -> str:
    return page.evaluate("(() => { const e = document.activeElement; return e.name || e.id || e.textContent; })()")


def tab_to(page, wanted: str, most: int = 40) -> int:
    """Press Tab until the focus is on ``wanted`` (an id, a name or a text); how many presses."""
    for presses in range(1, most + 1):
        page.keyboard.press("Tab")
        if focused(page) == wanted:
            return presses
    raise AssertionError(f"Tab never reached {wanted}: at {focused(page)}")


def test_keyboard_only_sign_in_update_network_and_backup(page, appliance, keys, tmp_path):
    # Sign in: the field has the focus; Enter signs in.
    page.wait_for_selector("#login")
    assert focused(page) == "token"
    page.keyboard.type(TOKEN)
    page.keyboard.press("Enter")
    page.wait_for_selector("header.topbar")
    # The skip link comes first, and leads past the menu.
    # Focus is seen on the dark top bar: a yellow ring, well over 3:1 against it.
    tab_to(page, "logout")
    ring = page.evaluate("getComputedStyle(document.activeElement).outlineColor")
    assert ring == "rgb(255, 211, 61)", ring
    assert contrast(ring, page.evaluate("getComputedStyle(document.querySelector('.topbar')).backgroundColor")) >= 3
    # Update: to the page by the menu, to the file input in a few stops past the skip link.
    page.evaluate("location.hash = '#/update'")
    page.reload()
    page.wait_for_selector("#update-form")
    assert focused(page) == "content"  # a page opened has the focus on its content
    assert tab_to(page, "update") == 1
    # The skip link: the first stop of the page, which leads past the menu to the content.
    tab_to(page, "Skip to the main content", most=80)
    assert page.is_visible(".skip-link")
    page.keyboard.press("Enter")
    assert focused(page) == "content"
    assert tab_to(page, "update") == 1
    page.set_input_files("input[name=update]", str(build(tmp_path, keys, "0.9.1")))
    page.keyboard.press("Tab")
    page.keyboard.press("Enter")
    page.wait_for_selector("#update-staged .message-error")  # older than installed: not installable, and said
    # Network: every field and the button by Tab; the error's field gets the focus.
    page.evaluate("location.hash = '#/network'")
    page.wait_for_selector("#network-form")
    page.focus("#mode-dhcp")
    tab_to(page, "interface")
    page.keyboard.press("Control+a")
    page.keyboard.type("e")
    tab_to(page, "Apply the network settings")
    page.keyboard.press("Enter")
    page.wait_for_selector(".message-error:text('Some settings are not valid')")
    assert focused(page) == "interface"
    # Backup: start it, then delete it behind its dialog, by keys alone.
    page.evaluate("location.hash = '#/backup'")
    page.wait_for_selector("#backup-start")
    for _ in range(20):  # a job of the same group (saving the persistent files) may still run
        page.focus("#backup-start")
        page.keyboard.press("Enter")
        page.wait_for_selector("#backup-stop:visible, .message-error:has-text('is running')")
        if page.is_visible("#backup-stop"):
            break
        page.wait_for_timeout(500)
    page.wait_for_selector("#backup-stop:visible")
    page.focus("#backup-stop")
    page.keyboard.press("Enter")
    page.wait_for_selector("dialog[open]")
    assert focused(page) == "Cancel"  # the safe choice first
    shoot(page, "46-keyboard-dialog")
    page.keyboard.press("Tab")
    page.keyboard.press("Enter")
    page.wait_for_selector("text=There is no backup on the appliance.")


def contrast(first: str, second: str) -> float:
    def luminance(css: str) -> float:
        channels = [int(c) / 255 for c in re.findall(r"\d+", css)[:3]]
        linear = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
        return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]
    light, dark = sorted((luminance(first), luminance(second)), reverse=True)
    return (light + 0.05) / (dark + 0.05)


# Reading the logs in the browser


def test_the_logs_are_read_in_the_browser(page, appliance):
    (appliance.admin / "etc" / "logs.txt").write_text("")
    sign_in(page)
    open_page(page, "logs", "Logs")
    page.select_option("select[name=job]", "backup")
    page.wait_for_selector(".job[data-job=backup] pre.log:visible")
    log = page.inner_text(".job[data-job=backup] pre.log")
    assert "Backup complete" in log and not re.search(r"\[\d{10}\]", log)
    page.click("#read-logs")
    page.wait_for_selector(".message-success:text('log files read')")
    files = page.eval_on_selector_all("select[name=file] option", "o => o.map(x => x.textContent)")
    assert any(name.startswith("log/update_backup.log") for name in files), files
    page.select_option("select[name=file]", label=next(n for n in files if n.startswith("log/update_backup.log")))
    page.fill("input[name=filter]", "complete")
    page.wait_for_selector("pre.log-file:has-text('Backup complete')")
    assert "with “complete”" in page.inner_text(".hint:has-text('lines')")
    shoot(page, "47-logs")
