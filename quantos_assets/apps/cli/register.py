"""`quantos register SPEC --team T`: write a spec to the registry as a team, admitted and audited.

The CLI's registry write goes through the same admission policy as a submission (owner, team
label, unique names, entrypoint allow-list) and the registry's own locked check, keeps the
replaced version, and appends a `register` record to the audit trail. Writing a file into the
registry folder by hand is the operator's way around all of that; this is the team's way.
"""

from __future__ import annotations

import argparse
import getpass
import sys
from pathlib import Path

EXIT_OK, EXIT_INVALID = 0, 1


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    r = sub.add_parser(
        "register",
        help=(
            "put a spec in the registry (QUANTOS_SPECS_DIR) as a team: admitted, old version "
            "kept, audited"
        ),
    )
    r.add_argument("path", type=Path, help="a spec file (.yaml, .yml, .json)")
    r.add_argument("--team", required=True, help="the team registering it (it owns a new pipeline)")
    r.add_argument(
        "--admin", action="store_true", help="replace a pipeline of another team (operators)"
    )
    r.add_argument(
        "--reload",
        action="store_true",
        help="then reload the code location serving the pipeline, and only it (Dagster at "
        "QUANTOS_DAGSTER_URL or --dagster-url)",
    )
    r.add_argument("--dagster-url", help="the Dagster webserver for --reload")
    r.set_defaults(handler=cmd_register)


def cmd_register(args: argparse.Namespace) -> int:
    from quantos_assets.admission.policy import admit
    from quantos_assets.admission.registry_view import DirectoryRegistry
    from quantos_assets.admission.request import Action, AdmissionRequest, Caller
    from quantos_assets.apps.client.submissions import spec_digest
    from quantos_assets.apps.gateway.registry_audit import audit_registration
    from quantos_assets.apps.gateway.settings import gateway_settings
    from quantos_assets.spec_registry import RegistryRefusal, register_spec
    from quantos_assets.spec_rules.firm import load_spec
    from quantos_assets.tenancy.teams import load_teams

    loaded = load_spec(args.path)  # SpecError: the validator's lines, exit 1
    settings = gateway_settings()
    actor = f"cli:{getpass.getuser()}"
    request = AdmissionRequest(
        action=Action.REGISTER,
        caller=Caller(team=args.team, actor=actor, admin=args.admin),
        teams=load_teams(settings.teams_path, required=settings.teams_required),
        spec=loaded.spec,
        registry=DirectoryRegistry(settings.specs_dir),
    )
    refused = admit(request)
    try:
        if refused is not None:
            raise RegistryRefusal(refused.code, refused.status, refused.line)
        registration = register_spec(settings.specs_dir, loaded, team=args.team, admin=args.admin)
    except RegistryRefusal as refusal:
        print(f"quantos: register refused ({refusal.code}): {refusal}", file=sys.stderr)
        return EXIT_INVALID
    digest = spec_digest(loaded.spec)
    audit_registration(
        settings.audit.writer(), actor, args.team, registration, loaded.spec.pipeline_id, digest
    )
    if not registration.changed:
        print(
            f"unchanged  {registration.path}  ({loaded.spec.pipeline_id}, owner "
            f"{registration.owner or 'none'})"
        )
        return EXIT_OK
    what = (
        "registered" if registration.created else f"replaced (previous kept at {registration.kept})"
    )
    print(
        f"{what}  {registration.path}  ({loaded.spec.pipeline_id}, owner "
        f"{registration.owner or 'none'})"
    )
    return _serve(args, loaded.spec.pipeline_id)


def _serve(args: argparse.Namespace, pipeline_id: str) -> int:
    """Reload the pipeline's code location (--reload), or say which one to reload."""
    from quantos_assets.apps.cli.registry import registry_locations, reload_locations
    from resources.profile import active_profile

    location = registry_locations().location_of(pipeline_id)
    if location is None:  # the registry no longer lists it: written over meanwhile
        print(f"quantos: error: {pipeline_id} is not in the registry any more", file=sys.stderr)
        return EXIT_INVALID
    if not args.reload:
        print(
            f"reload code location {location} to serve it (quantos registry reload --pipeline "
            f"{pipeline_id}, the UI's Deployment page, or a gateway submission)",
            file=sys.stderr,
        )
        return EXIT_OK
    return reload_locations(args.dagster_url or active_profile().dagster_url, [location])
