"""`twistd -n jidoteki-admin`: the command-line contract, run as a real child process."""

import json
import signal
import socket
import subprocess
import time
from pathlib import Path

import psutil
import pytest

from conftest import TWISTD, free_port, twistd_env
from test_updates import build, install_keys

LAYOUT = ["etc", "log", "home/sftp/uploads", "tmp", "bin"]


def empty_config(tmp_path: Path) -> str:
    """A config file that sets nothing, so no test reads the machine's own config."""
    path = tmp_path / "empty-config.json"
    path.write_text("{}")
    return str(path)




def curl(*args: str) -> tuple[int, str]:
    result = subprocess.run(
        ["curl", "-s", "-o", "-", "-w", "\n%{http_code}", "--max-time", "5", *args],
        capture_output=True,
        timeout=10,
    )
    body, _, code = result.stdout.decode().rpartition("\n")
    return int(code), body


# Starting


def test_starts_on_an_empty_admin_path_and_answers_over_https(twistd, tmp_path):
    admin, port = tmp_path / "tree", free_port()
    daemon = twistd("--admin-path", str(admin), "--https", str(port), "--interface", "127.0.0.1",
                    "--config", empty_config(tmp_path))
    daemon.wait_listening(port)
    for sub in LAYOUT:
        assert (admin / sub).is_dir(), sub
    certificate = admin / "etc" / "ssl" / "cert.pem"
    assert certificate.exists()
    base = f"https://127.0.0.1:{port}/api/v1/admin"
    assert curl("--cacert", str(certificate), "-F", "newtoken=cli-token", base + "/setup") == (
        200,
        '{"Status":"200 OK"}',
    )
    code, body = curl("--cacert", str(certificate), base + "/health?token=cli-token")
    assert code == 200 and set(json.loads(body)) == {"disk", "memory", "cpu", "certificate"}
    code, _ = curl("--cacert", str(certificate), "--resolve", f"localhost:{port}:127.0.0.1",
                   f"https://localhost:{port}/api/v1/admin/health?token=cli-token")
    assert code == 200
    assert daemon.stop() in (0, -signal.SIGTERM)
    assert "Server Shut Down" in daemon.text()
    assert "Traceback" not in daemon.text()


def test_starts_on_an_existing_empty_directory(twistd, tmp_path):
    admin, port = tmp_path / "empty", free_port()
    admin.mkdir()
    daemon = twistd("--admin-path", str(admin), "--https", str(port), "--interface", "127.0.0.1",
                    "--config", empty_config(tmp_path))
    daemon.wait_listening(port)
    assert all((admin / sub).is_dir() for sub in LAYOUT)
    assert (admin / "etc" / "ssl" / "key.pem").exists()


def test_admin_path_comes_from_the_environment(twistd, tmp_path):
    admin, port = tmp_path / "from-env", free_port()
    daemon = twistd("--https", str(port), "--interface", "127.0.0.1", "--config", empty_config(tmp_path),
                    env={"JIDO_ADMIN_PATH": str(admin)})
    daemon.wait_listening(port)
    assert all((admin / sub).is_dir() for sub in LAYOUT)
    code, _ = curl("--cacert", str(admin / "etc" / "ssl" / "cert.pem"), f"https://127.0.0.1:{port}/docs")
    assert code == 200


def test_admin_path_option_wins_over_the_environment(twistd, tmp_path):
    chosen, ignored, port = tmp_path / "chosen", tmp_path / "ignored", free_port()
    daemon = twistd("--admin-path", str(chosen), "--https", str(port), "--interface", "127.0.0.1",
                    "--config", empty_config(tmp_path), env={"JIDO_ADMIN_PATH": str(ignored)})
    daemon.wait_listening(port)
    assert (chosen / "etc").is_dir()
    assert not ignored.exists()


