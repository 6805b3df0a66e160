"""The contract every kind runner implements.

The translated multi-asset loads the node's inputs through the IO manager, hands
them to the runner of the node's kind, and yields whatever the runner returns
(one value per declared out) back to the IO manager.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypeAlias

import pyarrow as pa
from dagster import AssetExecutionContext

from quantos_assets.spec.models import DagSpec, Node
from resources.artifact import Artifact
from resources.run_tag_keys import TAG_ARRIVAL_URI, TAG_ARRIVAL_VERSION
from resources.table_ref import TableRef

NodeValue: TypeAlias = pa.Table | TableRef | Artifact


class NodeRunError(Exception):
    """A node failed; the message is the single line the user sees.

    Not retryable by default: a node that cannot run here (no entrypoint, an
    unknown trainer, invalid SQL) fails the same way on every attempt. Failures
    of the node's own code or of remote systems are retryable under slo.retry.
    """

    def __init__(self, message: str, *, retryable: bool = False) -> None:
        super().__init__(message)
        self.retryable = retryable


@dataclass(frozen=True)
class Arrival:
    """The object whose arrival started the run (a data-arrival trigger's run tags)."""

    uri: str
    version: str

    @classmethod
    def from_tags(cls, tags: Mapping[str, str]) -> Arrival | None:
        uri = tags.get(TAG_ARRIVAL_URI)
        return cls(uri, tags.get(TAG_ARRIVAL_VERSION, "")) if uri else None

    def as_extra(self) -> dict[str, str]:
        """As a Pipes extra and SQL parameters see it."""
        return {"uri": self.uri, "version": self.version}


@dataclass(frozen=True)
class NodeRun:
    spec: DagSpec
    node: Node
    # Directory of the spec file, for params.sql_uri and other relative paths.
    spec_dir: Path | None
    # Upstream values keyed by the `ins` name; ins produced by external
    # (flink/materialize_view) nodes are absent: they are dependencies only.
    inputs: dict[str, NodeValue] = field(default_factory=dict)
    # The exchange session this run computes (a session-partitioned spec); in a
    # single_run backfill the step runs the node once per session of its range.
    session: str | None = None
    # The object a data-arrival trigger started the run for (None: any other run).
    arrival: Arrival | None = None

    @property
    def label(self) -> str:
        """pipeline.node [session], as operators name a task (seed 002)."""
        where = f" [{self.session}]" if self.session else ""
        return f"{self.spec.pipeline_id}.{self.node.id}{where}"


class Runner(Protocol):
    @property
    def required_resource_keys(self) -> frozenset[str]:
        """Resource keys the runner needs from Definitions (e.g. "sql_engine"); a class
        attribute does."""
        ...

    def run(self, context: AssetExecutionContext, run: NodeRun) -> dict[str, NodeValue]:
        """Return exactly one value per out in `run.node.outs`."""
        ...


def resource(context: AssetExecutionContext, key: str) -> Any:
    return getattr(context.resources, key)
