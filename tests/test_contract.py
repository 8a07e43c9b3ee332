"""The served OpenAPI document is the contract: generated requests for every operation it
lists, sent over TLS to the real daemon (twistd in a child process), must be answered as
the document says (status codes, content types, JSON bodies against the schemas, the
declared headers), never with a 5xx and never with a traceback in the body.

Generation is derandomized, so CI sends the same cases on every run; the number of
examples per operation keeps the whole run (over 10,000 requests, in SHARDS tests that
run side by side) to a couple of minutes on two cores.
"""

from __future__ import annotations

import json
import os
import time
from urllib.parse import quote

import pytest
import requests
import schemathesis
import urllib3
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from schemathesis.checks import not_a_server_error

from jidoteki_admin.http.auth import request_hash
from test_signals import TOKEN, Twistd, admin_tree, free_port

EXAMPLES_PER_OPERATION = int(os.environ.get("CONTRACT_EXAMPLES", "400"))
# Operations that wait on a job (a child process) per request: fewer examples keep the run
# short; a second start while one runs is refused at once, so the others are cheap.
WAITS_ON_A_JOB = {("GET", "/api/v1/admin/logs"), ("GET", "/api/v1/admin/debug"),
                  ("GET", "/api/v1/admin/reboot"), ("POST", "/api/v1/admin/backup/restore")}
EXAMPLES_WAITING_ON_A_JOB = min(EXAMPLES_PER_OPERATION, 40)
# The public pages (the dashboard's files, /docs) are bytes read once at start and take no
# parameters: a few dozen cases each show they answer whatever the query holds.
EXAMPLES_PUBLIC = min(EXAMPLES_PER_OPERATION, 30)
# An operation whose only input is the credentials (GET /version, a job's status) varies only
# in the undeclared query below: sixty cases show it answers whatever that holds. The
# operations with a body or parameters of their own get EXAMPLES_PER_OPERATION.
EXAMPLES_CREDENTIALS_ONLY = min(EXAMPLES_PER_OPERATION, 60)
CREDENTIALS = {"token", "hash", "link"}
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_schema_conformance, response_headers_conformance]
# Query parameters the document does not declare: the daemon must ignore them.
EXTRA_NAMES = st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E, exclude_characters="&=#%+"),
                      min_size=1, max_size=8).filter(lambda name: name not in ("token", "hash"))
EXTRA_QUERY = st.dictionaries(EXTRA_NAMES, st.text(max_size=12), max_size=3)


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """twistd over HTTPS on 127.0.0.1 with a token, services whose status hook is faked, and
    the document it serves."""
    tmp = tmp_path_factory.mktemp("contract")
    admin = admin_tree(tmp)
    hook = admin / "bin" / "service-status"
    hook.write_text('#!/bin/sh\ncase "$1" in ssh) exit 0;; *) exit 3;; esac\n')
    hook.chmod(0o755)
    (admin / "etc" / "build.txt").write_text("build 42\n")
    # The appliance hooks the configuration jobs run: each only says it was called. (The
    # license is left to the default scheme, checked in the daemon.)
    for name in ("network.sh", "storage.sh", "cluster.sh", "certs.sh"):
        fake = admin / "bin" / name
        fake.write_text(f'#!/bin/sh\necho "{name} $*"\n')
        fake.chmod(0o755)
    data = tmp / "data"
    (data / "app").mkdir(parents=True)
    (data / "app" / "settings.conf").write_text("mode=fast\n")
    (admin / "etc" / "backup.txt").write_text("app\n")
    (admin / "etc" / "network.json").write_text('{"mode":"dhcp","interface":"eth0","hostname":"test.host"}\n')
    (admin / "etc" / "app.json").write_text('{"name":"testapp"}\n')
    config = tmp / "config.json"
    # Every optional section this version serves is enabled; the reboot command is left
    # out, so a generated GET /reboot can never reboot the machine running the tests.
    options = tmp / "storage-options.json"
    options.write_text(json.dumps({"options": ["local", "nfs", "nbd", "iscsi", "aoe"]}))
    (admin / "etc" / "storage.json").write_text('{"storage":{"type":"local"}}\n')
    config.write_text(json.dumps({"services": ["ssh", "app"], "endpoints": ["backup", "settings", "storage", "cluster", "certs",
                                                                              "license"],
                                  "backup-root": str(data), "restore-max-bytes": 10_000_000,
                                  "storage-options-file": str(options)}))
    port = free_port()
    daemon = Twistd(tmp, ["jidoteki-admin", "--admin-path", str(admin), "--https", str(port),
                          "--interface", "127.0.0.1", "--config", str(config)])
    try:
        daemon.wait_listening(port)
        base = f"https://127.0.0.1:{port}"
        urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)
        schema = schemathesis.openapi.from_url(base + "/docs/openapi.json", verify=False)
        yield base, admin, schema
    finally:
        daemon.stop()
    assert "Traceback" not in daemon.text(), daemon.text()


# Operations each of whose valid cases runs a job program to its end (a package checked or
# staged): a case costs several times another's, which dealing the shards takes into account.
RUNS_A_JOB_PER_CASE = {("POST", "/api/v1/admin/update/check"), ("POST", "/api/v1/admin/update/stage")}


