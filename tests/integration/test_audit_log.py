"""The audit trail's key and anchor: every tampering of issue 16 (defect 5) is a failure.

On SQLite and on the real PostgreSQL (127.0.0.1:5432), with the local file anchor; and with
the production anchor, an object-locked bucket on moto's S3 server on loopback. The attacker
here holds the database (DDL rights), not the key and not the anchor.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
import sqlalchemy as sa
from moto_s3 import REGION, s3_server
from postgres_db import PG_URL, fresh_database

from quantos_assets.apps.gateway.refusal_log import RefusalLog
from resources.audit_anchor import FileAnchor
from resources.audit_key import AuditKeySource
from resources.audit_log import GENESIS, AuditLog, bounded, content_digest, record_hash
from resources.audit_settings import AuditSettings
from resources.sql_store import store_engine

pytestmark = pytest.mark.integration

KEY = "k" * 40


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'gateway.db'}"
    else:
        with fresh_database("quantos_audit_test") as db:
            yield PG_URL.format(db=db)


def _settings(
    url: str, root: Path, anchor: str | None = None, secret: str | None = None
) -> AuditSettings:
    return AuditSettings(
        url,
        anchor or str(root / "audit.anchor"),
        AuditKeySource(secret=secret, path=root / "audit.key"),
    )


def _fill(trail: AuditLog, n: int) -> None:
    for i in range(n):
        trail.append(
            actor="tok",
            team="research",
            action="submit",
            subject=f"s{i}",
            decision="accepted",
            params={"i": i},
        )


def _unguarded(conn: sa.Connection) -> None:
    """What an attacker with DDL rights does first: switch the append-only triggers off."""
    if conn.dialect.name == "postgresql":
        conn.execute(sa.text("ALTER TABLE quantos_audit DISABLE TRIGGER quantos_audit_no_change"))
    else:
        conn.execute(sa.text("DROP TRIGGER quantos_audit_no_update"))
        conn.execute(sa.text("DROP TRIGGER quantos_audit_no_delete"))


def _rewrite_and_rehash(
    conn: sa.Connection, change: dict[str, Any], drop_hmac: bool = False
) -> None:
    """Change every record and recompute every hash of the chain, as someone without the key can."""
    rows = [
        dict(r._mapping) for r in conn.execute(sa.text("SELECT * FROM quantos_audit ORDER BY seq"))
    ]
    prev = GENESIS
    for row in rows:
        row.update(change)
        fields = {
            k: row[k]
            for k in (
                "seq",
                "at",
                "actor",
                "team",
                "action",
                "subject",
                "spec_sha256",
                "params",
                "decision",
                "detail",
            )
        }
        digest = record_hash(prev, fields)
        conn.execute(
            sa.text(
                "UPDATE quantos_audit SET actor = :actor, decision = :decision, prev_hash = "
                ":prev, hash = :hash" + (", hmac = NULL" if drop_hmac else "") + " WHERE seq = :seq"
            ),
            {
                "actor": row["actor"],
                "decision": row["decision"],
                "prev": prev,
                "hash": digest,
                "seq": row["seq"],
            },
        )
        prev = digest


TAMPERING = {
    "delete the last record": (
        lambda c: c.execute(sa.text("DELETE FROM quantos_audit WHERE seq = 12")),
        None,
        (
            "truncated: the store ends at record 11 but the anchor holds record 12 (1 record "
            "deleted from the end"
        ),
    ),
    "delete the last five": (
        lambda c: c.execute(sa.text("DELETE FROM quantos_audit WHERE seq > 7")),
        None,
        (
            "truncated: the store ends at record 7 but the anchor holds record 12 (5 records "
            "deleted from the end"
        ),
    ),
    "delete every record": (
        lambda c: c.execute(sa.text("DELETE FROM quantos_audit")),
        None,
        "truncated: the store holds no records but the anchor holds record 12",
    ),
    "drop the table": (
        lambda c: c.execute(sa.text("DROP TABLE quantos_audit")),
        None,
        (
            "the store has no audit table (quantos_audit was dropped, or the store was wiped or "
            "replaced)"
        ),
    ),
    "rewrite and re-hash the whole chain": (
        lambda c: _rewrite_and_rehash(c, {"decision": "accepted", "actor": "someone-else"}),
        1,
        "its HMAC does not match: the record was rewritten (and re-hashed) without the audit key",
    ),
    "rewrite, re-hash and remove the HMACs": (
        lambda c: _rewrite_and_rehash(c, {"actor": "someone-else"}, drop_hmac=True),
        1,
        "it has no HMAC (written without the audit key, or its HMAC was removed)",
    ),
}


@pytest.mark.parametrize("attack", list(TAMPERING))
def test_each_tampering_of_the_store_is_a_failure(
    store_url: str, tmp_path: Path, attack: str
) -> None:
    settings = _settings(store_url, tmp_path)
    _fill(settings.writer(), 12)
    ok = settings.verify()
    assert ok.ok and ok.records == 12 and ok.anchored_seq == 12 and ok.note is None, ok

    tamper, bad_seq, problem = TAMPERING[attack]
    with store_engine(store_url).begin() as conn:
        if attack != "drop the table":
            _unguarded(conn)
        tamper(conn)
    report = settings.verify()
    assert not report.ok and report.first_bad_seq == bad_seq, report
    assert report.problem is not None and report.problem.startswith(problem), report.problem


def test_a_missing_store_is_a_failure_and_verify_creates_nothing(tmp_path: Path) -> None:
    data = tmp_path / "data"
    report = _settings(f"sqlite:///{data / 'gateway.db'}", data).verify()
    assert (
        not report.ok
        and report.problem
        == f"the store {data / 'gateway.db'} does not exist (wiped or moved? QUANTOS_GATEWAY_DB)"
    )
    assert not data.exists()  # no database, no key file, no anchor, not even the folder

    settings = _settings(f"sqlite:///{data / 'gateway.db'}", data)
    _fill(settings.writer(), 3)
    (data / "gateway.db").unlink()  # wiped
    assert (
        settings.verify().problem
        == f"the store {data / 'gateway.db'} does not exist (wiped or moved? QUANTOS_GATEWAY_DB)"
    )
    assert not (data / "gateway.db").exists()


def test_a_missing_postgres_database_is_a_failure_and_is_not_created() -> None:
    url = PG_URL.format(db="quantos_audit_never_created")
    report = AuditSettings(url, "/nonexistent/audit.anchor", AuditKeySource(secret=KEY)).verify()
    assert not report.ok and report.problem is not None
    assert (
        report.problem.startswith("cannot read the store: ")
        and 'database "quantos_audit_never_created" does not exist' in report.problem
    )


def test_anchor_lost_replaced_or_keyed_otherwise_is_a_failure(
    store_url: str, tmp_path: Path
) -> None:
    settings = _settings(store_url, tmp_path)
    _fill(settings.writer(), 4)
    anchor = tmp_path / "audit.anchor"
    assert (
        oct(anchor.stat().st_mode & 0o777) == "0o600"
        and oct((tmp_path / "audit.key").stat().st_mode & 0o777) == "0o600"
    )

    other_key = AuditSettings(store_url, str(anchor), AuditKeySource(secret=KEY)).verify()
    assert not other_key.ok and other_key.problem is not None
    assert (
        other_key.problem.startswith("the audit key (QUANTOS_AUDIT_KEY, id ")
        and "is not the key this trail was started with" in other_key.problem
    )

    kept = anchor.read_bytes()
    anchor.unlink()
    missing = settings.verify()
    assert (
        missing.problem
        == f"the anchor {anchor} does not exist: the end of the chain cannot be proven (4 "
        "records in the store)"
    )
    assert not anchor.exists()

    # The anchor deleted, the store truncated, then writers go on: the new anchor has no genesis.
    with store_engine(store_url).begin() as conn:
        _unguarded(conn)
        conn.execute(sa.text("DELETE FROM quantos_audit WHERE seq > 2"))
    restarted = settings.writer()  # a gateway starting on it: logs the loss, re-creates nothing
    assert not anchor.exists()
    _fill(restarted, 1)
    lost = settings.verify()
    assert (
        lost.problem
        == f"the anchor {anchor} has no genesis record: it was deleted and started again, or "
        "replaced"
    )

    anchor.write_bytes(kept)  # the anchor restored from its backup: the truncation shows
    restored = settings.verify()
    assert restored.problem == (
        "truncated: the store ends at record 3 but the anchor holds record 4 (1 record deleted "
        "from the end, or the store was wiped)"
    )
    _fill(restarted, 1)  # and once the store is as long again, the anchor holds two records 4
    rewritten = settings.verify()
    assert rewritten.problem == (
        f"the anchor {anchor} holds two different heads for record 4 (the store was wiped or "
        "replaced and written again)"
    )


def test_a_trail_written_before_the_key_is_anchored_at_first_start(
    store_url: str, tmp_path: Path
) -> None:
    """The previous release's table (no hmac column) with records: the first writer adds the
    column and anchors the current head; those records are then held by the hash chain and that
    head, and every later record by its HMAC."""
    engine = store_engine(store_url)
    with engine.begin() as conn:
        conn.exec_driver_sql(
            "CREATE TABLE quantos_audit (seq INTEGER PRIMARY KEY, at VARCHAR(40) NOT NULL, actor "
            "VARCHAR(200) NOT NULL, "
            "team VARCHAR(200) NOT NULL, action VARCHAR(60) NOT NULL, subject VARCHAR(300) NOT "
            "NULL, spec_sha256 VARCHAR(64), "
            "params TEXT NOT NULL, decision VARCHAR(60) NOT NULL, detail TEXT NOT NULL, prev_hash "
            "VARCHAR(64) NOT NULL, "
            "hash VARCHAR(64) NOT NULL)"
        )
        prev = GENESIS
        for seq in range(1, 6):
            fields = {
                "seq": seq,
                "at": f"2026-01-0{seq}T00:00:00+00:00",
                "actor": "old",
                "team": "research",
                "action": "submit",
                "subject": f"old{seq}",
                "spec_sha256": None,
                "params": "{}",
                "decision": "accepted",
                "detail": "",
            }
            digest = record_hash(prev, fields)
            conn.execute(
                sa.text(
                    "INSERT INTO quantos_audit VALUES (:seq, :at, :actor, :team, :action, "
                    ":subject, :spec_sha256, :params, "
                    ":decision, :detail, :prev, :hash)"
                ),
                {**fields, "prev": prev, "hash": digest},
            )
            prev = digest
    settings = _settings(store_url, tmp_path)
    trail = settings.writer()
    genesis = FileAnchor(tmp_path / "audit.anchor").genesis()
    assert (
        genesis is not None
        and (genesis.seq, genesis.hash) == (5, prev)
        and "records 1-5 were written before" in genesis.note
    )
    _fill(trail, 2)
    report = settings.verify()
    assert report.ok and report.records == 7 and report.anchored_seq == 7, report
    assert report.note == "records 1-5 predate the audit key (hash chain only)"
    assert [r.hmac is None for r in trail.records()] == [True] * 5 + [False] * 2

    with engine.begin() as conn:  # a pre-key record edited: the chain and the anchored head say so
        _unguarded(conn)
        conn.execute(sa.text("UPDATE quantos_audit SET decision = 'rejected' WHERE seq = 2"))
    broken = settings.verify()
    assert (
        not broken.ok
        and broken.first_bad_seq == 2
        and broken.problem == "its content was changed after it was written"
    )


def test_appends_from_two_writers_in_two_processes_lose_no_head(tmp_path: Path) -> None:
    """The gateway and a run's gates are two processes on one store and one anchor file."""
    import subprocess
    import sys

    url = f"sqlite:///{tmp_path / 'gateway.db'}"
    settings = _settings(url, tmp_path)
    settings.writer()  # the genesis, once
    script = (
        "import sys\nfrom pathlib import Path\n"
        "from resources.audit_key import AuditKeySource\nfrom resources.audit_settings import "
        "AuditSettings\n"
        f"s = AuditSettings({url!r}, {str(tmp_path / 'audit.anchor')!r}, "
        f"AuditKeySource(path=Path({str(tmp_path / 'audit.key')!r})))\n"
        "w = s.writer()\n"
        "for i in range(25): w.append(actor=sys.argv[1], team='t', action='a', subject=str(i), "
        "decision='ok')\n"
    )
    repo = Path(__file__).resolve().parents[2]
    procs = [
        subprocess.Popen([sys.executable, "-c", script, name], cwd=repo)
        for name in ("gateway", "gates")
    ]
    assert [p.wait(timeout=120) for p in procs] == [0, 0]
    report = settings.verify()
    assert report.ok and report.records == 50 and report.anchored_seq == 50, report
    lines = (tmp_path / "audit.anchor").read_text().splitlines()
    assert sorted(json.loads(line)["seq"] for line in lines[1:]) == list(range(1, 51))


