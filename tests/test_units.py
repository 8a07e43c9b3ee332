"""Properties of the validators and parsers under the wire format."""

import inspect
import json
import re
import string
import tempfile
from pathlib import Path
from urllib.parse import quote

import pytest
import pytest_twisted
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st
from twisted.internet import reactor
from twisted.internet.defer import Deferred

from conftest import multipart
from jidoteki_admin.config import Config, ConfigError, Settings, parse_config
from jidoteki_admin.http.responses import APIError
from jidoteki_admin.http.site import scrub_uri
from jidoteki_admin.http.uploads import FILE, TEXT, FormPlan, FormStream, multipart_boundary
from jidoteki_admin.sections.information import human_size

SETTINGS = settings(max_examples=150, deadline=None, database=None)

# scrub_uri

SECRET = st.text(alphabet=string.ascii_letters + string.digits, min_size=12, max_size=40)
SECRET_NAMES = ["token", "hash", "newtoken"]


def encode_some(name: str, mask: list[bool]) -> str:
    """The name with some characters percent-encoded, in upper or lower case hex."""
    out = []
    for i, ch in enumerate(name):
        if mask[i % len(mask)]:
            out.append(f"%{ord(ch):02x}" if i % 2 else f"%{ord(ch):02X}")
        else:
            out.append(ch)
    return "".join(out)


OTHER_PAIR = st.tuples(
    st.text(alphabet=string.ascii_lowercase, min_size=1, max_size=8).filter(lambda n: n not in SECRET_NAMES),
    st.text(alphabet=string.ascii_letters + "-_.", max_size=8),
).map(lambda kv: f"{kv[0]}={kv[1]}")


@st.composite
def queries_with_secrets(draw):
    secrets_ = draw(st.lists(SECRET, min_size=1, max_size=3))
    pairs = draw(st.lists(OTHER_PAIR, max_size=3))
    for secret in secrets_:
        name = encode_some(draw(st.sampled_from(SECRET_NAMES)), draw(st.lists(st.booleans(), min_size=1, max_size=8)))
        value = draw(st.sampled_from([secret, quote(secret), "".join(f"%{ord(c):02X}" for c in secret)]))
        pairs.insert(draw(st.integers(0, len(pairs))), f"{name}={value}")
    return secrets_, "&".join(pairs)


@SETTINGS
@given(queries_with_secrets(), st.sampled_from(["/api/v1/admin/version", "/api/v1/admin/setup", "/x"]))
def test_scrub_uri_removes_every_secret_value(case, path):
    secrets_, query = case
    scrubbed = scrub_uri(f"{path}?{query}".encode()).decode("ascii")
    assert scrubbed.startswith(path + "?")
    for secret in secrets_:
        assert secret not in scrubbed
        assert quote(secret) not in scrubbed
        assert secret.lower() not in scrubbed.lower()


@SETTINGS
@given(st.text(alphabet=string.ascii_letters + string.digits + "-._~/", max_size=40))
def test_scrub_uri_keeps_a_uri_without_query(path):
    uri = ("/" + path).encode()
    assert scrub_uri(uri) == uri


def test_scrub_uri_keeps_other_parameters():
    assert scrub_uri(b"/p?a=1&token=s3cret&b=two") == b"/p?a=1&token=REDACTED&b=two"


@pytest.mark.parametrize(
    "uri",
    [b"/p?token=%ff", b"/p?%ff=1&token=s3cret", b"/p?token=\xff\xfe", b"/p?x=%c3%28&hash=s3cret"],
)
def test_scrub_uri_never_raises_and_still_scrubs(uri):
    scrubbed = scrub_uri(uri)
    assert b"s3cret" not in scrubbed


@SETTINGS
@given(st.binary(max_size=80), SECRET)
def test_scrub_uri_accepts_any_bytes(junk, secret):
    scrubbed = scrub_uri(b"/p?" + junk + b"&token=" + secret.encode())
    assert secret.encode() not in scrubbed


# parse_config

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=12,
)
KEYS = ["endpoints", "parameters", "first-run", "build-file", "storage-options-file", "services",
        "upload-limits", "job-timeout", "enabled", "word-length", "license", "update"]
