"""Who is calling the gateway: bearer token -> team and scopes, as a FastAPI dependency."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from quantos_assets.apps.client.graphql import DagsterAPIError
from quantos_assets.apps.client.submissions import SubmissionError
from quantos_assets.apps.gateway.tokens import Principal, TokenExpired, TokenStore


class ApiError(Exception):
    """An answer other than success: status, one-line error, detail lines, headers."""

    def __init__(
        self,
        status: int,
        message: str,
        lines: list[str] | None = None,
        headers: dict[str, str] | None = None,
    ):
        super().__init__(message)
        self.status, self.message, self.lines, self.headers = status, message, lines or [], headers


_BEARER = HTTPBearer(auto_error=False)


def authenticate(tokens: TokenStore, token: str | None, scope: str) -> Principal:
    """The principal of `token` if it is valid and has `scope`, else the 401/403 that says why.

    One check for every way a token arrives: the API's bearer header and the jobs page's
    cookie (jobs_page_session.py) are refused alike."""
    if token is None:
        raise ApiError(
            401,
            "missing bearer token (Authorization: Bearer <token>)",
            headers={"WWW-Authenticate": "Bearer"},
        )
    try:
        who = tokens.authenticate(token)
    except TokenExpired as err:
        raise ApiError(
            401,
            f"{err}: ask for a new one (quantos token create)",
            headers={
                "WWW-Authenticate": (
                    'Bearer error="invalid_token", error_description="token expired"'
                )
            },
        ) from None
    if who is None:
        raise ApiError(401, "invalid or revoked token", headers={"WWW-Authenticate": "Bearer"})
    if not who.can(scope):
        raise ApiError(403, f"token {who.token_id} (team {who.team}) lacks the '{scope}' scope")
    return who


def _principal(scope: str) -> Callable[..., Principal]:
    """A dependency: the caller's principal if its token is valid and has `scope`."""

    def dependency(
        request: Request,
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_BEARER)],
    ) -> Principal:
        bearer = credentials is not None and credentials.scheme.lower() == "bearer"
        token = credentials.credentials if credentials is not None and bearer else None
        return authenticate(request.app.state.gateway.tokens, token, scope)

    return dependency


Submitter = Annotated[Principal, Depends(_principal("submit"))]
Reader = Annotated[Principal, Depends(_principal("read"))]


# -- wiring --------------------------------------------------------------------------------------


def answer(fn: Callable[[], Any]) -> Any:
    """Run a client call; its errors become the 4xx/5xx they stand for."""
    try:
        return fn()
    except (SubmissionError, DagsterAPIError) as err:
        raise ApiError(err.status, str(err)) from None
