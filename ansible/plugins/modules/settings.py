#!/usr/bin/python
# -*- coding: utf-8 -*-
# SPDX-License-Identifier: MIT

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: settings
short_description: Network and application settings of an appliance
description:
  - Compares the wanted network and application settings with what the appliance has
    (GET /settings) and sends them only when they differ.
  - Static addressing when O(network) has ip_address, netmask and gateway; DHCP when it
    has none of them.
version_added: "1.0.0"
author: Jidoteki Admin maintainers (@jidoteki)
extends_documentation_fragment:
  - jidoteki.admin.connection
  - jidoteki.admin.attributes
attributes:
  check_mode:
    support: full
  diff_mode:
    support: full
seealso:
  - module: jidoteki.admin.storage
  - module: jidoteki.admin.cluster
options:
  network:
    description: The network settings (interface, hostname, ip_address, netmask, gateway, dns1, dns2, ntpserver).
    type: dict
    required: true
  app:
    description: The application settings, any JSON object.
    type: dict
    default: {}
  wait:
    description: Wait until the appliance has applied the new settings.
    type: bool
    default: true
  timeout:
    description: Seconds to wait.
    type: float
    default: 300
"""

EXAMPLES = r"""
- name: Give the appliance its static address
  jidoteki.admin.settings:
    url: "https://{{ inventory_hostname }}:8443"
    token: "{{ appliance_token }}"
    fingerprint: "{{ appliance_fingerprint }}"
    network:
      interface: eth0
      hostname: "{{ inventory_hostname }}"
      ip_address: 192.168.1.100
      netmask: 255.255.255.0
      gateway: 192.168.1.1
      dns1: 192.168.1.2
      ntpserver: pool.ntp.org
  delegate_to: localhost
"""

RETURN = r"""
settings:
  description: The settings the appliance reports after the module ran.
  returned: always
  type: dict
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.jidoteki.admin.plugins.module_utils.api import (
    CONNECTION_EXCLUSIVE, CONNECTION_ONE_OF, module_args, optional, run)


def normal(settings):
    """What matters in a settings document: "" is absent, and mode is the appliance's own."""
    settings = settings or {}
    network = dict((k, v) for k, v in (settings.get("network") or {}).items() if v not in ("", None) and k != "mode")
    return {"network": network, "app": settings.get("app") or {}}


def main():
    module = AnsibleModule(
        argument_spec=module_args(network=dict(type="dict", required=True), app=dict(type="dict", default={}),
                                  wait=dict(type="bool", default=True), timeout=dict(type="float", default=300)),
        supports_check_mode=True, mutually_exclusive=CONNECTION_EXCLUSIVE, required_one_of=CONNECTION_ONE_OF)
    params = module.params
    wanted = normal({"network": params["network"], "app": params["app"]})

    async def settle(client):
        current = await optional(client.settings())
        diff = {"before": normal(current), "after": wanted}
        if normal(current) == wanted:
            return dict(changed=False, settings=current, diff=diff)
        if module.check_mode:
            return dict(changed=True, settings=current, diff=diff)
        started = await client.set_settings(wanted)
        if params["wait"]:
            await client.follow(started)
        return dict(changed=True, settings=await optional(client.settings()), diff=diff)

    run(module, settle, wait=params["timeout"])


if __name__ == "__main__":
    main()