def dealt(operations) -> list[list]:
    """The operations dealt into SHARDS shards of about the same cost: the costliest first,
    each to the shard with the least so far (the same on every process: nothing random)."""
    def cost(operation) -> int:
        slow = (operation.method.upper(), operation.path) in RUNS_A_JOB_PER_CASE | WAITS_ON_A_JOB
        return examples_for(operation) * (8 if slow else 1)

    shards: list[list] = [[] for _ in range(SHARDS)]
    totals = [0] * SHARDS
    for operation in sorted(operations, key=lambda o: (-cost(o), o.path, o.method)):
        lightest = totals.index(min(totals))
        shards[lightest].append(operation)
        totals[lightest] += cost(operation)
    return shards


def examples_for(operation) -> int:
    """How many cases an operation gets: the fewer, the less its input can vary."""
    if (operation.method.upper(), operation.path) in WAITS_ON_A_JOB:
        return EXAMPLES_WAITING_ON_A_JOB
    if not operation.path.startswith("/api/"):
        return EXAMPLES_PUBLIC
    if len(operation.body) == 0 and {p.name for p in operation.query} <= CREDENTIALS \
            and not list(operation.path_parameters):
        return EXAMPLES_CREDENTIALS_ONLY
    return EXAMPLES_PER_OPERATION


def restore_token(admin) -> None:
    """A generated POST /setup replaces the token: put the test's back (atomically, as the
    daemon rereads the file when it changes) so the next case is authenticated."""
    token_file = admin / "etc" / "api.token"
    spare = token_file.with_name(".contract-token")
    spare.write_text(TOKEN + "\n")
    os.replace(spare, token_file)


# The operations are dealt into SHARDS tests, one per class, so that the test processes can
# share them out (`--dist loadscope` keeps a module's functions together, and gives each
# class its own turn; each process starts its own daemon); together they send every case.
SHARDS = 4


class _Shard:
    shard = 0

    def test_every_operation_answers_as_the_document_says(self, served):
        every_operation_answers_as_the_document_says(served, self.shard)


class TestOperationsShard0(_Shard):
    shard = 0


class TestOperationsShard1(_Shard):
    shard = 1


class TestOperationsShard2(_Shard):
    shard = 2


class TestOperationsShard3(_Shard):
    shard = 3


def every_operation_answers_as_the_document_says(served, shard: int) -> None:
    base, admin, schema = served
    everything = sorted((result.ok() for result in schema.get_all_operations()),
                        key=lambda operation: (operation.path, operation.method))
    assert len(everything) >= 15
    operations = dealt(everything)[shard]
    session = requests.Session()
    sent = []
    started = time.monotonic()

    took = {}
    planned = 0
    for operation in operations:
        began = time.monotonic()
        examples = examples_for(operation)
        planned += examples
        @settings(max_examples=examples, derandomize=True, database=None, deadline=None,
                  phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
        @given(case=operation.as_strategy(), extra=EXTRA_QUERY, by_hash=st.booleans())
        def check(case, extra, by_hash):
            # The generator fills the security schemes' parameters too (hash="" beside the
            # token, which the hash then decides): send one valid form, as a client would.
            # So do the header schemes (Signature, Authorization): those are left out.
            declared = {k: v for k, v in (case.query or {}).items() if k not in ("token", "hash", "link")}
            query = {**extra, **declared}
            full_path = case.formatted_path
            case.headers = {k: v for k, v in (case.headers or {}).items()
                            if k.lower() not in ("signature", "signature-input", "authorization")}
            if full_path == "/api/v1/admin/download":  # a one-time link, made for this case
                made = session.post(f"{base}/api/v1/admin/downloads", params={"token": TOKEN},
                                    files={"what": (None, "logs")}, verify=False, timeout=30)
                query["link"] = made.json()["url"].partition("link=")[2]
            else:
                query["hash" if by_hash else "token"] = (
                    request_hash(TOKEN, case.method, full_path) if by_hash else TOKEN)
            case.query = query
            response = case.call(base_url=base, session=session, timeout=30, verify=False)
            sent.append(response.status_code)
            where = f"{case.method} {full_path}?{quote(json.dumps(query))} -> {response.status_code}"
            assert b"Traceback" not in response.content, where
            case.validate_response(response, checks=CHECKS)
            if case.method == "POST" and full_path.endswith("/setup"):
                restore_token(admin)

        check()
        took[f"{operation.method.upper()} {operation.path}"] = time.monotonic() - began

    elapsed = time.monotonic() - started
    print(f"\ncontract: {len(sent)} cases in {elapsed:.1f}s, statuses {sorted(set(sent))}; slowest: "
          + ", ".join(f"{name} {seconds:.1f}s" for name, seconds in sorted(took.items(), key=lambda t: -t[1])[:5]))
    assert not [status for status in sent if status >= 500]
    assert 403 not in sent, "every case was sent with a valid token or hash"
    assert len(sent) >= planned * 0.9, f"{len(sent)} cases sent of the {planned} planned"
    if EXAMPLES_PER_OPERATION >= 400:  # all shards together, as CI runs them
        assert sum(examples_for(operation) for operation in everything) >= 10_000
