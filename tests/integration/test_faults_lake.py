"""Faults at the lake (issue 9, faults c and d), on real PostgreSQL, moto's S3 server and SQLite.

What an operator would notice: concurrent runs writing one Iceberg table lose no rows; an
object store or catalog database that goes away for a moment fails a write with one line
naming the table, the step's retry (slo.retry) writes it, and no snapshot of the table ever
holds part of a write.

The outages are real network outages: clients talk to S3 and PostgreSQL through a loopback
forwarder (tests/tcp_outage.py) that refuses and resets connections while "down", so the
shared PostgreSQL itself is never stopped.
"""

from __future__ import annotations

import logging
import random
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pytest
from dagster import DagsterEventType, DagsterInstance, ExecuteInProcessResult
from dagster._core.execution.plan.objects import StepRetryData
from dagster._utils.error import SerializableErrorInfo
from moto_s3 import s3_server
from postgres_db import PG_URL, fresh_database
from profiles import LOCAL
from pyiceberg.catalog.sql import SqlCatalog
from tcp_outage import TcpOutage, tcp_outage

from resources.artifact_store import ArtifactStore
from resources.iceberg_tables import LakeTableError, write_partitions
from resources.lake_io_manager import LakeIOManager

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
BUCKET = "lake"


@pytest.fixture
def pg_db() -> Iterator[str]:
    with fresh_database("quantos_faults") as db:
        yield db


# ---------------------------------------------------------------- (c) concurrent writers

WRITERS = 4
COMMITS_PER_WRITER = 8
ROWS = 250

# One writer process (as one run worker would be): waits for the start flag, so all four
# commit at the same moment, then writes its own sessions of one table through the IO
# manager's write path (write_table), keeping 4 snapshots so that expiry runs on every commit.
WRITER = """
import logging, sys, time
from pathlib import Path
import pyarrow as pa
from resources.iceberg_tables import open_sql_catalog, write_table

uri, warehouse, writer, go, commits, rows = sys.argv[1:7]
logging.basicConfig(level=logging.INFO, format="%(name)s %(message)s")
catalog = open_sql_catalog("quantos", uri, warehouse, {})
while not Path(go).exists():
    time.sleep(0.005)
for i in range(int(commits)):
    data = pa.table({"writer": [writer] * int(rows), "seq": list(range(int(rows)))})
    write_table(catalog, ("faults", "ticks"), data, f"{writer}-{i}", snapshots_to_keep=4)
"""


