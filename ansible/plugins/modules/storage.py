#!/usr/bin/python
# -*- coding: utf-8 -*-
# SPDX-License-Identifier: MIT

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: storage
short_description: Persistent storage settings of an appliance
version_added: "1.1.0"
description:
  - Compares the wanted storage settings with what the appliance has (GET /storage) and
    sends them only when they differ. The appliance applies them at its next reboot
    (M(jidoteki.admin.reboot)).
  - The appliance never shows a stored password; see O(update_password).
author: Jidoteki Admin maintainers (@jidoteki)
extends_documentation_fragment:
  - jidoteki.admin.connection
  - jidoteki.admin.attributes
attributes:
  check_mode:
    support: full
  diff_mode:
    support: full
    details: The password is never shown.
seealso:
  - module: jidoteki.admin.reboot
  - module: jidoteki.admin.settings
options:
  storage:
    description:
      - The storage settings, with C(type) (C(local), C(nfs), C(aoe), C(iscsi) or C(nbd), as
        the appliance offers them) and the keys of that type (API reference, section 11).
    type: dict
    required: true
  update_password:
    description:
      - V(on_create) sends a password only when the appliance has none stored, and keeps the
        stored one otherwise (so the module stays idempotent); V(always) sends it on every run,
        which always changes the appliance.
    type: str
    choices: [always, on_create]
    default: on_create
  wait:
    description: Wait until the appliance has saved the settings.
    type: bool
    default: true
  timeout:
    description: Seconds to wait.
    type: float
    default: 300
"""

EXAMPLES = r"""
- name: Keep the data on the NFS server
  jidoteki.admin.storage:
    url: "https://{{ inventory_hostname }}:8443"
    token: "{{ appliance_token }}"
    fingerprint: "{{ appliance_fingerprint }}"
    storage:
      type: nfs
      ip: 192.168.1.100
      share: /nfs/storage
      mount_options: noacl,sync
  delegate_to: localhost
"""

RETURN = r"""
storage:
  description: The storage settings the appliance reports after the module ran (the password masked).
  returned: always
  type: dict
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.jidoteki.admin.plugins.module_utils.api import (
    CONNECTION_EXCLUSIVE, CONNECTION_ONE_OF, module_args, optional, run)

MASK = "********"


def normal(storage):
    """What matters: "" and null are absent, and ports are text, as the appliance stores them."""
    return dict((k, str(v) if k == "port" else v) for k, v in (storage or {}).items() if v not in ("", None))


def main():
    module = AnsibleModule(
        argument_spec=module_args(storage=dict(type="dict", required=True, no_log=False),
                                  update_password=dict(type="str", choices=["always", "on_create"],
                                                       default="on_create", no_log=False),
                                  wait=dict(type="bool", default=True), timeout=dict(type="float", default=300)),
        supports_check_mode=True, mutually_exclusive=CONNECTION_EXCLUSIVE, required_one_of=CONNECTION_ONE_OF)
    params = module.params
    wanted = normal(params["storage"])
    if wanted.get("password"):
        module.no_log_values.add(wanted["password"])

    async def settle(client):
        current = normal(((await optional(client.storage())) or {}).get("storage"))
        send = dict(wanted)
        if "password" in wanted and current.get("password") == MASK and params["update_password"] == "on_create":
            send["password"] = MASK  # the appliance keeps the one it has
        compared = dict(send)
        diff = dict(before=current, after=dict(compared, password=MASK) if "password" in compared else compared)
        if compared == current and send.get("password", MASK) == MASK:
            return dict(changed=False, storage=current)
        if module.check_mode:
            return dict(changed=True, storage=current, diff=diff)
        started = await client.set_storage({"storage": send})
        if params["wait"]:
            await client.follow(started)
        after = await optional(client.storage())
        return dict(changed=True, storage=(after or {}).get("storage"), diff=diff)

    run(module, settle, wait=params["timeout"])


if __name__ == "__main__":
    main()