def test_http_option_gives_a_plain_listener_and_https_zero_turns_https_off(twistd, tmp_path):
    admin, port = tmp_path / "tree", free_port()
    daemon = twistd("--admin-path", str(admin), "--https", "0", "--http", str(port), "--interface", "127.0.0.1",
                    "--config", empty_config(tmp_path))
    daemon.wait_listening(port)
    assert curl(f"http://127.0.0.1:{port}/api/v1/admin/version") == (
        403,
        '{"Status":"403 Forbidden","Error-Message":"Authentication error"}',
    )
    assert daemon.listening_ports() == {port}


def test_jido_api_port_gives_a_plain_listener_beside_https(twistd, tmp_path):
    admin, http, https = tmp_path / "tree", free_port(), free_port()
    daemon = twistd("--admin-path", str(admin), "--https", str(https), "--interface", "127.0.0.1",
                    "--config", empty_config(tmp_path), env={"JIDO_API_PORT": str(http)})
    daemon.wait_listening(https)
    daemon.wait_listening(http)
    assert curl(f"http://127.0.0.1:{http}/api/v1/admin/nothing")[0] == 404
    assert curl("--cacert", str(admin / "etc" / "ssl" / "cert.pem"), f"https://127.0.0.1:{https}/api/v1/admin/nothing")[0] == 404
    assert daemon.listening_ports() == {http, https}


def test_interface_defaults_to_all_addresses(twistd, tmp_path):
    port = free_port()
    daemon = twistd("--admin-path", str(tmp_path / "tree"), "--https", str(port),
                    "--config", empty_config(tmp_path))
    daemon.wait_listening(port)
    connections = psutil.Process(daemon.process.pid).net_connections(kind="tcp")
    addresses = {c.laddr.ip for c in connections if c.status == psutil.CONN_LISTEN and c.laddr.port == port}
    assert addresses & {"0.0.0.0", "::"}


def test_config_file_is_read(twistd, tmp_path):
    admin, port = tmp_path / "tree", free_port()
    config = tmp_path / "config.json"
    build = tmp_path / "build.json"
    build.write_text('{"builddate": "42"}')
    config.write_text(json.dumps({"build-file": str(build), "first-run": {"enabled": True, "word-length": 3}}))
    daemon = twistd("--admin-path", str(admin), "--https", "0", "--http", str(port), "--interface", "127.0.0.1",
                    "--config", str(config))
    daemon.wait_listening(port)
    token = (admin / "etc" / "api.token").read_text().strip()
    assert (admin / "etc" / "api.token.setup").exists()
    assert curl(f"http://127.0.0.1:{port}/api/v1/admin/build?token={token}") == (200, '{"builddate": "42"}')


def test_a_relative_admin_path_still_updates(twistd, tmp_path, keys):
    """The update job runs in the tree's tmp/: a relative --admin-path must not follow it there."""
    tree, port = tmp_path / "rel", free_port()
    install_keys(tree, keys)
    (tree / "etc" / "api.token").write_text("yourtoken\n")
    package = build(tmp_path, keys, "1.0.1")
    daemon = twistd("--admin-path", "./rel", "--https", "0", "--http", str(port), "--interface", "127.0.0.1",
                    "--config", empty_config(tmp_path))
    daemon.wait_listening(port)
    url = f"http://127.0.0.1:{port}/api/v1/admin/update?token=yourtoken"
    assert curl("-F", f"update=@{package}", url)[0] == 202
    deadline = time.monotonic() + 30
    while (status := json.loads(curl(url)[1]))["status"] not in ("success", "failed"):
        assert time.monotonic() < deadline, status
        time.sleep(0.1)
    assert status["status"] == "success", status
    assert (tree / "etc" / "version.txt").read_text() == "1.0.1\n"
    assert list((tree / "home" / "sftp" / "uploads").iterdir()) == []


# Refusing to start


def refuse(tmp_path: Path, args: list[str], env: dict | None = None) -> tuple[list[str], str]:
    environment = twistd_env()
    environment.pop("JIDO_ADMIN_PATH", None)
    environment.pop("JIDO_API_PORT", None)
    environment.update(env or {})
    started = time.monotonic()
    result = subprocess.run(TWISTD + args, cwd=tmp_path, env=environment, capture_output=True, timeout=30)
    elapsed = time.monotonic() - started
    output = (result.stdout + result.stderr).decode(errors="replace")
    assert result.returncode != 0, output
    assert elapsed < 10
    assert "Traceback" not in output, output
    return [line for line in output.splitlines() if line.strip()], output