def test_a_refusal_is_kept_as_digest_and_size_and_a_team_is_bounded(tmp_path: Path) -> None:
    trail = _settings(f"sqlite:///{tmp_path / 'gateway.db'}", tmp_path).writer()
    now = [1000.0]
    refusals = RefusalLog(trail, per_minute=5, clock=lambda: now[0])
    big = {"refs": {"blob": "x" * 900_000}}
    for i in range(12):
        refusals.refused(
            actor="tok",
            team="flood",
            action="submit",
            subject=f"f{i}",
            detail="d" * 5000,
            request=big,
        )
    refusals.refused(
        actor="tok2", team="calm", action="submit", subject="c0", detail="no", request={"a": 1}
    )
    records = trail.records()
    flood = [r for r in records if r.team == "flood"]
    assert [r.decision for r in flood] == ["rejected"] * 5 + [
        "counted"
    ]  # 5 recorded, then one line says the rest are counted
    first = flood[0]
    assert (
        json.loads(first.params) == {"request": content_digest(big)}
        and content_digest(big)["bytes"] > 900_000
    )
    assert len(first.detail) < 1100 and first.detail.endswith("(5000 characters, cut)")
    assert [r.team for r in records].count("calm") == 1  # another team is not held back by it
    now[0] += 61
    refusals.refused(
        actor="tok", team="flood", action="submit", subject="f-next", detail="again", request=big
    )
    tail = [r for r in trail.records() if r.team == "flood"][-2:]
    assert (tail[0].decision, tail[1].decision, tail[1].subject) == (
        "counted",
        "rejected",
        "f-next",
    )
    assert tail[0].detail.startswith("7 more refusals of team flood in a minute were counted")
    size = sum(len(r.params) + len(r.detail) for r in trail.records())
    assert size < 10_000, size

    assert bounded({"a": 1}) == {"a": 1}
    assert bounded(big)["digest"] == content_digest(big)


