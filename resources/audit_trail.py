"""The audit trail as a Dagster resource, for decisions made inside runs (promotion gates).

The gateway appends submissions to the same hash-chained trail (resources/audit_log.py);
runs append their own decisions to it, so one chain answers "who put this model in prod,
on what evidence". `url=None` means no trail is configured: the decisions then live in
Dagster's event log only.
"""
from __future__ import annotations

from typing import Any

from dagster import ConfigurableResource
from pydantic import PrivateAttr

from resources.audit_log import AuditLog


class AuditTrail(ConfigurableResource):
    """`url`: sqlite:///PATH or postgresql+psycopg2://... (the gateway's QUANTOS_GATEWAY_DB)."""

    url: str | None = None

    _log: Any = PrivateAttr(default=None)

    @property
    def configured(self) -> bool:
        return self.url is not None

    def log(self) -> AuditLog | None:
        """The trail (schema created on first use), or None when none is configured."""
        if self.url is None:
            return None
        if self._log is None:
            self._log = AuditLog.from_url(self.url)
        return self._log
