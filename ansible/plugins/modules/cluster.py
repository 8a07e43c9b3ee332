#!/usr/bin/python
# -*- coding: utf-8 -*-
# SPDX-License-Identifier: MIT

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: cluster
short_description: Cluster settings of an appliance
version_added: "1.1.0"
description:
  - Compares the wanted cluster settings with what the appliance has (GET /cluster) and
    sends them only when they differ, then waits until the appliance has applied them.
  - The appliance never shows the stored secret; see O(update_secret).
author: Jidoteki Admin maintainers (@jidoteki)
extends_documentation_fragment:
  - jidoteki.admin.connection
  - jidoteki.admin.attributes
attributes:
  check_mode:
    support: full
  diff_mode:
    support: full
    details: The secret is never shown.
seealso:
  - module: jidoteki.admin.settings
options:
  name:
    description: The cluster's name (one host-name label).
    type: str
    required: true
  node:
    description: This appliance's name in the cluster (one host-name label).
    type: str
    required: true
  role:
    description: Its role.
    type: str
    choices: [primary, secondary]
    required: true
  peers:
    description: The other nodes.
    type: list
    elements: dict
    default: []
    suboptions:
      name:
        description: The peer's name in the cluster.
        type: str
        required: true
      address:
        description: Its host name or IP address.
        type: str
        required: true
      port:
        description: Its port.
        type: int
  secret:
    description: The secret the nodes share (16 to 256 printable characters).
    type: str
    required: true
  update_secret:
    description:
      - V(on_create) sends the secret only when the appliance has none stored, and keeps the
        stored one otherwise (so the module stays idempotent); V(always) sends it on every
        run, which always changes the appliance.
    type: str
    choices: [always, on_create]
    default: on_create
  wait:
    description: Wait until the appliance has applied the settings.
    type: bool
    default: true
  timeout:
    description: Seconds to wait.
    type: float
    default: 300
"""

EXAMPLES = r"""
- name: Join the store cluster
  jidoteki.admin.cluster:
    url: "https://{{ inventory_hostname }}:8443"
    token: "{{ appliance_token }}"
    fingerprint: "{{ appliance_fingerprint }}"
    name: store
    node: node1
    role: primary
    peers:
      - name: node2
        address: 10.0.0.2
        port: 7946
      - name: node3
        address: node3.example.com
    secret: "{{ vault_cluster_secret }}"
  delegate_to: localhost
"""

RETURN = r"""
cluster:
  description: The cluster settings the appliance reports after the module ran (the secret masked).
  returned: always
  type: dict
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.jidoteki.admin.plugins.module_utils.api import (
    CONNECTION_EXCLUSIVE, CONNECTION_ONE_OF, module_args, optional, run)

MASK = "********"


def normal_peers(peers):
    found = []
    for peer in peers or []:
        entry = dict(name=peer["name"], address=peer["address"])
        if peer.get("port") is not None:
            entry["port"] = int(peer["port"])
        found.append(entry)
    return found


def main():
    peer = dict(name=dict(type="str", required=True), address=dict(type="str", required=True),
                port=dict(type="int"))
    module = AnsibleModule(
        argument_spec=module_args(name=dict(type="str", required=True), node=dict(type="str", required=True),
                                  role=dict(type="str", required=True, choices=["primary", "secondary"]),
                                  peers=dict(type="list", elements="dict", default=[], options=peer),
                                  secret=dict(type="str", required=True, no_log=True),
                                  update_secret=dict(type="str", choices=["always", "on_create"], default="on_create"),
                                  wait=dict(type="bool", default=True), timeout=dict(type="float", default=300)),
        supports_check_mode=True, mutually_exclusive=CONNECTION_EXCLUSIVE, required_one_of=CONNECTION_ONE_OF)
    params = module.params
    wanted = dict(name=params["name"], node=params["node"], role=params["role"],
                  peers=normal_peers(params["peers"]))

    async def settle(client):
        current = ((await optional(client.cluster())) or {}).get("cluster") or None
        stored = dict(current, peers=normal_peers(current.get("peers"))) if current else None
        keep = stored is not None and params["update_secret"] == "on_create"
        before = dict((k, v) for k, v in (stored or {}).items() if k != "secret")
        diff = dict(before=dict(before, secret=MASK) if stored else {}, after=dict(wanted, secret=MASK))
        if keep and before == wanted:
            return dict(changed=False, cluster=current)
        if module.check_mode:
            return dict(changed=True, cluster=current, diff=diff)
        started = await client.set_cluster({"cluster": dict(wanted, secret=MASK if keep else params["secret"])})
        if params["wait"]:
            await client.follow(started)
        after = await optional(client.cluster())
        return dict(changed=True, cluster=(after or {}).get("cluster"), diff=diff)

    run(module, settle, wait=params["timeout"])


if __name__ == "__main__":
    main()
