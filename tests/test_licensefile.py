"""The default license scheme's armor and document checks (licensefile.py), with
hypothesis: whatever bytes arrive, the parser answers a LicenseError or the document."""

from __future__ import annotations

import datetime
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jidoteki_admin.formats import licensefile
from jidoteki_admin.formats.licensefile import LicenseError

DOCUMENT = {"app": "enterprise", "users": 20, "expires": "2038-01-19", "name": "Enterprise Company",
            "contact": "cto@enterprise"}
ENDS = st.sampled_from(["\n", "\r\n", "\r"])
SPACE = st.text(" \t\r\n", max_size=4)


@given(st.binary(max_size=2000))
def test_any_bytes_parse_or_raise_a_license_error(data):
    try:
        armored = licensefile.parse(data)
    except LicenseError as e:
        assert str(e)
    else:
        assert armored.document and armored.signature


@given(st.binary(min_size=1, max_size=600), st.binary(min_size=1, max_size=600))
def test_armor_round_trips(document, signature):
    assert licensefile.parse(licensefile.armor(document, signature)) == licensefile.Armored(document, signature)


@given(st.binary(min_size=1, max_size=300), st.binary(min_size=1, max_size=300), ENDS, SPACE, SPACE, st.data())
def test_line_endings_and_whitespace_around_lines_do_not_matter(document, signature, end, before, after, data):
    lines = licensefile.armor(document, signature).decode().splitlines()
    padded = [data.draw(st.text(" \t", max_size=2)) + line + data.draw(st.text(" \t", max_size=2)) for line in lines]
    text = before + end.join(padded) + after
    assert licensefile.parse(text.encode()) == licensefile.Armored(document, signature)


@settings(max_examples=300)
@given(st.binary(min_size=1, max_size=200), st.binary(min_size=1, max_size=200), st.data())
def test_a_damaged_armor_never_raises_anything_else(document, signature, data):
    armored = bytearray(licensefile.armor(document, signature))
    for _ in range(data.draw(st.integers(1, 5))):
        where = data.draw(st.integers(0, len(armored) - 1))
        action = data.draw(st.sampled_from(["flip", "cut", "insert"]))
        if action == "flip":
            armored[where] ^= data.draw(st.integers(1, 255))
        elif action == "cut":
            del armored[where:where + data.draw(st.integers(1, 40))]
        else:
            armored[where:where] = data.draw(st.binary(min_size=1, max_size=8))
        if not armored:
            break
    try:
        licensefile.parse(bytes(armored))
    except LicenseError:
        pass


@given(st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=8),
                    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
                    max_leaves=12))
def test_any_json_document_is_accepted_or_a_license_error(value):
    try:
        document = licensefile.read_document(json.dumps(value).encode())
    except LicenseError:
        return
    assert set(licensefile.REQUIRED) <= set(document)


@given(st.dates(min_value=datetime.date(1000, 1, 1)))
def test_shown_dates_read_as_api_md_writes_them(day):
    shown = licensefile.shown_date(day)
    assert datetime.datetime.strptime(shown, "%d %B %Y").date() == day and not shown.startswith("0")


def test_a_license_is_good_through_the_day_it_expires():
    document = dict(DOCUMENT, expires="2038-01-19")
    assert licensefile.details(document, datetime.date(2038, 1, 19))["expired"] is False
    assert licensefile.details(document, datetime.date(2038, 1, 20))["expired"] is True
    assert licensefile.details(document, datetime.date(2038, 1, 19))["expires"] == "19 January 2038"


@pytest.mark.parametrize("value", ["2038-02-30", "2038-1-19", "20380119", "2038-01-19T00:00", 20380119, None])
def test_expires_must_be_an_iso_date(value):
    with pytest.raises(LicenseError, match="expires must be a date like 2038-01-19"):
        licensefile.read_document(json.dumps(dict(DOCUMENT, expires=value)).encode())


@pytest.mark.parametrize("users", [True, -1, 1.5, "20"])
def test_users_is_a_whole_number(users):
    with pytest.raises(LicenseError, match="users must be a whole number"):
        licensefile.read_document(json.dumps(dict(DOCUMENT, users=users)).encode())


def test_a_repeated_key_is_refused():
    with pytest.raises(LicenseError, match="the key 'users' is given twice"):
        licensefile.read_document(b'{"app":"a","users":1,"users":2000,"expires":"2038-01-19","name":"n","contact":"c"}')
