"""The checks of POST /settings (validate.py) and what the settings job writes from what
passes them: whatever passes can be sourced by a shell, runs nothing and reads back as given."""

from __future__ import annotations

import ipaddress
import json
import subprocess

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from jidoteki_admin.formats import validate
from jidoteki_admin.jobs.settings import bare, network_conf, network_json, previous_mode
from test_settings import source

HOSTILE = ["$(touch pwned)", "`touch pwned`", '"; touch pwned; "', "'; touch pwned; '", "a\ntouch pwned",
           "x;touch pwned", "x|touch pwned", "x&touch pwned", "<script>alert('test')</script>", "${IFS}",
           "\\\"", "eth0 ", " eth0", "10.0.0.1\n", "10.0.0.1;", "::1%eth0", "[::1]:123;x", "pool.ntp.org:0",
           "a..b", "-a.b", "a-.b", "\x00", "é.example", "１.example", "10.0.0.1 10.0.0.2"]
ADDRESSES = st.ip_addresses().map(str)
HOSTNAMES = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,10}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,10}[a-z0-9])?){1,3}",
                          fullmatch=True).filter(lambda h: not h.replace(".", "").isdigit())
ANY_TEXT = st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=40)
NASTY = st.one_of(st.sampled_from(HOSTILE), ANY_TEXT, st.just(""), st.none(), st.integers(), st.booleans())


@st.composite
def networks(draw):
    """Network objects: well formed (static IPv4, static IPv6 or DHCP), with about one
    field in ten replaced by something hostile or malformed, or left out."""
    network = {"interface": draw(st.from_regex(r"[a-z]{2,4}[0-9]{1,3}", fullmatch=True)),
               "hostname": draw(HOSTNAMES)}
    family = draw(st.sampled_from([4, 6, None]))
    if family is not None:
        masks = st.integers(0, 32 if family == 4 else 128).map(str)
        if family == 4:
            masks = st.one_of(masks, st.sampled_from(["255.255.255.0", "255.255.0.0", "0.0.0.0"]))
        network.update(ip_address=str(draw(st.ip_addresses(v=family))), netmask=draw(masks),
                       gateway=str(draw(st.ip_addresses(v=family))))
    optional = {"dns1": ADDRESSES, "dns2": ADDRESSES, "extra_key": st.one_of(HOSTNAMES, st.integers()),
                "ntpserver": st.one_of(HOSTNAMES, ADDRESSES, HOSTNAMES.map(lambda h: h + ":123"),
                                       st.ip_addresses(v=6).map(lambda a: f"[{a}]:123"))}
    for key, values in optional.items():
        if draw(st.booleans()):
            network[key] = draw(values)
    for key in list(network):
        spoil = draw(st.integers(0, 19))
        if spoil == 0:
            network[key] = draw(NASTY)
        elif spoil == 1:
            del network[key]
    return network


NETWORKS = networks()


def checked(network):
    try:
        return validate.settings_document({"network": network, "app": {}})
    except validate.Invalid:
        return None


@settings(max_examples=300, suppress_health_check=list(HealthCheck), deadline=None)
@given(network=NETWORKS)
@example(network={"interface": "eth0", "hostname": "a.b", "ntpserver": "[2001:db8::1]:123"})
@example(network={"interface": "eth0", "hostname": "a.b", "ip_address": "::ffff:1.2.3.4", "netmask": "96",
                  "gateway": "::1", "dns1": "1.1.1.1"})
def test_whatever_passes_is_sourced_safely_and_reads_back_as_given(network, tmp_path_factory):
    document = checked(network)
    if document is None:
        return
    net = document.network
    shell = tmp_path_factory.mktemp("shell")
    conf = shell / "network.conf"
    conf.write_bytes(network_conf(net))
    values = source(conf, shell)
    assert sorted(p.name for p in shell.iterdir()) == ["network.conf"]  # nothing ran
    expected = {"mode": net.mode, "interface": network["interface"], "hostname": network["hostname"],
                "ntpserver": network.get("ntpserver") or ""}
    if net.mode == "static":
        expected.update(ip=network["ip_address"], router=network["gateway"], dns=" ".join(net.dns),
                        **{"subnet_ipv6" if net.ipv6 else "subnet": network["netmask"]})
    assert values == expected
    saved = json.loads(network_json(document))
    assert list(saved)[0] == "mode" and saved == {"mode": net.mode, **network}


