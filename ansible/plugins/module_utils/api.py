# -*- coding: utf-8 -*-
# SPDX-License-Identifier: MIT
"""What every module of the collection shares: the connection options and a way to run the
jidoteki_admin client (which is asynchronous, on Twisted) from a synchronous module.

The modules talk HTTPS to the appliance from the machine they run on: run them on the
controller (``delegate_to: localhost`` or ``connection: local``), where the jidoteki-admin
Python package is installed. Every step has a timeout, so a hung appliance fails its task
within seconds instead of holding up a batch.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import traceback

from ansible.module_utils.basic import env_fallback, missing_required_lib

try:
    from jidoteki_admin.client import (AdminClient, APIError, ClientError, JobFailed, JobTimedOut, Misconfigured,
                                       Timeouts, Unreachable, Untrusted)
    HAS_CLIENT = True
    CLIENT_IMPORT_ERROR = None
except ImportError:
    HAS_CLIENT = False
    CLIENT_IMPORT_ERROR = traceback.format_exc()

CONNECTION_ARGS = dict(
    url=dict(type="str", required=True, fallback=(env_fallback, ["JIDOTEKI_ADMIN_URL"])),
    token=dict(type="str", required=True, no_log=True, fallback=(env_fallback, ["JIDOTEKI_ADMIN_TOKEN"])),
    token_name=dict(type="str", default="admin", fallback=(env_fallback, ["JIDOTEKI_ADMIN_TOKEN_NAME"])),
    auth=dict(type="str", default="signature", choices=["signature", "hash"]),
    ca=dict(type="path", fallback=(env_fallback, ["JIDOTEKI_ADMIN_CA"])),
    fingerprint=dict(type="str", fallback=(env_fallback, ["JIDOTEKI_ADMIN_FINGERPRINT"])),
    connect_timeout=dict(type="float", default=10.0),
    tls_timeout=dict(type="float", default=10.0),
    read_timeout=dict(type="float", default=30.0),
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


def failure(error):
    """(kind, message, details) of an error, as a task reports it: the kind says what to do
    about it (a refused request, an appliance down or hung, a certificate not trusted, a
    job that failed)."""
    if isinstance(error, JobFailed):
        return "job_failed", str(error), dict(report=error.report, error_code=error.code)
    if isinstance(error, JobTimedOut):
        return "job_timed_out", str(error), dict(job=error.job, run=error.run)
    if isinstance(error, APIError):
        return "refused", "The appliance answered %s" % error.describe(), dict(status=error.status)
    if isinstance(error, Untrusted):
        details = dict(presented=error.presented, trusted=error.expected)
        return "untrusted", "Not the certificate trusted: %s" % error, details
    if isinstance(error, Unreachable):
        return "unreachable", str(error), {}
    if isinstance(error, Misconfigured):
        return "misconfigured", str(error), {}
    if isinstance(error, ClientError):
        return "error", str(error), {}
    return None


def run(module, work, check=None, wait=None):
    """Run ``await work(client)`` against the appliance and exit the module with the
    result dict it returns (after ``check``, when given, looked at it outside the reactor).

    Each module runs in its own process and a Twisted reactor runs only once, so a module
    does all its talking in the one ``work``. ``wait`` is the limit of its waits (jobs, a
    reboot), in seconds. An error answer, an appliance that cannot be reached or is not
    trusted, or a failed job ends the module with a readable message and its ``failure``.
    """
    check_client(module)
    from twisted.internet import reactor
    from twisted.internet.defer import ensureDeferred

    params = module.params
    outcome = {}

    async def go():
        try:
            timeouts = Timeouts(connect=params["connect_timeout"], handshake=params["tls_timeout"],
                                read=params["read_timeout"], wait=wait or 3600.0)
            client = AdminClient(reactor, params["url"], token=params["token"], ca_file=params.get("ca"),
                                 fingerprint=params.get("fingerprint"), timeouts=timeouts,
                                 poll_interval=params.get("poll_interval") or 1.0,
                                 token_name=params.get("token_name") or "admin", auth=params.get("auth") or "signature")
        except Exception as e:  # a URL, pin or timeout it cannot use: before any connection
            outcome["error"] = e
            return
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
    if error is not None:
        known = failure(error)
        if known is None:
            module.fail_json(msg="%s: %s" % (type(error).__name__, error), exception=outcome.get("trace"))
        kind, message, details = known
        module.fail_json(msg=message, failure=kind, **details)
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


def file_mode(module, value):
    """A file mode given as an octal string (C('0600')) or a number; fails the module otherwise."""
    if isinstance(value, int) and not isinstance(value, bool):
        mode = value
    else:
        try:
            mode = int(str(value).strip().lower().replace("0o", ""), 8)
        except ValueError:
            mode = -1
    if not 0 <= mode <= 0o7777:
        module.fail_json(msg="mode must be an octal file mode like '0600', not %r" % (value,))
    return mode
