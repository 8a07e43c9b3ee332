"""Section 1 and 2: initial setup and changing the API token.

GET /setup/state (an addition, without authentication) says what a sign-in page must know
before anyone signs in: whether a token is set, and whether first-run is on. Both are what
unauthenticated requests already learn (an unauthenticated POST /setup is accepted only
without a token; every error answer carries First-Run), asked without an error answer,
which browsers show as a failure in their console on every sign-in.
"""

from __future__ import annotations

from twisted.internet import defer

from .. import API_PREFIX
from ..context import Context
from ..files import atomic_write, remove_quietly
from ..http import responses
from ..http.auth import token_problem
from ..http.catalogue import JSON, STATUS, Endpoint, Field, Reply, Section, get, post
from ..http.responses import APIError
from ..jobs.appliance import TOKEN
from ..jobs.persist import PERSIST
from ..jobs.runner import SUCCESS

STATE_SCHEMA = {
    "type": "object",
    "properties": {
        "token": {"type": "boolean", "description": "an API token is set"},
        "first-run": {"type": ["boolean", "null"],
                      "description": "the generated passphrase is still the token (null: first-run is off)"},
    },
    "required": ["token", "first-run"],
}


class Setup:
    name = "setup"
    optional = False

    def __init__(self, context: Context):
        self.tokens = context.tokens
        self.runner = context.runner
        self.uploads = context.tree.uploads
        self.scripted = context.runner.launcher.scripted(TOKEN)
        context.runner.register(PERSIST)
        context.runner.register(TOKEN)

    def section(self) -> Section:
        change = post(
            self.change_token,
            "Set the API token (without authentication while no token exists)",
            Reply(STATUS),
            Field("newtoken", description="The new API token: printable ASCII, at most 255 characters"),
            errors=(400,),
        )
        state = get(self.state, "Whether a token is set and first-run is on (no authentication)",
                    Reply(JSON, STATE_SCHEMA))
        return Section(self.name, "Setup and token", (
            Endpoint("/setup", (change,), open_while_no_token=True),
            Endpoint(API_PREFIX + "/setup/state", (state,), public=True),
        ))

    def state(self, request) -> bytes:
        return responses.document(request, {"token": self.tokens.current() is not None,
                                            "first-run": self.tokens.first_run}, no_cache=True)

    def change_token(self, request):
        new_token = request.form.text("newtoken")
        problem = token_problem(new_token)
        if problem:
            raise APIError(400, problem)
        if self.scripted:
            return self._change_by_script(request, new_token)
        self.tokens.replace(new_token)
        self.runner.request(PERSIST)  # so the new token survives a reboot of a live image
        return responses.status(request)

    @defer.inlineCallbacks
    def _change_by_script(self, request, new_token: str):
        """As the original: the token in uploads/api.token, then the appliance's
        update_token.sh (through its wrapper) moves it into etc/ and saves it for the
        next boot; the daemon reads the new token at the next request."""
        self.runner.check_free(TOKEN)
        staged = self.uploads / "api.token"
        atomic_write(staged, new_token.encode() + b"\n", 0o600)
        try:
            status = yield self.runner.start(TOKEN)
        finally:
            remove_quietly(staged)  # moved by the script, or refused: the token is not left there
        self.tokens.invalidate()
        if status.status != SUCCESS:
            raise APIError(400, "The appliance could not set the token: its update_token.sh failed")
        self.tokens.ended_first_run()
        return responses.status(request)