VALID = {"interface": "eth0", "hostname": "test.host", "ip_address": "192.168.1.100", "netmask": "24",
         "gateway": "192.168.1.1", "dns1": "192.168.1.2", "dns2": "2001:db8::2", "ntpserver": "pool.ntp.org:123",
         "extra_key": "kept"}


@settings(max_examples=300, deadline=None)
@given(option=st.sampled_from(sorted(VALID)), bad=st.sampled_from("$`\\\"';|&<>\n\r\t\x00"), at=st.integers(0, 20))
def test_markup_and_shell_characters_are_refused_in_every_network_field(option, bad, at):
    value = VALID[option]
    at = at % (len(value) + 1)
    network = {**VALID, option: value[:at] + bad + value[at:]}
    with pytest.raises(validate.Invalid, match=f"option: {option}"):
        validate.settings_document({"network": network})


@settings(max_examples=200, deadline=None)
@given(address=st.ip_addresses(), prefix=st.integers(0, 128), dhcp=st.booleans(), hostname=HOSTNAMES)
def test_well_formed_settings_pass_and_decide_the_mode(address, prefix, dhcp, hostname):
    prefix = prefix % (address.max_prefixlen + 1)
    gateway = str(next(iter(ipaddress.ip_network(f"{address}/{address.max_prefixlen}").hosts()), address))
    network = {"interface": "eth0", "hostname": hostname}
    if not dhcp:
        network.update(ip_address=str(address), netmask=str(prefix), gateway=gateway)
    document = validate.settings_document({"network": network})
    assert document.network.mode == ("dhcp" if dhcp else "static")
    assert document.network.ipv6 == (not dhcp and address.version == 6)
    assert previous_mode(network_conf(document.network)) == document.network.mode


@given(nested=st.one_of(st.lists(st.integers(), max_size=2), st.dictionaries(st.text(max_size=3), st.integers(),
                                                                              max_size=2)))
def test_unknown_keys_take_plain_values_only(nested):
    with pytest.raises(validate.Invalid, match="option: vlan"):
        validate.settings_document({"network": {"interface": "eth0", "hostname": "a.b", "vlan": nested}})


@settings(max_examples=200, deadline=None)
@given(value=st.one_of(ANY_TEXT, st.sampled_from(HOSTILE)))
@example(value="10.0.0.1;reboot")
@example(value="$(touch pwned)")
@example(value="!#*?[]{}()^~%+=,@/ :_-")
def test_the_writers_last_checks_let_through_only_what_reads_back_as_written(value, tmp_path_factory):
    """quoted() and bare() guard the writing of network.conf whatever validation let by."""
    lines = []
    for name, write in (("quoted", validate.quoted), ("bare", bare)):
        try:
            lines.append(f"{name}={write(value)}")
        except validate.Invalid:
            pass
    if not lines:
        return
    shell = tmp_path_factory.mktemp("shell")
    conf = shell / "network.conf"
    conf.write_text("\n".join(lines) + "\n")
    done = subprocess.run(["sh", "-c", '. ./network.conf; printf "%s\\0%s" "${quoted-unset}" "${bare-unset}"'],
                          cwd=shell, capture_output=True, check=True)
    assert done.stderr == b""
    quoted, bare_ = done.stdout.decode().split("\0")
    assert quoted == (value if lines[0].startswith("quoted=") else "unset")
    assert bare_ == (value if lines[-1].startswith("bare=") else "unset")
    assert sorted(p.name for p in shell.iterdir()) == ["network.conf"]  # nothing ran


def test_the_app_object_is_capped():
    validate.settings_document({"network": {"interface": "eth0", "hostname": "a.b"},
                                "app": {"k": "v" * (validate.APP_MAX - 20)}})
    with pytest.raises(validate.Invalid, match="option: app"):
        validate.settings_document({"network": {"interface": "eth0", "hostname": "a.b"},
                                    "app": {"k": "v" * validate.APP_MAX}})
