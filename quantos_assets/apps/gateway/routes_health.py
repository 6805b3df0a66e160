"""GET /healthz: the liveness probe. No token and not in the API document, like /metrics:
it says only that the process answers, so an orchestrator can restart one that does not."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter()


@router.get("/healthz", include_in_schema=False)
def healthz() -> dict[str, str]:
    return {"status": "ok"}
