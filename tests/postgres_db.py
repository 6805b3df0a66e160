"""A throwaway database on the machine's PostgreSQL (127.0.0.1:5432, trust auth)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg2

PG_URL = "postgresql+psycopg2://postgres@127.0.0.1:5432/{db}"


def _admin():
    conn = psycopg2.connect(host="127.0.0.1", port=5432, user="postgres", dbname="postgres")
    conn.autocommit = True
    return conn


@contextmanager
def fresh_database(prefix: str) -> Iterator[str]:
    """Create `<prefix>_<random>`, yield its name, then drop it (closing its sessions)."""
    db = f"{prefix}_{uuid.uuid4().hex[:10]}"
    conn = _admin()
    with conn.cursor() as cur:
        cur.execute(f'CREATE DATABASE "{db}"')
    conn.close()
    try:
        yield db
    finally:
        conn = _admin()
        with conn.cursor() as cur:
            cur.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s AND "
                "pid <> pg_backend_pid()",
                (db,),
            )
            cur.execute(f'DROP DATABASE IF EXISTS "{db}"')
        conn.close()
