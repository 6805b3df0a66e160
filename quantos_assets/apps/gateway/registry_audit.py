"""Registry writes in the audit trail.

The launch dispatcher and the jobs API register specs on a team's behalf; each write that
changed the registry is recorded with who made it and, for a replacement, the sha256 of
the version it replaced (kept under specs/.registry/history/), so a take-over or a
mistaken replacement can be traced and undone.
"""

from __future__ import annotations

from quantos_assets.spec_registry import Registration
from resources.audit_log import AuditLog


def audit_registration(
    audit: AuditLog,
    actor: str,
    team: str,
    registration: Registration,
    pipeline_id: str,
    spec_sha256: str,
) -> None:
    """A registry write in the audit trail: a new pipeline and its owner, or a replacement
    and the sha256 of the version it replaced (kept under specs/.registry/history/)."""
    if not registration.changed:
        return
    owner = registration.owner or "none"
    if registration.created:
        detail = f"registered new pipeline {pipeline_id} (owner {owner})"
    else:
        detail = (
            f"replaced pipeline {pipeline_id} (owner {owner}); previous file sha256 "
            f"{registration.previous_sha256} kept"
        )
    audit.append(
        actor=actor,
        team=team,
        action="register",
        subject=pipeline_id,
        spec_sha256=spec_sha256,
        decision="accepted",
        detail=detail,
        params={
            "file": registration.path.name,
            "file_sha256": registration.sha256,
            "previous_sha256": registration.previous_sha256,
            "kept": str(registration.kept) if registration.kept else None,
        },
    )
