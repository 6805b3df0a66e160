"""OpenLineage events as a lineage backend receives them: real runs on a real (run-sharded
SQLite) instance, Iceberg tables and artifacts written by LakeIOManager, the sensor evaluated
by Dagster, the events read back from the file transport and validated against the
OpenLineage JSON Schema (core and every facet)."""

from __future__ import annotations

import hashlib
import json
import sys
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from dagster import AssetKey, DagsterInstance, build_sensor_context

from definitions.assemble import definitions_for
from quantos_assets.calendars.partitions import partitions_name
from quantos_assets.pipeline_assets import build_pipeline
from quantos_assets.run_tags import runtime_run_tags
from quantos_assets.spec.models import RuntimeParams
from quantos_assets.spec_rules.firm import load_spec, load_spec_text
from resources.profile import LineageSettings, ProfileError, active_profile
from sensors.openlineage import SENSOR_NAME, build_lineage_sensor

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from openlineage_schema import validate_event

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
EOD = REPO / "specs" / "xs_daily_eod.yaml"
SESSION = "2016-01-05"

DEMO = """\
version: 1
pipeline_id: lineage_demo
nodes:
  - id: prices
    kind: python_task
    params: {entrypoint: "quantos_assets.tasks.noop:one_row"}
    outs: [prices]
  - id: report
    kind: python_task
    params: {entrypoint: "tests.integration.test_openlineage:report_bytes"}
    ins: [prices]
    outs: [report]
  - id: publish
    kind: python_task
    params: {entrypoint: "tests.integration.test_openlineage:refuse"}
    ins: [report]
    outs: [published]
"""


def report_bytes(prices: pa.Table) -> bytes:
    """A binary artifact (stored in the artifact store with its sha256)."""
    return json.dumps({"rows": prices.num_rows}).encode()


def refuse(report: bytes) -> pa.Table:
    raise RuntimeError(f"publishing refused ({len(report)} bytes)")


