"""Which runner runs each node kind, and how each kind is labelled in the UI.

Streaming kinds (flink_job, materialize_view) have no runner: they run
outside Dagster and become observable external assets (AssetSpecs).
"""

from __future__ import annotations

from collections.abc import Mapping

from dagster import AssetExecutionContext

from quantos_assets.k8s.step_config import launches_pod
from quantos_assets.kinds.base import NodeRun, NodeValue, Runner
from quantos_assets.kinds.custom_crd import CustomCrdRunner
from quantos_assets.kinds.python_pod import PythonPodRunner
from quantos_assets.kinds.python_task import PythonTaskRunner
from quantos_assets.kinds.ray_job import RayJobRunner, reads_tables_by_reference
from quantos_assets.kinds.sql import SqlRunner
from quantos_assets.spec.models import EXTERNAL_KINDS, Node, NodeKind
from resources.profile import Profile
from resources.table_ref import LOAD_AS, LOAD_AS_REFERENCE

__all__ = ["EXTERNAL_KINDS", "build_runners", "dagster_kinds", "input_metadata", "runner_for"]


class PythonTaskDispatch:
    """python_task: an entrypoint runs in a subprocess; an image-only task runs as its own pod.

    The pod needs a cluster, so its resources are required only where the profile runs pods
    (staging/prod bind them). On the embedded default an image-only task runs in a subprocess
    too, as the entrypoint deploy/local_images.yaml lists for its image; an unlisted image
    fails with one line naming the image and that file, before anything is written.
    """

    def __init__(self, profile: Profile) -> None:
        self.pods = profile.cluster.pods
        self.subprocess = PythonTaskRunner(profile)
        self.pod = PythonPodRunner()

    @property
    def required_resource_keys(self) -> frozenset[str]:
        keys = self.subprocess.required_resource_keys
        return keys | self.pod.required_resource_keys if self.pods else keys

    def run(self, context: AssetExecutionContext, run: NodeRun) -> dict[str, NodeValue]:
        if launches_pod(run.node):
            if self.pods:
                return self.pod.run(context, run)
            return self.subprocess.run(context, run, image_only=True)
        return self.subprocess.run(context, run)


def build_runners(profile: Profile) -> dict[NodeKind, Runner]:
    """The runner of each kind for this profile: built per code location from the profile it
    is given (never from the environment a step happens to see)."""
    return {
        NodeKind.python_task: PythonTaskDispatch(profile),
        NodeKind.trino_sql: SqlRunner(dialect="trino", in_trino=profile.sql_in_trino),
        NodeKind.spark_sql: SqlRunner(dialect="spark", in_trino=profile.sql_in_trino),
        NodeKind.ray_job: RayJobRunner(),
        NodeKind.custom_crd: CustomCrdRunner(),
    }


# The engine the spec asks for, not the local stand-in: an asset's kinds are
# part of its definition and must not change between profiles.
_KINDS: dict[NodeKind, frozenset[str]] = {
    NodeKind.python_task: frozenset({"python"}),
    NodeKind.trino_sql: frozenset({"trino", "sql"}),
    NodeKind.spark_sql: frozenset({"spark", "sql"}),
    NodeKind.ray_job: frozenset({"ray", "python"}),
    NodeKind.flink_job: frozenset({"flink"}),
    NodeKind.materialize_view: frozenset({"materialize", "sql"}),
    NodeKind.custom_crd: frozenset({"kubernetes"}),
}


def input_metadata(node: Node) -> dict[str, str]:
    """How the IO manager loads the node's table inputs: into the step (the default), or as
    references (resources/table_ref.py) for a node that reads them on its cluster: a ray_job
    reading with Ray Data, a SQL node (inside Trino, or DuckDB scanning the snapshot's files)."""
    if node.kind is NodeKind.ray_job and reads_tables_by_reference(node):
        return {LOAD_AS: LOAD_AS_REFERENCE}
    if node.kind in (NodeKind.trino_sql, NodeKind.spark_sql):
        return {LOAD_AS: LOAD_AS_REFERENCE}
    return {}


class UnknownKind(KeyError):
    """The kind has no runner (an external kind, or a new kind without one)."""


def runner_for(kind: NodeKind, runners: Mapping[NodeKind, Runner]) -> Runner:
    try:
        return runners[kind]
    except KeyError:
        why = (
            "external kinds are observed, not run"
            if kind in EXTERNAL_KINDS
            else "no runner is registered"
        )
        raise UnknownKind(f"{kind.value}: {why}") from None


def dagster_kinds(node: Node) -> set[str]:
    """The UI `kinds` tags of a node's assets (Dagster allows at most 3)."""
    kinds = set(_KINDS[node.kind])
    if launches_pod(node):
        kinds.add("kubernetes")  # an image-only task runs as a pod
    return kinds
