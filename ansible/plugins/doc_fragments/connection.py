# -*- coding: utf-8 -*-
# SPDX-License-Identifier: MIT

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class ModuleDocFragment(object):
    DOCUMENTATION = r"""
options:
  url:
    description: The appliance's API address, C(https://HOST:PORT).
    type: str
    required: true
  token:
    description:
      - The API token. It never leaves the controller in clear; every request is signed with
        the HMAC key derived from it.
    type: str
    required: true
  ca:
    description: A CA certificate file the appliance's certificate is signed by.
    type: path
  fingerprint:
    description: The SHA-256 fingerprint of the appliance's certificate (C(AB:CD:...)).
    type: str
  poll_interval:
    description: Seconds between two status requests while waiting for a job.
    type: float
    default: 1.0
notes:
  - One of I(ca) or I(fingerprint) is required; the appliance is never trusted blindly.
  - The module talks HTTPS to the appliance from where it runs; run it on the controller
    (with C(delegate_to) set to C(localhost)), where the jidoteki-admin Python package is installed.
requirements:
  - jidoteki-admin (the Python package, which brings the client library)
"""
