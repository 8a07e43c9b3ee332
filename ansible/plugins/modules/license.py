#!/usr/bin/python
# -*- coding: utf-8 -*-
# SPDX-License-Identifier: MIT

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: license
short_description: Install an appliance's license
version_added: "1.1.0"
description:
  - Installs a license file; the appliance checks it before it answers, and an invalid
    license changes nothing (the task fails with the appliance's reason).
  - Idempotent for licenses of the default scheme (signed JSON documents, as the vendor
    tool issues them); when the appliance already shows the license's details, nothing is
    uploaded. A license of another scheme (an appliance's own C(bin/license.sh)) cannot be
    read on the controller, and is installed on every run.
author: Jidoteki Admin maintainers (@jidoteki)
extends_documentation_fragment:
  - jidoteki.admin.connection
  - jidoteki.admin.attributes
attributes:
  check_mode:
    support: full
  diff_mode:
    support: full
    details: The license details before and after (for licenses of the default scheme).
seealso:
  - module: jidoteki.admin.info
options:
  license:
    description: The license file (C(license.asc)) on the controller.
    type: path
    required: true
"""

EXAMPLES = r"""
- name: Install this year's license
  jidoteki.admin.license:
    url: "https://{{ inventory_hostname }}:8443"
    token: "{{ appliance_token }}"
    fingerprint: "{{ appliance_fingerprint }}"
    license: "licenses/{{ inventory_hostname }}.asc"
  delegate_to: localhost
"""

RETURN = r"""
details:
  description: The details of the license installed, as the appliance shows them.
  returned: always
  type: dict
"""

import base64
import datetime
import json

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.jidoteki.admin.plugins.module_utils.api import (
    CONNECTION_EXCLUSIVE, CONNECTION_ONE_OF, module_args, optional, run)

BEGIN = "-----BEGIN JIDOTEKI LICENSE-----"
END = "-----END JIDOTEKI LICENSE-----"
MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
          "November", "December")


def shown_details(data):
    """The details an appliance would show for a default-scheme license (its document, with
    the expiry date written as appliances show it), or None for any other license."""
    try:
        lines = [line.strip() for line in data.decode("ascii").splitlines()]
        document = json.loads(base64.b64decode("".join(lines[lines.index(BEGIN) + 1:lines.index(END)])))
        day = datetime.datetime.strptime(document["expires"], "%Y-%m-%d").date()
    except (ValueError, KeyError, TypeError, UnicodeDecodeError):
        return None
    if not isinstance(document, dict):
        return None
    document["expires"] = "%d %s %d" % (day.day, MONTHS[day.month - 1], day.year)
    return document


def same(shown, current):
    """Whether the appliance shows these details (``expired`` is its own, and is left out)."""
    if shown is None or current is None:
        return False
    current = dict((k, v) for k, v in current.items() if k != "expired")
    return shown == current


def main():
    module = AnsibleModule(argument_spec=module_args(license=dict(type="path", required=True)),
                           supports_check_mode=True, mutually_exclusive=CONNECTION_EXCLUSIVE,
                           required_one_of=CONNECTION_ONE_OF)
    params = module.params
    try:
        with open(params["license"], "rb") as f:
            data = f.read()
    except (IOError, OSError) as e:
        module.fail_json(msg="cannot read the license %s: %s" % (params["license"], e), failure="misconfigured")
    shown = shown_details(data)

    async def install(client):
        current = await optional(client.license())
        diff = dict(before=current or {}, after=shown or {})
        if same(shown, current):
            return dict(changed=False, details=current, msg="the appliance has this license")
        if module.check_mode:
            return dict(changed=True, details=current, diff=diff, msg="would install the license")
        details = await client.install_license(data)
        return dict(changed=True, details=details, diff=dict(before=current or {}, after=details),
                    msg="installed the license")

    run(module, install)


if __name__ == "__main__":
    main()