def one_line_mentioning(lines: list[str], *needles: str) -> str:
    matching = [line for line in lines if all(n in line for n in needles)]
    assert len(matching) == 1, lines
    return matching[0]


def base_args(tmp_path: Path) -> list[str]:
    return ["--admin-path", str(tmp_path / "tree"), "--interface", "127.0.0.1", "--https", str(free_port())]


@pytest.mark.parametrize(
    "args,needle",
    [
        (["--bogus"], "bogus"),
        (["--https", "abc"], "abc"),
        (["--http", "abc"], "abc"),
        (["--https", "70000"], "--https"),
        (["--https", "-1"], "--https"),
        (["--https"], "https"),
    ],
    ids=["unknown option", "https not a number", "http not a number", "https too big", "https negative",
         "https without value"],
)
def test_bad_command_line_is_refused_with_one_line(tmp_path, args, needle):
    lines, _ = refuse(tmp_path, ["--admin-path", str(tmp_path / "tree")] + args)
    one_line_mentioning(lines, needle)


def test_bad_jido_api_port_is_refused_with_one_line(tmp_path):
    lines, _ = refuse(tmp_path, base_args(tmp_path), env={"JIDO_API_PORT": "http"})
    one_line_mentioning(lines, "http")


def test_unparsable_config_names_file_line_and_column(tmp_path):
    config = tmp_path / "broken.json"
    config.write_text('{\n  "services": ["a",\n  ]\n}\n')
    lines, _ = refuse(tmp_path, base_args(tmp_path) + ["--config", str(config)])
    line = one_line_mentioning(lines, str(config))
    assert "line 3" in line and "column 3" in line


@pytest.mark.parametrize(
    "config,needle",
    [
        ({"services": "openssh"}, "services"),
        ({"endpoints": ["license", 3]}, "endpoints"),
        ({"endpoints": ["bogus"]}, "bogus"),
        ({"first-run": {"enabled": "yes"}}, "first-run"),
        ({"first-run": {"enabled": True, "word-length": "4"}}, "word-length"),
        ({"build-file": 7}, "build-file"),
        ([1, 2], "object"),
    ],
    ids=repr,
)
def test_wrong_typed_config_is_refused_with_one_line(tmp_path, config, needle):
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config))
    lines, _ = refuse(tmp_path, base_args(tmp_path) + ["--config", str(path)])
    one_line_mentioning(lines, str(path), needle)


def test_unreadable_config_is_refused_with_one_line(tmp_path):
    config = tmp_path / "config-dir"
    config.mkdir()
    lines, _ = refuse(tmp_path, base_args(tmp_path) + ["--config", str(config)])
    one_line_mentioning(lines, str(config))


def test_config_that_is_not_utf8_is_refused_with_one_line(tmp_path):
    config = tmp_path / "latin1.json"
    config.write_bytes(b'{"services": ["caf\xe9"]}')
    lines, _ = refuse(tmp_path, base_args(tmp_path) + ["--config", str(config)])
    one_line_mentioning(lines, str(config))


@pytest.mark.parametrize("listener", ["--https", "--http"])
def test_port_in_use_is_refused_with_one_line(tmp_path, listener):
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        args = ["--admin-path", str(tmp_path / "tree"), "--interface", "127.0.0.1"]
        if listener == "--https":
            args += ["--https", str(port)]
        else:
            args += ["--https", "0", "--http", str(port)]
        lines, _ = refuse(tmp_path, args)
    one_line_mentioning(lines, str(port), "in use")


