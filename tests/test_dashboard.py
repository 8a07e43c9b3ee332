"""The Admin Dashboard in real headless Chromium against the real daemon (twistd, over TLS
on 127.0.0.1): sign in, see the version, install an update, back up and download, change
the token, sign out; and its modules' logic checked in the same browser.

One daemon and one browser serve the whole module; each test has a fresh browser context
(its own storage). Every page is saved as a screenshot in test-screenshots/ (git ignores
it), at a laptop's size and a phone's.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from conftest import REPO, Twistd, free_port
from test_updates import build, install_keys

playwright_api = pytest.importorskip("playwright.sync_api")

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
SCREENSHOTS = REPO / "test-screenshots"
TOKEN = "yourtoken"
LAPTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}
WAIT_MS = 30_000


@dataclass
class Appliance:
    base: str
    admin: Path
    data: Path


@pytest.fixture(scope="module")
def appliance(tmp_path_factory, keys):
    """The daemon as appliances run it, with backups enabled and update keys installed."""
    work = tmp_path_factory.mktemp("dashboard")
    admin, data = work / "admin", work / "data"
    (data / "app").mkdir(parents=True)
    (data / "app" / "main.db").write_bytes(os.urandom(50_000))
    install_keys(admin, keys, version="1.0.0")
    (admin / "etc" / "api.token").write_text(TOKEN + "\n")
    (admin / "etc" / "backup.txt").write_text("app\n")
    (admin / "etc" / "changelog.txt").write_text("# Changelog\n\n## 1.0.0\n\n  * The first release\n")
    config = work / "config.json"
    config.write_text(json.dumps({"endpoints": ["backup"], "backup-root": str(data)}))
    port = free_port()
    daemon = Twistd(work, ["--admin-path", str(admin), "--https", str(port), "--interface", "127.0.0.1",
                           "--config", str(config)])
    daemon.wait_listening(port)
    yield Appliance(f"https://127.0.0.1:{port}", admin, data)
    daemon.stop()
    assert "Traceback" not in daemon.text(), daemon.text()


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


@pytest.fixture
def page(browser, appliance):
    context = browser.new_context(ignore_https_errors=True, viewport=LAPTOP, accept_downloads=True)
    context.set_default_timeout(WAIT_MS)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.on("console", lambda m: errors.append(m.text) if "Content Security Policy" in m.text else None)
    page.goto(appliance.base + "/")
    yield page
    context.close()
    assert not errors, errors


def shoot(page, name: str) -> None:
    """The page at a laptop's size and at a phone's."""
    page.wait_for_timeout(150)  # let the last answer render
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)
    page.set_viewport_size(PHONE)
    page.wait_for_timeout(100)
    page.screenshot(path=str(SCREENSHOTS / f"{name}-phone.png"), full_page=True)
    page.set_viewport_size(LAPTOP)


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
    shoot(page, "03-home")
    # The key, never the token, is kept; and only for this tab unless remembered.
    stored = page.evaluate("sessionStorage.getItem('jidoteki-admin-key')")
    assert stored == hashlib.sha256(TOKEN.encode()).hexdigest()
    assert page.evaluate("localStorage.length") == 0
    assert TOKEN not in json.dumps(page.evaluate("Object.entries(sessionStorage)"))


def test_the_menu_has_a_page_for_each_served_endpoint_and_no_other(page):
    sign_in(page)
    pages = page.eval_on_selector_all("nav a", "links => links.map(a => a.dataset.page)")
    assert pages == ["home", "monitor", "update", "backup", "token", "support", "restart"]


def test_requests_are_signed_with_a_hash_and_never_carry_the_token(page, appliance):
    sent: list[str] = []
    page.on("request", lambda request: sent.append(request.url))
    sign_in(page)
    open_page(page, "update", "Update")
    api = [url for url in sent if "/api/v1/admin/" in url]
    assert api and TOKEN not in " ".join(sent)
    unsigned = [url for url in api if not re.search(r"[?&]hash=[0-9a-f]{64}(&|$)", url)]
    assert unsigned == [], unsigned
    page.reload()  # the sign-in page asks, unsigned, whether first-run is on; nothing else is unsigned
    page.wait_for_selector("header.topbar")
    assert [url for url in sent if "/api/v1/admin/" in url and "hash=" not in url] == []


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
    page.wait_for_selector("text=none yet")
    shoot(page, "04-update")
    page.set_input_files("input[name=update]", str(package))
    page.click("#update-form button[type=submit]")
    page.wait_for_selector(".progress-text:text('Uploaded')")
    page.wait_for_selector(".badge-success", timeout=WAIT_MS)
    page.wait_for_selector(".progress-text:text('Installing: 100 %')")
    page.wait_for_selector(".message-success:text('The update is installed')")
    page.wait_for_selector(".version-badge:text('v1.0.1')")
    assert page.inner_text("pre.log").strip()
    shoot(page, "05-update-done")
    assert (appliance.admin / "etc" / "version.txt").read_text().strip() == "1.0.1"


def test_a_failed_update_shows_its_error_code_and_message(page, appliance, keys, tmp_path):
    package = build(tmp_path, keys, "0.9.0")  # older than what is installed
    sign_in(page)
    open_page(page, "update", "Update")
    page.set_input_files("input[name=update]", str(package))
    page.click("#update-form button[type=submit]")
    page.wait_for_selector(".badge-failed")
    failure = page.inner_text(".status-line .failure")
    assert failure.startswith("E1001: "), failure
    assert "E1001" in page.inner_text(".message-error")
    shoot(page, "06-update-failed")


# Backup


def test_a_backup_is_started_followed_and_downloaded(page, appliance):
    sign_in(page)
    open_page(page, "backup", "Backup and restore")
    shoot(page, "07-backup")
    page.click("#backup-start")
    page.wait_for_selector("#backup-status .badge-success")
    page.wait_for_selector("#backup-download:visible")
    expected = json.loads((appliance.admin / "home" / "sftp" / "uploads" / "backup.json").read_text())
    assert expected["sha256"] in page.inner_text("main")
    shoot(page, "08-backup-done")
    with page.expect_download() as info:
        page.click("#backup-download")
    download = info.value
    assert download.suggested_filename == "backup.tar"
    saved = Path(download.path()).read_bytes()
    assert hashlib.sha256(saved).hexdigest() == expected["sha256"]


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
    page.wait_for_selector("#restore-form ~ .message-error, .card .message-error")
    text = page.inner_text(".card .message-error")
    assert text and "{" not in text  # a sentence, not JSON


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


def test_the_monitor_draws_charts(page):
    sign_in(page)
    open_page(page, "monitor", "Monitor")
    page.wait_for_selector("svg.chart path.series-0", state="attached")
    assert page.locator("svg.chart").count() >= 3
    shoot(page, "12-monitor")


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
