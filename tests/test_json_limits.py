"""Every JSON document the API takes refuses what no field allows, naming where it is,
with a 400 and nothing on disk changed: numbers out of range, deep nesting, huge strings."""

from __future__ import annotations

import json
import os

import pytest
import pytest_twisted
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import json_of
from jidoteki_admin.formats.validate import Invalid, load_document

VALID = {
    "/settings": {"network": {"interface": "eth0", "hostname": "site.example.com"}, "app": {}},
    "/storage": {"storage": {"type": "local"}},
    "/cluster": {"cluster": {"name": "c1", "node": "n1", "role": "primary", "peers": [], "secret": "s3cret-s3cret-s3cret"}},
}


def bad(kind: str, endpoint: str) -> tuple[bytes, str]:
    """A document for ``endpoint``, made bad in the given way, and what the refusal names."""
    document = json.loads(json.dumps(VALID[endpoint]))
    top = next(iter(document))
    if kind == "huge number":
        text = json.dumps(document).replace("{", '{"size": ' + "9" * 5000 + ", ", 2)
        return text.encode(), f"{top}.size: a number of 5000 digits (at most 20)"
    if kind == "infinite number":
        text = json.dumps(document).replace("{", '{"ratio": 1e999, ', 2)
        return text.encode(), f"{top}.ratio: a number too large to be kept"
    if kind == "deep nesting":
        document[top]["deep"] = json.loads("[" * 40 + "]" * 40)
        return json.dumps(document).encode(), f"{top}.deep" + "[0]" * 14 + ": nested more than 16 levels deep"
    if kind == "very deep nesting":
        text = json.dumps(document).replace("{", '{"deep": ' + "[" * 5000 + "]" * 5000 + ", ", 2)
        return text.encode(), "nested too deeply (at most 16 levels)"
    if kind == "huge string":
        document[top]["note"] = "x" * 5000
        return json.dumps(document).encode(), f"{top}.note: a string of 5000 characters (at most 4096)"
    raise AssertionError(kind)


KINDS = ["huge number", "infinite number", "deep nesting", "very deep nesting", "huge string"]


@pytest.fixture
def every_section(make_daemon, tmp_path):
    options = tmp_path / "storage-options.json"
    options.write_text(json.dumps({"options": ["local", "nfs"]}))
    return make_daemon(config={"endpoints": ["settings", "storage", "cluster"],
                               "storage-options-file": str(options)})


def tree_state(root) -> dict:
    state = {}
    for folder, _, files in os.walk(root):
        for name in files:
            path = os.path.join(folder, name)
            if name == "jidoteki-audit.log":
                continue
            with open(path, "rb") as f:
                state[os.path.relpath(path, root)] = f.read()
    return state


@pytest.mark.parametrize("endpoint", list(VALID))
@pytest_twisted.ensureDeferred
async def test_each_json_endpoint_refuses_what_no_field_allows_by_name_and_changes_nothing(every_section, endpoint):
    daemon = every_section
    for kind in KINDS:
        data, named = bad(kind, endpoint)
        before = tree_state(daemon.admin_path)
        response = await daemon.post_form(endpoint, files={"settings": ("settings.json", data)})
        assert response.code == 400, (kind, await response.content())
        message = (await json_of(response))["Error-Message"]
        assert message.startswith("The settings file ") and message.endswith(named), (kind, message)
        assert tree_state(daemon.admin_path) == before, kind
    # and the valid one still goes through
    response = await daemon.post_form(endpoint, files={"settings": ("settings.json", json.dumps(VALID[endpoint]).encode())})
    assert response.code == 202, await response.content()


json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
                           | st.text(max_size=30),
                           lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner,
                                                                                       max_size=3),
                           max_leaves=20)


@settings(max_examples=200)
@given(st.dictionaries(st.text(max_size=5), json_values, max_size=4), st.integers(min_value=0, max_value=30))
def test_a_document_loads_or_is_refused_with_a_clear_message_never_an_exception(document, wrap):
    data = json.dumps(document).encode()
    data = b'{"w": ' + b"[" * wrap + data + b"]" * wrap + b"}"
    try:
        loaded = load_document(data, "settings")
    except Invalid as e:
        assert str(e).startswith("The settings file ")
    else:
        assert json.loads(json.dumps(loaded)) == loaded  # whatever loads can be written back
