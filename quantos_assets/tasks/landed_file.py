"""The object that started the run: the example of a python_task behind a data-arrival
trigger (`triggers: [{arrivals: {uri: ...}}]`).

The trigger puts the object's URI and version on the run; a python_task reads them from the
Pipes extra `arrival`, so the same entrypoint serves every file the vendor lands.
"""

from __future__ import annotations

import pyarrow as pa


def landed(uri: str | None = None, version: str | None = None) -> pa.Table:
    """One row: the landed object's URI and version (params override, for a manual run)."""
    if uri is None:
        from dagster_pipes import PipesContext

        arrival = PipesContext.get().extras.get("arrival") or {}
        uri, version = arrival.get("uri"), version or arrival.get("version")
    if uri is None:
        raise ValueError("no landed object: run it from a data-arrival trigger or give params.uri")
    return pa.table({"uri": pa.array([uri]), "version": pa.array([version or ""])})
