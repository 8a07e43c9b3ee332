"""Who may do what: signed requests that cannot be replayed, named tokens with a scope,
one-time download links and the metrics a read token may scrape, through the daemon."""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import re
import secrets
import stat
import subprocess
import time
from types import SimpleNamespace

import http_message_signatures as hms
import pytest
import pytest_twisted
from hypothesis import given, settings
from hypothesis import strategies as st
from http_message_signatures.algorithms import HMAC_SHA256
from prometheus_client.parser import text_string_to_metric_families
from twisted.internet.threads import deferToThread

from conftest import json_of, multipart
from jidoteki_admin import API_PREFIX
from jidoteki_admin.config import OPTIONAL_ENDPOINTS
from jidoteki_admin.http import auth, signatures
from jidoteki_admin.http.auth import request_hash
from jidoteki_admin.http.catalogue import READ

TOKEN = "yourtoken"
DOCS = os.path.join(os.path.dirname(__file__), "..", "docs", "API.md")


def signed(method: str, url: str, token: str = TOKEN, keyid: str = "admin", body: bytes | None = None,
           created: float | None = None, nonce: str | None = None,
           cover: tuple[str, ...] = ("@method", "@target-uri")) -> dict[str, list[str]]:
    """Headers that sign a request, made by the library itself (not the daemon's code)."""
    message = SimpleNamespace(method=method, url=url, headers={})
    key = hashlib.sha256(token.encode()).hexdigest().encode()
    signer = hms.HTTPMessageSigner(signature_algorithm=HMAC_SHA256,
                                   key_resolver=hms.MappingKeyResolver(public_keys={}, private_keys={keyid: key}))
    signer.sign(message, key_id=keyid, label="sig", covered_component_ids=cover, body=body,
                created=datetime.datetime.fromtimestamp(created if created is not None else time.time(),
                                                        datetime.timezone.utc),
                nonce=nonce or secrets.token_hex(16))
    return {name: [value] for name, value in message.headers.items()}


def message_of(response) -> str:
    return (response.headers.getRawHeaders("error-message") or [""])[0]


async def make_token(daemon, name: str, scope: str) -> str:
    response = await daemon.post_form("/tokens", {"name": name, "scope": scope})
    assert response.code == 200, message_of(response)
    return (await json_of(response))["token"]


def audit_lines(daemon) -> list[dict]:
    return [json.loads(line) for line in (daemon.admin_path / "log" / "jidoteki-audit.log").read_text().splitlines()]


# Signed requests


@pytest_twisted.ensureDeferred
async def test_a_signed_request_is_answered_once_and_its_replay_refused(daemon):
    (daemon.admin_path / "etc" / "version.txt").write_text("1.2.3\n")
    url = daemon.url("/version", auth=None)
    headers = signed("GET", url)
    first = await daemon.request("GET", url, headers=headers)
    assert first.code == 200 and await first.content() == b'{"version":"1.2.3"}'
    replay = await daemon.request("GET", url, headers=headers)
    assert replay.code == 403
    assert message_of(replay) == "This signature was already used: sign each request anew"
    # The signature covers the query too: the same signature on another target is refused.
    other = await daemon.request("GET", url + "?x=1", headers=signed("GET", url))
    assert other.code == 403 and "does not match" in message_of(other)
    lines = audit_lines(daemon)
    assert lines[-1]["token"] == "-" and lines[-1]["outcome"].startswith("403")
    log = (daemon.admin_path / "log" / "jidoteki-audit.log").read_text()
    assert headers["Signature"][0].split(":")[1] not in log  # never the signature itself


@pytest_twisted.ensureDeferred
async def test_a_signature_from_outside_the_window_is_refused(memory_daemon):
    daemon = memory_daemon
    url = daemon.url("/health", auth=None)
    now = daemon.clock.seconds()
    for created in (now - 301, now + 301):
        refused = await daemon.request("GET", url, headers=signed("GET", url, created=created))
        assert refused.code == 403
        assert "more than 300 seconds from the appliance's time: check the client's clock" in message_of(refused)
    assert (await daemon.request("GET", url, headers=signed("GET", url, created=now - 290))).code == 200


