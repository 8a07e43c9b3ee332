#!/usr/bin/python
# -*- coding: utf-8 -*-
# SPDX-License-Identifier: MIT

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: certs
short_description: Install an appliance's TLS certificate
description:
  - Uploads a certificate, its private key and optionally the CA certificate, and waits
    until the appliance has installed them.
  - Idempotent; when the appliance already presents the certificate (same SHA-256
    fingerprint), nothing is uploaded.
  - After a swap the appliance presents the new certificate; trust it from then on with its
    fingerprint or its CA.
version_added: "1.0.0"
author: Jidoteki Admin maintainers (@jidoteki)
extends_documentation_fragment:
  - jidoteki.admin.connection
options:
  public:
    description: The certificate (PEM), optionally followed by its chain.
    type: path
    required: true
  private:
    description: Its unencrypted private key (PEM, RSA or EC).
    type: path
    required: true
  ca_certificate:
    description: The CA certificate that signed it (PEM).
    type: path
  wait:
    description: Wait until the certificate is installed.
    type: bool
    default: true
"""

EXAMPLES = r"""
- name: Install the site's certificate
  jidoteki.admin.certs:
    url: "https://{{ inventory_hostname }}:8443"
    token: "{{ appliance_token }}"
    fingerprint: "{{ appliance_fingerprint }}"
    public: "certs/{{ inventory_hostname }}.crt"
    private: "certs/{{ inventory_hostname }}.key"
    ca_certificate: certs/ca.crt
  delegate_to: localhost
"""

RETURN = r"""
fingerprint:
  description: The SHA-256 fingerprint of the certificate the appliance presents afterwards.
  returned: always
  type: str
report:
  description: The last status report of the install (GET /certs).
  returned: when a certificate was installed and waited for
  type: dict
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.jidoteki.admin.plugins.module_utils.api import (
    CONNECTION_EXCLUSIVE, CONNECTION_ONE_OF, check_client, module_args, run)


def main():
    module = AnsibleModule(
        argument_spec=module_args(public=dict(type="path", required=True),
                                  private=dict(type="path", required=True, no_log=False),
                                  ca_certificate=dict(type="path"), wait=dict(type="bool", default=True)),
        supports_check_mode=True, mutually_exclusive=CONNECTION_EXCLUSIVE, required_one_of=CONNECTION_ONE_OF)
    check_client(module)
    from jidoteki_admin.client import certificate_fingerprint, presented_fingerprint
    params = module.params
    try:
        with open(params["public"], "rb") as f:
            wanted = certificate_fingerprint(f.read())
    except (OSError, ValueError) as e:
        module.fail_json(msg="cannot read the certificate %s: %s" % (params["public"], e))

    async def install(client):
        presented = await presented_fingerprint(client.reactor, params["url"])
        if presented == wanted:
            return dict(changed=False, fingerprint=presented, msg="the appliance already presents this certificate")
        if module.check_mode:
            return dict(changed=True, fingerprint=presented, msg="would install the certificate %s" % wanted)
        started = await client.install_certs(params["public"], params["private"], params["ca_certificate"])
        if not params["wait"]:
            return dict(changed=True, fingerprint=presented, msg="the install started")
        report = (await client.follow(started)).raw
        return dict(changed=True, fingerprint=wanted, report=report, msg="installed the certificate %s" % wanted)

    run(module, install)


if __name__ == "__main__":
    main()
