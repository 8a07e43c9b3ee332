#!/usr/bin/python
# -*- coding: utf-8 -*-
# SPDX-License-Identifier: MIT

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: info
short_description: Facts about an appliance from its Admin API
description:
  - Reads the version, build, health, services, endpoints and jobs of an appliance running
    the jidoteki-admin Admin API.
  - Runs where the jidoteki-admin Python package is installed, usually the controller
    (with C(delegate_to) set to C(localhost)).
version_added: "1.0.0"
author: Jidoteki Admin maintainers (@jidoteki)
extends_documentation_fragment:
  - jidoteki.admin.connection
  - jidoteki.admin.attributes
attributes:
  check_mode:
    support: full
    details: It only reads.
  diff_mode:
    support: N/A
    details: It changes nothing.
seealso:
  - module: jidoteki.admin.update
  - module: jidoteki.admin.reboot
"""

EXAMPLES = r"""
- name: Read what the appliance runs
  jidoteki.admin.info:
    url: "https://{{ inventory_hostname }}:8443"
    token: "{{ appliance_token }}"
    fingerprint: "{{ appliance_fingerprint }}"
  delegate_to: localhost
  register: appliance
"""

RETURN = r"""
version:
  description: The installed version, or null when the appliance has none installed.
  returned: always
  type: str
build:
  description: The build information, or null.
  returned: always
  type: dict
health:
  description: Disk, memory and CPU use, and the certificate in service.
  returned: always
  type: dict
services:
  description: The services and their status.
  returned: always
  type: list
  elements: dict
endpoints:
  description: The endpoints the appliance serves.
  returned: always
  type: list
  elements: str
jobs:
  description: Every kind of job and its last run (GET /jobs), or an empty list on an appliance without it.
  returned: always
  type: list
  elements: dict
fingerprint:
  description: The SHA-256 fingerprint of the (trusted) certificate the appliance presented.
  returned: always
  type: str
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.jidoteki.admin.plugins.module_utils.api import (
    CONNECTION_EXCLUSIVE, CONNECTION_ONE_OF, module_args, optional, run)


async def gather(client):
    version = await optional(client.get_document("/version"))
    return {
        "changed": False,
        "version": version.get("version") if version else None,
        "build": await optional(client.build()),
        "health": (await client.health()).raw,
        "services": (await client.get_document("/services")).get("services", []),
        "endpoints": await client.endpoints(),
        "jobs": [job.raw for job in await optional(client.jobs(), [])],
        "fingerprint": client.presented,
    }


def main():
    module = AnsibleModule(argument_spec=module_args(), supports_check_mode=True,
                           mutually_exclusive=CONNECTION_EXCLUSIVE, required_one_of=CONNECTION_ONE_OF)
    run(module, gather)


if __name__ == "__main__":
    main()