@pytest_twisted.ensureDeferred
async def test_the_window_is_the_configs(make_memory_daemon):
    daemon = make_memory_daemon({"signature-window": 30})
    url = daemon.url("/health", auth=None)
    now = daemon.clock.seconds()
    assert (await daemon.request("GET", url, headers=signed("GET", url, created=now - 31))).code == 403
    assert (await daemon.request("GET", url, headers=signed("GET", url, created=now - 29))).code == 200


@pytest_twisted.ensureDeferred
async def test_a_body_changed_after_signing_is_refused_and_changes_nothing(daemon):
    url = daemon.url("/tokens", auth=None)
    content_type, body = multipart({"name": "monitoring", "scope": "read"})
    headers = {**signed("POST", url, body=body), "Content-Type": [content_type]}
    assert "content-digest" in headers["Signature-Input"][0]
    _, other = multipart({"name": "intruder", "scope": "admin"}, boundary=content_type.split("boundary=")[1])
    changed = await daemon.request("POST", url, headers=headers, data=other)
    assert changed.code == 403
    assert message_of(changed) == "The body is not the one the signature's Content-Digest describes"
    assert not (daemon.admin_path / "etc" / "api-tokens.json").exists()
    made = await daemon.request("POST", url, headers={**signed("POST", url, body=body), "Content-Type": [content_type]},
                                data=body)
    assert made.code == 200 and (await json_of(made))["name"] == "monitoring"
    # A signature that leaves the body out is refused, whatever the body.
    bare = await daemon.request("POST", url, headers={**signed("POST", url), "Content-Type": [content_type]},
                                data=body)
    assert bare.code == 403 and message_of(bare) == "The signature must cover content-digest"


@pytest.mark.parametrize("change", ["token", "hash"])
@pytest_twisted.ensureDeferred
async def test_credentials_in_the_query_are_refused_when_turned_off(make_memory_daemon, change):
    daemon = make_memory_daemon({"query-credentials": False})
    refused = await daemon.get("/version", auth=change)
    assert refused.code == 403
    assert message_of(refused).startswith("Credentials in the query are turned off on this appliance: sign")
    url = daemon.url("/health", auth=None)
    assert (await daemon.request("GET", url, headers=signed("GET", url))).code == 200


@pytest.mark.parametrize("headers, why", [
    ({"Signature-Input": ['sig=("@method" "@target-uri");created=1;keyid="admin"'], "Signature": ["sig=:AAAA:"]},
     "check the client's clock"),
    ({"Signature-Input": ["garbage((("], "Signature": ["sig=:AAAA:"]}, "Malformed structured header field"),
    ({"Signature": ["sig=:AAAA:"]}, "needs a Signature-Input header"),
    ({"Signature-Input": ["sig=()"]}, "needs a Signature header"),
    ({"Signature-Input": ["sig=(" + '"@method" ' * 500 + ")"], "Signature": ["sig=:AAAA:"]}, "longer than 4096"),
])
@pytest_twisted.ensureDeferred
async def test_malformed_signatures_are_refused_saying_why(memory_daemon, headers, why):
    response = await memory_daemon.request("GET", memory_daemon.url("/version", auth=None), headers=headers)
    assert response.code == 403
    assert why in message_of(response)


@pytest_twisted.ensureDeferred
async def test_unknown_keys_and_huge_nonces_are_refused_and_throttled_like_any_failure(memory_daemon):
    daemon = memory_daemon
    url = daemon.url("/version", auth=None)
    now = daemon.clock.seconds()
    unknown = await daemon.request("GET", url, headers=signed("GET", url, keyid="nobody", created=now))
    assert unknown.code == 403 and message_of(unknown) == "The signature's keyid names no token"
    huge = await daemon.request("GET", url, headers=signed("GET", url, nonce="n" * 129, created=now))
    assert huge.code == 403 and "nonce of 16 to 128" in message_of(huge)
    wrong = signed("GET", url, token="not-the-token", created=now)
    for _ in range(3):
        assert (await daemon.request("GET", url, headers=signed("GET", url, token="guess", created=now))).code == 403
    # The budget (5) is spent: the next failure waits, as a wrong token would.
    late = await daemon.answer_after(daemon.request("GET", url, headers=wrong), at_least=0.5)
    assert late.code == 403
    log = (daemon.admin_path / "log" / "jidoteki-audit.log").read_text()
    assert "THROTTLE" in log and wrong["Signature"][0][5:-1] not in log


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.sampled_from(["signature-input", "signature", "content-digest"]),
                       st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=300)),
       st.booleans())
