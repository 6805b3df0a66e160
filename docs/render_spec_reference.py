"""Render the JSON Schemas of the DAG spec and runtime params as Markdown tables.

    uv run python docs/render_spec_reference.py          # print the tables
    uv run python docs/render_spec_reference.py --write  # refresh them in docs/spec-reference.md

`make docs` (docs/generate.py) refreshes them with every other generated reference, and
tests/unit/test_docs_generated.py fails when they are stale.

The tables come from the same pydantic models the loader validates with, so
regenerating after a model change keeps the reference honest.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

from quantos_assets.spec.json_schema import runtime_params_json_schema, spec_json_schema

DOC = Path(__file__).with_name("spec-reference.md")
BEGIN, END = "<!-- BEGIN GENERATED: docs/render_spec_reference.py -->", "<!-- END GENERATED -->"


def _type(prop: dict[str, Any]) -> str:
    if "$ref" in prop:
        return f"`{prop['$ref'].rsplit('/', 1)[-1]}`"
    if "anyOf" in prop:
        return " or ".join(_type(p) for p in prop["anyOf"])
    if "enum" in prop:
        return " \\| ".join(f"`{v}`" for v in prop["enum"])
    if "const" in prop:
        return f"`{json.dumps(prop['const'])}`"
    kind = prop.get("type", "any")
    if kind == "array":
        return f"list of {_type(prop.get('items', {}))}"
    if kind == "object" and isinstance(prop.get("additionalProperties"), dict):
        return f"mapping to {_type(prop['additionalProperties'])}"
    return "mapping" if kind == "object" else kind


def _constraints(prop: dict[str, Any]) -> str:
    found: list[str] = []
    for p in [prop, prop.get("items", {})]:
        for key in (
            "pattern",
            "minimum",
            "maximum",
            "exclusiveMinimum",
            "minLength",
            "maxLength",
            "minItems",
        ):
            if key in p:
                found.append(f"{key} `{p[key]}`")
    found.extend(_constraints(p) for p in prop.get("anyOf", []))
    if "description" in prop:
        found.append(prop["description"])
    return "; ".join(dict.fromkeys(f for f in found if f))


def _table(name: str, schema: dict[str, Any]) -> str:
    if "enum" in schema:
        return f"#### `{name}`\n\none of: {', '.join(f'`{v}`' for v in schema['enum'])}\n"
    required = set(schema.get("required", []))
    rows = ["| field | type | required | default | constraints |", "|---|---|---|---|---|"]
    for field, prop in schema.get("properties", {}).items():
        default = f"`{json.dumps(prop['default'])}`" if "default" in prop else ""
        rows.append(
            f"| `{field}` | {_type(prop)} | {'yes' if field in required else ''} | "
            f"{default} | {_constraints(prop).replace('|', chr(92) + '|')} |"
        )
    return f"#### `{name}`\n\n" + "\n".join(rows) + "\n"


def render() -> str:
    parts = []
    for title, schema in (
        ("DagSpec", spec_json_schema()),
        ("RuntimeParams", runtime_params_json_schema()),
    ):
        parts.append(_table(title, schema))
        parts.extend(
            _table(n, s)
            for n, s in schema.get("$defs", {}).items()
            if title == "DagSpec" or n != "Priority"
        )
    return "\n".join(parts)


if __name__ == "__main__":
    text = render()
    if "--write" not in sys.argv:
        print(text)
    else:
        doc = DOC.read_text()
        pattern = re.compile(re.escape(BEGIN) + ".*?" + re.escape(END), re.DOTALL)
        DOC.write_text(pattern.sub(lambda _: f"{BEGIN}\n\n{text}\n{END}", doc))
