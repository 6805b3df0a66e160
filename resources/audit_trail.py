"""The audit trail as a Dagster resource, for decisions made inside runs (promotion gates).

The gateway appends submissions to the same hash-chained trail (resources/audit_log.py);
runs append their own decisions to it, so one chain answers "who put this model in prod,
on what evidence". `url=None` means no trail is configured: the decisions then live in
Dagster's event log only.

The HMAC key is not a field: resource config is stored with every run and shown in the
UI. The step reads it from its own environment when it writes (QUANTOS_AUDIT_KEY, which in
staging/prod only the gate steps get, from the `quantos-audit` Secret), else on the embedded
default from `key_file`, the same file the gateway uses.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from dagster import ConfigurableResource
from pydantic import PrivateAttr

from resources.audit_key import AuditKeySource
from resources.audit_log import AuditLog
from resources.audit_settings import AuditSettings


class AuditTrail(ConfigurableResource):
    """`url`: sqlite:///PATH or postgresql+psycopg2://... (the gateway's QUANTOS_GATEWAY_DB);
    `anchor`: a path or s3://BUCKET/PREFIX (QUANTOS_AUDIT_ANCHOR)."""

    url: str | None = None
    anchor: str | None = None
    key_file: str | None = None
    s3_endpoint: str | None = None
    s3_region: str | None = None

    _log: Any = PrivateAttr(default=None)

    @property
    def configured(self) -> bool:
        return self.url is not None

    def log(self) -> AuditLog | None:
        """The trail (schema created on first use), or None when none is configured.
        Raises AuditError (one line) when it is configured but has no key or anchor."""
        if self.url is None:
            return None
        if self._log is None:
            settings = AuditSettings(
                url=self.url,
                anchor=self.anchor,
                key=AuditKeySource(
                    secret=os.environ.get("QUANTOS_AUDIT_KEY") or None,
                    path=Path(self.key_file) if self.key_file else None,
                ),
                s3_endpoint=self.s3_endpoint,
                s3_region=self.s3_region,
            )
            self._log = settings.writer()
        return self._log
