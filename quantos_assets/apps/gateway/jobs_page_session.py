"""The jobs page's sign-in: the API token in a cookie, and the CSRF token bound to it.

After the login form, the browser holds one cookie: `<nonce>.<api token>`, HttpOnly (no
script reads it), SameSite=Strict (no other site's page sends it), Secure over https, and
scoped to the page's path (the API, which takes bearer headers only, never sees it). Each
request checks the token exactly as the API does (auth.authenticate).

Every state-changing form carries `csrf`, an HMAC of the sign-in's random nonce keyed by the
API token: only a page served to this sign-in can know it (the cookie is HttpOnly, and the
token is never sent back), another sign-in (another nonce or token) gets another value, and a
logout ends it. Why not a library: docs/decisions.md ("The jobs page: ...").
POSTs whose Origin names another host are refused too (login forms included, which have
no session to bind a token to yet).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from urllib.parse import urlsplit

from fastapi import Request, Response

from quantos_assets.apps.gateway.auth import ApiError, authenticate
from quantos_assets.apps.gateway.tokens import Principal

COOKIE = "quantos_jobs_session"
PAGE_PATH = "/jobs"
_CSRF_CONTEXT = b"quantos jobs page csrf\x00"


@dataclass(frozen=True)
class SignIn:
    """A signed-in browser: whose token, and the CSRF token its forms carry."""

    who: Principal
    csrf: str


class PageRefused(Exception):
    """A page request refused: `status` and one line; 401 sends the browser to the login form."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


def page_base(request: Request) -> str:
    """The page's path as the browser sees it (behind a proxy's root_path too)."""
    return f"{request.scope.get('root_path', '')}{PAGE_PATH}"


def csrf_token(token: str, nonce: str) -> str:
    return hmac.new(token.encode(), _CSRF_CONTEXT + nonce.encode(), hashlib.sha256).hexdigest()


def signed_in(request: Request, scope: str) -> SignIn:
    """The browser's sign-in if its cookie holds a token valid for `scope` (else PageRefused)."""
    nonce, _, token = (request.cookies.get(COOKIE) or "").partition(".")
    if not nonce or not token:
        raise PageRefused(401, "sign in with your API token")
    try:
        who = authenticate(request.app.state.gateway.tokens, token, scope)
    except ApiError as err:
        raise PageRefused(err.status, err.message) from None
    return SignIn(who=who, csrf=csrf_token(token, nonce))


def checked_post(request: Request, csrf: str, scope: str) -> SignIn:
    """A form's POST: from this site, signed in with `scope`, carrying this sign-in's CSRF
    token (403 otherwise; a missing sign-in is 401 as for any page)."""
    same_site(request)
    session = signed_in(request, "read")
    if not hmac.compare_digest(csrf.encode(), session.csrf.encode()):
        raise PageRefused(403, "this form is from another sign-in or page: reload and try again")
    if not session.who.can(scope):
        who = session.who
        raise PageRefused(403, f"token {who.token_id} (team {who.team}) lacks the '{scope}' scope")
    return session


def same_site(request: Request) -> None:
    """403 for a POST whose Origin is another host (browsers send Origin on every
    cross-site POST; SameSite=Strict already keeps the cookie off it)."""
    origin = request.headers.get("origin")
    if origin is None:
        return
    hosts = {request.headers.get("host", "")}
    public = request.app.state.gateway.settings.public_url
    if public:
        hosts.add(urlsplit(public).netloc)
    if urlsplit(origin).netloc not in hosts:
        raise PageRefused(403, "a form posted from another site is refused")


def sign_in(request: Request, response: Response, token: str) -> None:
    """Set the sign-in cookie for a token already checked."""
    response.set_cookie(
        COOKIE,
        f"{secrets.token_urlsafe(16)}.{token}",
        path=page_base(request),
        httponly=True,
        samesite="strict",
        secure=_https(request),
    )


def sign_out(request: Request, response: Response) -> None:
    response.delete_cookie(
        COOKIE, path=page_base(request), httponly=True, samesite="strict", secure=_https(request)
    )


def _https(request: Request) -> bool:
    public = request.app.state.gateway.settings.public_url
    return request.url.scheme == "https" or public.startswith("https://")