def _events(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_every_node_run_becomes_schema_valid_lineage_under_its_submission(data_dir: Path) -> None:
    profile = active_profile()
    eod, demo = (
        build_pipeline(load_spec(EOD), profile),
        build_pipeline(load_spec_text(DEMO, "lineage_demo.yaml", "yaml"), profile),
    )
    out = data_dir / "lineage" / "events.jsonl"
    settings = LineageSettings("file", file_path=out)
    lineage = build_lineage_sensor([eod, demo], profile, settings)
    assert lineage is not None and lineage.name == SENSOR_NAME
    defs = definitions_for([eod, demo], profile)
    submission = RuntimeParams(submission_id="sub-2016-01-05", labels={"team": "alpha"})

    with DagsterInstance.get() as instance:
        first = lineage.evaluate_tick(build_sensor_context(instance=instance))
        instance.add_dynamic_partitions(partitions_name(eod.spec), [SESSION])
        ok = defs.resolve_job_def("xs_daily_eod").execute_in_process(
            instance=instance, partition_key=SESSION
        )
        bad = defs.resolve_job_def("lineage_demo").execute_in_process(
            instance=instance, tags=runtime_run_tags(submission), raise_on_error=False
        )
        assert ok.success and not bad.success

        tick = lineage.evaluate_tick(build_sensor_context(instance=instance, cursor=first.cursor))
        events = _events(out)
        assert tick.skip_message == f"{len(events)} OpenLineage event(s) sent"

        # Nothing new: nothing resent (the cursor holds each run's position).
        again = lineage.evaluate_tick(build_sensor_context(instance=instance, cursor=tick.cursor))
        assert again.skip_message == "0 OpenLineage event(s) sent" and len(_events(out)) == len(
            events
        )

    for event in events:
        validate_event(event)

    nodes = [e for e in events if e["job"]["facets"]["jobType"]["jobType"] == "NODE"]
    pipelines = [e for e in events if e["job"]["facets"]["jobType"]["jobType"] == "PIPELINE"]
    # 1:1 with the DAG: one job per node, each START then exactly one terminal event.
    spec_nodes = {f"{p.spec.pipeline_id}.{n.id}" for p in (eod, demo) for n in p.spec.nodes}
    assert {e["job"]["name"] for e in nodes} == spec_nodes
    by_job = {
        name: [e["eventType"] for e in nodes if e["job"]["name"] == name] for name in spec_nodes
    }
    assert by_job == {
        "xs_daily_eod.session_bars": ["START", "COMPLETE"],
        "xs_daily_eod.eod_rollup": ["START", "COMPLETE"],
        "lineage_demo.prices": ["START", "COMPLETE"],
        "lineage_demo.report": ["START", "COMPLETE"],
        "lineage_demo.publish": ["START", "FAIL"],
    }
    assert (
        Counter(e["run"]["runId"] for e in nodes).most_common(1)[0][1] == 2
    )  # START/end share a run

    # Namespaces per team: the submission's label, else the spec's owner.
    namespaces = {e["job"]["name"]: e["job"]["namespace"] for e in events}
    assert namespaces["lineage_demo.publish"] == namespaces["lineage_demo"] == "alpha"
    assert namespaces["xs_daily_eod.eod_rollup"] == namespaces["xs_daily_eod"] == "research"

    # The submission is the parent run of every node run of its Dagster run.
    demo_parent = [e for e in pipelines if e["job"]["name"] == "lineage_demo"]
    assert [e["eventType"] for e in demo_parent] == ["START", "FAIL"]
    submission_run = demo_parent[0]["run"]["runId"]
    assert submission_run == str(
        uuid.uuid5(uuid.UUID("6f0b8a55-5d1b-4d57-9a4e-3c1f3e0e7a10"), "sub-2016-01-05")
    )
    for e in nodes:
        parent = e["run"]["facets"]["parent"]
        if e["job"]["name"].startswith("lineage_demo."):
            assert parent["run"]["runId"] == submission_run
            assert (parent["job"]["namespace"], parent["job"]["name"]) == ("alpha", "lineage_demo")
        else:  # launched without a submission: the Dagster run is the parent
            assert parent["run"]["runId"] == ok.run_id
    tags = {t["key"]: t["value"] for t in demo_parent[0]["run"]["facets"]["tags"]["tags"]}
    assert tags["submission_id"] == "sub-2016-01-05" and tags["dagster_run_id"] == bad.run_id

    # Datasets: Iceberg tables versioned by the snapshot the IO manager recorded, and read
    # downstream at that same snapshot; artifacts versioned by their sha256.
    def complete(job: str) -> dict[str, Any]:
        return next(e for e in nodes if e["job"]["name"] == job and e["eventType"] != "START")

    with DagsterInstance.get() as instance:
        bars = instance.get_latest_materialization_event(AssetKey(["xs_daily_eod", "bars"]))
    assert bars is not None and bars.asset_materialization is not None
    bars_meta = bars.asset_materialization.metadata
    snapshot = str(bars_meta["snapshot_id"].value)
    session_bars, rollup = (
        complete("xs_daily_eod.session_bars"),
        complete("xs_daily_eod.eod_rollup"),
    )
    assert session_bars["outputs"][0]["name"] == "xs_daily_eod.bars"
    assert session_bars["outputs"][0]["namespace"] == profile.warehouse
    assert session_bars["outputs"][0]["facets"]["version"]["datasetVersion"] == snapshot
    assert session_bars["outputs"][0]["facets"]["storage"]["storageLayer"] == "iceberg"
    assert (
        session_bars["outputs"][0]["outputFacets"]["outputStatistics"]["rowCount"]
        == bars_meta["rows"].value
    )
    assert {f["name"] for f in session_bars["outputs"][0]["facets"]["schema"]["fields"]} >= {
        "session",
        "close",
    }
    assert [(d["name"], d["facets"]["version"]["datasetVersion"]) for d in rollup["inputs"]] == [
        ("xs_daily_eod.bars", snapshot)
    ]

    report, publish = complete("lineage_demo.report"), complete("lineage_demo.publish")
    (artifact,) = report["outputs"]
    assert artifact["namespace"] == "file" and artifact["name"].endswith("/report.bin")
    body = Path(artifact["name"]).read_bytes()
    assert artifact["facets"]["version"]["datasetVersion"] == hashlib.sha256(body).hexdigest()
    assert report["inputs"][0]["name"] == "lineage_demo.prices"
    # The failed node: what it read (the artifact, same hash), nothing written, the error.
    assert publish["eventType"] == "FAIL" and publish["outputs"] == []
    assert [
        (d["namespace"], d["name"], d["facets"]["version"]["datasetVersion"])
        for d in publish["inputs"]
    ] == [
        (artifact["namespace"], artifact["name"], artifact["facets"]["version"]["datasetVersion"])
    ]
    assert "publishing refused" in publish["run"]["facets"]["errorMessage"]["message"]


def test_bad_lineage_settings_are_one_line_naming_the_variable(tmp_path: Path) -> None:
    base = {"QUANTOS_DATA_DIR": str(tmp_path)}
    with pytest.raises(
        ProfileError,
        match=r"^QUANTOS_LINEAGE: expected one of off, file, http, openlineage, got 'kafka'$",
    ):
        active_profile({**base, "QUANTOS_LINEAGE": "kafka"})
    with pytest.raises(ProfileError, match=r"^OPENLINEAGE_URL: .*\(it is not set\)$"):
        active_profile({**base, "QUANTOS_LINEAGE": "http"})
    with pytest.raises(ProfileError, match=r"^OPENLINEAGE_URL: .*got 'marquez:5000'"):
        active_profile({**base, "OPENLINEAGE_URL": "marquez:5000"})
    with pytest.raises(
        ProfileError, match=r"^QUANTOS_LINEAGE_TIMEOUT: expected a number of seconds, got 'soon'$"
    ):
        active_profile({**base, "QUANTOS_LINEAGE_TIMEOUT": "soon"})
    # Defaults: a file locally, off in prod unless configured, Marquez from OPENLINEAGE_URL.
    assert (
        active_profile(base).lineage.file_path
        == (tmp_path / "lineage" / "openlineage.jsonl").resolve()
    )
    prod = {
        **base,
        "QUANTOS_ENV": "prod",
        "QUANTOS_CATALOG_URI": "sqlite://",
        "QUANTOS_WAREHOUSE": "s3://w",
        "QUANTOS_ARTIFACTS": "s3://a",
    }
    assert not active_profile(prod).lineage.enabled
    marquez = active_profile(
        {**prod, "OPENLINEAGE_URL": "http://marquez:5000/", "OPENLINEAGE_NAMESPACE": "quant"}
    ).lineage
    assert (marquez.transport, marquez.url, marquez.endpoint, marquez.namespace) == (
        "http",
        "http://marquez:5000",
        "api/v1/lineage",
        "quant",
    )
    assert not active_profile({**base, "OPENLINEAGE_DISABLED": "true"}).lineage.enabled


def test_promotion_stages_of_the_example_are_lineage_nodes_after_the_model() -> None:
    """The gated example: every spec node and each promotion stage is one lineage job; a
    stage reads the model and the stage before it."""
    # Imported here: this module is also a step's entrypoint module (report_bytes), imported
    # by the step's child, which has only the packages on its path, not tests/.
    from profiles import LOCAL

    from sensors.openlineage import LineageIndex

    momentum = build_pipeline(load_spec(REPO / "specs" / "xs_momentum_backtest.yaml"), LOCAL)
    nodes = {f"{n.pipeline_id}.{n.node_id}": n for n in LineageIndex.of([momentum]).nodes.values()}
    assert set(nodes) == {f"xs_momentum_v1.{n.id}" for n in momentum.spec.nodes} | {
        "xs_momentum_v1.promoted.staging",
        "xs_momentum_v1.promoted.canary",
        "xs_momentum_v1.promoted.prod",
    }
    assert [k.to_user_string() for k in nodes["xs_momentum_v1.promoted.canary"].inputs] == [
        "xs_momentum_v1/model_uri",
        "xs_momentum_v1/promoted/staging",
    ]
    assert [k.to_user_string() for k in nodes["xs_momentum_v1.promoted.staging"].inputs] == [
        "xs_momentum_v1/model_uri"
    ]