CONFIGS = st.one_of(
    JSON,
    st.dictionaries(st.sampled_from(KEYS), JSON, max_size=5),
    st.dictionaries(
        st.sampled_from(KEYS),
        st.one_of(JSON, st.dictionaries(st.sampled_from(KEYS), JSON, max_size=3), st.lists(st.sampled_from(KEYS + [""]))),
        max_size=5,
    ),
)


@SETTINGS
@given(CONFIGS)
def test_parse_config_raises_only_config_error(raw):
    try:
        config = parse_config(raw)
    except ConfigError as e:
        assert str(e)
    else:
        assert isinstance(config, Config)


@SETTINGS
@given(CONFIGS)
def test_parse_config_survives_a_json_round_trip(raw):
    def outcome(value):
        try:
            return parse_config(value)
        except ConfigError as error:
            return ("refused", str(error))

    assert outcome(json.loads(json.dumps(raw))) == outcome(raw)


def test_admin_group_is_a_gid_or_a_group_name():
    import grp
    import os

    assert parse_config({}).admin_group is None
    assert parse_config({"admin-group": 997}).admin_group == 997
    assert parse_config({"admin-group": "997"}).admin_group == 997
    own = grp.getgrgid(os.getegid())
    assert parse_config({"admin-group": own.gr_name}).admin_group == own.gr_gid


def test_empty_config_is_the_defaults():
    config = parse_config({})
    assert config.endpoints == () and config.services == ()
    assert config.first_run.enabled is False and config.first_run.word_length == 4
    assert str(config.build_file) == "/usr/local/etc/build.json"
    assert str(config.storage_options_file) == "/usr/local/etc/storage-options.json"
    assert str(config.services_file) == "/usr/local/etc/allservices.txt"
    assert str(config.init_directory) == "/usr/local/etc/init.d"


@pytest.mark.parametrize(
    "raw",
    [
        {"first-run": {"enabled": True, "word-length": 0}},
        {"first-run": {"enabled": True, "word-length": True}},
        {"first-run": {"enabled": True, "word-length": 4.0}},
        {"first-run": {"enabled": 1}},
        {"first-run": []},
        {"build-file": ""},
        {"services": [""]},
        {"services": [None]},
        {"services-file": ""},
        {"init-directory": 7},
        {"admin-group": ""},
        {"admin-group": -1},
        {"admin-group": True},
        {"admin-group": ["wheel"]},
        {"admin-group": "no-such-group-here"},
    ],
    ids=repr,
)
def test_wrong_values_are_config_errors(raw):
    with pytest.raises(ConfigError):
        parse_config(raw)


# FormStream

PLAN = FormPlan({"newtoken": (TEXT, 4096), "update": (FILE, 1 << 20)}, unknown_cap=4096)
FIELD_TEXT = st.binary(max_size=300)


def new_stream(boundary: bytes, directory: Path) -> FormStream:
    if "writer" in inspect.signature(FormStream).parameters:
        from jidoteki_admin.http.uploads import DiskWriter

        return FormStream(PLAN, boundary, directory, DiskWriter(reactor, lambda: None, lambda: None))
    return FormStream(PLAN, boundary, directory)


async def parse_in_chunks(body: bytes, content_type: str, cuts: list[int], directory: Path):
    stream = new_stream(multipart_boundary(content_type.encode()), directory)
    previous = 0
    for cut in sorted(set(cuts)) + [len(body)]:
        stream.feed(body[previous:cut])
        previous = cut
    form = stream.finish()
    return await form if isinstance(form, Deferred) else form


def snapshot_form(form) -> tuple:
    files = {name: (upload.filename, upload.path.read_bytes()) for name, upload in form.files.items()}
    return dict(form.texts), files


@settings(max_examples=100, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    newtoken=FIELD_TEXT,
    extra=FIELD_TEXT,
    content=st.binary(max_size=2000),
    cuts=st.lists(st.integers(0, 3000), max_size=12),
)
@pytest_twisted.ensureDeferred
async def test_form_stream_gives_the_same_fields_for_any_chunking(newtoken, extra, content, cuts):
    content_type, body = multipart({"newtoken": newtoken, "note": extra}, {"update": ("pkg.enc", content)})
    splits = {
        "whole": [],
        "chunked": [c for c in cuts if c <= len(body)],
        "bytewise": list(range(len(body))) if len(body) < 600 else list(range(0, len(body), 7)),
    }
    expected = ({"newtoken": newtoken}, {"update": ("pkg.enc", content)})
    with tempfile.TemporaryDirectory() as directory:
        for name, split in splits.items():
            form = await parse_in_chunks(body, content_type, split, Path(directory))
            assert snapshot_form(form) == expected, name
            form.discard()
        assert list(Path(directory).iterdir()) == []


