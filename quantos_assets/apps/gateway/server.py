"""The gateway app built from the environment (what `quantos gateway` and uvicorn workers serve)."""

from __future__ import annotations

from typing import Any

from quantos_assets.apps.gateway.app import create_app
from quantos_assets.apps.gateway.settings import gateway_settings


def build_app() -> Any:
    return create_app(gateway_settings())


def __getattr__(name: str) -> Any:
    # `uvicorn quantos_assets.apps.gateway.server:app`: built on first access, not at import.
    if name == "app":
        return build_app()
    raise AttributeError(name)
