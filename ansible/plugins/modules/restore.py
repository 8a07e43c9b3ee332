#!/usr/bin/python
# -*- coding: utf-8 -*-
# SPDX-License-Identifier: MIT

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: restore
short_description: Restore a backup archive on an appliance
version_added: "1.1.0"
description:
  - Uploads a backup archive (as M(jidoteki.admin.backup) fetched it) and waits until the
    appliance has restored it. The appliance checks the archive first; one it refuses
    changes nothing.
  - Always changes the appliance (its data is put back as the archive has it).
author: Jidoteki Admin maintainers (@jidoteki)
extends_documentation_fragment:
  - jidoteki.admin.connection
  - jidoteki.admin.attributes
attributes:
  check_mode:
    support: full
    details: Signs in and says it would restore; uploads nothing.
  diff_mode:
    support: none
seealso:
  - module: jidoteki.admin.backup
options:
  archive:
    description: The backup archive (backup.tar) on the controller.
    type: path
    required: true
  timeout:
    description: Seconds the appliance may take to restore it.
    type: float
    default: 3600
"""

EXAMPLES = r"""
- name: Put yesterday's data back
  jidoteki.admin.restore:
    url: "https://{{ inventory_hostname }}:8443"
    token: "{{ appliance_token }}"
    fingerprint: "{{ appliance_fingerprint }}"
    archive: "backups/{{ inventory_hostname }}-2026-12-06.tar"
  delegate_to: localhost
"""

RETURN = r"""
msg:
  description: What was done.
  returned: always
  type: str
"""

import os

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.jidoteki.admin.plugins.module_utils.api import (
    CONNECTION_EXCLUSIVE, CONNECTION_ONE_OF, module_args, run)


def main():
    module = AnsibleModule(
        argument_spec=module_args(archive=dict(type="path", required=True), timeout=dict(type="float", default=3600)),
        supports_check_mode=True, mutually_exclusive=CONNECTION_EXCLUSIVE, required_one_of=CONNECTION_ONE_OF)
    params = module.params
    if not os.path.isfile(params["archive"]):
        module.fail_json(msg="no such archive: %s" % params["archive"], failure="misconfigured")

    async def restore(client):
        if module.check_mode:
            await client.endpoints()  # signed in, and the appliance trusted
            return dict(changed=True, msg="would restore %s" % params["archive"])
        await client.restore(params["archive"])
        return dict(changed=True, msg="restored %s" % params["archive"])

    run(module, restore, wait=params["timeout"])


if __name__ == "__main__":
    main()
