"""Section 1 and 2: initial setup and changing the API token."""

from __future__ import annotations

from .. import responses
from ..api import Endpoint
from ..auth import TokenStore, token_problem
from ..responses import APIError
from ..uploads import TEXT


class Setup:
    def __init__(self, tokens: TokenStore):
        self.tokens = tokens

    def endpoints(self):
        return [
            Endpoint(
                "/setup",
                {"POST": self.change_token},
                form={"newtoken": TEXT},
                open_while_no_token=True,
            )
        ]

    def change_token(self, request) -> bytes:
        new_token = request.form.text("newtoken")
        problem = token_problem(new_token)
        if problem:
            raise APIError(400, problem)
        self.tokens.replace(new_token)
        return responses.status(request)
