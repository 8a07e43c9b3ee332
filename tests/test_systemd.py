"""The systemd unit in etc/: it names the binary the documented install creates, and
systemd accepts it."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

from jidoteki_admin.tap import Options

ETC = Path(__file__).resolve().parents[1] / "etc"
UNIT = ETC / "jidoteki-admin.service"
VENV_TWISTD = "/opt/jidoteki-admin/venv/bin/twistd"


def exec_start() -> list[str]:
    lines = re.findall(r"^ExecStart=(.*)$", UNIT.read_text(), re.M)
    assert len(lines) == 1
    return shlex.split(lines[0])


def test_the_unit_runs_the_venv_twistd_that_the_install_layout_creates():
    command = exec_start()
    assert command[0] == VENV_TWISTD
    assert command[1:5] == ["-n", "--pidfile=", "--logfile=-", "jidoteki-admin"]
    Options().parseOptions(command[5:])  # the daemon's own options parse as written
    install = (ETC / "README.md").read_text()
    assert "python3 -m venv /opt/jidoteki-admin/venv" in install
    assert "/opt/jidoteki-admin/venv/bin/pip install" in install


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
def test_systemd_analyze_verify_finds_nothing_to_complain_about(tmp_path):
    """The venv does not exist here: ExecStart points at a stand-in executable in a copy."""
    fake = tmp_path / "bin" / "twistd"
    fake.parent.mkdir()
    fake.write_text("#!/bin/sh\nexit 0\n")
    fake.chmod(0o755)
    copy = tmp_path / UNIT.name
    copy.write_text(UNIT.read_text().replace(f"ExecStart={VENV_TWISTD} ", f"ExecStart={fake} "))
    assert str(fake) in copy.read_text()
    done = subprocess.run(["systemd-analyze", "verify", str(copy)], capture_output=True, text=True, timeout=60)
    assert (done.returncode, done.stdout + done.stderr) == (0, "")


@pytest.mark.skipif(shutil.which("visudo") is None, reason="visudo (sudo) is not installed")
def test_the_sudoers_drop_in_parses_and_allows_only_the_privileged_entry_point():
    sudoers = Path(__file__).resolve().parents[1] / "etc" / "sudoers.d" / "jidoteki-admin"
    done = subprocess.run(["visudo", "-cf", str(sudoers)], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stdout + done.stderr
    rules = [line for line in sudoers.read_text().splitlines() if line and not line.startswith("#")]
    allowed = [line for line in rules if "NOPASSWD" in line]
    assert allowed == ["jidoteki ALL=(root) NOPASSWD: JIDOTEKI_JOBS"]
    alias = next(line for line in rules if line.startswith("Cmnd_Alias JIDOTEKI_JOBS"))
    assert alias.endswith("/opt/jidoteki-admin/venv/bin/jidoteki-admin-privileged "
                          "--admin-path /opt/jidoteki/tinyadmin jidoteki_admin.jobs.*")


@pytest.mark.skipif(shutil.which("visudo") is None, reason="visudo (sudo) is not installed")
def test_the_appliance_sudoers_drop_in_parses_and_allows_only_the_wrapper_with_its_command_word():
    """The rule tests/test_conformance.py installs for the fixture, here for the appliance's path."""
    sudoers = Path(__file__).resolve().parents[1] / "etc" / "sudoers.d" / "jidoteki-admin-appliance"
    done = subprocess.run(["visudo", "-cf", str(sudoers)], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stdout + done.stderr
    rules = [line for line in sudoers.read_text().splitlines() if line and not line.startswith("#")]
    wrapper = "/opt/jidoteki/tinyadmin/bin/wrapper.sh"
    assert rules == [f'Defaults!{wrapper} env_keep += "SSH_ORIGINAL_COMMAND", !requiretty, !use_pty',
                     f"jidoteki ALL=(root) NOPASSWD: {wrapper}"]
