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
  - It signs in over a connection it trusts (O(fingerprint) or O(ca)) before it decides
    anything; a wrong token or a certificate not trusted fails the task.
  - Idempotent; when the appliance already presents the certificate (same SHA-256
    fingerprint) over that connection, nothing is uploaded.
  - While the new certificate is installed, the module trusts both the one the appliance
    presented and the one it uploads. Afterwards, trust the appliance by the new fingerprint
    it returns (RV(fingerprint)), or by its CA.
version_added: "1.0.0"
author: Jidoteki Admin maintainers (@jidoteki)
extends_documentation_fragment:
  - jidoteki.admin.connection
  - jidoteki.admin.attributes
attributes:
  check_mode:
    support: full
  diff_mode:
    support: full
    details: The fingerprints of the certificate presented before and after.
seealso:
  - module: jidoteki.admin.info
    description: RV(jidoteki.admin.info#module:fingerprint) is the certificate an appliance presents.
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
  timeout:
    description: Seconds to wait.
    type: float
    default: 300
    version_added: "1.1.0"
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
  register: installed

- name: Say what to pin from now on
  ansible.builtin.debug:
    msg: "appliance_fingerprint: {{ installed.fingerprint }}"
"""

RETURN = r"""
fingerprint:
  description:
    - The SHA-256 fingerprint of the certificate the appliance presents afterwards (when it
      was waited for; else the one it presented before).
  returned: always
  type: str
report:
  description: The install's job as it ended (GET /jobs/certs).
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
                                  ca_certificate=dict(type="path"), wait=dict(type="bool", default=True),
                                  timeout=dict(type="float", default=300)),
        supports_check_mode=True, mutually_exclusive=CONNECTION_EXCLUSIVE, required_one_of=CONNECTION_ONE_OF)
    check_client(module)
    from jidoteki_admin.client import AdminClient, ClientError, certificate_fingerprint
    params = module.params
    try:
        with open(params["public"], "rb") as f:
            wanted = certificate_fingerprint(f.read())
    except (OSError, ClientError) as e:
        module.fail_json(msg="cannot read the certificate %s: %s" % (params["public"], e), failure="misconfigured")

    async def install(client):
        await client.certs_status()  # signed in over a connection trusted by pin or CA
        presented = client.presented
        diff = dict(before="fingerprint: %s\n" % presented, after="fingerprint: %s\n" % wanted)
        if presented == wanted:
            return dict(changed=False, fingerprint=presented, msg="the appliance already presents this certificate")
        if module.check_mode:
            return dict(changed=True, fingerprint=presented, diff=diff, msg="would install the certificate %s" % wanted)
        started = await client.install_certs(params["public"], params["private"], params["ca_certificate"])
        if not params["wait"]:
            return dict(changed=True, fingerprint=presented, diff=diff, msg="the install started")
        report = (await client.follow(started)).raw
        # A new connection that trusts only the new certificate: the appliance serves it.
        async with AdminClient(client.reactor, client.url, fingerprint=wanted, timeouts=client.timeouts) as check:
            check.use_token(params["token"])
            await check.certs_status()
        return dict(changed=True, fingerprint=wanted, report=report, diff=diff,
                    msg="installed the certificate %s" % wanted)

    run(module, install, wait=params["timeout"])


if __name__ == "__main__":
    main()
