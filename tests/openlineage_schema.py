"""Validate OpenLineage events against the spec's JSON Schema (tests/fixtures/openlineage).

The event is checked against the core schema its `schemaURL` names, and every facet against
the facet schema its `_schemaURL` names, under the standard facet key that schema defines.
A facet whose schema is not in the fixtures fails the check: nothing is emitted that was not
validated. Formats (uuid, date-time) are checked.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from functools import cache
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator
from referencing import Registry, Resource

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "openlineage"
CORE_ID = "https://openlineage.io/spec/2-0-2/OpenLineage.json"


@cache
def _schemas() -> dict[str, dict[str, Any]]:
    docs = [
        json.loads(p.read_text())
        for p in [FIXTURES / "OpenLineage.json", *sorted((FIXTURES / "facets").glob("*.json"))]
    ]
    return {d["$id"]: d for d in docs}


@cache
def _registry() -> Registry:
    return Registry().with_resources(
        (uri, Resource.from_contents(doc)) for uri, doc in _schemas().items()
    )


def _validator(schema_url: str) -> Draft202012Validator:
    base, _, pointer = schema_url.partition("#")
    if base not in _schemas():
        raise AssertionError(f"no vendored schema for {schema_url!r} (add it under {FIXTURES})")
    schema = {"$ref": schema_url} if pointer else _schemas()[base]
    return Draft202012Validator(
        schema, registry=_registry(), format_checker=Draft202012Validator.FORMAT_CHECKER
    )


def _facet_key(schema_url: str) -> str | None:
    """The key the facet's schema file declares for it (e.g. `parent` for ParentRunFacet)."""
    doc = _schemas().get(schema_url.partition("#")[0], {})
    keys = list(doc.get("properties", {}))
    return keys[0] if len(keys) == 1 else None


def _facets(event: Mapping[str, Any]) -> Iterator[tuple[str, str, Mapping[str, Any]]]:
    yield from (("run", k, v) for k, v in (event.get("run", {}).get("facets") or {}).items())
    yield from (("job", k, v) for k, v in (event.get("job", {}).get("facets") or {}).items())
    for side in ("inputs", "outputs"):
        for dataset in event.get(side) or []:
            for group in ("facets", "inputFacets", "outputFacets"):
                yield from (
                    (f"{side}:{dataset['name']}:{group}", k, v)
                    for k, v in (dataset.get(group) or {}).items()
                )


def validate_event(event: Mapping[str, Any]) -> None:
    """Raise AssertionError naming every violation of the core or a facet schema."""
    problems: list[str] = []
    if not str(event.get("schemaURL", "")).startswith(CORE_ID):
        problems.append(f"schemaURL {event.get('schemaURL')!r} is not core spec {CORE_ID}")
    else:
        core = Draft202012Validator(
            _schemas()[CORE_ID],
            registry=_registry(),
            format_checker=Draft202012Validator.FORMAT_CHECKER,
        )
        problems += [
            f"core: {'/'.join(map(str, e.absolute_path))}: {e.message}"
            for e in core.iter_errors(dict(event))
        ]
    for where, key, facet in _facets(event):
        url = str(facet.get("_schemaURL", ""))
        try:
            validator = _validator(url)
        except AssertionError as err:
            problems.append(f"{where}.{key}: {err}")
            continue
        problems += [f"{where}.{key}: {e.message}" for e in validator.iter_errors(dict(facet))]
        expected = _facet_key(url)
        if expected is not None and expected != key:
            problems.append(f"{where}.{key}: the spec names this facet {expected!r}")
    if problems:
        raise AssertionError("OpenLineage event does not validate:\n" + "\n".join(problems))
