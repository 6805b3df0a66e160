"""Issue 16, defects 5 and 8: the audit trail against someone who holds its database.

A real `dagster dev` and `quantos gateway` write the trail (submissions, refusals, the
dispatcher's launch); then each tampering the issue found passing `quantos audit verify`
is done to a copy of the gateway's data dir (store, key file, anchor) and verify, run as an
operator runs it, must fail with its one line and exit 1, creating nothing. And a team
flooding refusals with 900 KB of `refs` each grows `gateway.db` by a bounded amount.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from dev_server import REPO, free_port
from gateway_stack import Stack

from resources.audit_log import GENESIS, record_hash

pytestmark = pytest.mark.e2e

REFS_BYTES = 900_000
FLOOD = 25


@pytest.fixture(scope="module")
def stack(security_stack: Stack) -> Stack:
    """The suite's shared stack (tests/security_stack.py), with one launched submission."""
    made = security_stack
    res = made.call(
        "POST",
        "/api/orch/submit",
        json={"spec_ref": "audit_ok", "runtime_params": {"submission_id": "audit-ok-1"}},
    )
    assert res.status_code == 202, res.text
    assert made.wait("audit-ok-1", {"SUCCESS", "FAILURE"})["status"] == "SUCCESS"
    return made


def _store_bytes(data: Path) -> int:
    return sum(p.stat().st_size for p in data.glob("gateway.db*"))


def test_refused_requests_are_kept_as_digest_and_size_bounded(stack: Stack) -> None:
    """Defect 8: 25 requests refused with 429, each with 900 KB of `refs`, grew gateway.db by
    31 MB. Now each refusal is a record of the request's sha256 and size (and the team's
    refusals per minute are capped), so the store grows by kilobytes."""
    before_bytes, before_runs = _store_bytes(stack.data_dir), stack.run_count()
    refs = {"blob": "r" * REFS_BYTES}
    for i in range(FLOOD):
        res = stack.call(
            "POST",
            "/api/orch/submit",
            "frozen",
            json={
                "spec_ref": "audit_frozen",
                "runtime_params": {"submission_id": f"flood-{i}"},
                "refs": refs,
            },
        )
        assert res.status_code == 429, res.text
        assert res.json()["error"] == "team frozen has 0 active runs (limit 0)"
    grown = _store_bytes(stack.data_dir) - before_bytes
    print(
        f"gateway.db (+wal) grew by {grown} bytes for {FLOOD} refusals of {REFS_BYTES} bytes of "
        "refs"
    )
    assert grown < 512 * 1024, f"gateway.db (+wal) grew by {grown} bytes for {FLOOD} refusals"

    shown = stack.cli("audit", "show", "--subject", "flood-0")
    assert shown.returncode == 0, shown.stderr
    (record,) = [json.loads(line) for line in shown.stdout.splitlines()]
    assert (record["decision"], record["team"], record["detail"]) == (
        "rejected",
        "frozen",
        "team frozen has 0 active runs (limit 0)",
    )
    request = json.loads(record["params"])["request"]
    assert (
        set(request) == {"sha256", "bytes"} and request["bytes"] > REFS_BYTES
    )  # the digest, not the content
    assert "r" * 100 not in shown.stdout
    # nothing stored or run for the refused team
    assert stack.call("GET", "/api/orch/submissions", "frozen").json() == []
    assert stack.run_count() == before_runs
    assert stack.cli("audit", "verify").returncode == 0


def _copy(stack: Stack, dest: Path) -> dict[str, str]:
    """The gateway's trail as it is now (the anchor first, then a consistent copy of the
    store), and the environment `quantos audit verify` reads it with."""
    dest.mkdir()
    data = stack.data_dir
    shutil.copy2(data / "audit.anchor", dest / "audit.anchor")
    shutil.copy2(data / "audit.key", dest / "audit.key")
    with sqlite3.connect(data / "gateway.db") as live, sqlite3.connect(dest / "gateway.db") as copy:
        live.backup(copy)
    return {**stack.env, "QUANTOS_DATA_DIR": str(dest)}


def _unguarded(db: Path, sql: Callable[[sqlite3.Connection], object]) -> None:
    with sqlite3.connect(db) as conn:
        conn.execute("DROP TRIGGER IF EXISTS quantos_audit_no_update")
        conn.execute("DROP TRIGGER IF EXISTS quantos_audit_no_delete")
        sql(conn)


def _rewrite_and_rehash(conn: sqlite3.Connection) -> None:
    """Every record's actor replaced, every refusal made 'accepted', every hash recomputed."""
    conn.row_factory = sqlite3.Row
    prev = GENESIS
    for row in [dict(r) for r in conn.execute("SELECT * FROM quantos_audit ORDER BY seq")]:
        row["decision"], row["actor"] = "accepted", "someone-else"
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
            "UPDATE quantos_audit SET decision = ?, actor = ?, prev_hash = ?, hash = ? WHERE seq "
            "= ?",
            ("accepted", "someone-else", prev, digest, row["seq"]),
        )
        prev = digest


def _last(db: Path) -> int:
    with sqlite3.connect(db) as conn:
        return int(conn.execute("SELECT max(seq) FROM quantos_audit").fetchone()[0])