def test_admin_path_that_cannot_be_created_is_refused_with_one_line(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    lines, _ = refuse(tmp_path, ["--admin-path", str(blocker), "--https", str(free_port())])
    one_line_mentioning(lines, str(blocker))


# Asking about the daemon


def run_twistd(tmp_path: Path, args: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(TWISTD + args, cwd=tmp_path, env=twistd_env(), capture_output=True, text=True,
                          timeout=30)


def test_version_prints_the_daemon_version(tmp_path):
    from jidoteki_admin import __version__

    done = run_twistd(tmp_path, ["--version"])
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"jidoteki-admin {__version__}"


def test_help_names_each_default_once(tmp_path):
    done = run_twistd(tmp_path, ["--help"])
    assert done.returncode == 0, done.stderr
    help_text = " ".join(done.stdout.split())
    assert "--interface= Address to listen on [default: all] --listen=" in help_text
    assert "[default: ]" not in help_text
    for option in ("--admin-path", "--config", "--https", "--http", "--interface", "--listen", "--version"):
        assert option + ("" if option == "--version" else "=") in help_text, option


def test_a_config_file_named_but_missing_is_refused_with_one_line(tmp_path):
    missing = tmp_path / "typo.json"
    lines, _ = refuse(tmp_path, base_args(tmp_path) + ["--config", str(missing)])
    one_line_mentioning(lines, str(missing), "no such file")
    assert not (tmp_path / "tree").exists()


def test_https_off_without_http_is_refused_with_one_line(tmp_path):
    lines, _ = refuse(tmp_path, ["--admin-path", str(tmp_path / "tree"), "--https", "0",
                                 "--config", empty_config(tmp_path)])
    one_line_mentioning(lines, "--https 0", "--http")


def test_a_second_daemon_on_the_same_tree_is_refused_naming_the_first(twistd, tmp_path):
    tree, port = tmp_path / "tree", free_port()
    first = twistd("--admin-path", str(tree), "--https", str(port), "--interface", "127.0.0.1",
                   "--config", empty_config(tmp_path))
    first.wait_listening(port)
    environment = twistd_env()
    environment.pop("JIDO_API_PORT", None)
    # --pidfile= as under systemd: twistd's own pid file check must not be what refuses it.
    second = subprocess.run(TWISTD[:-1] + ["--pidfile=", "jidoteki-admin"] + base_args(tmp_path)
                            + ["--config", empty_config(tmp_path)],
                            cwd=tmp_path, env=environment, capture_output=True, timeout=30)
    output = (second.stdout + second.stderr).decode(errors="replace")
    assert second.returncode == 1, output
    assert "Traceback" not in output, output
    one_line_mentioning(output.splitlines(), str(tree), f"pid {first.process.pid}")
    assert curl("-k", f"https://127.0.0.1:{port}/docs")[0] == 200  # the first goes on

    assert first.stop() in (0, -signal.SIGTERM)
    third = twistd("--admin-path", str(tree), "--https", str(port), "--interface", "127.0.0.1",
                   "--config", empty_config(tmp_path))
    third.wait_listening(port)


def test_with_every_optional_endpoint_enabled_each_is_served_and_none_warned_of(twistd, tmp_path):
    """Every optional endpoint of the API has its section now; the warning for an enabled
    one that is not served (tests/test_optional.py tests it with a stand-in) stays silent."""
    from jidoteki_admin.config import OPTIONAL_ENDPOINTS

    config, port = tmp_path / "optional.json", free_port()
    config.write_text(json.dumps({"endpoints": list(OPTIONAL_ENDPOINTS)}))
    daemon = twistd("--admin-path", str(tmp_path / "tree"), "--https", "0", "--http", str(port),
                    "--interface", "127.0.0.1", "--config", str(config))
    daemon.wait_listening(port)
    assert "does not serve" not in daemon.text()
    for name in OPTIONAL_ENDPOINTS:  # served: a request without a token is refused, not unknown
        assert curl(f"http://127.0.0.1:{port}/api/v1/admin/{name}")[0] == 403, name


def test_no_warning_about_optional_endpoints_when_none_is_configured(twistd, tmp_path):
    port = free_port()
    daemon = twistd("--admin-path", str(tmp_path / "tree"), "--https", "0", "--http", str(port),
                    "--interface", "127.0.0.1", "--config", empty_config(tmp_path))
    daemon.wait_listening(port)
    assert "does not serve" not in daemon.text()
