"""Request bodies the gateway refuses before parsing them, in its documented shape (issue 16,
11)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from quantos_assets.apps.gateway.request_body import (
    MAX_JSON_DEPTH,
    RequestBodyMiddleware,
    body_problem,
)


def nested(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


def test_nesting_up_to_the_limit_passes_and_one_more_is_refused() -> None:
    # pins pydantic-core's fixed limit: an upgrade that moves it fails here, not in production
    assert body_problem(nested(MAX_JSON_DEPTH), "application/json") is None
    problem = body_problem(b'{"refs": ' + nested(1000) + b"}", "application/json")
    assert (
        problem
        == f"request body is nested more than {MAX_JSON_DEPTH} levels deep (at line 1 column 210)"
    )


def test_invalid_utf8_and_json_are_named_with_their_place() -> None:
    assert body_problem(b'{"spec_ref": "\xff\xfe"}', "application/json") == (
        "request body is not UTF-8: byte 0xff at offset 14 (invalid start byte)"
    )
    assert body_problem(b'{"spec_ref": "x",}', "application/json; charset=utf-8") == (
        "request body is not valid JSON: trailing comma at line 1 column 18"
    )
    assert (
        body_problem(b'\xef\xbb\xbf{"spec_ref": "x"}', "") is None
    )  # a BOM is tolerated, as json.loads does
    assert body_problem(b"\xff", "application/octet-stream") is None  # not the JSON the app parses


def _app(max_bytes: int) -> Any:
    async def echo(request: Request) -> JSONResponse:
        return JSONResponse({"got": len(await request.body())})

    return RequestBodyMiddleware(
        Starlette(routes=[Route("/", echo, methods=["POST"])]), max_bytes=max_bytes
    )


def _post(app: Any, **kwargs: Any) -> httpx.Response:
    async def go() -> httpx.Response:
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://gw"
        ) as client:
            return await client.post("/", **kwargs)

    return asyncio.run(go())


def test_a_chunked_body_over_the_limit_is_413_and_one_within_is_replayed_whole() -> None:
    def chunks(n: int) -> Iterator[bytes]:
        for _ in range(n):
            yield b"[" + b"1," * 200 + b"1]"

    app = _app(max_bytes=1000)
    refused = _post(app, content=_async(chunks(10)), headers={"content-type": "application/json"})
    assert refused.status_code == 413
    assert refused.json() == {
        "error": "request body larger than 1000 bytes",
        "lines": ["request body larger than 1000 bytes"],
    }
    declared = _post(app, content=b"[" + b"1," * 600 + b"1]")
    assert declared.status_code == 413  # refused on Content-Length, before reading
    within = _post(app, content=b'{"a": 1}', headers={"content-type": "application/json"})
    assert within.status_code == 200 and within.json() == {"got": 8}


def _async(chunks: Iterator[bytes]) -> Any:
    async def gen() -> Any:
        for chunk in chunks:
            yield chunk

    return gen()


@pytest.mark.parametrize("body", [b'{"spec_ref": "\xff"}', nested(1000)])
def test_refusals_are_400_in_the_documented_shape(body: bytes) -> None:
    res = _post(_app(max_bytes=1 << 20), content=body, headers={"content-type": "application/json"})
    assert res.status_code == 400
    assert set(res.json()) == {"error", "lines"} and res.json()["lines"] == [res.json()["error"]]
