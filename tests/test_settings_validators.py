"""The storage and cluster validators (validate.py, storage_settings.py, cluster_settings.py)
checked against independent statements of what they allow, with generated input; and
storage.conf sourced by sh for any document the checks let through."""

from __future__ import annotations

import json
import string
import subprocess

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jidoteki_admin.formats import validate
from jidoteki_admin.formats.cluster_settings import MAX_PEERS, cluster_settings
from jidoteki_admin.formats.storage_settings import MASK, TYPES, conf_text, parse_options, storage_settings
from jidoteki_admin.formats.validate import Invalid

# Characters a double-quoted shell string treats specially, or that end it.
SHELL_SPECIAL = set('$`\\"\n')
PRINTABLE = "".join(chr(c) for c in range(0x20, 0x7F))
anything = st.text(alphabet=st.characters(codec="utf-8"), max_size=300) | st.text(alphabet=PRINTABLE, max_size=300)


def accepts(check, value) -> bool:
    try:
        assert check(value) == value  # a value that passes is kept exactly as given
        return True
    except Invalid as e:
        assert str(e).startswith("Missing or invalid string for option: ")
        return False


@given(anything)
def test_a_label_is_what_rfc_1123_allows_for_one_label(value):
    expected = (1 <= len(value) <= 63 and all(c in string.ascii_letters + string.digits + "-" for c in value)
                and not value.startswith("-") and not value.endswith("-"))
    assert accepts(lambda v: validate.label(v, "name"), value) == expected


@given(st.from_regex(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?", fullmatch=True))
def test_every_well_formed_label_is_accepted(value):
    assert accepts(lambda v: validate.label(v, "name"), value)


@pytest.mark.parametrize("length, valid", [(15, False), (16, True), (256, True), (257, False)])
def test_a_secret_is_16_to_256_characters_long(length, valid):
    assert accepts(validate.secret, "s" * length) == valid


@given(anything | st.text(alphabet=PRINTABLE, min_size=14, max_size=20))
def test_a_secret_is_16_to_256_printable_ascii_without_quotes_or_backslashes(value):
    expected = 16 <= len(value) <= 256 and all(c in PRINTABLE and c not in "\"'\\" for c in value)
    assert accepts(validate.secret, value) == expected


@given(anything)
def test_an_aoe_device_is_shelf_and_slot_in_range(value):
    parts = value[1:].split(".") if value.startswith("e") else []
    expected = (len(parts) == 2 and all(p.isascii() and p.isdigit() and str(int(p)) == p for p in parts)
                and int(parts[0]) <= 65534 and int(parts[1]) <= 254)
    assert accepts(validate.aoe_device, value) == expected


@given(st.integers(0, 65534), st.integers(0, 254))
def test_every_aoe_device_in_range_is_accepted(shelf, slot):
    assert accepts(validate.aoe_device, f"e{shelf}.{slot}")


@given(anything)
def test_a_share_is_an_absolute_path_of_plain_characters_without_dot_dot(value):
    allowed = set(string.ascii_letters + string.digits + "._+@:=~,-/")
    expected = (value.startswith("/") and len(value) <= 1024 and set(value) <= allowed
                and ".." not in value.split("/"))
    assert accepts(lambda v: validate.absolute_path(v, "share"), value) == expected


@given(anything)
def test_mount_options_never_start_an_option_or_hold_a_space(value):
    if accepts(validate.mount_options, value):
        words = value.split(",")
        assert all(w and not w.startswith(("-", "=")) for w in words)
        assert not set(value) & (SHELL_SPECIAL | set(" \t'; |&<>()"))


@given(st.lists(st.from_regex(r"[a-z]{1,8}(=[a-z0-9.]{1,6})?", fullmatch=True), min_size=1, max_size=8))
def test_comma_separated_option_words_are_accepted(words):
    assert accepts(validate.mount_options, ",".join(words))


@given(anything)
def test_an_iscsi_name_is_an_iqn_eui_or_naa(value):
    if accepts(validate.iscsi_name, value):
        assert value.startswith(("iqn.", "eui.", "naa.")) and len(value) <= 223
        assert not set(value) & (SHELL_SPECIAL | set(" '"))


@given(st.integers(1990, 2099), st.integers(1, 12),
       st.lists(st.from_regex(r"[a-z0-9]([a-z0-9-]{0,8}[a-z0-9])?", fullmatch=True), min_size=1, max_size=4),
       st.from_regex(r"[a-z0-9.:_-]{1,30}", fullmatch=True) | st.none())
def test_every_iqn_is_accepted(year, month, labels, unique):
    name = f"iqn.{year}-{month:02d}.{'.'.join(labels)}" + (f":{unique}" if unique else "")
    assert accepts(validate.iscsi_name, name)


@given(anything)
def test_a_word_is_plain_characters_only(value):
    allowed = set(string.ascii_letters + string.digits + "._+@:/=~-")
    expected = 1 <= len(value) <= 255 and set(value) <= allowed
    assert accepts(lambda v: validate.word(v, "username"), value) == expected


# Whole documents: anything at all is either a document to store or Invalid, never a crash.

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | anything,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(anything, children, max_size=4),
    max_leaves=12,
)
storage_keys = st.sampled_from(["type", "ip", "share", "mount_options", "device", "target", "username",
                                "password", "export_name", "port", "other"])


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(storage_keys, st.sampled_from(TYPES) | json_values, max_size=8))
def test_any_storage_object_is_stored_or_refused_and_stored_ones_are_shell_safe(storage):
    try:
        document = storage_settings({"storage": storage}, TYPES, {"password": "kept"})
    except Invalid:
        return
    assert list(document["storage"])[0] == "type"
    for value in document["storage"].values():
        assert isinstance(value, str) and not set(value) & SHELL_SPECIAL
    conf_text(document)


