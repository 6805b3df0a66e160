"""Where the audit trail lives, what anchors it and where its key comes from, in one place.

The gateway, the runs' promotion gates (resources/audit_trail.py) and `quantos audit`
all write or read the same trail, so all three take it from here:

    QUANTOS_GATEWAY_DB    the store (the gateway's database)
    QUANTOS_AUDIT_ANCHOR  the anchor: an absolute path or s3://BUCKET/PREFIX
                          (default on the embedded profile: $QUANTOS_DATA_DIR/audit.anchor;
                          staging/prod: required, an object-locked bucket)
    QUANTOS_AUDIT_KEY     the HMAC key, never stored in the database (default on the
                          embedded profile: $QUANTOS_DATA_DIR/audit.key, created 0600)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from resources.audit_anchor import Anchor, AnchorError, open_anchor
from resources.audit_key import AuditKeyError, AuditKeySource
from resources.audit_log import AuditError, AuditLog, ChainReport
from resources.profile import Profile
from resources.sql_store import StoreMissingError, StoreURLError, read_only_engine, store_engine


@dataclass(frozen=True)
class AuditSettings:
    url: str | None  # None: no trail configured (staging/prod without QUANTOS_GATEWAY_DB)
    anchor: str | None
    key: AuditKeySource = field(default_factory=AuditKeySource)
    s3_endpoint: str | None = None
    s3_region: str | None = None

    def open_anchor(self) -> Anchor:
        if self.anchor is None:
            raise AuditError(
                "QUANTOS_AUDIT_ANCHOR is not set: staging/prod anchor the audit trail outside its "
                "database, in an object-locked S3 bucket (s3://BUCKET/PREFIX; docs/deployment.md)"
            )
        try:
            return open_anchor(self.anchor, s3_endpoint=self.s3_endpoint, s3_region=self.s3_region)
        except AnchorError as err:
            raise AuditError(str(err)) from None

    def writer(self, engine: object | None = None) -> AuditLog:
        """The trail a gateway or a run appends to (schema, migration and genesis on first use).
        `engine`: the gateway's own store engine, shared with its other tables."""
        from sqlalchemy.engine import Engine

        if self.url is None:
            raise AuditError("no audit trail configured (QUANTOS_GATEWAY_DB)")
        try:
            key = self.key.load(create=True)
        except AuditKeyError as err:
            raise AuditError(str(err)) from None
        anchor = self.open_anchor()  # before the store: a refused writer creates nothing
        db = engine if isinstance(engine, Engine) else store_engine(self.url)
        return AuditLog(db, key=key, anchor=anchor, writer=True)

    def reader(self) -> AuditLog:
        """The trail opened read-only: nothing is created, not even a missing key file."""
        if self.url is None:
            raise AuditError("no audit trail configured (QUANTOS_GATEWAY_DB)")
        try:
            engine = read_only_engine(self.url)
        except (StoreMissingError, StoreURLError) as err:
            raise AuditError(str(err)) from None
        trail = AuditLog(engine, key=None, anchor=self.open_anchor(), writer=False)
        try:
            trail.key = self.key.load(create=False)
        except AuditKeyError as err:
            trail.missing_key = str(err)  # verify says so, after the store and anchor checks
        return trail

    def verify(self) -> ChainReport:
        """Every failure is a report (one line), never an exception."""
        try:
            trail = self.reader()
        except AuditError as err:
            return ChainReport(0, False, problem=str(err))
        return trail.verify()


def audit_settings(env: Mapping[str, str], profile: Profile, url: str | None) -> AuditSettings:
    """`url`: the store (the gateway's QUANTOS_GATEWAY_DB, or the profile's audit_url for runs)."""
    return AuditSettings(
        url=url,
        anchor=env.get("QUANTOS_AUDIT_ANCHOR") or profile.audit_anchor,
        key=AuditKeySource(
            secret=env.get("QUANTOS_AUDIT_KEY") or None, path=profile.audit_key_file
        ),
        s3_endpoint=profile.s3_endpoint,
        s3_region=profile.s3_region,
    )
