# -*- coding: utf-8 -*-
# SPDX-License-Identifier: MIT

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class ModuleDocFragment(object):
    DOCUMENTATION = r"""
options:
  url:
    description:
      - The appliance's API address, C(https://HOST:PORT).
      - If not given, the environment variable E(JIDOTEKI_ADMIN_URL) is used.
    type: str
    required: true
  token:
    description:
      - The API token, or a named token (see O(token_name)). It never leaves the controller;
        every request is signed with the HMAC key derived from it (HTTP Message Signatures,
        RFC 9421), so no request can be replayed.
      - If not given, the environment variable E(JIDOTEKI_ADMIN_TOKEN) is used.
    type: str
    required: true
  token_name:
    description:
      - The name of the named token O(token) is (made with C(POST /tokens)); V(admin), the
        default, is the API token itself.
      - If not given, the environment variable E(JIDOTEKI_ADMIN_TOKEN_NAME) is used.
    type: str
    default: admin
  auth:
    description:
      - V(signature) signs every request (the default); V(hash) sends the old C(hash) query
        parameter instead, for appliances that predate signed requests.
    type: str
    choices: [signature, hash]
    default: signature
  ca:
    description:
      - A CA certificate file the appliance's certificate is signed by (for its host name
        or IP address).
      - If not given, the environment variable E(JIDOTEKI_ADMIN_CA) is used.
    type: path
  fingerprint:
    description:
      - The SHA-256 fingerprint of the appliance's certificate (V(AB:CD:...)).
      - If not given, the environment variable E(JIDOTEKI_ADMIN_FINGERPRINT) is used.
    type: str
  connect_timeout:
    description: Seconds to connect to the appliance, name lookup included.
    type: float
    default: 10.0
  tls_timeout:
    description: Seconds for the TLS handshake once connected.
    type: float
    default: 10.0
  read_timeout:
    description:
      - Seconds without a byte either way while a request is under way. A hung appliance
        fails the task after this long, not the batch.
    type: float
    default: 30.0
  poll_interval:
    description: Seconds between two looks at a job the module waits for.
    type: float
    default: 1.0
notes:
  - One of O(ca) or O(fingerprint) is required; the appliance is never trusted blindly.
  - The module talks HTTPS to the appliance from where it runs; run it on the controller
    (with C(delegate_to) set to C(localhost)), where the jidoteki-admin Python package is installed.
  - Set the connection options once for a play with C(module_defaults) and the action group
    C(group/jidoteki.admin.appliance).
  - A failed task says why in C(failure) - V(refused) (the appliance said no), V(unreachable)
    (down, or no answer within the timeouts), V(untrusted) (not the certificate trusted; C(presented)
    names the one presented), V(job_failed), V(job_timed_out) or V(misconfigured).
requirements:
  - jidoteki-admin (the Python package, which brings the client library)
"""
