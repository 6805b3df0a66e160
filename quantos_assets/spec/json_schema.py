"""JSON Schemas of the DAG spec and runtime params, for the strategy compiler.

The compiler validates what it emits before submitting (`quantos schema` prints
these); the schemas come from the same pydantic models the orchestrator loads
with, so the two cannot drift. Graph rules (cycles, producers) are beyond JSON
Schema: a schema-valid spec can still fail `load_spec`.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from quantos_assets.spec.models import DagSpec, RuntimeParams

DRAFT = "https://json-schema.org/draft/2020-12/schema"
SPEC_SCHEMA_ID = "https://quantos.dev/schemas/dag-spec/v1.json"
RUNTIME_PARAMS_SCHEMA_ID = "https://quantos.dev/schemas/runtime-params/v1.json"


def _closed(node: Any) -> None:
    """`additionalProperties: false` on every object with declared properties.

    extra="forbid" already yields it for models; this guards models added later
    and any nested object schema. Free-form maps (params, env, labels) declare no
    properties and keep their own additionalProperties.
    """
    if isinstance(node, dict):
        if node.get("type") == "object" and "properties" in node:
            node["additionalProperties"] = False
        for value in node.values():
            _closed(value)
    elif isinstance(node, list):
        for value in node:
            _closed(value)


def _schema(model: type[BaseModel], schema_id: str, title: str, description: str) -> dict[str, Any]:
    body = model.model_json_schema(by_alias=True, mode="validation")
    _closed(body)
    body.pop("title", None)
    body.pop("description", None)
    return {"$schema": DRAFT, "$id": schema_id, "title": title, "description": description, **body}


def spec_json_schema() -> dict[str, Any]:
    """JSON Schema (draft 2020-12) of a DAG spec, version 1."""
    return _schema(
        DagSpec,
        SPEC_SCHEMA_ID,
        "QuantOS DAG spec",
        "A compiler-emitted pipeline (seed 000 §3.1): nodes with ins/outs, edges, SLO, resources.",
    )


def runtime_params_json_schema() -> dict[str, Any]:
    """JSON Schema (draft 2020-12) of per-submission runtime params."""
    return _schema(
        RuntimeParams,
        RUNTIME_PARAMS_SCHEMA_ID,
        "QuantOS runtime params",
        "Per-submission parameters (seed 000 §3.2): env, labels, secrets scope, priority.",
    )