def test_any_signature_fields_are_refused_with_a_reason_never_an_error(headers, has_body):
    with pytest.raises(signatures.SignatureRefused) as refused:
        signatures.verify("GET", "https://a.example/api/v1/admin/version", headers, has_body,
                          lambda keyid: b"k" * 64, 1_800_000_000, 300, signatures.NonceCache(300))
    assert str(refused.value)


# Named tokens and their scope


@pytest_twisted.ensureDeferred
async def test_a_named_token_is_shown_once_kept_hashed_listed_and_named_in_the_audit(daemon):
    token = await make_token(daemon, "monitoring", "read")
    stored = daemon.admin_path / "etc" / "api-tokens.json"
    assert token not in stored.read_text()
    assert stat.S_IMODE(stored.stat().st_mode) == 0o600
    listing = await json_of(await daemon.get("/tokens"))
    assert [set(t) for t in listing["tokens"]] == [{"name", "scope", "created"}]
    assert listing["tokens"][0]["name"] == "monitoring" and token not in json.dumps(listing)
    # It authenticates in each of the three ways; the audit names it.
    assert (await daemon.get("/health", auth=None, token=token)).code == 200
    path = API_PREFIX + "/health"
    assert (await daemon.get("/health", auth=None, hash=request_hash(token, "GET", path))).code == 200
    url = daemon.url("/health", auth=None)
    assert (await daemon.request("GET", url, headers=signed("GET", url, token=token, keyid="monitoring"))).code == 200
    assert (await daemon.post_form("/update", auth=None, token=token)).code == 403
    assert audit_lines(daemon)[-1]["token"] == "monitoring"
    assert [line["token"] for line in audit_lines(daemon) if line["target"].endswith("/tokens")] == ["admin"]


@pytest.mark.parametrize("fields, problem", [
    ({"name": "admin", "scope": "read"}, "not 'admin'"),
    ({"name": "Upper", "scope": "read"}, "lower-case"),
    ({"name": "x" * 64, "scope": "read"}, "1 to 63"),
    ({"name": "ok", "scope": "root"}, "scope"),
])
@pytest_twisted.ensureDeferred
async def test_a_bad_name_or_scope_is_refused_and_nothing_is_written(memory_daemon, fields, problem):
    response = await memory_daemon.post_form("/tokens", fields)
    assert response.code == 400 and problem in message_of(response)
    assert not (memory_daemon.admin_path / "etc" / "api-tokens.json").exists()


@pytest_twisted.ensureDeferred
async def test_past_the_most_named_tokens_a_new_one_is_refused_until_one_is_revoked(memory_daemon, monkeypatch):
    monkeypatch.setattr(auth, "NAMED_TOKENS_MAX", 3)
    for n in range(3):
        await make_token(memory_daemon, f"t{n}", "read")
    stored = memory_daemon.admin_path / "etc" / "api-tokens.json"
    before = stored.read_bytes()
    refused = await memory_daemon.post_form("/tokens", {"name": "t3", "scope": "read"})
    assert refused.code == 400 and "already 3 named tokens" in message_of(refused)
    assert stored.read_bytes() == before
    assert (await memory_daemon.post_form("/tokens/revoke", {"name": "t0"})).code == 200
    await make_token(memory_daemon, "t3", "read")


@pytest_twisted.ensureDeferred
async def test_a_name_in_use_is_refused(memory_daemon):
    await make_token(memory_daemon, "ci", "admin")
    again = await memory_daemon.post_form("/tokens", {"name": "ci", "scope": "read"})
    assert again.code == 400 and "exists: revoke it first" in message_of(again)


