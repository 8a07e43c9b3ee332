"""The cluster settings (section 13): what a cluster settings document may hold.

Shared by the cluster section (which refuses bad input before anything on disk changes)
and the cluster job (which checks again what it is handed). Pure: no Twisted, no web code.

    {"cluster": {"name": "store", "node": "node1", "role": "primary",
                 "peers": [{"name": "node2", "address": "10.0.0.2", "port": 7946}],
                 "secret": "a shared secret of 16 to 256 characters"}}

The secret is never answered in clear: GET answers MASK in its place, and a POST that
sends MASK back keeps the stored one (no valid secret is that short, so it is never taken
for a new one).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from typing import Any

from . import validate
from .validate import Invalid, json_type, only_keys, problem

MASK = "********"
ROLES = ("primary", "secondary")
KEYS = ("name", "node", "role", "peers", "secret")
PEER_KEYS = ("name", "address", "port")
MAX_PEERS = 64


def stored_cluster(document: object) -> Mapping[str, Any] | None:
    """The cluster object of a stored cluster.json, when it is one."""
    if isinstance(document, dict) and isinstance(document.get("cluster"), dict):
        return document["cluster"]
    return None


def cluster_settings(document: Mapping[str, Any], stored: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The document to store for a posted settings document, or Invalid saying what is wrong.

    ``stored`` is the cluster object saved before, whose secret a masked one stands for.
    """
    only_keys(document, ("cluster",), "the settings file")
    cluster = document.get("cluster")
    if not isinstance(cluster, dict):
        raise Invalid(f'The settings file must hold an object "cluster", not {json_type(cluster)}')
    only_keys(cluster, KEYS, "cluster")
    name = validate.label(_required(cluster, "name", "a cluster name"), "name")
    node = validate.label(_required(cluster, "node", "this node's name"), "node")
    role = _required(cluster, "role", ", ".join(ROLES))
    if role not in ROLES:
        raise problem("role", ", ".join(ROLES))
    peers = _peers(cluster.get("peers"), node)
    secret = _required(cluster, "secret", "16 to 256 printable ASCII characters")
    secret = _stored_secret(stored) if secret == MASK else validate.secret(secret)
    return {"cluster": {"name": name, "node": node, "role": role, "peers": peers, "secret": secret}}


def _required(values: Mapping[str, Any], key: str, allowed: str, option: str | None = None) -> str:
    """A string that must be there; ``option`` names it in the message (``peer 2 address``)."""
    option = option or key
    value = values.get(key)
    if value is None or value == "" or not isinstance(value, str):
        raise problem(option, allowed)
    return value


def _peers(value: object, node: str) -> list[dict[str, Any]]:
    """The peers: at most MAX_PEERS, none twice (by name or by address and port), and not
    this node itself."""
    if value is None:
        return []
    if not isinstance(value, list):
        raise Invalid(f"Missing or invalid list for option: peers. Allowed: a list of at most {MAX_PEERS} "
                      '{"name", "address", "port"} objects')
    if len(value) > MAX_PEERS:
        raise Invalid(f"Too many peers: {len(value)} (at most {MAX_PEERS})")
    peers: list[dict[str, Any]] = []
    names: set[str] = set()
    addresses: set[tuple[str, int | None]] = set()
    for index, item in enumerate(value, 1):
        peer = _peer(item, index)
        key = peer["name"].lower()
        if key == node.lower():
            raise Invalid(f"Peer {index} is this node itself ({peer['name']}): a node is not its own peer")
        if key in names:
            raise Invalid(f"Peer {index}: the peer {peer['name']} is listed twice")
        where = (_same_address(peer["address"]), peer.get("port"))
        if where in addresses:
            raise Invalid(f"Peer {index}: the address {peer['address']} is listed twice")
        names.add(key)
        addresses.add(where)
        peers.append(peer)
    return peers


def _same_address(address: str) -> str:
    """One spelling per address: 2001:DB8::1 and 2001:db8:0::1 are one peer, as are
    Node2.example. and node2.example."""
    try:
        return str(ipaddress.ip_address(address))
    except ValueError:
        return address.lower().rstrip(".")


def _peer(item: object, index: int) -> dict[str, Any]:
    where = f"peer {index}"
    if not isinstance(item, dict):
        raise Invalid(f"Peer {index} must be an object with name, address and port, not {json_type(item)}")
    only_keys(item, PEER_KEYS, where)
    name = validate.label(_required(item, "name", "a node name", f"{where} name"), f"{where} name")
    address = validate.host_or_address(
        _required(item, "address", "a host name or an IP address", f"{where} address"), f"{where} address")
    peer: dict[str, Any] = {"name": name, "address": address}
    if item.get("port") not in (None, ""):
        peer["port"] = int(validate.port(item["port"], f"{where} port"))
    return peer


def _stored_secret(stored: Mapping[str, Any] | None) -> str:
    secret = stored.get("secret") if stored is not None else None
    if not isinstance(secret, str) or not secret or secret == MASK:
        raise Invalid(f"Missing or invalid string for option: secret. {MASK} keeps the stored secret, "
                      "and none is stored")
    return secret


def masked(document: Mapping[str, Any]) -> dict[str, Any] | None:
    """The stored cluster object as GET answers it: the secret replaced by MASK."""
    cluster = stored_cluster(document)
    if cluster is None:
        return None
    return {**cluster, "secret": MASK} if cluster.get("secret") else dict(cluster)
