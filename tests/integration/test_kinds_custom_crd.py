"""custom_crd: manifest validation and the one-line error without a cluster; the kind registry."""

from __future__ import annotations

from pathlib import Path

import pytest
from dagster import build_asset_context
from profiles import prod_profile, runners

from quantos_assets.kinds.base import NodeRun, NodeRunError
from quantos_assets.kinds.custom_crd import terminal_state, validate_manifest
from quantos_assets.kinds.registry import (
    EXTERNAL_KINDS,
    UnknownKind,
    dagster_kinds,
    runner_for,
)
from quantos_assets.spec.models import DagSpec, Node, NodeKind

pytestmark = pytest.mark.integration

MANIFEST = {
    "apiVersion": "ray.io/v1",
    "kind": "RayJob",
    "metadata": {"name": "x", "namespace": "compute"},
    "spec": {"entrypoint": "python train.py"},
}


def test_valid_manifest_has_no_errors() -> None:
    assert validate_manifest({"manifest": MANIFEST}) == []


def test_manifest_errors_name_their_field() -> None:
    assert validate_manifest({}) == [
        "params.manifest is required (a Kubernetes object: apiVersion, kind, metadata.name, spec)"
    ]
    assert validate_manifest({"manifest": "RayJob"}) == [
        "params.manifest must be a mapping, not str"
    ]
    errors = validate_manifest({"manifest": {"kind": "RayJob", "metadata": {"name": "Bad_Name"}}})
    assert errors == [
        "params.manifest.apiVersion is required (a non-empty string)",
        (
            "params.manifest.metadata.name 'Bad_Name' is not a valid Kubernetes name (lowercase, "
            "digits, '-', '.')"
        ),
        "params.manifest.spec is required (a mapping)",
    ]


def test_no_cluster_is_one_clear_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "absent-kubeconfig"))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    node = Node(
        id="submit", kind=NodeKind.custom_crd, params={"manifest": MANIFEST}, outs=["status"]
    )
    spec = DagSpec(version=1, pipeline_id="kinds_crd", nodes=[node])
    with build_asset_context() as context, pytest.raises(NodeRunError) as err:
        runner_for(NodeKind.custom_crd, runners()).run(
            context, NodeRun(spec=spec, node=node, spec_dir=None)
        )
    assert str(err.value) == (
        "kinds_crd.submit: custom_crd 'RayJob/x' cannot be applied: no Kubernetes cluster is "
        "configured (set KUBECONFIG or run in-cluster)"
    )


def test_terminal_states_of_common_resources() -> None:
    assert terminal_state({"jobStatus": "SUCCEEDED"}) == "succeeded"
    assert terminal_state({"jobStatus": "RUNNING"}) is None
    assert terminal_state({"conditions": [{"type": "Failed", "status": "True"}]}) == "failed"
    assert terminal_state({"phase": "Succeeded"}) == "succeeded"


def test_registry_covers_every_kind() -> None:
    for built in (runners(), runners(prod_profile())):
        assert set(built) | EXTERNAL_KINDS == set(NodeKind)
        assert not set(built) & EXTERNAL_KINDS
    with pytest.raises(UnknownKind, match="external kinds are observed, not run"):
        runner_for(NodeKind.flink_job, runners())
    for kind in NodeKind:
        kinds = dagster_kinds(Node(id="n", kind=kind, image="img:1"))
        assert 1 <= len(kinds) <= 3
    assert dagster_kinds(Node(id="n", kind=NodeKind.trino_sql)) == {"trino", "sql"}
    assert "kubernetes" in dagster_kinds(Node(id="n", kind=NodeKind.python_task, image="img:1"))
