#!/usr/bin/python
# -*- coding: utf-8 -*-
# SPDX-License-Identifier: MIT

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: token
short_description: Rotate an appliance's API token
description:
  - Changes the API token from I(token) to I(new_token). When I(new_token) already works,
    nothing changes.
version_added: "1.0.0"
author: Jidoteki Admin maintainers (@jidoteki)
extends_documentation_fragment:
  - jidoteki.admin.connection
options:
  new_token:
    description: The new API token (printable ASCII, 1 to 255 characters).
    type: str
    required: true
"""

EXAMPLES = r"""
- name: Rotate the token
  jidoteki.admin.token:
    url: "https://{{ inventory_hostname }}:8443"
    token: "{{ old_token }}"
    new_token: "{{ new_token }}"
    fingerprint: "{{ appliance_fingerprint }}"
  delegate_to: localhost
"""

RETURN = r"""
msg:
  description: What was done.
  returned: always
  type: str
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.jidoteki.admin.plugins.module_utils.api import (
    CONNECTION_EXCLUSIVE, CONNECTION_ONE_OF, check_client, module_args, run)


def main():
    module = AnsibleModule(argument_spec=module_args(new_token=dict(type="str", required=True, no_log=True)),
                           supports_check_mode=True, mutually_exclusive=CONNECTION_EXCLUSIVE,
                           required_one_of=CONNECTION_ONE_OF)
    check_client(module)
    from jidoteki_admin.client import APIError
    new_token = module.params["new_token"]

    async def rotate(client):
        client.use_token(new_token)
        try:
            await client.health()
            return dict(changed=False, msg="the new token is already in use")
        except APIError as e:
            if e.status != 403:
                raise
        client.use_token(module.params["token"])
        if module.check_mode:
            return dict(changed=True, msg="would change the token")
        await client.setup(new_token)
        return dict(changed=True, msg="the token is changed")

    run(module, rotate)


if __name__ == "__main__":
    main()
