"""Which spec and params a request means, and the admission policy asked on the caller's behalf.

Who may do what is decided by the one admission policy (quantos_assets/admission/), which
every other path (scheduled job firings, Kafka, the CLI) asks too; here a gateway request
becomes an `AdmissionRequest`, and a refusal becomes the audited 4xx the caller sees.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from quantos_assets.admission.policy import admit
from quantos_assets.admission.request import Action, AdmissionRequest, Caller
from quantos_assets.apps.client.submissions import parse_params, parse_spec
from quantos_assets.apps.gateway.auth import ApiError
from quantos_assets.apps.gateway.tokens import Principal
from quantos_assets.apps.gateway.usage import GatewayUsage
from quantos_assets.apps.gateway.wiring import Gateway
from quantos_assets.spec.errors import SpecError
from quantos_assets.spec.loader import LoadedSpec
from quantos_assets.spec.models import DagSpec, RuntimeParams

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
        raise ApiError(
            422, "give exactly one of dag_spec (the spec) or spec_ref (a registered pipeline_id)"
        )
    if dag_spec is not None:
        try:
            return parse_spec(dag_spec)
        except SpecError as err:
            raise ApiError(
                422, f"invalid dag_spec ({len(err.lines)} problems)", err.lines
            ) from None
    loaded = gw.registry.get(str(spec_ref))
    if loaded is None:
        raise ApiError(
            404,
            f"unknown pipeline {spec_ref!r}: no valid spec with that pipeline_id in the registry",
        )
    return loaded


def resolve_params(raw: dict[str, Any]) -> RuntimeParams:
    """The runtime params a request gives, validated: 422 with one line per problem."""
    try:
        return parse_params(raw)
    except SpecError as err:
        raise ApiError(422, "invalid runtime_params", err.lines) from None


def caller(who: Principal) -> Caller:
    return Caller(team=who.team, actor=who.token_id, admin="admin" in who.scopes)


def admission(
    gw: Gateway,
    who: Principal,
    action: Action,
    spec: DagSpec | None,
    params: RuntimeParams | None,
    reject: Callable[..., ApiError],
    usage: GatewayUsage | None = None,
) -> None:
    """Ask the admission policy; a refusal is audited and raised as its 4xx (429s with
    Retry-After). `usage`: the counts as read through the request's snapshot."""
    request = AdmissionRequest(
        action=action,
        caller=caller(who),
        teams=gw.teams,
        spec=spec,
        params=params,
        registry=gw.registry,
        usage=usage or gw.usage,
    )
    refused = admit(request)
    if refused is not None:
        raise reject(refused.status, refused.line, refused.headers())


def take_slot(
    gw: Gateway, team: str, action: str, subject: str, reject: Callable[..., ApiError]
) -> None:
    """Count an admitted request in the team's per-minute window (shared by submissions,
    retries, scheduled jobs and their firings); 429 if the window filled meanwhile."""
    limit = gw.teams.policy(team).submissions_per_minute
    wait = gw.store.quota_window.take_now(team, limit, action, subject)
    if wait is not None:
        raise reject(
            429, f"team {team} reached {limit} submissions per minute", {"Retry-After": str(wait)}
        )


def rejecter(
    gw: Gateway,
    who: Principal,
    action: str,
    subject: str,
    spec_sha256: str | None,
    params: dict[str, Any],
) -> Callable[..., ApiError]:
    """`reject(status, message, headers)`: audit the refused decision, return the answer to raise.

    The trail keeps `params` (what was sent) as its sha256 and size only
    (gateway/refusal_log.py)."""

    def reject(status: int, message: str, headers: dict[str, str] | None = None) -> ApiError:
        gw.refusals.refused(
            actor=who.token_id,
            team=who.team,
            action=action,
            subject=subject,
            spec_sha256=spec_sha256,
            request=params,
            detail=message,
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
