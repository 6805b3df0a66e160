"""The seed's `s3://queries/bt_fetch.sql` on the embedded default: the local profile puts the
platform's stand-in (deploy/local_objects/) into the local artifact store, the SQL node reads
it from there, and nothing about that lets a sql_uri leave the stand-in buckets."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pytest
from dagster import build_asset_context
from profiles import runners

from quantos_assets.kinds.base import NodeRun, NodeRunError
from quantos_assets.kinds.registry import runner_for
from quantos_assets.spec.models import DagSpec, Node, NodeKind
from quantos_assets.spec_rules.firm import load_spec
from resources.artifact_store import ArtifactStore, ArtifactStoreError
from resources.local_objects import LocalObjectsError, stand_ins, sync_local_objects
from resources.profile import active_profile, build_resources
from resources.sql_engine import DuckDBEngine

pytestmark = pytest.mark.integration

SEED = Path(__file__).resolve().parents[2] / "specs" / "seed_bt_xs_bilstm_v1.yaml"
QUERY = "s3://queries/bt_fetch.sql"


def _fetch(store: ArtifactStore, uri: str = QUERY) -> pa.Table:
    node = Node(
        id="fetch_data", kind=NodeKind.trino_sql, params={"sql_uri": uri}, outs=["dataset_uri"]
    )
    spec = DagSpec.model_construct(version=1, pipeline_id="local_objects", nodes=[node])
    resources: dict[str, Any] = {"sql_engine": DuckDBEngine(threads=2), "artifact_store": store}
    with build_asset_context(resources=resources) as context:
        out = runner_for(node.kind, runners()).run(
            context, NodeRun(spec=spec, node=node, spec_dir=None)
        )
    table = out["dataset_uri"]
    assert isinstance(table, pa.Table)
    return table


def _refused(store: ArtifactStore, uri: str) -> str:
    with pytest.raises(NodeRunError) as err:
        _fetch(store, uri)
    message = str(err.value)
    assert "\n" not in message and "OTHER-TEAM" not in message
    return message


def test_the_seed_fetch_runs_from_the_local_store_the_profile_set_up(data_dir: Path) -> None:
    """The seed's own fetch_data node, unchanged, over the store `build_resources` prepared."""
    store = build_resources(active_profile())["artifact_store"]
    assert store.local_buckets == ["queries"]
    copy = data_dir / "artifacts" / "buckets" / "queries" / "bt_fetch.sql"
    assert copy.stat().st_mode & 0o777 == 0o444, "the platform's copy is read-only"

    node = load_spec(SEED).spec.nodes[0]
    assert node.params == {"sql_uri": QUERY}
    spec = DagSpec.model_construct(version=1, pipeline_id="bt_xs_bilstm_v1", nodes=[node])
    resources = {"sql_engine": DuckDBEngine(threads=2), "artifact_store": store}
    with build_asset_context(resources=resources) as context:
        table = runner_for(node.kind, runners()).run(
            context, NodeRun(spec=spec, node=node, spec_dir=SEED.parent)
        )["dataset_uri"]
    assert isinstance(table, pa.Table)
    assert table.column_names == ["date", "symbol", "open", "high", "low", "close", "volume"]
    assert (
        table.schema.field("date").type == pa.date32()
        and table.schema.field("volume").type == pa.int64()
    )
    assert table.num_rows == 40 * 520
    assert len(pc.unique(table["symbol"])) == 40 and len(pc.unique(table["date"])) == 520
    assert pc.min(table["date"]).as_py().isoformat() == "2022-01-03"
    assert pc.max(table["date"]).as_py().isoformat() == "2023-12-29"
    assert (
        pc.all(pc.greater(table["close"], 0)).as_py()
        and pc.all(pc.greater(table["volume"], 0)).as_py()
    )
    assert pc.all(
        pc.greater_equal(table["high"], pc.max_element_wise(table["open"], table["close"]))
    ).as_py()
    assert pc.all(
        pc.less_equal(table["low"], pc.min_element_wise(table["open"], table["close"]))
    ).as_py()
    assert _fetch(store).equals(table), "deterministic: the same bars every run"


