"""Promotion gates end to end: a model that meets its bounds reaches prod through staging and
canary; one that misses a bound is stopped at staging with the measured value, in the check
result and in the audit trail. Real engines: dagster-pipes subprocesses, a local Ray (the
original training and the reproducibility retrain), Iceberg on SQLite, the local artifact
store, the hash-chained audit trail on SQLite.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from dagster import (
    AssetCheckEvaluation,
    AssetCheckKey,
    AssetKey,
    AssetSelection,
    DagsterEventType,
    DagsterInstance,
    Definitions,
    ExecuteInProcessResult,
    define_asset_job,
)
from dagster_events import latest_metadata
from profiles import LOCAL

from quantos_assets.pipeline_assets import PipelineDefs, build_pipeline
from quantos_assets.spec_rules.firm import load_spec
from resources.audit_log import AuditLog
from resources.audit_settings import audit_settings
from resources.profile import active_profile, build_resources

pytestmark = pytest.mark.integration

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "gates"
STAGES = ["staging", "canary", "prod"]
REPRODUCIBLE = AssetCheckKey(AssetKey(["gated_pass", "model_uri"]), "reproducible")


@dataclass
class Gated:
    defs: Definitions
    instance: DagsterInstance
    pipelines: dict[str, PipelineDefs]
    runs: dict[str, ExecuteInProcessResult]
    audit: AuditLog


@pytest.fixture(scope="module")
def gated(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gated]:
    mp = pytest.MonkeyPatch()
    root = tmp_path_factory.mktemp("gates")
    home = root / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    mp.setenv("QUANTOS_ENV", "local")
    mp.setenv("QUANTOS_DATA_DIR", str(root / "data"))
    mp.setenv("DAGSTER_HOME", str(home))
    mp.delenv("QUANTOS_GATEWAY_DB", raising=False)
    profile = active_profile()
    pipelines = {
        p.spec.pipeline_id: p
        for p in (
            build_pipeline(load_spec(FIXTURES / f"gated_model_{name}.yaml"), LOCAL)
            for name in ("pass", "fail")
        )
    }
    defs = Definitions(
        assets=[a for p in pipelines.values() for a in p.assets],
        asset_checks=[c for p in pipelines.values() for c in p.asset_checks()],
        jobs=[
            *(p.job for p in pipelines.values()),
            define_asset_job("reproducibility_only", selection=AssetSelection.checks(REPRODUCIBLE)),
        ],
        resources=build_resources(profile),
    )
    instance = DagsterInstance.get()
    import ray

    ray_was_up = ray.is_initialized()
    runs = {
        name: defs.resolve_job_def(name).execute_in_process(instance=instance, raise_on_error=False)
        for name in pipelines
    }
    assert profile.audit_url is not None
    # the runs' gates wrote the trail with the key file and anchor of the data dir
    assert (root / "data" / "audit.key").is_file() and (root / "data" / "audit.anchor").is_file()
    yield Gated(
        defs, instance, pipelines, runs, audit_settings({}, profile, profile.audit_url).reader()
    )
    instance.dispose()
    if not ray_was_up:
        ray.shutdown()  # the local Ray the runs started (two trainings and two retrains)
    mp.undo()


def _evaluations(result: ExecuteInProcessResult) -> dict[str, AssetCheckEvaluation]:
    return {e.check_name: e for e in result.get_asset_check_evaluations()}


def _materialized(result: ExecuteInProcessResult) -> set[str]:
    return {
        e.asset_key.to_user_string()
        for e in result.get_asset_materialization_events()
        if e.asset_key
    }


def test_a_model_that_meets_its_bounds_reaches_prod(gated: Gated) -> None:
    result = gated.runs["gated_pass"]
    assert result.success
    checks = _evaluations(result)
    assert set(checks) == {
        "model_card",
        "metric_sharpe",
        "metric_max_drawdown",
        "metric_hit_rate",
        "reproducible",
    }
    assert all(c.passed for c in checks.values()), {n: c.description for n, c in checks.items()}
    assert re.fullmatch(r"sharpe \d+\.\d+ >= 1\.0", checks["metric_sharpe"].description or "")
    assert re.fullmatch(
        r"retrained with seed 42 on gated_pass\.features@\d+: sha256 [0-9a-f]{12} matches",
        checks["reproducible"].description or "",
    )
    assert {f"gated_pass/promoted/{s}" for s in STAGES} <= _materialized(result)

    model = latest_metadata(gated.instance, AssetKey(["gated_pass", "model_uri"]))
    sha256, card = model["sha256"], model["model_card"]
    assert (
        card["owner"] == "research" and card["seed"] == 42 and card["training_data"]["snapshot_id"]
    )
    release_uri = str(
        latest_metadata(gated.instance, AssetKey(["gated_pass", "promoted", "prod"]))["release"]
    )
    release = json.loads(Path(release_uri.removeprefix("file://")).read_text())
    assert (release["stage"], release["sha256"], release["previous_stage"]) == (
        "prod",
        sha256,
        "canary",
    )

    records = gated.audit.records(subject="gated_pass/model_uri")
    assert [(json.loads(r.params)["stage"], r.decision) for r in records] == [
        (s, "promoted") for s in STAGES
    ]
    assert all(json.loads(r.params)["sha256"] == sha256 and r.action == "promote" for r in records)


def test_a_model_that_misses_a_bound_is_stopped_at_staging_with_the_reason(gated: Gated) -> None:
    result = gated.runs["gated_fail"]
    assert not result.success
    checks = _evaluations(result)
    failed = {n: c.description or "" for n, c in checks.items() if not c.passed}
    assert list(failed) == ["metric_sharpe"], failed
    reason = failed["metric_sharpe"]
    assert re.fullmatch(r"sharpe 0\.\d+ < 1\.0 \(>= 1\.0 required\)", reason), reason
    assert checks["metric_sharpe"].metadata["bound_from"].value == "spec"
    assert not {k for k in _materialized(result) if "/promoted/" in k}, "no stage materializes"
    started = {e.step_key for e in result.all_events if e.event_type == DagsterEventType.STEP_START}
    assert not {k for k in started if "promoted" in str(k)}, "no stage step even starts"
    assert "gated_fail__gate" in started

    (record,) = gated.audit.records(subject="gated_fail/model_uri")
    assert (record.decision, json.loads(record.params)["stage"]) == ("refused", "staging")
    assert record.detail == reason and json.loads(record.params)["failed_checks"] == [
        "metric_sharpe"
    ]
    assert gated.audit.verify().ok


def test_prod_selected_alone_cannot_skip_the_gate_or_the_stages_before_it(gated: Gated) -> None:
    prod = AssetKey(["gated_fail", "promoted", "prod"])
    result = gated.defs.resolve_job_def("gated_fail").execute_in_process(
        instance=gated.instance, asset_selection=[prod], raise_on_error=False
    )
    assert not result.success
    (failure,) = [e for e in result.all_events if e.event_type == DagsterEventType.STEP_FAILURE]
    error = failure.step_failure_data.error
    assert error is not None
    message = error.message
    assert "prod refused for gated_fail/model_uri: sharpe 0." in message
    assert "canary holds no model yet: promote to canary first" in message
    last = gated.audit.records(subject="gated_fail/model_uri")[-1]
    assert (last.decision, json.loads(last.params)["stage"]) == ("refused", "prod")


def test_a_replaced_model_artifact_fails_reproducibility(gated: Gated) -> None:
    key = AssetKey(["gated_pass", "model_uri"])
    uri = str(latest_metadata(gated.instance, key)["uri"])
    path = Path(uri.removeprefix("file://"))
    path.write_bytes(path.read_bytes() + b"tampered")
    result = gated.defs.resolve_job_def("reproducibility_only").execute_in_process(
        instance=gated.instance, raise_on_error=False
    )
    (evaluation,) = result.get_asset_check_evaluations()
    assert not evaluation.passed
    assert "the object was replaced after training" in str(evaluation.description)
    last = gated.audit.records(subject="gated_pass/model_uri")[-1]
    assert last.decision == "refused" and "replaced" in last.detail