def _locked_bucket(endpoint: str, bucket: str, lock: bool = True) -> None:
    s3 = boto3.client("s3", endpoint_url=endpoint, region_name=REGION)
    s3.create_bucket(Bucket=bucket, ObjectLockEnabledForBucket=lock)
    if lock:
        s3.put_object_lock_configuration(
            Bucket=bucket,
            ObjectLockConfiguration={
                "ObjectLockEnabled": "Enabled",
                "Rule": {"DefaultRetention": {"Mode": "COMPLIANCE", "Days": 1}},
            },
        )


def _s3_settings(url: str, endpoint: str, bucket: str = "audit-anchor") -> AuditSettings:
    return AuditSettings(
        url,
        f"s3://{bucket}/quantos/prod",
        AuditKeySource(secret=KEY),
        s3_endpoint=endpoint,
        s3_region=REGION,
    )


def test_the_s3_anchor_keeps_every_head_of_concurrent_gateways_and_shows_deletion() -> None:
    with fresh_database("quantos_audit_s3") as db, s3_server() as endpoint:
        url = PG_URL.format(db=db)
        _locked_bucket(endpoint, "audit-anchor")
        _locked_bucket(endpoint, "unlocked", lock=False)
        unlocked = _s3_settings(url, endpoint, "unlocked")
        with pytest.raises(
            Exception,
            match=(
                r"^audit anchor s3://unlocked/quantos/prod: bucket unlocked needs object lock "
                r"with a default retention"
            ),
        ):
            unlocked.writer()

        settings = _s3_settings(url, endpoint)
        gateways = [settings.writer() for _ in range(3)]  # three replicas, each its own S3 client

        def worker(trail: AuditLog) -> None:
            _fill(trail, 10)

        threads = [threading.Thread(target=worker, args=(g,)) for g in gateways]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        report = settings.verify()
        assert report.ok and report.records == 30 and report.anchored_seq == 30, report
        s3 = boto3.client("s3", endpoint_url=endpoint, region_name=REGION)
        keys = [
            o["Key"]
            for o in s3.list_objects_v2(Bucket="audit-anchor", Prefix="quantos/prod/heads/")[
                "Contents"
            ]
        ]
        assert len(keys) == 30 and keys[0] == "quantos/prod/heads/999999999969.json"  # newest first

        # The locked head cannot be deleted; a delete marker that hides it is seen.
        version = s3.list_object_versions(Bucket="audit-anchor", Prefix=keys[0])["Versions"][0][
            "VersionId"
        ]
        with pytest.raises(s3.exceptions.ClientError, match="AccessDenied"):
            s3.delete_object(Bucket="audit-anchor", Key=keys[0], VersionId=version)
        with store_engine(url).begin() as conn:
            _unguarded(conn)
            conn.execute(sa.text("DELETE FROM quantos_audit WHERE seq > 27"))
        truncated = settings.verify()
        assert truncated.problem is not None and truncated.problem.startswith(
            "truncated: the store ends at record 27 but the anchor holds record 30 (3 records "
            "deleted"
        )
        s3.delete_object(Bucket="audit-anchor", Key=keys[0])
        hidden = settings.verify()
        assert hidden.problem == (
            "the anchor s3://audit-anchor/quantos/prod: the head of record 30 was deleted or "
            "overwritten (S3 delete marker or second version)"
        )