@given(json_values)
def test_any_json_document_is_stored_or_refused(value):
    for check in (lambda d: storage_settings(d, TYPES), cluster_settings):
        try:
            check(value if isinstance(value, dict) else {"storage": value, "cluster": value})
        except Invalid:
            pass


peer = st.fixed_dictionaries({"name": st.sampled_from(["a1", "b2", "node1", "c-3", "", "-x"]) | anything,
                              "address": st.sampled_from(["10.0.0.1", "10.0.0.1", "db.example", "::1", "x"]),
                              }, optional={"port": st.integers(-1, 70000) | st.text(max_size=6)})


@given(st.lists(peer, max_size=MAX_PEERS + 2))
def test_stored_peers_are_unique_valid_and_never_this_node(peers):
    posted = {"name": "c", "node": "node1", "role": "primary", "peers": peers, "secret": "s" * 16}
    try:
        document = cluster_settings({"cluster": posted})
    except Invalid:
        return
    kept = document["cluster"]["peers"]
    assert len(kept) == len(peers) <= MAX_PEERS
    assert len({p["name"].lower() for p in kept}) == len(kept)
    assert "node1" not in {p["name"].lower() for p in kept}
    assert len({(p["address"], p.get("port")) for p in kept}) == len(kept)
    for p in kept:
        assert validate.label(p["name"], "n") and validate.host_or_address(p["address"], "a")
        assert p.get("port") is None or 1 <= p["port"] <= 65535


def test_the_mask_is_never_a_valid_secret_so_it_always_means_keep():
    with pytest.raises(Invalid):
        validate.secret(MASK)


# storage.conf sourced by sh gives back every value exactly.

shell_safe_text = st.from_regex(r"[A-Za-z0-9 _.,:/@%+=~^\-\[\]{}()!#*?]{1,60}", fullmatch=True)


def sourced(conf: bytes, keys: list[str]) -> dict[str, str]:
    script = '. /dev/stdin; for k in "$@"; do eval "printf \'%s\\0\' \\"\\$$k\\""; done'
    out = subprocess.run(["sh", "-c", script, "sh", *keys], input=conf, capture_output=True, check=True).stdout
    return dict(zip(keys, out.decode().split("\0")[:-1]))


@settings(max_examples=60, deadline=None)
@given(shell_safe_text, st.from_regex(r"[A-Za-z0-9._+@:=~-]{1,40}", fullmatch=True),
       st.from_regex(r"[a-z0-9.:_-]{1,20}", fullmatch=True))
def test_storage_conf_sourced_by_sh_gives_back_every_value(password, username, unique):
    posted = {"type": "iscsi", "target": f"iqn.2016-01.com.example:{unique}", "ip": "2001:db8::1",
              "username": username, "password": password}
    try:
        document = storage_settings({"storage": posted}, TYPES)
    except Invalid:
        assert password == MASK  # the mask, with no stored password to keep
        return
    assert sourced(conf_text(document), list(posted)) == posted


@pytest.mark.parametrize("content, options", [
    (b'["local", "nfs"]', ["local", "nfs"]),
    (b'{"options": ["iscsi"]}', ["iscsi"]),
    (b'\xef\xbb\xbf{"options": []}', []),
])
def test_the_options_file_in_either_form(content, options):
    assert parse_options(content, "/x/storage-options.json") == options


@given(st.binary(max_size=60) | json_values.map(lambda v: json.dumps(v).encode()))
def test_any_options_file_is_a_list_of_strings_or_an_error_naming_it(content):
    try:
        options = parse_options(content, "/x/storage-options.json")
    except Invalid as e:
        assert "/x/storage-options.json" in str(e)
        return
    assert isinstance(options, list) and all(isinstance(o, str) for o in options)


def test_an_ip_is_an_address_not_a_name():
    for good in ("192.168.1.100", "2001:db8::10"):
        assert storage_settings({"storage": {"type": "nfs", "ip": good, "share": "/s"}}, TYPES)
    with pytest.raises(Invalid, match="option: ip"):
        storage_settings({"storage": {"type": "nfs", "ip": "nas.example.com", "share": "/s"}}, TYPES)
