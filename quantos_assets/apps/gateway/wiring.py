"""The gateway's parts, built once from its settings and shared by every endpoint."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request

from quantos_assets.admission.registry_view import DirectoryRegistry
from quantos_assets.apps.client.submissions import ACTIVE_STATUSES, QuantosClient
from quantos_assets.apps.gateway.active_runs import ActiveRuns
from quantos_assets.apps.gateway.dispatcher import LaunchDispatcher
from quantos_assets.apps.gateway.refusal_log import RefusalLog
from quantos_assets.apps.gateway.settings import GatewaySettings
from quantos_assets.apps.gateway.tokens import TokenStore
from quantos_assets.apps.gateway.usage import GatewayUsage
from quantos_assets.stores.job_store import JobStore
from quantos_assets.stores.submission_store import SubmissionStore
from quantos_assets.tenancy.teams import TeamsFile, load_teams
from resources.audit_log import AuditLog
from resources.run_tag_keys import TAG_TEAM


@dataclass
class Gateway:
    settings: GatewaySettings
    tokens: TokenStore
    store: SubmissionStore
    audit: AuditLog
    refusals: RefusalLog  # refusals go here: bounded, digests only
    client: QuantosClient
    teams: TeamsFile
    jobs: JobStore
    active_runs: ActiveRuns
    dispatcher: LaunchDispatcher
    registry: DirectoryRegistry
    usage: GatewayUsage


def build_gateway(settings: GatewaySettings) -> Gateway:
    store = SubmissionStore.from_url(settings.store_url)
    registry = DirectoryRegistry(settings.specs_dir)
    client = QuantosClient(settings.dagster_url, settings.specs_dir, cluster=settings.cluster)
    audit = settings.audit.writer(store.engine)  # the key and anchor, checked at start
    active_runs = ActiveRuns(lambda team: client.api.count_runs({TAG_TEAM: team}, ACTIVE_STATUSES))
    dispatcher = LaunchDispatcher(
        store=store,
        client=client,
        audit=audit,
        registered=registry.get,
        on_launched=active_runs.launched,
        threads=settings.launch_threads,
        lease=float(settings.launch_lease_seconds),
    )
    return Gateway(
        settings=settings,
        tokens=TokenStore(settings.tokens_path),
        store=store,
        audit=audit,
        refusals=RefusalLog(audit),
        client=client,
        teams=load_teams(settings.teams_path, required=settings.teams_required),
        jobs=JobStore(store.engine),
        active_runs=active_runs,
        dispatcher=dispatcher,
        registry=registry,
        usage=GatewayUsage(active_runs, store, store.quota_window),
    )


def current_gateway(request: Request) -> Gateway:
    """The app's Gateway (create_app keeps it in app.state): a dependency, so the routers
    need no closure over it and one module-level router serves every app."""
    gateway: Gateway = request.app.state.gateway
    return gateway


# An endpoint parameter: the Gateway of the app that received the request.
CurrentGateway = Annotated[Gateway, Depends(current_gateway)]