@pytest_twisted.ensureDeferred
async def test_a_read_token_is_refused_on_every_operation_that_is_not_read_only(make_memory_daemon):
    """From the catalogue: a new endpoint is admin unless declared read, so it cannot be
    forgotten here."""
    daemon = make_memory_daemon({"endpoints": list(OPTIONAL_ENDPOINTS)})
    (daemon.admin_path / "etc" / "version.txt").write_text("1.0.0\n")
    token = await make_token(daemon, "monitoring", "read")
    checked = {READ: 0, "admin": 0}
    for section in daemon.service.catalogue.sections:
        for endpoint in section.endpoints:
            if endpoint.public or endpoint.by_link:
                continue
            for operation in endpoint.operations:
                if operation.method == "GET":
                    response = await daemon.get(endpoint.path, auth=None, token=token)
                else:
                    response = await daemon.post_form(endpoint.path, {}, auth=None, token=token)
                where = f"{operation.method} {endpoint.full_path}"
                if operation.scope == READ:
                    assert response.code != 403, where
                else:
                    assert response.code == 403, where
                    assert message_of(response) == (f"The token 'monitoring' may only read: {where} needs a token "
                                                    "of scope admin")
                checked[operation.scope] += 1
    assert checked[READ] >= 15 and checked["admin"] >= 20
    assert not (daemon.admin_path / "log" / "update.log").exists()  # nothing was started
    # Not one of these refusals counted as a failed authentication: the read token is not slowed.
    assert daemon.service.api.throttle.throttled_clients() == 0


@pytest_twisted.ensureDeferred
async def test_an_admin_named_token_may_do_everything(memory_daemon):
    token = await make_token(memory_daemon, "ci", "admin")
    assert (await memory_daemon.post_form("/tokens", {"name": "more", "scope": "read"}, auth=None,
                                          token=token)).code == 200


@pytest_twisted.ensureDeferred
async def test_a_revoked_token_is_refused_at_once_in_every_form(daemon):
    token = await make_token(daemon, "monitoring", "read")
    url = daemon.url("/health", auth=None)
    assert (await daemon.get("/health", auth=None, token=token)).code == 200
    revoked = await daemon.post_form("/tokens/revoke", {"name": "monitoring"})
    assert revoked.code == 200
    assert (await daemon.get("/health", auth=None, token=token)).code == 403
    by_signature = await daemon.request("GET", url, headers=signed("GET", url, token=token, keyid="monitoring"))
    assert by_signature.code == 403 and message_of(by_signature) == "The signature's keyid names no token"
    bearer = await daemon.request("GET", url, headers={"Authorization": [f"Bearer {token}"]})
    assert bearer.code == 403
    again = await daemon.post_form("/tokens/revoke", {"name": "monitoring"})
    assert again.code == 404 and message_of(again) == "No token named 'monitoring'"
    assert (await json_of(await daemon.get("/tokens"))) == {"tokens": []}


@pytest_twisted.ensureDeferred
async def test_bearer_is_for_read_tokens_only(memory_daemon):
    daemon = memory_daemon
    read = await make_token(daemon, "monitoring", "read")
    admin = await make_token(daemon, "ci", "admin")
    url = daemon.url("/metrics", auth=None)
    assert (await daemon.request("GET", url, headers={"Authorization": [f"Bearer {read}"]})).code == 200
    for token in (admin, TOKEN):
        refused = await daemon.request("GET", url, headers={"Authorization": [f"Bearer {token}"]})
        assert refused.code == 403 and "Bearer is for tokens of scope read" in message_of(refused)
    basic = await daemon.request("GET", url, headers={"Authorization": ["Basic eDp5"]})
    assert basic.code == 403


# One-time download links


