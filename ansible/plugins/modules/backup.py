#!/usr/bin/python
# -*- coding: utf-8 -*-
# SPDX-License-Identifier: MIT

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: backup
short_description: Back up an appliance and fetch the archive
description:
  - Starts a backup of the appliance's data, waits for it, and downloads the archive to
    O(dest) on the machine the module runs on (the controller), checked against the SHA-256
    the appliance reports.
version_added: "1.0.0"
author: Jidoteki Admin maintainers (@jidoteki)
extends_documentation_fragment:
  - jidoteki.admin.connection
  - jidoteki.admin.attributes
attributes:
  check_mode:
    support: full
    details: Says where it would save the backup, and starts none.
  diff_mode:
    support: none
seealso:
  - module: jidoteki.admin.restore
options:
  dest:
    description: Where to save backup.tar. It is written beside it and renamed when whole.
    type: path
    required: true
  mode:
    description:
      - The mode of the saved archive, as an octal string like V('0600'). The archive holds
        the appliance's data, so by default only its owner can read it.
    type: raw
    default: "0600"
    version_added: "1.1.0"
  timeout:
    description: Seconds to wait for the backup.
    type: float
    default: 3600
"""

EXAMPLES = r"""
- name: Back up every appliance to the controller
  jidoteki.admin.backup:
    url: "https://{{ inventory_hostname }}:8443"
    token: "{{ appliance_token }}"
    fingerprint: "{{ appliance_fingerprint }}"
    dest: "backups/{{ inventory_hostname }}-{{ ansible_date_time.date }}.tar"
  delegate_to: localhost
"""

RETURN = r"""
dest:
  description: The archive saved.
  returned: changed
  type: str
size:
  description: Its size in bytes.
  returned: changed
  type: int
sha256:
  description: The SHA-256 the appliance computed as it wrote the archive.
  returned: changed
  type: str
"""

import hashlib

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.jidoteki.admin.plugins.module_utils.api import (
    CONNECTION_EXCLUSIVE, CONNECTION_ONE_OF, file_mode, module_args, run)


def sha256_of(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def main():
    module = AnsibleModule(
        argument_spec=module_args(dest=dict(type="path", required=True), mode=dict(type="raw", default="0600"),
                                  timeout=dict(type="float", default=3600)),
        supports_check_mode=True, mutually_exclusive=CONNECTION_EXCLUSIVE, required_one_of=CONNECTION_ONE_OF)
    params = module.params
    mode = file_mode(module, params["mode"])

    async def backup(client):
        if module.check_mode:
            await client.endpoints()  # signed in, and the appliance trusted
            return dict(changed=True, msg="would back up to %s" % params["dest"])
        await client.follow(await client.start_backup())
        report = await client.backup_status()
        size = await client.download_backup(params["dest"], mode=mode)
        return dict(changed=True, dest=params["dest"], size=size, sha256=report.sha256)

    def verified(result):
        if result.get("sha256") and sha256_of(params["dest"]) != result["sha256"]:
            module.fail_json(msg="the archive saved does not have the SHA-256 the appliance reported")
        return result

    run(module, backup, verified, wait=params["timeout"])


if __name__ == "__main__":
    main()
