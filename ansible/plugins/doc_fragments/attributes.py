# -*- coding: utf-8 -*-
# SPDX-License-Identifier: MIT

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class ModuleDocFragment(object):
    # What every module of the collection is: its action group, and where it runs.
    DOCUMENTATION = r"""
options: {}
attributes:
  action_group:
    description: Use C(group/jidoteki.admin.appliance) in C(module_defaults) to set its connection options.
    support: full
    membership:
      - jidoteki.admin.appliance
  check_mode:
    description: Can run in check mode and say what it would change, without changing it.
  diff_mode:
    description: Shows what it changes (or would change, in check mode) in diff mode.
  platform:
    description: Runs on the controller and talks HTTPS to the appliance.
    support: full
    platforms: posix
"""
