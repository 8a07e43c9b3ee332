# -*- coding: utf-8 -*-
# SPDX-License-Identifier: MIT
"""What every module of the collection shares: the connection options and a way to run the
jidoteki_admin client (which is asynchronous, on Twisted) from a synchronous module.

The modules talk HTTPS to the appliance from the machine they run on: run them on the
controller (``delegate_to: localhost`` or ``connection: local``), where the jidoteki-admin
Python package is installed.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import traceback

from ansible.module_utils.basic import missing_required_lib

try:
    from jidoteki_admin.client import AdminClient, APIError, ClientError, JobFailed
    HAS_CLIENT = True
    CLIENT_IMPORT_ERROR = None
except ImportError:
    HAS_CLIENT = False
    CLIENT_IMPORT_ERROR = traceback.format_exc()

CONNECTION_ARGS = dict(
    url=dict(type="str", required=True),
    token=dict(type="str", required=True, no_log=True),
    ca=dict(type="path"),
    fingerprint=dict(type="str"),
    poll_interval=dict(type="float", default=1.0),
)
CONNECTION_EXCLUSIVE = [("ca", "fingerprint")]
CONNECTION_ONE_OF = [("ca", "fingerprint")]


def module_args(**more):
    args = dict(CONNECTION_ARGS)
    args.update(more)
    return args


def check_client(module):
    if not HAS_CLIENT:
        module.fail_json(msg=missing_required_lib("jidoteki-admin"), exception=CLIENT_IMPORT_ERROR)


def run(module, work, check=None):
    """Run ``await work(client)`` against the appliance and exit the module with the
    result dict it returns (after ``check``, when given, looked at it outside the reactor).

    Each module runs in its own process and a Twisted reactor runs only once, so a module
    does all its talking in the one ``work``. An error answer or a failed job ends the
    module with a readable message.
    """
    check_client(module)
    from twisted.internet import reactor
    from twisted.internet.defer import ensureDeferred

    params = module.params
    outcome = {}

    async def go():
        client = AdminClient(reactor, params["url"], token=params["token"], ca_file=params.get("ca"),
                             fingerprint=params.get("fingerprint"))
        client.poll_interval = params.get("poll_interval") or 1.0
        try:
            outcome["value"] = await work(client)
        except Exception as e:  # handed back to the module, outside the reactor
            outcome["error"] = e
            outcome["trace"] = traceback.format_exc()
        finally:
            await client.close()

    def start():
        ensureDeferred(go()).addBoth(lambda _: reactor.stop())

    reactor.callWhenRunning(start)
    reactor.run(installSignalHandlers=False)
    error = outcome.get("error")
    if isinstance(error, JobFailed):
        module.fail_json(msg=str(error), report=error.report, error_code=error.code)
    if isinstance(error, APIError):
        module.fail_json(msg="The appliance answered %s: %s" % (error.status, error.message), status=error.status)
    if isinstance(error, ClientError):
        module.fail_json(msg=str(error))
    if error is not None:
        module.fail_json(msg="%s: %s" % (type(error).__name__, error), exception=outcome.get("trace"))
    result = outcome["value"]
    module.exit_json(**(check(result) if check is not None else result))


async def optional(coroutine, missing=None):
    """The value, or ``missing`` when the appliance answers 404 (a file it does not have)."""
    try:
        return await coroutine
    except APIError as e:
        if e.status == 404:
            return missing
        raise
