"""Section 1 and 2: initial setup and changing the API token."""

from __future__ import annotations

from .. import responses
from ..auth import token_problem
from ..catalogue import STATUS, Endpoint, Field, Reply, Section, post
from ..context import Context
from ..jobs.persist import PERSIST
from ..responses import APIError


class Setup:
    name = "setup"
    optional = False

    def __init__(self, context: Context):
        self.tokens = context.tokens
        self.runner = context.runner
        context.runner.register(PERSIST)

    def section(self) -> Section:
        change = post(
            self.change_token,
            "Set the API token (without authentication while no token exists)",
            Reply(STATUS),
            Field("newtoken", description="The new API token: printable ASCII, at most 255 characters"),
            errors=(400,),
        )
        return Section(self.name, "Setup and token", (Endpoint("/setup", (change,), open_while_no_token=True),))

    def change_token(self, request) -> bytes:
        new_token = request.form.text("newtoken")
        problem = token_problem(new_token)
        if problem:
            raise APIError(400, problem)
        self.tokens.replace(new_token)
        self.runner.request(PERSIST)  # so the new token survives a reboot of a live image
        return responses.status(request)
