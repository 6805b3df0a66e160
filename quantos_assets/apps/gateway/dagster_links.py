"""Links from the gateway's pages into the Dagster UI (the webserver at QUANTOS_DAGSTER_URL)."""

from __future__ import annotations

from urllib.parse import urlencode, urlsplit, urlunsplit

from resources.run_tag_keys import TAG_JOB


def ui_base(dagster_url: str) -> str:
    """The webserver's URL for a browser: without the user:password the gateway may use to
    reach it through a proxy (a page must never carry credentials)."""
    parts = urlsplit(dagster_url)
    host = parts.hostname or ""
    if ":" in host:  # an IPv6 literal
        host = f"[{host}]"
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, netloc, parts.path.rstrip("/"), "", ""))


def job_runs_url(dagster_url: str, job_id: str) -> str:
    """The Dagster UI's runs page filtered by the job's tag (each firing and retry of a
    scheduled job is a run tagged `quantos/job_id`)."""
    query = urlencode({"q[]": f"tag:{TAG_JOB}={job_id}"})
    return f"{ui_base(dagster_url)}/runs?{query}"
