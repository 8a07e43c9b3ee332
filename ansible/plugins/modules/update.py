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
    the order C(sort -V) gives, as the appliance compares them), nothing is installed and the
    module says so.
  - The package's version comes from O(version), else from the signed manifest beside the
    package (C(PACKAGE.manifest.json), written by C(jidoteki-admin-vendor)), checked against
    the package; else the appliance is asked (C(POST /update/check)), which verifies the
    package and runs its C(precheck.sh) without changing anything. A file name never decides.
version_added: "1.0.0"
author: Jidoteki Admin maintainers (@jidoteki)
extends_documentation_fragment:
  - jidoteki.admin.connection
  - jidoteki.admin.attributes
attributes:
  check_mode:
    support: full
    details: Says which version it would install and whether the appliance would take it
      (C(POST /update/check), which changes nothing); with a manifest or O(version), uploads
      nothing.
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
      - The version the package installs. By default it is read from the package's manifest,
        or learnt from the appliance's check of the package.
    type: str
  manifest_public_key:
    description:
      - The vendor's public key (C(updates.pub)); when given, the manifest's signature must be
        the vendor's, else the manifest is refused.
    type: path
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
check:
  description: The appliance's check of the package (C(POST /update/check)), when it was asked.
  returned: when the package's version came from the appliance
  type: dict
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

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.jidoteki.admin.plugins.module_utils.api import (
    CONNECTION_EXCLUSIVE, CONNECTION_ONE_OF, check_client, module_args, optional, run)


def manifest_version(module):
    """The version the package's manifest gives, checked against the package; None without one."""
    from jidoteki_admin.client import Misconfigured
    from jidoteki_admin.client.manifest import read_manifest
    try:
        manifest = read_manifest(module.params["package"], module.params.get("manifest_public_key"))
    except Misconfigured as e:
        module.fail_json(msg=str(e), failure="misconfigured")
    return manifest["version"] if manifest else None


def is_newer(candidate, installed):
    try:
        from jidoteki_admin.formats.package import Version
    except ImportError:  # an installed jidoteki-admin from before its modules were put in folders
        from jidoteki_admin.package import Version
    return installed is None or Version(candidate) > Version(installed)


def main():
    module = AnsibleModule(
        argument_spec=module_args(package=dict(type="path", required=True), version=dict(type="str"),
                                  manifest_public_key=dict(type="path"),
                                  wait=dict(type="bool", default=True), timeout=dict(type="float", default=3600)),
        supports_check_mode=True, mutually_exclusive=CONNECTION_EXCLUSIVE, required_one_of=CONNECTION_ONE_OF)
    check_client(module)
    params = module.params
    if not os.path.isfile(params["package"]):
        module.fail_json(msg="no such package: %s" % params["package"])
    known = params["version"] or manifest_version(module)

    async def update(client):
        value = await optional(client.get_json("/version"))
        installed = value.get("version") if value else None
        version = known
        result = dict(installed=installed, version=version)
        if version is None:
            # Nothing on the controller says what the package is: the appliance checks it.
            check = dict(await client.check_update(params["package"]))
            version = check.get("version")
            result = dict(result, version=version, check=check)
            if not check.get("installable") and not (version is not None and not is_newer(version, installed)):
                module_failure = check.get("problem") or "it did not say why"
                return dict(result, failed=True, failure="refused", msg="The appliance would not install the package: "
                            + module_failure)
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

    def refused(result):
        if result.pop("failed", False):
            module.fail_json(**result)
        return result

    run(module, update, check=refused, wait=params["timeout"])


if __name__ == "__main__":
    main()
