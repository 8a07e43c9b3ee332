#!/usr/bin/python
# -*- coding: utf-8 -*-
# SPDX-License-Identifier: MIT

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: update
short_description: Update an appliance from an encrypted update package
description:
  - Uploads a C(software_package-VERSION.enc) package to the appliance and, with I(wait),
    follows the update until it succeeds or fails.
  - Idempotent; when the installed version is already the package's version or newer (in
    the order C(sort -V) gives, as the appliance compares them), nothing is uploaded and the
    module says so.
version_added: "1.0.0"
author: Jidoteki Admin maintainers (@jidoteki)
extends_documentation_fragment:
  - jidoteki.admin.connection
  - jidoteki.admin.attributes
attributes:
  check_mode:
    support: full
    details: Says which version it would install, and uploads nothing.
  diff_mode:
    support: none
seealso:
  - module: jidoteki.admin.info
  - module: jidoteki.admin.backup
    description: Back up the appliance before an update.
options:
  package:
    description: The update package on the controller.
    type: path
    required: true
  version:
    description:
      - The version the package installs. By default it is read from the package's file
        name, C(software_package-VERSION.enc).
    type: str
  wait:
    description: Wait until the update has succeeded or failed.
    type: bool
    default: true
  timeout:
    description:
      - Seconds to wait for the update. The task fails when it has not ended by then; the
        update goes on on the appliance.
    type: float
    default: 3600
"""

EXAMPLES = r"""
- name: Install 1.4.0 everywhere it is not yet installed
  jidoteki.admin.update:
    url: "https://{{ inventory_hostname }}:8443"
    token: "{{ appliance_token }}"
    fingerprint: "{{ appliance_fingerprint }}"
    package: packages/software_package-1.4.0.enc
  delegate_to: localhost
"""

RETURN = r"""
installed:
  description: The version installed before the module ran (null when none was).
  returned: always
  type: str
version:
  description: The package's version.
  returned: always
  type: str
msg:
  description: What was done, or why nothing was.
  returned: always
  type: str
report:
  description: The update's job as it ended (GET /jobs/update).
  returned: when an update ran and was waited for
  type: dict
"""

import os
import re

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.jidoteki.admin.plugins.module_utils.api import (
    CONNECTION_EXCLUSIVE, CONNECTION_ONE_OF, check_client, module_args, optional, run)

NAME = re.compile(r"software_package-(.+?)\.enc$")


def package_version(module):
    version = module.params["version"]
    if version:
        return version
    found = NAME.search(os.path.basename(module.params["package"]))
    if not found:
        module.fail_json(msg="cannot tell the package's version from its name %s: give version"
                         % os.path.basename(module.params["package"]))
    return found.group(1)


def is_newer(candidate, installed):
    from jidoteki_admin.package import Version
    return installed is None or Version(candidate) > Version(installed)


def main():
    module = AnsibleModule(
        argument_spec=module_args(package=dict(type="path", required=True), version=dict(type="str"),
                                  wait=dict(type="bool", default=True), timeout=dict(type="float", default=3600)),
        supports_check_mode=True, mutually_exclusive=CONNECTION_EXCLUSIVE, required_one_of=CONNECTION_ONE_OF)
    check_client(module)
    params = module.params
    if not os.path.isfile(params["package"]):
        module.fail_json(msg="no such package: %s" % params["package"])
    version = package_version(module)

    async def update(client):
        value = await optional(client.get_json("/version"))
        installed = value.get("version") if value else None
        result = dict(installed=installed, version=version)
        if not is_newer(version, installed):
            same = "the package's version" if installed == version else "newer than " + version
            return dict(result, changed=False, msg="%s is installed, which is %s: nothing to do" % (installed, same))
        if module.check_mode:
            return dict(result, changed=True, msg="would update %s to %s" % (installed, version))
        started = await client.update(params["package"])
        if not params["wait"]:
            return dict(result, changed=True, msg="the update to %s started" % version)
        report = (await client.follow(started)).raw
        return dict(result, changed=True, report=report, msg="updated %s to %s" % (installed, version))

    run(module, update, wait=params["timeout"])


if __name__ == "__main__":
    main()