def test_the_local_set_up_is_idempotent_and_puts_a_changed_copy_back(tmp_path: Path) -> None:
    folder = tmp_path / "store"
    first = sync_local_objects(folder)
    assert first.buckets == ("queries",) and first.written == 1
    again = sync_local_objects(folder)
    assert (again.written, again.removed) == (0, 0)

    copy = folder / "buckets" / "queries" / "bt_fetch.sql"
    original = copy.read_bytes()
    copy.chmod(0o644)
    copy.write_text("SELECT 'TAMPERED' AS x")
    (folder / "buckets" / "queries" / "planted.sql").write_text("SELECT 1 AS x")
    (folder / "buckets" / "queries" / "link.sql").symlink_to(tmp_path / "anywhere.sql")
    synced = sync_local_objects(folder)
    assert (synced.written, synced.removed) == (1, 2)
    assert copy.read_bytes() == original and copy.stat().st_mode & 0o777 == 0o444
    assert sorted(p.name for p in copy.parent.iterdir()) == ["bt_fetch.sql"]


def test_a_sql_uri_cannot_leave_the_stand_in_buckets(tmp_path: Path) -> None:
    """Think like another team: its spec names any sql_uri it likes. The store serves
    s3:// URIs of the listed buckets only, from <root>/buckets/<bucket>/ only."""
    root = tmp_path / "store"
    store = ArtifactStore(root=str(root), local_buckets=list(sync_local_objects(root).buckets))
    assert _fetch(store).num_rows == 20_800
    secret = "SELECT 'OTHER-TEAM-SQL' AS x"
    # Another team's artifact in the same store, and the same text outside it.
    store.put("files/other_team/v1/q.sql", secret.encode())
    (tmp_path / "outside.sql").write_text(secret)
    (root / "buckets" / "queries" / "sub").mkdir()
    # A symlink planted in the bucket between two syncs (one to the other team's object).
    (root / "buckets" / "queries" / "link.sql").symlink_to(
        root / "files" / "other_team" / "v1" / "q.sql"
    )
    (root / "buckets" / "queries" / "out.sql").symlink_to(tmp_path / "outside.sql")
    (root / "buckets" / "queries" / ".hidden.sql").write_text(secret)
    os.symlink(tmp_path, root / "buckets" / "queries" / "sub" / "up")

    outside = f"is outside the artifact store ({root})"
    cases = {
        "s3://files/other_team/v1/q.sql": outside,  # a bucket that is not a stand-in
        "s3://buckets/queries/bt_fetch.sql": outside,
        "s3://queries/link.sql": outside,  # symlink to elsewhere in the store
        "s3://queries/out.sql": outside,  # symlink out of the store
        "s3://queries/sub/up/outside.sql": outside,  # through a symlinked folder
        "s3://queries/.hidden.sql": outside,  # dot-files are never stand-ins
        "s3://user@queries/bt_fetch.sql": outside,
        "s3://queries:443/bt_fetch.sql": outside,
        "S3://queries/bt_fetch.sql": outside,
        "s3://queries/../files/other_team/v1/q.sql": "goes up a folder ('..')",
        # a literal name, not '..'
        "s3://queries/%2e%2e/files/other_team/v1/q.sql": "cannot be read",
        "s3://queries/bt_fetch.sql/": "is not a .sql file",
    }
    for uri, says in cases.items():
        message = _refused(store, uri)
        assert message.startswith(f"local_objects.fetch_data: sql_uri '{uri}' "), message
        assert says in message, (uri, message)
    # The same store without the bucket listed (staging/prod, a store on S3): refused too.
    assert outside in _refused(ArtifactStore(root=str(root)), QUERY)
    # The store's own API serves the listed bucket and nothing else of s3://.
    assert (
        store.exists(QUERY)
        and store.get(QUERY) == (root / "buckets" / "queries" / "bt_fetch.sql").read_bytes()
    )
    with pytest.raises(ArtifactStoreError) as err:
        store.get("s3://other/q.sql")
    assert (
        str(err.value)
        == f"s3://other/q.sql: not in this local store (root {root}; buckets it stands in for: "
        "queries)"
    )


def test_the_stand_in_folder_holds_plain_files_in_bucket_folders_only(tmp_path: Path) -> None:
    (tmp_path / "README.md").write_text("not an object")
    (tmp_path / "queries").mkdir()
    (tmp_path / "queries" / "q.sql").write_text("SELECT 1")
    assert stand_ins(tmp_path) == {"queries/q.sql": b"SELECT 1"}
    (tmp_path / "queries" / "passwd.sql").symlink_to("/etc/passwd")
    with pytest.raises(LocalObjectsError, match=r"passwd.sql: a symlink or special file"):
        stand_ins(tmp_path)
    (tmp_path / "queries" / "passwd.sql").unlink()
    (tmp_path / "Bad_Bucket").mkdir()
    with pytest.raises(LocalObjectsError, match=r"'Bad_Bucket' is not an S3 bucket name"):
        stand_ins(tmp_path)
