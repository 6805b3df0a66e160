"""Request bodies are checked before the app parses them: size (413), UTF-8 and JSON (400).

A spec of 10,000 nodes is well under a megabyte; anything far larger is a mistake or an
attack, and must not be parsed. Content-Length is checked up front; a chunked body is
counted as it streams and never held beyond the limit.

FastAPI would parse a JSON body with `json.loads`, which recurses once per nesting level:
deep nesting raises RecursionError (and, in a process that raised the recursion limit,
could exhaust the C stack), and any failure other than a JSON syntax error becomes a
bare `400 {"detail": ...}`. So a JSON body is first checked with pydantic-core's parser
(jiter: iterative, with a fixed nesting limit, line and column in its errors) and
refused in the documented `{error, lines}` shape.
"""

from __future__ import annotations

import json
from typing import Any

import pydantic_core

Scope = dict[str, Any]
# pydantic-core refuses JSON nested deeper than this (jiter's recursion limit; not
# configurable). tests/unit/test_request_body.py pins it so an upgrade cannot move it silently.
MAX_JSON_DEPTH = 200
_BOM = b"\xef\xbb\xbf"


class RequestBodyMiddleware:
    def __init__(self, app: Any, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        length = headers.get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.max_bytes):
            await _refuse(send, 413, f"request body larger than {self.max_bytes} bytes")
            return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client left
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                await _refuse(send, 413, f"request body larger than {self.max_bytes} bytes")
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        problem = body_problem(body, headers.get(b"content-type", b"").decode("latin-1"))
        if problem is not None:
            await _refuse(send, 400, problem)
            return
        replayed = False

        async def replay() -> Any:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()  # after the body: wait for the disconnect, as Starlette expects

        await self.app(scope, replay, send)


def body_problem(body: bytes, content_type: str) -> str | None:
    """Why a body the app would parse as JSON cannot be (None: fine, empty or not JSON)."""
    kind = content_type.split(";")[0].strip().lower()
    if not body or not (kind == "" or kind == "application/json" or kind.endswith("+json")):
        return None
    try:
        text = body.removeprefix(_BOM).decode("utf-8")
    except UnicodeDecodeError as err:
        return (
            f"request body is not UTF-8: byte 0x{body[err.start]:02x} at offset {err.start} "
            f"({err.reason})"
        )
    try:
        pydantic_core.from_json(text)
    except ValueError as err:
        reason = str(err)
        if reason.startswith("recursion limit exceeded"):
            where = reason.removeprefix("recursion limit exceeded").strip()
            return f"request body is nested more than {MAX_JSON_DEPTH} levels deep ({where})"
        return f"request body is not valid JSON: {reason}"
    return None


async def _refuse(send: Any, status: int, message: str) -> None:
    body = json.dumps({"error": message, "lines": [message]}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
