"""Which spec a request means, and whether its caller may run it.

A pipeline belongs to the team its spec names (`labels.team` or `owner`); the registered
spec's owner wins over a submitted one, so no team can take over another's pipeline by
re-labelling it. `secrets_scope` may name only the scopes deploy/teams.yaml grants.
"""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from quantos_assets.client.submissions import parse_spec
from quantos_assets.gateway.auth import ApiError
from quantos_assets.gateway.teams import pipeline_team
from quantos_assets.gateway.tokens import Principal
from quantos_assets.gateway.wiring import Gateway
from quantos_assets.spec.errors import SpecError
from quantos_assets.spec.loader import LoadedSpec

# "Give exactly one of dag_spec or spec_ref", said in the request bodies' JSON Schema too, so
# a client validating against the OpenAPI document knows that `{}` is refused.
ONE_SPEC_SOURCE: dict[str, Any] = {
    "oneOf": [
        {"required": ["dag_spec"], "properties": {"dag_spec": {"type": "object"}}},
        {"required": ["spec_ref"], "properties": {"spec_ref": {"type": "string"}}},
    ]
}


def resolve_spec(gw: Gateway, dag_spec: dict[str, Any] | None, spec_ref: str | None) -> LoadedSpec:
    """The spec a request names: inline (validated) or registered (by pipeline_id)."""
    if (dag_spec is None) == (spec_ref is None):
        raise ApiError(422, "give exactly one of dag_spec (the spec) or spec_ref (a registered pipeline_id)")
    if dag_spec is not None:
        try:
            return parse_spec(dag_spec)
        except SpecError as err:
            raise ApiError(422, f"invalid dag_spec ({len(err.lines)} problems)", err.lines) from None
    loaded = registered_specs(gw.settings.specs_dir).get(str(spec_ref))
    if loaded is None:
        raise ApiError(404, f"unknown pipeline {spec_ref!r}: no valid spec with that pipeline_id in the registry")
    return loaded


def registered_specs(directory: Path) -> dict[str, LoadedSpec]:
    """The registry by pipeline_id, re-scanned only when a file changed."""
    from quantos_assets.spec_registry import scan_specs, spec_files

    stamp = tuple((p.name, p.stat().st_mtime_ns) for p in spec_files(directory))
    cached = _REGISTRY_CACHE.get(directory)
    if cached is None or cached[0] != stamp:
        cached = (stamp, {s.spec.pipeline_id: s for s in scan_specs(directory).valid})
        _REGISTRY_CACHE[directory] = cached
    return cached[1]


_REGISTRY_CACHE: dict[Path, tuple[tuple[tuple[str, int], ...], dict[str, LoadedSpec]]] = {}


def spec_owner(loaded: LoadedSpec) -> str | None:
    return pipeline_team(loaded.spec.labels)


def authorize(
    gw: Gateway,
    who: Principal,
    loaded: LoadedSpec,
    secrets_scope: list[str],
    labels: dict[str, str],
    allowed_scopes: list[str],
    reject: Callable[..., ApiError],
) -> None:
    if "admin" in who.scopes:
        return
    owner = spec_owner(loaded)
    if owner is not None and owner != who.team:
        raise reject(403, f"pipeline {loaded.spec.pipeline_id!r} belongs to team {owner}, not {who.team}")
    registered = registered_specs(gw.settings.specs_dir).get(loaded.spec.pipeline_id)
    registered_owner = spec_owner(registered) if registered is not None else None
    if registered_owner is not None and registered_owner != who.team:
        raise reject(403, f"pipeline {loaded.spec.pipeline_id!r} is registered by team {registered_owner}")
    forbidden = sorted(set(secrets_scope) - set(allowed_scopes))
    if forbidden:
        raise reject(403, f"secrets_scope {forbidden} is not granted to team {who.team}")
    claimed = labels.get("team")
    if claimed is not None and claimed != who.team:
        raise reject(403, f"runtime_params.labels.team is {claimed!r} but the token belongs to team {who.team}")


def rejecter(
    gw: Gateway, who: Principal, action: str, subject: str, spec_sha256: str | None, params: dict[str, Any]
) -> Callable[..., ApiError]:
    """`reject(status, message, headers)`: audit the refused decision, return the answer to raise."""

    def reject(status: int, message: str, headers: dict[str, str] | None = None) -> ApiError:
        gw.audit.append(
            actor=who.token_id, team=who.team, action=action, subject=subject,
            spec_sha256=spec_sha256, params=params, decision="rejected", detail=message,
        )
        return ApiError(status, message, headers=headers)

    return reject


T = TypeVar("T")


def owned(who: Principal, what: str, ident: str, found: T | None, team: Callable[[T], str]) -> T:
    """`found` if the caller's team owns it (or is admin): 404 if missing, 403 if another team's."""
    if found is None:
        raise ApiError(404, f"no {what} {ident!r}")
    if team(found) != who.team and "admin" not in who.scopes:
        raise ApiError(403, f"{what} {ident!r} belongs to another team")
    return found
