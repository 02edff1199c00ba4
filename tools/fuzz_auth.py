"""Schemathesis's auth for `make fuzz` (loaded through SCHEMATHESIS_HOOKS by tools/fuzz.py).

Every case carries the access token of the user tools/fuzz.py registered. A 401 makes
Schemathesis fetch a new token and replay the request: fuzzed logouts revoke the session. When
that user can no longer log in (a fuzzed DeleteUser or UpdateUser reached its own id, learnt
from an earlier response), the run goes on as a fresh user rather than stopping.
"""

from __future__ import annotations

import os
from typing import Any

import schemathesis

from tests.system_harness import new_credentials, request

# Seconds a token is reused before a new login; an access token lives 15 minutes.
REFRESH_INTERVAL = 600


class Identity:
    """Who the fuzzer is: the registered user, then the replacements it needed."""

    def __init__(self, facade_url: str, email: str, password: str) -> None:
        self.facade_url = facade_url
        self.email = email
        self.password = password
        self.replacements = 0

    def token(self) -> str:
        answer = request(
            "POST",
            f"{self.facade_url}/api/v1/auth/login",
            body={"email": self.email, "password": self.password},
        )
        if answer.status == 200:
            return str(answer.body["data"]["tokens"]["accessToken"])
        return self._replacement(f"login answered {answer.status}: {answer.body}")

    def _replacement(self, why: str) -> str:
        email, password, name = new_credentials()
        answer = request(
            "POST",
            f"{self.facade_url}/api/v1/auth/register",
            body={"email": email, "password": password, "name": name},
        )
        if answer.status != 201:
            raise RuntimeError(f"{why}; registering a new user answered {answer.status}")
        self.email, self.password = email, password
        self.replacements += 1
        print(f"fuzz auth: {why}; continuing as a new user ({self.replacements})", flush=True)
        return str(answer.body["data"]["tokens"]["accessToken"])


@schemathesis.auth(refresh_interval=REFRESH_INTERVAL, retry_on=[401])
class FuzzUser:
    def __init__(self) -> None:
        self._identity = Identity(
            os.environ["FUZZ_URL"], os.environ["FUZZ_EMAIL"], os.environ["FUZZ_PASSWORD"]
        )

    def get(self, case: Any, context: Any) -> str:
        return self._identity.token()

    def set(self, case: Any, data: str, context: Any) -> None:
        case.headers = case.headers or {}
        case.headers["Authorization"] = f"Bearer {data}"
