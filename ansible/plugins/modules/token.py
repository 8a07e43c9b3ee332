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
  - Changes the API token from O(token) to O(new_token).
  - It signs in with O(token) first, so a rotation (and a check-mode run) leaves no failed
    sign-in in the appliance's audit trail. Only when O(token) no longer works does it try
    O(new_token), which a rotation already done leaves in use; then nothing changes.
version_added: "1.0.0"
author: Jidoteki Admin maintainers (@jidoteki)
extends_documentation_fragment:
  - jidoteki.admin.connection
  - jidoteki.admin.attributes
attributes:
  check_mode:
    support: full
  diff_mode:
    support: none
seealso:
  - module: jidoteki.admin.info
notes:
  - Once a token is rotated, give the new one as O(token) (from the vault). A run with the old
    one is a failed sign-in before the new one is tried.
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
    token, new_token = module.params["token"], module.params["new_token"]

    async def rotate(client):
        try:
            await client.health()  # with the token in use: no failed sign-in on the way
        except APIError as e:
            if e.status != 403 or token == new_token:
                raise
            client.use_token(new_token)  # rotated before: the new token works, or neither does
            await client.health()
            return dict(changed=False, msg="the new token is already in use")
        if token == new_token:
            return dict(changed=False, msg="the new token is already in use")
        if module.check_mode:
            return dict(changed=True, msg="would change the token")
        await client.setup(new_token)
        return dict(changed=True, msg="the token is changed")

    run(module, rotate)


if __name__ == "__main__":
    main()
