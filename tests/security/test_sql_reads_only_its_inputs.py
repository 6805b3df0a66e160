"""A SQL node of one team reads its own inputs only, whatever its text names (issue 19).

On Trino (staging/prod) a bare name would resolve in the session schema and a qualified name
anywhere the Trino user can read: another team's tables, metadata tables, Trino's own
catalogs; a TABLE(...) function (the Iceberg connector's table_changes, system.query) reads
whatever it is given. Each is refused before any statement is sent, for Trino and DuckDB
alike (tests/integration/test_sql_in_trino.py shows that nothing reaches the coordinator).
"""

from __future__ import annotations

import pytest

from quantos_assets.kinds.base import NodeRun, NodeRunError
from quantos_assets.kinds.sql import SqlRunner, node_sources
from quantos_assets.kinds.trino_statements import Pin
from quantos_assets.spec_rules.firm import load_spec_text


@pytest.mark.parametrize(
    "query",
    [
        "SELECT * FROM TABLE(iceberg.system.table_changes('xs_other', 'secret', 1, 2))",
        "SELECT * FROM TABLE(system.query(query => 'SELECT * FROM tokens'))",
        "SELECT * FROM xs_other.secret",
        'SELECT * FROM "features$snapshots"',
        "SELECT * FROM information_schema.tables",
        "WITH f AS (SELECT 1 AS x) SELECT * FROM f JOIN secret ON true",
    ],
)
def test_what_is_not_an_input_is_refused(query: str) -> None:
    """Whatever the text names beyond its ins (another pipeline's table, a table function that
    reads any table, metadata tables, Trino's own catalogs) stops before a statement is sent."""
    text = (
        "version: 1\npipeline_id: xs_a\nnodes:\n"
        "  - {id: load, kind: python_task, params: {entrypoint: 'quantos_assets.tasks.x:y'}, "
        "outs: [features]}\n"
        f"  - id: q\n    kind: trino_sql\n    params: {{sql: {query!r}}}\n"
        "    ins: [features]\n    outs: [o]\n"
    )
    spec = load_spec_text(text, "xs_a.yaml", "yaml").spec
    node = spec.node("q")
    run = NodeRun(spec, node, None, {}, None)
    sources, _ = node_sources(run, str)
    pins = {"features": Pin("xs_a", "features", 1)}
    with pytest.raises(
        NodeRunError, match=r"^xs_a\.q: out 'o' (reads table|calls a table function)"
    ):
        SqlRunner("trino").trino_statements(run, sources, pins, "iceberg")


@pytest.mark.parametrize("name", ["xs_other.secret", "../xs_other/secret", "iceberg.xs_other.t"])
def test_a_ref_cannot_name_another_pipelines_table(name: str) -> None:
    """Refs pin the pipeline's own inputs by out name, resolved in its own namespace: a name
    that points elsewhere is not even a valid ref."""
    from quantos_assets.spec.errors import SpecError
    from quantos_assets.spec.loader import load_runtime_params

    with pytest.raises(SpecError) as err:
        load_runtime_params({"submission_id": "x", "refs": {name: {"snapshot_id": 1}}})
    assert "refs" in str(err.value)