@settings(max_examples=150, deadline=None, database=None)
@given(
    body=st.one_of(
        st.binary(max_size=400),
        st.builds(
            lambda head, junk: head + junk,
            st.sampled_from([
                b"--b\r\n",
                b'--b\r\nContent-Disposition: form-data; name="newtoken"\r\n\r\n',
                b'--b\r\nContent-Disposition: form-data; name="update"; filename="p"\r\n\r\n',
                b"",
            ]),
            st.binary(max_size=300),
        ),
    ),
    cuts=st.lists(st.integers(0, 800), max_size=6),
)
@pytest_twisted.ensureDeferred
async def test_form_stream_reports_garbage_as_a_problem(body, cuts):
    with tempfile.TemporaryDirectory() as directory:
        try:
            form = await parse_in_chunks(
                body, "multipart/form-data; boundary=b", [c for c in cuts if c <= len(body)], Path(directory)
            )
        except APIError as problem:
            assert 400 <= problem.status < 500
            assert problem.message
        else:
            form.discard()
        assert [p.name for p in Path(directory).iterdir()] == []


@pytest_twisted.ensureDeferred
async def test_form_stream_refuses_an_oversized_text_field():
    content_type, body = multipart({"newtoken": "x" * 5000})
    with tempfile.TemporaryDirectory() as directory:
        with pytest.raises(APIError) as refused:
            await parse_in_chunks(body, content_type, [100, 2000], Path(directory))
    assert refused.value.status == 413


@pytest_twisted.ensureDeferred
async def test_form_stream_refuses_a_cut_short_body_and_keeps_no_file():
    content_type, body = multipart({"newtoken": "abc"}, {"update": ("p", b"data" * 100)})
    with tempfile.TemporaryDirectory() as directory:
        with pytest.raises(APIError) as refused:
            await parse_in_chunks(body[:-30], content_type, [], Path(directory))
        assert list(Path(directory).iterdir()) == []
    assert refused.value.status == 400


@pytest_twisted.ensureDeferred
async def test_a_refused_form_keeps_no_file_it_had_finished():
    content_type, body = multipart({"newtoken": "abc"}, {"update": ("p", b"data" * 100)})
    boundary = content_type.split("boundary=")[1].encode()
    duplicate = b"--" + boundary + b'\r\nContent-Disposition: form-data; name="newtoken"\r\n\r\nagain\r\n'
    body = body[: -len(boundary) - 6] + duplicate + b"--" + boundary + b"--\r\n"
    with tempfile.TemporaryDirectory() as directory:
        with pytest.raises(APIError) as refused:
            await parse_in_chunks(body, content_type, [], Path(directory))
        assert list(Path(directory).iterdir()) == []
    assert refused.value.status == 400


@pytest.mark.parametrize(
    "content_type,boundary",
    [
        ("multipart/form-data; boundary=abc", b"abc"),
        ('multipart/form-data; boundary="a b"', b"a b"),
        ("Multipart/Form-Data; boundary=abc", b"abc"),
        ("multipart/form-data", None),
        ("application/x-www-form-urlencoded", None),
        ("", None),
        (None, None),
    ],
)
def test_multipart_boundary(content_type, boundary):
    raw = content_type.encode() if content_type is not None else None
    assert multipart_boundary(raw) == boundary


# RFC 2046 boundary characters; a boundary with a space or one of "()+,/:=? must be quoted.
BCHARS_PLAIN = string.ascii_letters + string.digits + "'-._"
BCHARS_QUOTED = BCHARS_PLAIN + "()+,/:=? "


