"""The gateway's parts, built once from its settings and shared by every endpoint."""
from __future__ import annotations

from dataclasses import dataclass

from quantos_assets.client.submissions import QuantosClient
from quantos_assets.gateway.job_store import JobStore
from quantos_assets.gateway.settings import GatewaySettings
from quantos_assets.gateway.submission_store import SubmissionStore
from quantos_assets.gateway.teams import TeamsFile, load_teams
from quantos_assets.gateway.tokens import TokenStore
from resources.audit_log import AuditLog


@dataclass
class Gateway:
    settings: GatewaySettings
    tokens: TokenStore
    store: SubmissionStore
    audit: AuditLog
    client: QuantosClient
    teams: TeamsFile
    jobs: JobStore


def build_gateway(settings: GatewaySettings) -> Gateway:
    store = SubmissionStore.from_url(settings.store_url)
    return Gateway(
        settings=settings,
        tokens=TokenStore(settings.tokens_path),
        store=store,
        audit=AuditLog(store.engine),
        client=QuantosClient(settings.dagster_url, settings.specs_dir, production=settings.production),
        teams=load_teams(settings.teams_path),
        jobs=JobStore(store.engine),
    )
