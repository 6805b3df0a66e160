"""Every failure the gateway answers, in the one documented shape: `{error, lines}`.

Its own refusals (`ApiError`), FastAPI's request validation and Starlette's routing answers
(unknown path, method not allowed) all become that body, so a client reads one shape.
"""

from __future__ import annotations

import re

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from quantos_assets.apps.gateway.auth import ApiError
from resources.redaction import redact


def install_error_handlers(app: FastAPI) -> None:
    """Register the handlers on `app` (they are the same for every app)."""
    app.exception_handler(ApiError)(_api_error)
    app.exception_handler(RequestValidationError)(_invalid_request)
    app.exception_handler(HTTPException)(_http_error)


def _api_error(_request: Request, err: ApiError) -> JSONResponse:
    return error_response(err.status, err.message, err.lines, err.headers)


def _invalid_request(_request: Request, err: RequestValidationError) -> JSONResponse:
    problems = err.errors()
    if any(p.get("type") == "json_invalid" for p in problems):
        ctx = next(p for p in problems if p.get("type") == "json_invalid").get("ctx", {})
        reason = ctx.get("error", "parse error")
        return error_response(400, f"request body is not valid JSON: {reason}")
    lines = [f"{'.'.join(str(x) for x in p['loc'])}: {p['msg']}" for p in problems]
    return error_response(422, "invalid request", lines)


def _http_error(request: Request, err: HTTPException) -> JSONResponse:
    """Starlette's own answers (unknown path, method not allowed) in the documented shape."""
    headers = dict(err.headers or {})
    message = str(err.detail)
    if err.status_code == 405:
        allowed = _allowed_methods(request, headers.get("Allow", ""))
        headers["Allow"] = ", ".join(allowed)
        message = (
            f"{request.method} is not allowed on {request.url.path}; allowed: {', '.join(allowed)}"
        )
    elif err.status_code == 404:
        message = f"no endpoint {request.url.path} (see /docs)"
    return error_response(err.status_code, message, headers=headers)


def error_response(
    status: int,
    message: str,
    lines: list[str] | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    """Every 4xx/5xx the gateway writes: `{error, lines}`, with credentials in URLs redacted
    (a Dagster or database error may quote a URL with its password)."""
    message = redact(message)
    return JSONResponse(
        {"error": message, "lines": [redact(line) for line in lines] if lines else [message]},
        status_code=status,
        headers=headers,
    )


def _allowed_methods(request: Request, fallback: str) -> list[str]:
    """The methods the API documents for this path (RFC 9110: a 405 lists them all).

    Starlette names only the methods of the first route whose path matches, so
    `OPTIONS /api/jobs/ID` said `Allow: GET` where PUT and DELETE exist too. The OpenAPI
    document is the contract clients read; where several templates match, the most
    specific one (fewest parameters) is the resource. Undocumented routes (/healthz,
    /metrics) keep Starlette's `fallback`.
    """
    best: tuple[int, list[str]] | None = None
    for template, operations in request.app.openapi()["paths"].items():
        parts = re.split(r"(\{[^/}]+\})", template)
        regex = "".join("[^/]+" if p.startswith("{") else re.escape(p) for p in parts)
        if re.fullmatch(regex, request.url.path):
            params = template.count("{")
            if best is None or params < best[0]:
                methods = {m.upper() for m in operations}
                best = (params, sorted(methods))
    return best[1] if best else [m.strip() for m in fallback.split(",") if m.strip()]