@SETTINGS
@given(
    boundary=st.one_of(
        st.text(BCHARS_PLAIN, min_size=1, max_size=70).map(lambda b: (b, b)),
        st.text(BCHARS_QUOTED, min_size=1, max_size=69).filter(lambda b: not b.endswith(" "))
        .map(lambda b: (b, f'"{b}"')),
    ),
    media=st.sampled_from(["multipart/form-data", "MULTIPART/FORM-DATA", "Multipart/form-DATA"]),
    before=st.sampled_from(["", "; charset=utf-8", ';  name="x"']),
    after=st.sampled_from(["", "; charset=utf-8", "; x=y"]),
)
def test_multipart_boundary_is_found_however_the_header_is_written(boundary, media, before, after):
    value, written = boundary
    header = f"{media}{before}; boundary={written}{after}"
    assert multipart_boundary(header.encode()) == value.encode()


@SETTINGS
@given(media=st.sampled_from(["text/plain", "multipart/mixed", "application/x-www-form-urlencoded",
                              "multipart/form-datax", "form-data"]),
       boundary=st.text(BCHARS_PLAIN, min_size=1, max_size=20))
def test_only_multipart_form_data_has_a_boundary(media, boundary):
    assert multipart_boundary(f"{media}; boundary={boundary}".encode()) is None


# human_size

UNIT_POWERS = {"B": 0, "K": 1, "M": 2, "G": 3, "T": 4, "P": 5, "E": 6}


def parse_size(text: str) -> float:
    match = re.fullmatch(r"(\d+(?:\.\d)?)([BKMGTPE])", text)
    assert match, text
    return float(match.group(1)) * 1024 ** UNIT_POWERS[match.group(2)]


def test_human_size_just_under_ten_units_has_no_decimal():
    assert human_size(int(9.97 * 1024**3)) == "10G"


def test_human_size_just_under_ten_kib_is_ten_k():
    assert human_size(10239) == "10K"
    assert human_size(10188) == "9.9K"


@SETTINGS
@given(st.integers(0, 2**70))
@example(10239)  # 9.999K once printed as "10.0K"
@example(int(9.97 * 1024**3))
def test_human_size_is_a_number_and_a_unit_close_to_the_size(size):
    text = human_size(size)
    value = parse_size(text)
    if size < 1024:
        assert text == f"{size}B"
    else:
        assert abs(value - size) <= 0.05 * size
        number = float(text[:-1])
        assert 1 <= number < 1025
        assert ("." in text) == (number < 10)


@SETTINGS
@given(st.integers(0, 2**62), st.integers(0, 2**62))
def test_human_size_is_monotonic(a, b):
    assume(a != b)
    low, high = sorted((a, b))
    assert parse_size(human_size(low)) <= parse_size(human_size(high))


@SETTINGS
@given(st.integers(0, 2**50), st.sampled_from("KMGT"))
def test_human_size_in_a_fixed_unit_is_a_rounded_integer(size, unit):
    text = human_size(size, unit)
    assert re.fullmatch(rf"\d+{unit}", text)
    assert abs(int(text[:-1]) * 1024 ** UNIT_POWERS[unit] - size) <= 1024 ** UNIT_POWERS[unit] / 2


# Settings


def test_a_relative_admin_path_is_made_absolute_once(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    settings = Settings(admin_path=Path("./admin-tree"), config=Config())
    monkeypatch.chdir("/")
    assert settings.admin_path == tmp_path / "admin-tree"


@pytest.mark.parametrize("raw, problem", [
    ({"privileged-command": "sudo"}, '"privileged-command" must be a list of non-empty strings'),
    ({"privileged-command": ["sudo", "-n"]}, '"privileged-command" must start with an absolute path'),
    ({"privileged-command": ["/usr/bin/sudo", ""]}, "must be a list of non-empty strings"),
    ({"jobs": "scripts"}, """"jobs" must be one of: 'builtin', 'appliance'"""),
])
def test_privilege_and_job_keys_are_checked(raw, problem):
    from jidoteki_admin.config import ConfigError, parse_config

    with pytest.raises(ConfigError) as refused:
        parse_config(raw)
    assert problem in str(refused.value)


def test_a_privileged_command_keeps_repeated_arguments():
    from jidoteki_admin.config import parse_config

    command = ["/usr/bin/sudo", "-n", "-C", "4", "/x/jidoteki-admin-privileged", "--admin-path", "/x"]
    assert parse_config({"privileged-command": command}).privileged_command == tuple(command)