@pytest.mark.parametrize("catalog", ["sqlite", "postgres"])
def test_c_four_concurrent_writers_commit_every_row(catalog: str, tmp_path: Path) -> None:
    with fresh_database("quantos_faults") if catalog == "postgres" else nullcontext(None) as db:
        uri = PG_URL.format(db=db) if db else f"sqlite:///{tmp_path / 'catalog.db'}"
        (tmp_path / "warehouse").mkdir()
        warehouse = (tmp_path / "warehouse").as_uri()
        go = tmp_path / "go"
        procs = [
            subprocess.Popen(
                [
                    sys.executable,
                    "-c",
                    WRITER,
                    uri,
                    warehouse,
                    f"w{w}",
                    str(go),
                    str(COMMITS_PER_WRITER),
                    str(ROWS),
                ],
                cwd=REPO,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
            for w in range(WRITERS)
        ]
        time.sleep(0.5)
        go.touch()
        outputs = [p.communicate(timeout=240)[0] for p in procs]
        for w, (proc, out) in enumerate(zip(procs, outputs, strict=True)):
            assert proc.returncode == 0, f"writer w{w} failed:\n{out[-3000:]}"

        lake = LakeIOManager(
            catalog_uri=uri, warehouse=warehouse, artifact_store=ArtifactStore(root=warehouse)
        )
        table = lake.read_arrow("faults", "ticks", None)
        _close(lake)
        live = SqlCatalog("quantos", uri=uri, warehouse=warehouse).load_table(("faults", "ticks"))
        referenced = {
            Path(task.file.file_path.removeprefix("file://")) for task in live.scan().plan_files()
        }

    # A losing attempt removed the data files it wrote: every file in the table's folder is in
    # the table (only appends here, so nothing was replaced or expired out of it).
    on_disk = {f for f in (tmp_path / "warehouse").rglob("*.parquet") if "metadata" not in f.parts}
    assert on_disk == referenced, f"{len(on_disk - referenced)} orphaned data file(s)"

    expected = {f"w{w}-{i}" for w in range(WRITERS) for i in range(COMMITS_PER_WRITER)}
    counts = table.group_by("partition_key").aggregate([("seq", "count")])
    per_key = dict(
        zip(counts["partition_key"].to_pylist(), counts["seq_count"].to_pylist(), strict=True)
    )
    assert per_key == dict.fromkeys(expected, ROWS), "sessions missing or doubled"
    assert table.num_rows == WRITERS * COMMITS_PER_WRITER * ROWS
    # Each writer's rows are in its own sessions: no write replaced another writer's session.
    for key in expected:
        writers = pc.unique(
            table.filter(pc.equal(table["partition_key"], key))["writer"]
        ).to_pylist()
        assert writers == [key.split("-")[0]]
    # The writers really collided (otherwise this proved nothing) and the losers retried.
    retries = sum(out.count("another writer committed first; retrying") for out in outputs)
    assert retries >= 1, "no commit conflict happened; the writers did not overlap"


# ---------------------------------------------------------------- (d) outages


@dataclass
class Outages:
    """moto's S3 and PostgreSQL behind loopback forwarders that can be taken down."""

    s3: TcpOutage
    pg: TcpOutage
    s3_endpoint: str
    catalog_uri: str
    warehouse: str

    def lake(self, tmp_path: Path) -> LakeIOManager:
        return LakeIOManager(
            catalog_uri=self.catalog_uri,
            warehouse=self.warehouse,
            s3_endpoint=self.s3_endpoint,
            s3_region="us-east-1",
            artifact_store=ArtifactStore(root=str(tmp_path / "artifacts")),
        )


@pytest.fixture
def outages(pg_db: str) -> Iterator[Outages]:
    werkzeug = logging.getLogger("werkzeug")  # moto's request log, a line per S3 call
    level = werkzeug.level
    werkzeug.setLevel(logging.WARNING)
    try:
        with s3_server(BUCKET) as endpoint:
            host, port = endpoint.removeprefix("http://").rsplit(":", 1)
            with tcp_outage(host, int(port)) as s3, tcp_outage("127.0.0.1", 5432) as pg:
                yield Outages(
                    s3=s3,
                    pg=pg,
                    s3_endpoint=f"http://127.0.0.1:{s3.port}",
                    catalog_uri=f"postgresql+psycopg2://postgres@127.0.0.1:{pg.port}/{pg_db}",
                    warehouse=f"s3://{BUCKET}/warehouse",
                )
    finally:
        werkzeug.setLevel(level)


SESSIONS = ("2024-01-02", "2024-01-03", "2024-01-04")
OUTAGES = 4


def _version_table(version: int, rows: int = 400) -> pa.Table:
    return pa.table(
        {"version": pa.array([version] * rows, pa.int64()), "i": pa.array(range(rows), pa.int64())}
    )


def test_d_outages_during_writes_leave_only_whole_snapshots(
    outages: Outages, tmp_path: Path
) -> None:
    """A writer replaces three sessions in one commit, again and again, while S3 and the
    catalog database drop out under it at random moments of a write: each write either fails
    with one line naming the table or commits, and every snapshot the table keeps is one
    whole write."""
    lake = outages.lake(tmp_path)
    catalog = lake.catalog()
    identifier = ("faults", "sessions")
    write_partitions(catalog, identifier, None, {s: _version_table(0) for s in SESSIONS})
    committed: list[int] = []
    errors: list[str] = []
    durations: list[float] = []
    stop = threading.Event()

    def writer() -> None:
        version = 0
        while not stop.is_set():
            version += 1
            started = time.monotonic()
            try:
                write_partitions(
                    catalog, identifier, None, {s: _version_table(version) for s in SESSIONS}
                )
                committed.append(version)
                durations.append(time.monotonic() - started)
            except LakeTableError as err:
                errors.append(str(err))

    def wait_for_commits(count: int) -> None:
        deadline = time.monotonic() + 120
        while len(committed) < count:
            assert time.monotonic() < deadline and thread.is_alive(), f"stuck: {errors[-3:]}"
            time.sleep(0.01)

    thread = threading.Thread(target=writer)
    thread.start()
    rng = random.Random(9)
    try:
        for cycle in range(OUTAGES):
            # after a commit, somewhere inside the next write (upload, metadata, catalog update)
            wait_for_commits(len(committed) + 1)
            time.sleep(rng.uniform(0.0, max(durations)))
            target = outages.pg if cycle % 2 == 0 else outages.s3
            target.down()
            time.sleep(0.3)
            target.up()
        wait_for_commits(len(committed) + 1)
    finally:
        outages.pg.up()
        outages.s3.up()
        stop.set()
        thread.join(timeout=120)
    assert not thread.is_alive()

    assert errors, "no write failed: the outages did not hit a write"
    for message in errors:
        assert "\n" not in message
        assert message.startswith("faults.sessions: ")
        assert " unavailable while writing: " in message, message

    table = catalog.load_table(identifier)
    for snapshot in table.snapshots():
        rows = lake.read_arrow("faults", "sessions", snapshot.snapshot_id)
        versions = pc.unique(rows["version"]).to_pylist()
        assert len(versions) == 1, f"snapshot {snapshot.snapshot_id} mixes writes {versions}"
        counts = rows.group_by("partition_key").aggregate([("i", "count")])
        assert sorted(counts["partition_key"].to_pylist()) == list(SESSIONS)
        assert set(counts["i_count"].to_pylist()) == {400}, (
            f"snapshot {snapshot.snapshot_id} holds part of a write"
        )
    current = pc.unique(lake.read_arrow("faults", "sessions", None)["version"]).to_pylist()[0]
    # The last write that reported success, or a later one whose commit landed as the
    # connection dropped (reported failed, yet whole).
    assert current >= committed[-1]
    _close(lake)


RETRY_SPEC = """\
version: 1
pipeline_id: fault_lake
slo: {{retry: {{max_attempts: 3, backoff_sec: 1}}}}
nodes:
  - id: make
    kind: trino_sql
    params:
      sql: "SELECT x AS i, CAST(:version AS BIGINT) AS version FROM UNNEST(sequence(1, 500)) AS \
t(x)"
      parameters: {{version: {version}}}
    outs: [rows]
"""


@pytest.mark.parametrize("service", ["s3", "postgres"])
def test_d_brief_outage_fails_an_attempt_in_one_line_and_the_retry_commits(
    service: str, outages: Outages, data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from definitions.assemble import definitions_for
    from quantos_assets.pipeline_assets import build_pipeline
    from quantos_assets.spec_rules.firm import load_spec_text
    from resources.profile import active_profile

    monkeypatch.setenv("QUANTOS_CATALOG_URI", outages.catalog_uri)
    monkeypatch.setenv("QUANTOS_WAREHOUSE", outages.warehouse)
    monkeypatch.setenv("QUANTOS_S3_ENDPOINT", outages.s3_endpoint)
    monkeypatch.setenv("QUANTOS_DBT", "off")
    target = outages.s3 if service == "s3" else outages.pg

    def run(version: int, run_id: str) -> ExecuteInProcessResult:
        spec = load_spec_text(RETRY_SPEC.format(version=version), "fault_lake.yaml", "yaml")
        defs = definitions_for([build_pipeline(spec, LOCAL)], active_profile())
        with DagsterInstance.get() as instance:
            return defs.resolve_job_def("fault_lake").execute_in_process(
                instance=instance, run_id=run_id, raise_on_error=False
            )

    assert run(1, str(uuid.uuid4())).success

    # The service goes away before the second run and is back once its first attempt failed.
    run_id = str(uuid.uuid4())
    target.down()

    def restore_after_first_failure() -> None:
        with DagsterInstance.get() as instance:
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                if instance.all_logs(run_id, of_type=DagsterEventType.STEP_UP_FOR_RETRY):
                    break
                time.sleep(0.05)
        target.up()

    watcher = threading.Thread(target=restore_after_first_failure)
    watcher.start()
    try:
        result = run(2, run_id)
    finally:
        watcher.join(timeout=150)
        target.up()
    assert result.success

    retries = [e for e in result.all_events if e.event_type == DagsterEventType.STEP_UP_FOR_RETRY]
    assert len(retries) == 1
    retry = retries[0].event_specific_data
    assert isinstance(retry, StepRetryData)
    messages = _error_chain(retry.error)
    lake_errors = [m for m in messages if m.startswith("resources.iceberg_tables.LakeTableError: ")]
    assert lake_errors, messages
    line = lake_errors[0].removeprefix("resources.iceberg_tables.LakeTableError: ").rstrip("\n")
    assert "\n" not in line
    what = (
        "warehouse storage (s3://lake/warehouse)"
        if service == "s3"
        else "Iceberg catalog (postgresql+psycopg2://"
    )
    assert line.startswith(f"fault_lake.rows: {what}"), line
    assert " unavailable while writing: " in line, line

    # The failed attempt left nothing: one snapshot per run, each the whole write.
    lake = outages.lake(data_dir)
    snapshots = lake.catalog().load_table(("fault_lake", "rows")).snapshots()
    assert len(snapshots) == 2
    for snapshot, version in zip(snapshots, (1, 2), strict=True):
        rows = lake.read_arrow("fault_lake", "rows", snapshot.snapshot_id)
        assert rows.num_rows == 500
        assert pc.unique(rows["version"]).to_pylist() == [version]
    _close(lake)


def _error_chain(error: SerializableErrorInfo | None) -> list[str]:
    """Messages of an error and its causes, outermost first (Dagster wraps IO manager errors)."""
    messages = []
    while error is not None:
        messages.append(error.message)
        error = error.cause or error.context
    return messages


def _close(lake: LakeIOManager) -> None:
    """Close the catalog's connections (a fresh database is dropped after the test)."""
    catalog = lake.catalog()
    if isinstance(catalog, SqlCatalog):
        catalog.engine.dispose()