@pytest.mark.parametrize(
    ("attack", "expected"),
    [
        (
            "delete the last record",
            (
                "audit trail FAILED: truncated: the store ends at record {m1} but the anchor holds "
                "record {n} (1 record deleted from the end, or the store was wiped)"
            ),
        ),
        (
            "delete the last five",
            (
                "audit trail FAILED: truncated: the store ends at record {m5} but the anchor holds "
                "record {n} (5 records deleted from the end, or the store was wiped)"
            ),
        ),
        (
            "drop the table",
            (
                "audit trail FAILED: the store has no audit table (quantos_audit was dropped, or "
                "the store was wiped or replaced)"
            ),
        ),
        (
            "rewrite and re-hash the whole chain",
            (
                "audit chain BROKEN at record 1: its HMAC does not match: the record was rewritten "
                "(and re-hashed) without the audit key"
            ),
        ),
        (
            "delete the database",
            (
                "audit trail FAILED: the store {db} does not exist (wiped or moved? "
                "QUANTOS_GATEWAY_DB)"
            ),
        ),
        (
            "delete the anchor",
            (
                "audit trail FAILED: the anchor {anchor} does not exist: the end of the chain "
                "cannot be proven ({n} records in the store)"
            ),
        ),
    ],
)
def test_each_tampering_of_the_trail_fails_verify_with_one_line(
    stack: Stack, tmp_path: Path, attack: str, expected: str
) -> None:
    """Defect 5: each of these printed "audit chain ok"; a missing database printed
    "ok: 0 records" and was created."""
    env = _copy(stack, tmp_path / "trail")
    db, anchor = tmp_path / "trail" / "gateway.db", tmp_path / "trail" / "audit.anchor"
    ok = stack.cli("audit", "verify", env=env)
    n = _last(db)
    assert ok.returncode == 0 and ok.stdout.startswith(
        f"audit chain ok: {n} records, anchored at record {n}"
    ), ok.stdout + ok.stderr

    if attack == "delete the last record":
        _unguarded(db, lambda c: c.execute("DELETE FROM quantos_audit WHERE seq = ?", (n,)))
    elif attack == "delete the last five":
        _unguarded(db, lambda c: c.execute("DELETE FROM quantos_audit WHERE seq > ?", (n - 5,)))
    elif attack == "drop the table":
        _unguarded(db, lambda c: c.execute("DROP TABLE quantos_audit"))
    elif attack == "rewrite and re-hash the whole chain":
        _unguarded(db, _rewrite_and_rehash)
    elif attack == "delete the database":
        for f in db.parent.glob("gateway.db*"):
            f.unlink()
    else:
        anchor.unlink()
    before = _files(db.parent)
    broken = stack.cli("audit", "verify", env=env)
    assert broken.returncode == 1 and broken.stdout == ""
    assert broken.stderr.strip() == expected.format(n=n, m1=n - 1, m5=n - 5, db=db, anchor=anchor)
    assert _files(db.parent) == before  # verify created nothing


def _files(folder: Path) -> list[str]:
    """The folder's files, less SQLite's -wal/-shm: any connection to the (WAL-mode) store,
    read-only ones included, creates them, and only a read-write connection closing last
    removes them. Whether they are there depends on which connection the garbage collector
    closed last (`stack.cli` runs the CLI in this process), not on what verify did."""
    return sorted(p.name for p in folder.iterdir() if not p.name.endswith(("-wal", "-shm")))


def test_verify_of_a_data_dir_that_does_not_exist_creates_nothing(
    stack: Stack, tmp_path: Path
) -> None:
    nowhere = tmp_path / "never"
    res = stack.cli("audit", "verify", env={**stack.env, "QUANTOS_DATA_DIR": str(nowhere)})
    assert res.returncode == 1
    assert (
        res.stderr.strip()
        == f"audit trail FAILED: the store {nowhere / 'gateway.db'} does not exist (wiped or "
        "moved? QUANTOS_GATEWAY_DB)"
    )
    assert not nowhere.exists()


def test_a_gateway_with_another_key_refuses_to_start(stack: Stack) -> None:
    """A gateway that would sign records with a key other than the trail's stops at start."""
    env = {**stack.env, "QUANTOS_AUDIT_KEY": "x" * 64}
    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "quantos_assets.apps.cli.main",
            "gateway",
            "--port",
            str(free_port()),
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=env,
        timeout=120,
        check=False,
    )
    assert res.returncode == 1
    last = res.stderr.strip().splitlines()[-1]
    assert (
        last.startswith("quantos: audit trail: the audit key (QUANTOS_AUDIT_KEY, id ")
        and "is not the key this trail was started with" in last
    )


def test_the_live_store_truncated_under_the_running_gateway_is_caught(stack: Stack) -> None:
    """Last (it changes the stack's own store): the last record deleted in the gateway's
    gateway.db while it runs; verify fails, and the gateway's next records do not hide it."""
    db = stack.data_dir / "gateway.db"
    n = _last(db)
    _unguarded(db, lambda c: c.execute("DELETE FROM quantos_audit WHERE seq = ?", (n,)))
    broken = stack.cli("audit", "verify")
    assert broken.returncode == 1
    assert broken.stderr.strip() == (
        f"audit trail FAILED: truncated: the store ends at record {n - 1} but the anchor holds "
        f"record {n} (1 record deleted from the end, or the store was wiped)"
    )
    res = stack.call(
        "POST",
        "/api/orch/submit",
        "frozen",
        json={"spec_ref": "audit_frozen", "runtime_params": {"submission_id": "after"}},
    )
    assert res.status_code == 429  # the gateway goes on serving; its next record takes seq n again
    again = stack.cli("audit", "verify")
    assert again.returncode == 1 and f"holds two different heads for record {n}" in again.stderr
