"""The gateway's environment, read once at start-up (one place, like resources/profile.py).

QUANTOS_DAGSTER_URL   the Dagster webserver (default http://127.0.0.1:3000)
QUANTOS_API_TOKENS    the token store file (default $QUANTOS_DATA_DIR/api_tokens.json)
QUANTOS_GATEWAY_DB    submissions + audit trail: sqlite:///PATH or postgresql+psycopg2://...
                      (default sqlite:///$QUANTOS_DATA_DIR/gateway.db)
QUANTOS_TEAMS         per-team policy (default deploy/teams.yaml); a file named here must exist
QUANTOS_MAX_BODY_BYTES  largest accepted request body (default 1 MiB)
QUANTOS_LAUNCH_THREADS  submissions launched in Dagster at once (default 4)
QUANTOS_MAX_BACKLOG     accepted-but-unlaunched submissions before new ones get 503 (default 2000)
QUANTOS_AUDIT_ANCHOR, QUANTOS_AUDIT_KEY  the audit trail's anchor and key
                      (resources/audit_settings.py)
QUANTOS_LAUNCH_LEASE_SECONDS  how long a gateway's claim on a launch lasts unless its
                      heartbeat renews it: a gateway that is gone has its launches taken over
                      by the running ones within this (plus a third of it) (default 15)
QUANTOS_JOBS_TICK_SECONDS  how often the code location's gateway_jobs sensor looks for due
                      scheduled jobs (default 15): a job fires at most this late
QUANTOS_PUBLIC_URL      the gateway's address as clients reach it
                        (e.g. https://quantos.example.com), the base of `status_url`; unset:
                        `status_url` is a path (/api/orch/status/ID). Never taken from the
                        request's Host header, which the caller chooses.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from resources.audit_settings import AuditSettings, audit_settings
from resources.profile import Cluster, active_profile
from resources.redaction import install_log_redaction, redact


@dataclass(frozen=True)
class GatewaySettings:
    dagster_url: str
    tokens_path: Path
    store_url: str
    teams_path: Path
    specs_dir: Path
    # where the location's steps run: on pods, launches carry per-step Kubernetes config
    cluster: Cluster
    # QUANTOS_TEAMS was set: a missing file is an error, not "every team gets the defaults"
    teams_required: bool = False
    max_body_bytes: int = 1 << 20
    launch_threads: int = 4
    max_backlog: int = 2000
    # the trail in store_url: its anchor and key (nothing configured: no writer can open it)
    audit: AuditSettings = field(default_factory=lambda: AuditSettings(url=None, anchor=None))
    launch_lease_seconds: int = 15
    jobs_tick_seconds: int = 15
    public_url: str = ""  # no trailing slash; "" -> answers carry paths


def gateway_settings(environ: dict[str, str] | None = None) -> GatewaySettings:
    # QUANTOS_DAGSTER_URL and QUANTOS_GATEWAY_DB may carry passwords: from the moment a
    # process reads them, its log lines are redacted (resources/redaction.py).
    install_log_redaction()
    env = dict(os.environ if environ is None else environ)
    profile = active_profile(env)
    data = profile.data_dir
    store_url = profile.gateway_store_url
    return GatewaySettings(
        dagster_url=env.get("QUANTOS_DAGSTER_URL") or "http://127.0.0.1:3000",
        tokens_path=Path(env.get("QUANTOS_API_TOKENS") or data / "api_tokens.json"),
        store_url=store_url,
        teams_path=profile.teams_file,
        specs_dir=profile.specs_dir,
        cluster=profile.cluster,
        teams_required=profile.teams_file_named,
        max_body_bytes=_positive_int(env, "QUANTOS_MAX_BODY_BYTES", 1 << 20),
        launch_threads=_positive_int(env, "QUANTOS_LAUNCH_THREADS", 4),
        max_backlog=_positive_int(env, "QUANTOS_MAX_BACKLOG", 2000),
        audit=audit_settings(env, profile, store_url),
        launch_lease_seconds=_positive_int(env, "QUANTOS_LAUNCH_LEASE_SECONDS", 15),
        jobs_tick_seconds=profile.jobs_tick_seconds,
        public_url=_public_url(env.get("QUANTOS_PUBLIC_URL") or ""),
    )


def _public_url(raw: str) -> str:
    """An http(s) base URL without credentials, query or fragment ("" when unset)."""
    if not raw:
        return ""
    try:
        parts = urlsplit(raw)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number
        ok = parts.scheme in ("http", "https") and bool(parts.hostname)
        ok = ok and not (parts.username or parts.password or parts.query or parts.fragment)
    except ValueError:
        ok = False
    if not ok:
        raise ValueError(
            f"QUANTOS_PUBLIC_URL: expected http(s)://host[:port][/prefix], got {redact(raw)!r}"
        )
    return raw.rstrip("/")


def _positive_int(env: dict[str, str], name: str, default: int) -> int:
    raw = env.get(name) or str(default)
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"{name}: expected an integer, got {raw!r}") from None
    if value < 1:
        raise ValueError(f"{name}: expected a positive integer, got {raw!r}")
    return value
