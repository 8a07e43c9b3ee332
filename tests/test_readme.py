"""The README's commands, run as written against the real daemon on a fresh admin tree."""

from __future__ import annotations

import re
import shlex
import subprocess
import time
from pathlib import Path

from conftest import free_port
from test_cli import empty_config

README = Path(__file__).resolve().parents[1] / "README.md"
README_PORT = "8443"
STATUS = "\nHTTP_STATUS=%{http_code}\n"


def section(title: str) -> str:
    text = README.read_text()
    start = text.index(f"\n## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else None]


def code_lines(text: str) -> list[str]:
    """The lines of the indented code blocks."""
    return [line[4:] for line in text.splitlines() if line.startswith("    ") and line.strip()]


def start_args() -> list[str]:
    """The daemon options of the README's start command (after `jidoteki-admin`)."""
    line = next(line for line in code_lines(README.read_text()) if "twistd -n" in line)
    words = shlex.split(line.split("&&")[-1])
    return words[words.index("jidoteki-admin") + 1 :]


def checked(line: str) -> str:
    """A curl line that fails on an HTTP error and prints the status it got."""
    assert line.startswith("curl "), line
    return "curl -f -sS -o /dev/null -w " + shlex.quote(STATUS) + line[len("curl") :]


def test_first_calls_all_succeed_on_a_fresh_tree(twistd, tmp_path):
    lines = code_lines(section("First calls"))
    calls = [line for line in lines if line.startswith("curl ")]
    assert len(calls) >= 3 and any("Signature-Input" in call for call in calls)
    port = free_port()
    assert "--https" not in start_args()
    daemon = twistd(*start_args(), "--https", str(port), "--config", empty_config(tmp_path))
    daemon.wait_listening(port)
    assert (tmp_path / "admin-tree" / "etc").is_dir()  # the tree the README's curl lines name

    script = "set -e\n" + "\n".join(checked(line) if line.startswith("curl ") else line for line in lines)
    script = script.replace(f":{README_PORT}/", f":{port}/")
    done = subprocess.run(["bash", "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr + daemon.text()
    statuses = re.findall(r"^HTTP_STATUS=(\d+)$", done.stdout, re.M)
    assert len(statuses) == len(calls) and all(s.startswith("2") for s in statuses), done.stdout


def test_the_ready_line_names_a_call_that_works_on_a_fresh_tree(twistd, tmp_path):
    tree, port = tmp_path / "tree", free_port()
    (tree / "etc").mkdir(parents=True)
    (tree / "etc" / "api.token").write_text("ready-token\n")
    daemon = twistd("--admin-path", str(tree), "--https", str(port), "--interface", "127.0.0.1",
                    "--config", empty_config(tmp_path))
    daemon.wait_listening(port)
    deadline = time.monotonic() + 10
    while not (ready := re.search(r"Ready\. Try: (curl .*)$", daemon.text(), re.M)):
        assert time.monotonic() < deadline, daemon.text()
        time.sleep(0.05)
    command = shlex.split(ready.group(1).replace("YOURTOKEN", "ready-token"))
    done = subprocess.run(["curl", "-f", "-sS", *command[1:]], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
