#!/usr/bin/python
# -*- coding: utf-8 -*-
# SPDX-License-Identifier: MIT

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: reboot
short_description: Reboot an appliance
version_added: "1.1.0"
description:
  - Asks the appliance to reboot (it saves its persistent files first), and follows its
    reboot job until the reboot command runs; a reboot that cannot happen (no reboot
    command configured, say) fails the task, with the appliance's reason.
  - With O(wait), waits until the appliance has gone down and answers again.
author: Jidoteki Admin maintainers (@jidoteki)
extends_documentation_fragment:
  - jidoteki.admin.connection
  - jidoteki.admin.attributes
attributes:
  check_mode:
    support: full
    details: Signs in and says it would reboot.
  diff_mode:
    support: none
seealso:
  - module: ansible.builtin.reboot
    description: Reboots a host over its connection; this module reboots an appliance through its Admin API.
  - module: jidoteki.admin.info
options:
  wait:
    description: Wait until the appliance answers again after the reboot.
    type: bool
    default: true
  timeout:
    description: Seconds to wait for the reboot to begin, then for the appliance to answer again.
    type: float
    default: 900
"""

EXAMPLES = r"""
- name: Reboot the appliances one at a time
  jidoteki.admin.reboot:
    url: "https://{{ inventory_hostname }}:8443"
    token: "{{ appliance_token }}"
    fingerprint: "{{ appliance_fingerprint }}"
  delegate_to: localhost
  throttle: 1
"""

RETURN = r"""
msg:
  description: What happened.
  returned: always
  type: str
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.jidoteki.admin.plugins.module_utils.api import (
    CONNECTION_EXCLUSIVE, CONNECTION_ONE_OF, module_args, run)


def main():
    module = AnsibleModule(
        argument_spec=module_args(wait=dict(type="bool", default=True), timeout=dict(type="float", default=900)),
        supports_check_mode=True, mutually_exclusive=CONNECTION_EXCLUSIVE, required_one_of=CONNECTION_ONE_OF)
    params = module.params

    async def reboot(client):
        if module.check_mode:
            await client.endpoints()  # signed in, and the appliance trusted
            return dict(changed=True, msg="would reboot")
        started = await client.reboot()
        going = await client.rebooting(started)
        if not params["wait"]:
            return dict(changed=True, msg="the appliance is rebooting" if going else "the appliance was asked to reboot")
        await client.wait_until_answering(gone_first=True)
        return dict(changed=True, msg="the appliance rebooted and answers again")

    run(module, reboot, wait=params["timeout"])


if __name__ == "__main__":
    main()
