"""OpenLineage run events for a spec's nodes and its submission (seed 000 §6): pure functions.

One OpenLineage job per node (a node is one Dagster step), named `{pipeline_id}.{node_id}`
in the namespace of the run's team, so the lineage graph has exactly the DAG's nodes and
edges. Its run (one per Dagster run and step, retries included) gets START and then
COMPLETE or FAIL, with the datasets the IO manager recorded: Iceberg tables with their
snapshot id as the dataset version, artifacts with their sha256 as the version. The parent
run is the submission (run tag `quantos/submission_id`), one OpenLineage job per pipeline,
so every node run of every Dagster run of a submission (re-executions too) hangs under it.

Nothing here reads Dagster's instance: the sensor collects the facts (lineage_facts.py),
these functions only shape them, which keeps the mapping testable and the same for every
transport. Importing openlineage-python costs ~0.4 s, so only the sensor imports this
module, when it ticks: code-location loads (every run and step process) do not pay it.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from openlineage.client.event_v2 import InputDataset, Job, OutputDataset, Run, RunEvent, RunState
from openlineage.client.generated import (
    dataset_version_dataset,
    error_message_run,
    job_type_job,
    output_statistics_output_dataset,
    parent_run,
    processing_engine_run,
    schema_dataset,
    storage_dataset,
    tags_run,
)
from openlineage.client.uuid import generate_static_uuid

from quantos_assets.observability.lineage_facts import (
    DatasetRef,
    LineageNaming,
    RunFacts,
    identifier,
)
from resources.run_tag_keys import TAG_PIPELINE, TAG_REFS, TAG_SUBMISSION, TAG_TEAM

PRODUCER = "https://quantos.dev/orchestration/0.1.0"
INTEGRATION = "DAGSTER"
PARTITION_TAG = "dagster/partition"
# uuid5 namespace of submission run ids: a submission id is the compiler's string, and the
# same submission must map to the same OpenLineage run from every Dagster run that serves it.
SUBMISSION_NS = uuid.UUID("6f0b8a55-5d1b-4d57-9a4e-3c1f3e0e7a10")


def job_namespace(run: RunFacts, naming: LineageNaming) -> str:
    """The team of the run (label `team`, then the spec's team/owner), else the default."""
    return run.tags.get(TAG_TEAM) or run.team or naming.default_namespace


def parent_run_id(run: RunFacts) -> str:
    """The submission's OpenLineage run id; a run launched without one is its own parent."""
    submission = run.tags.get(TAG_SUBMISSION)
    if submission:
        return str(uuid.uuid5(SUBMISSION_NS, submission))
    return str(uuid.UUID(run.run_id))


def pipeline_job_name(run: RunFacts) -> str:
    return run.tags.get(TAG_PIPELINE) or run.pipeline_id


def node_run_id(run: RunFacts, step_key: str) -> str:
    """Stable across ticks and resends: derived from the Dagster run and the step (UUIDv7)."""
    created = datetime.fromtimestamp(run.created_at, UTC)
    return str(generate_static_uuid(created, f"{run.run_id}/{step_key}".encode()))


def node_event(
    state: str,
    at: float,
    run: RunFacts,
    pipeline_id: str,
    node_id: str,
    step_key: str,
    naming: LineageNaming,
    inputs: Iterable[DatasetRef] = (),
    outputs: Iterable[DatasetRef] = (),
    error: tuple[str, str | None] | None = None,
) -> RunEvent:
    """START / COMPLETE / FAIL / ABORT of one node; `error` = (message, stack trace) for FAIL."""
    namespace = job_namespace(run, naming)
    facets: dict[str, Any] = {
        "parent": parent_run.ParentRunFacet(
            run=parent_run.Run(runId=parent_run_id(run)),
            job=parent_run.Job(namespace=namespace, name=pipeline_job_name(run)),
            producer=PRODUCER,
        ),
        "tags": _tags(run, node_id),
        **_engine(naming),
    }
    if error is not None:
        facets["errorMessage"] = error_message_run.ErrorMessageRunFacet(
            message=error[0], programmingLanguage="python", stackTrace=error[1], producer=PRODUCER
        )
    return RunEvent(
        eventType=RunState(state),
        eventTime=_iso(at),
        run=Run(runId=node_run_id(run, step_key), facets=facets),
        job=Job(namespace=namespace, name=f"{pipeline_id}.{node_id}", facets=_job_type("NODE")),
        inputs=[input_dataset(d, naming) for d in _unique(inputs)],
        outputs=[output_dataset(d, naming) for d in _unique(outputs)],
        producer=PRODUCER,
    )


def pipeline_event(
    state: str, at: float, run: RunFacts, naming: LineageNaming, error: str | None = None
) -> RunEvent:
    """The submission's own run: started with the Dagster run, ended with it."""
    facets: dict[str, Any] = {"tags": _tags(run, None), **_engine(naming)}
    if error is not None:
        facets["errorMessage"] = error_message_run.ErrorMessageRunFacet(
            message=error, programmingLanguage="python", producer=PRODUCER
        )
    return RunEvent(
        eventType=RunState(state),
        eventTime=_iso(at),
        run=Run(runId=parent_run_id(run), facets=facets),
        job=Job(
            namespace=job_namespace(run, naming),
            name=pipeline_job_name(run),
            facets=_job_type("PIPELINE"),
        ),
        producer=PRODUCER,
    )


def dataset_name(ref: DatasetRef, naming: LineageNaming) -> tuple[str, str]:
    """(namespace, name). Tables: the Iceberg warehouse and the catalog identifier. Artifacts:
    OpenLineage's object-store naming, `s3://bucket` + key, or `file` + absolute path."""
    if ref.storage == "artifact" and ref.uri:
        if "://" in ref.uri and not ref.uri.startswith("file://"):
            scheme, rest = ref.uri.split("://", 1)
            bucket, _, key = rest.partition("/")
            return f"{scheme}://{bucket}", key
        return "file", ref.uri.removeprefix("file://")
    return naming.warehouse, ref.table or identifier(ref.asset_key)


def input_dataset(ref: DatasetRef, naming: LineageNaming) -> InputDataset:
    namespace, name = dataset_name(ref, naming)
    return InputDataset(namespace=namespace, name=name, facets=_dataset_facets(ref))


def output_dataset(ref: DatasetRef, naming: LineageNaming) -> OutputDataset:
    namespace, name = dataset_name(ref, naming)
    stats: dict[str, Any] = {}
    if ref.rows is not None or ref.size is not None:
        stats["outputStatistics"] = (
            output_statistics_output_dataset.OutputStatisticsOutputDatasetFacet(
                rowCount=ref.rows, size=ref.size, producer=PRODUCER
            )
        )
    return OutputDataset(
        namespace=namespace, name=name, facets=_dataset_facets(ref), outputFacets=stats
    )


def _dataset_facets(ref: DatasetRef) -> dict[str, Any]:
    facets: dict[str, Any] = {}
    version = str(ref.snapshot_id) if ref.snapshot_id is not None else ref.sha256
    if version:
        # The dataset version OpenLineage consumers (Marquez) track: the Iceberg snapshot id
        # of a table, the content hash of an artifact.
        facets["version"] = dataset_version_dataset.DatasetVersionDatasetFacet(
            datasetVersion=version, producer=PRODUCER
        )
    if ref.storage in ("iceberg", "unknown"):
        facets["storage"] = storage_dataset.StorageDatasetFacet(
            storageLayer="iceberg", fileFormat="parquet", producer=PRODUCER
        )
    if ref.columns:
        facets["schema"] = schema_dataset.SchemaDatasetFacet(
            fields=[
                schema_dataset.SchemaDatasetFacetFields(name=n, type=t) for n, t in ref.columns
            ],
            producer=PRODUCER,
        )
    return facets


def _tags(run: RunFacts, node_id: str | None) -> tags_run.TagsRunFacet:
    pairs = {
        "pipeline_id": pipeline_job_name(run),
        "submission_id": run.tags.get(TAG_SUBMISSION),
        "dagster_run_id": run.run_id,
        "node_id": node_id,
        "partition": run.tags.get(PARTITION_TAG),
        # The run's pinned inputs ({input: "snapshot:<id>" | "as_of:<time>"}): a backtest's
        # lineage says it ran on the data as it was, not only which snapshot each node read.
        "refs": run.tags.get(TAG_REFS),
    }
    return tags_run.TagsRunFacet(
        tags=[
            tags_run.TagsRunFacetFields(key=k, value=v, source="QUANTOS")
            for k, v in pairs.items()
            if v
        ],
        producer=PRODUCER,
    )


def _engine(naming: LineageNaming) -> dict[str, Any]:
    if not naming.engine_version:
        return {}
    return {
        "processing_engine": processing_engine_run.ProcessingEngineRunFacet(
            version=naming.engine_version,
            name="Dagster",
            openlineageAdapterVersion="0.1.0",
            producer=PRODUCER,
        )
    }


def _job_type(job_type: str) -> dict[str, Any]:
    return {
        "jobType": job_type_job.JobTypeJobFacet(
            processingType="BATCH", integration=INTEGRATION, jobType=job_type, producer=PRODUCER
        )
    }


def _unique(refs: Iterable[DatasetRef]) -> list[DatasetRef]:
    """One dataset per asset key, first wins (a node reads an upstream once)."""
    seen: dict[tuple[str, ...], DatasetRef] = {}
    for ref in refs:
        seen.setdefault(ref.asset_key, ref)
    return list(seen.values())


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat()