@pytest_twisted.ensureDeferred
async def test_a_download_link_works_once_for_its_one_download(daemon):
    response = await daemon.post_form("/downloads", {"what": "logs"})
    assert response.code == 200
    link = await json_of(response)
    assert link["url"].startswith(API_PREFIX + "/download?link=") and link["seconds"] == 60
    assert TOKEN not in link["url"]
    lid = link["url"].partition("link=")[2]
    # The link is no credential anywhere else.
    assert (await daemon.get("/logs", auth=None, link=lid)).code == 403
    first = await daemon.request("GET", daemon.base + link["url"])
    assert first.code == 200
    assert first.headers.getRawHeaders("content-disposition") == ['attachment; filename="logs.tar.gz"']
    assert first.headers.getRawHeaders("cache-control") == ["no-store"]
    assert (await first.content())[:2] == b"\x1f\x8b"
    second = await daemon.request("GET", daemon.base + link["url"])
    assert second.code == 403
    assert message_of(second) == "This download link was already used, has expired or never existed: ask for a new one"
    downloads = [line for line in audit_lines(daemon) if line["target"].endswith("/download")]
    assert [(line["token"], line["outcome"][:3]) for line in downloads] == [("admin", "200"), ("-", "403")]
    assert lid not in (daemon.admin_path / "log" / "jidoteki-audit.log").read_text()


@pytest_twisted.ensureDeferred
async def test_a_download_link_expires(memory_daemon):
    daemon = memory_daemon
    link = await json_of(await daemon.post_form("/downloads", {"what": "debug"}))
    daemon.clock.advance(61)
    late = await daemon.request("GET", daemon.base + link["url"])
    assert late.code == 403 and "ask for a new one" in message_of(late)


@pytest_twisted.ensureDeferred
async def test_a_link_is_only_for_what_this_appliance_serves(memory_daemon):
    response = await memory_daemon.post_form("/downloads", {"what": "backup"})  # backup is not enabled here
    assert response.code == 400


@pytest_twisted.ensureDeferred
async def test_a_read_token_gets_no_download_link(memory_daemon):
    token = await make_token(memory_daemon, "monitoring", "read")
    assert (await memory_daemon.post_form("/downloads", {"what": "logs"}, auth=None, token=token)).code == 403


# Metrics


@pytest_twisted.ensureDeferred
async def test_metrics_parse_with_prometheus_clients_own_parser(daemon):
    (daemon.admin_path / "etc" / "version.txt").write_text("2.4.1\n")
    token = await make_token(daemon, "monitoring", "read")
    assert (await daemon.get("/version", auth=None, token="wrong")).code == 403
    assert (await daemon.get("/logs")).code == 200  # a job of kind logs, run to success
    response = await daemon.request("GET", daemon.url("/metrics", auth=None),
                                    headers={"Authorization": [f"Bearer {token}"]})
    assert response.code == 200
    assert response.headers.getRawHeaders("content-type") == ["text/plain; version=0.0.4; charset=utf-8"]
    families = {family.name: family for family in text_string_to_metric_families((await response.content()).decode())}
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value for f in families.values() for s in f.samples}
    assert samples[("jidoteki_admin_version_info", (("version", "2.4.1"),))] == 1
    assert samples[("jidoteki_admin_job_last_outcome", (("kind", "logs"), ("outcome", "success")))] == 1
    assert samples[("jidoteki_admin_job_last_outcome", (("kind", "logs"), ("outcome", "failed")))] == 0
    assert samples[("jidoteki_admin_job_last_duration_seconds", (("kind", "logs"),))] > 0
    assert samples[("jidoteki_admin_requests_total", (("status", "403"),))] >= 1
    assert samples[("jidoteki_admin_requests_total", (("status", "200"),))] >= 2
    assert 3000 < samples[("jidoteki_admin_certificate_days_left", ())] < 4000  # the daemon's own, ten years
    assert 0 < samples[("jidoteki_admin_disk_used_bytes", ())] < samples[("jidoteki_admin_disk_size_bytes", ())]
    assert samples[("jidoteki_admin_throttled_clients", ())] == 0
    assert families["jidoteki_admin_requests"].type == "counter"


@pytest_twisted.ensureDeferred
async def test_metrics_count_throttled_clients(memory_daemon):
    daemon = memory_daemon
    for _ in range(5):
        assert (await daemon.get("/version", auth=None, token="guess")).code == 403
    await daemon.answer_after(daemon.get("/version", auth=None, token="guess"), at_least=0.5)
    text = (await (await daemon.get("/metrics")).content()).decode()
    samples = {s.name: s.value for f in text_string_to_metric_families(text) for s in f.samples if not s.labels}
    assert samples["jidoteki_admin_throttled_clients"] == 1