def test_staging_and_prod_need_the_key_and_the_anchor(tmp_path: Path) -> None:
    from resources.audit_settings import audit_settings
    from resources.profile import active_profile

    env = {
        "QUANTOS_ENV": "prod",
        "QUANTOS_CATALOG_URI": "postgresql+psycopg2://lake@pg/lake",
        "QUANTOS_WAREHOUSE": "s3://lake/w",
        "QUANTOS_ARTIFACTS": "s3://artifacts",
        "QUANTOS_DATA_DIR": str(tmp_path),
    }
    url = f"sqlite:///{tmp_path / 'gateway.db'}"
    with pytest.raises(
        Exception, match=r"^QUANTOS_AUDIT_KEY is not set: staging/prod key the audit trail"
    ):
        audit_settings(env, active_profile(env), url).writer()
    keyed = {**env, "QUANTOS_AUDIT_KEY": KEY}
    with pytest.raises(
        Exception, match=r"^QUANTOS_AUDIT_ANCHOR is not set: staging/prod anchor the audit trail"
    ):
        audit_settings(keyed, active_profile(keyed), url).writer()
    with pytest.raises(Exception, match=r"^QUANTOS_AUDIT_KEY: at least 32 characters"):
        audit_settings({**keyed, "QUANTOS_AUDIT_KEY": "short"}, active_profile(keyed), url).writer()
    assert not (tmp_path / "audit.key").exists() and not os.listdir(tmp_path)
