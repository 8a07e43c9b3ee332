"""Section 1 and 2: initial setup and changing the API token."""

from __future__ import annotations

from twisted.internet import defer

from .. import responses
from ..auth import token_problem
from ..catalogue import STATUS, Endpoint, Field, Reply, Section, post
from ..context import Context
from ..files import atomic_write, remove_quietly
from ..jobs.appliance import TOKEN
from ..jobs.persist import PERSIST
from ..responses import APIError
from ..runner import SUCCESS


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
        return Section(self.name, "Setup and token", (Endpoint("/setup", (change,), open_while_no_token=True),))

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