# The documents


@pytest_twisted.ensureDeferred
async def test_the_openapi_document_describes_the_schemes_and_each_operations_scope(memory_daemon):
    document = await json_of(await memory_daemon.get("//docs/openapi.json", auth=None))
    schemes = document["components"]["securitySchemes"]
    assert {"token", "hash", "signature", "bearer", "link"} <= set(schemes)
    assert schemes["bearer"] == {"type": "http", "scheme": "bearer", "description": schemes["bearer"]["description"]}
    paths = document["paths"]
    assert paths[API_PREFIX + "/metrics"]["get"]["x-scope"] == "read"
    assert {"bearer": []} in paths[API_PREFIX + "/metrics"]["get"]["security"]
    assert paths[API_PREFIX + "/update"]["post"]["x-scope"] == "admin"
    assert paths[API_PREFIX + "/download"]["get"]["security"] == [{"link": []}]


def docs_script(title: str) -> str:
    text = open(DOCS).read()
    match = re.search(r"```sh\n# " + re.escape(title) + r"\n(.*?)```", text, re.S)
    assert match, title
    return match.group(1)


@pytest.mark.parametrize("title, endpoint, expected", [
    ("Sign a GET with curl and openssl", "/version", b'{"version":"3.0.0"}'),
    ("Sign a POST with curl and openssl", "/backup", b'{"Status":"202 Accepted","Location":"/api/v1/admin/backup"}'),
])
@pytest_twisted.ensureDeferred
async def test_the_curl_and_openssl_examples_of_the_reference_work_as_written(make_daemon, tmp_path, title,
                                                                               endpoint, expected):
    data = tmp_path / "data"
    data.mkdir()
    daemon = make_daemon({"endpoints": ["backup"], "backup-root": str(data)})
    (daemon.admin_path / "etc" / "version.txt").write_text("3.0.0\n")
    script = docs_script(title).replace("https://appliance.example:8443", daemon.base)
    script = script.replace("--cacert ca.pem", f"--cacert {daemon.service.tls.certificate} -s")
    work = tmp_path / "work"
    work.mkdir()
    done = await deferToThread(subprocess.run, ["sh", "-c", script], cwd=work, capture_output=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout == expected, done.stdout


@pytest_twisted.ensureDeferred
async def test_every_metric_the_fleet_guide_alerts_on_is_served(memory_daemon):
    guide = open(os.path.join(os.path.dirname(__file__), "..", "docs", "fleet.md")).read()
    named = set(re.findall(r"jidoteki_admin_[a-z0-9_]+", guide.partition("## Monitoring with Prometheus")[2]))
    assert {"jidoteki_admin_disk_used_bytes", "jidoteki_admin_certificate_days_left",
            "jidoteki_admin_job_last_outcome"} <= named
    text = (await (await memory_daemon.get("/metrics")).content()).decode()
    served = {name for family in text_string_to_metric_families(text)
              for name in (family.name, *(sample.name for sample in family.samples))}
    served |= set(re.findall(r"^# TYPE (\S+)", text, re.M))
    assert named <= served, named - served


@pytest_twisted.ensureDeferred
async def test_a_signed_body_to_an_endpoint_without_fields_and_a_signed_head(daemon):
    """A form with no fields (POST /update/discard) is still digested as it arrives; a HEAD
    is signed as HEAD."""
    url = daemon.url("/update/discard", auth=None)
    content_type, body = multipart({})
    response = await daemon.request("POST", url, data=body,
                                    headers={**signed("POST", url, body=body), "Content-Type": [content_type]})
    assert response.code == 400 and message_of(response) == "No package is staged"  # past the gate
    url = daemon.url("/health", auth=None)
    assert (await daemon.request("HEAD", url, headers=signed("HEAD", url))).code == 200
    assert (await daemon.request("HEAD", url, headers=signed("GET", url))).code == 403
