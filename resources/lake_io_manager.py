"""The IO manager every QuantOS asset uses: tables to Iceberg, artifacts to the object store.

Routing is by the Python type a node returns (see resources/artifact.py). Each write records
in Dagster's materialization metadata exactly what it produced (Iceberg snapshot id, artifact
URI); loads read that metadata back from the instance, so a downstream step reads the snapshot
its upstream committed even if the table has moved on since. Partitioned assets store a
`partition_key` column and replace only their partition.

No `from __future__ import annotations` here on purpose: Dagster's resource metaclass reads the
field annotations at class creation, and a string `ResourceDependency[...]` would not be
recognised as a nested resource.
"""

import contextlib
import hashlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import dagster as dg
import pandas as pd
import pyarrow as pa
from pydantic import PrivateAttr
from pyiceberg.catalog import Catalog
from pyiceberg.exceptions import CommitFailedException, NoSuchTableError
from pyiceberg.table import Table

from resources.artifact import Artifact, ArtifactRole
from resources.artifact_store import ArtifactStore
from resources.iceberg_maintenance import run_pin, set_pins
from resources.iceberg_tables import (
    SNAPSHOTS_TO_KEEP_DEFAULT,
    WriteResult,
    normalise_arrow,
    open_sql_catalog,
    partitions_read,
    read_partitions,
    read_table,
    unavailable_as_lake_error,
    write_partitions,
    write_table,
)
from resources.input_refs import InputPin, RefError, pins_from_tags
from resources.partition_slices import PartitionSlices
from resources.run_tag_keys import TAG_SUBMISSION, TAG_VERSION
from resources.table_ref import (
    EXTERNAL_TABLE,
    LOAD_AS,
    LOAD_AS_REFERENCE,
    TableRef,
    WrittenTable,
)

# Kept in the metadata so load_input can rebuild an Artifact of the same role and name.
META_ROLE = "role"
META_FILENAME = "filename"


class LakeIOError(TypeError):
    """An output the lake cannot store, or an input it cannot load (one-line message)."""


class LakeIOManager(dg.ConfigurableIOManager):
    """Iceberg tables (SqlCatalog) for Arrow/pandas outputs, ArtifactStore for `Artifact`s."""

    catalog_uri: str
    warehouse: str
    catalog_name: str = "quantos"
    s3_endpoint: str | None = None
    s3_region: str | None = None
    s3_access_key_id: str | None = None
    s3_secret_access_key: str | None = None
    snapshots_to_keep: int = SNAPSHOTS_TO_KEEP_DEFAULT
    artifact_store: dg.ResourceDependency[ArtifactStore]

    _catalog: Any = PrivateAttr(default=None)
    # The snapshots the run in progress committed, so a step that reads its upstream from the
    # same process (in_process runs every step in one) needs no instance query for it.
    _committed: Any = PrivateAttr(default=None)

    # -- Dagster hooks ------------------------------------------------------------------------

    def handle_output(self, context: dg.OutputContext, obj: object) -> None:
        key = _asset_key(context)
        if isinstance(obj, PartitionSlices):
            context.add_output_metadata(self._store_slices(context, key, obj))
        elif isinstance(obj, (pa.Table, pd.DataFrame)):
            partition_key = context.partition_key if context.has_partition_key else None
            result = self.write_arrow(
                key.path[0],
                key.path[-1],
                _to_arrow(obj),
                partition_key=partition_key,
                snapshot_properties={
                    "dagster.run-id": context.run_id,
                    "dagster.asset-key": key.to_user_string(),
                },
            )
            self._run_commits(context).record(key, result, partition_key)
            context.add_output_metadata(_table_metadata(result, partition_key))
        elif isinstance(obj, WrittenTable):
            result = self.written(key, obj)
            self._run_commits(context).record(key, result, obj.partition_key)
            context.add_output_metadata(_table_metadata(result, obj.partition_key))
        elif isinstance(obj, Artifact):
            context.add_output_metadata(self._store_artifact(context, key, obj))
        else:
            raise LakeIOError(
                f"asset {key.to_user_string()}: LakeIOManager stores pyarrow.Table, "
                "pandas.DataFrame "
                f"or Artifact, got {type(obj).__module__}.{type(obj).__qualname__}"
            )

    def load_input(
        self, context: dg.InputContext
    ) -> pa.Table | TableRef | Artifact | dict[str, Artifact]:
        key = _asset_key(context)
        instance = context.instance
        definition = context.definition_metadata or {}
        as_reference = definition.get(LOAD_AS) == LOAD_AS_REFERENCE
        if definition.get(EXTERNAL_TABLE) is not None:
            return self._load_external(context, str(definition[EXTERNAL_TABLE]), as_reference)
        pin = pins_from_run(context).get(key.path[-1])
        if pin is not None:
            return self._load_pinned(context, key, pin, as_reference)
        if context.has_asset_partitions:
            return self._load_partitions(
                instance, key, list(context.asset_partition_keys), as_reference
            )
        snapshot_id = self._run_commits(context).snapshot(key)
        if snapshot_id is None:
            event = instance.get_latest_materialization_event(key)
            if event is None or event.asset_materialization is None:
                raise LakeIOError(f"upstream {key.to_user_string()} has never been materialized")
            metadata = event.asset_materialization.metadata
            # What was read is recorded on the LOADED_INPUT event: the lineage of a run
            # names the exact snapshot or artifact hash each node consumed.
            if _storage(key, metadata) == "artifact":
                _record_read(context, {k: metadata[k] for k in ("uri", "sha256") if k in metadata})
                return self._load_artifact(metadata)
            snapshot_id = _int(metadata, "snapshot_id", key)
        _record_read(context, _read_metadata(f"{key.path[0]}.{key.path[-1]}", snapshot_id))
        if as_reference:
            return self.table_ref(key.path[0], key.path[-1], snapshot_id)
        return self.read_arrow(key.path[0], key.path[-1], snapshot_id)

    # -- tables (also used by bench/iceberg_io.py) --------------------------------------------

    def catalog(self) -> Catalog:
        """The SqlCatalog, opened once per resource instance."""
        if self._catalog is None:
            self._catalog = open_sql_catalog(
                self.catalog_name,
                self.catalog_uri,
                _warehouse_uri(self.warehouse),
                self._fileio_properties(),
            )
        return self._catalog

    def _run_commits(self, context: dg.InputContext | dg.OutputContext) -> "_RunCommits":
        """This run's commits so far; a resource instance outliving its run (a test process
        running jobs one after another) starts afresh with the next run. Outside a run
        (build_input_context) nothing is remembered."""
        try:
            run_id: str | None = context.step_context.run_id
        except dg.DagsterInvariantViolationError:
            run_id = None
        if self._committed is None or self._committed.run_id != run_id:
            self._committed = _RunCommits(run_id)
        return self._committed

    def _catalog_for(self, namespace: str, name: str, action: str) -> Catalog:
        """The catalog; if its database cannot be reached, one line naming the table."""
        with unavailable_as_lake_error(
            None, f"{namespace}.{name}", action, catalog_uri=self.catalog_uri
        ):
            return self.catalog()

    def write_arrow(
        self,
        namespace: str,
        name: str,
        data: pa.Table,
        partition_key: str | None = None,
        snapshot_properties: dict[str, str] | None = None,
    ) -> WriteResult:
        """The table write path of handle_output: normalise, then one Iceberg commit."""
        return write_table(
            self._catalog_for(namespace, name, "writing"),
            (namespace, name),
            normalise_arrow(data),
            partition_key,
            snapshot_properties,
            snapshots_to_keep=self.snapshots_to_keep,
        )

    def pinned_snapshot(self, namespace: str, pin: InputPin, table: str | None = None) -> int:
        """The snapshot a ref reads in `namespace.<its out>` (`table`: the table's name when it
        is not the out's, an external input's); LakeIOError (one line) when the table or that
        snapshot is gone. Metadata only."""
        return self._pinned(namespace, pin, table)[1]

    def _pinned(self, namespace: str, pin: InputPin, table: str | None = None) -> tuple[Table, int]:
        name = table or pin.out
        found = self._table(namespace, name, f"refs.{pin.out}: {namespace}.{name} does not exist")
        try:
            return found, pin.resolve(found, f"{namespace}.{name}")
        except RefError as err:
            raise LakeIOError(str(err)) from None

    def check_pins(
        self,
        namespace: str,
        pins: Mapping[str, InputPin],
        external: Mapping[str, tuple[str, str]] | None = None,
        run_id: str | None = None,
    ) -> None:
        """Every ref of a run resolvable, checked by each step before it does anything: a run
        pinned to a snapshot that is gone fails before any node works. `external`: the
        pipeline's external inputs (name -> namespace, table), whose refs pin those tables.
        With `run_id`, each pinned snapshot of the pipeline's own tables is also tagged for the
        run (resources/iceberg_maintenance.py), so no expiry removes it while the run goes on;
        lake maintenance drops the tag afterwards. An external table is another system's to
        keep: it is not written to."""
        for pin in pins.values():
            where = (external or {}).get(pin.out)
            if where is not None:
                self.pinned_snapshot(where[0], pin, where[1])
                continue
            table, snapshot_id = self._pinned(namespace, pin)
            if run_id is not None:
                # CommitFailed: another step of the run tagged it first (same tag and snapshot).
                with (
                    unavailable_as_lake_error(None, f"{namespace}.{pin.out}", "pinning"),
                    contextlib.suppress(CommitFailedException),
                ):
                    set_pins(table, {run_pin(run_id): snapshot_id}, ())

    def pin_snapshot(self, identifier: tuple[str, str], snapshot_id: int, tag: str) -> None:
        """Tag that snapshot so no expiry removes it (a promoted model's training data)."""
        name = ".".join(identifier)
        table = self._table(identifier[0], identifier[1], f"{name} does not exist")
        if table.snapshot_by_id(snapshot_id) is None:
            raise LakeIOError(f"{name}: snapshot {snapshot_id} no longer exists")
        with unavailable_as_lake_error(None, name, "pinning"):
            set_pins(table, {tag: snapshot_id}, ())

    def _table(self, namespace: str, name: str, missing: str) -> Any:
        """The Iceberg table's metadata; LakeIOError `missing` when the catalog has no such
        table, or one line naming it when the catalog cannot be reached."""
        catalog = self._catalog_for(namespace, name, "reading")
        with unavailable_as_lake_error(catalog, f"{namespace}.{name}", "reading"):
            try:
                return catalog.load_table((namespace, name))
            except NoSuchTableError:
                raise LakeIOError(missing) from None

    def _load_external(
        self, context: dg.InputContext, table: str, as_reference: bool
    ) -> pa.Table | TableRef:
        """An external input: a lake table no materialization of ours records, read at the
        snapshot the run's ref for it pins (by its `ins` name), else at its current snapshot
        (resolved once, so the read and its record cannot disagree)."""
        namespace, _, name = table.partition(".")
        pin = pins_from_run(context).get(context.name)
        metadata: dict[str, Any] = {"table": table}
        if pin is not None:
            snapshot_id: int | None = self.pinned_snapshot(namespace, pin, name)
            metadata["ref"] = pin.shown
        else:
            missing = f"external input {context.name}: {table} does not exist in the lake"
            current = self._table(namespace, name, missing).current_snapshot()
            snapshot_id = current.snapshot_id if current is not None else None
        if snapshot_id is not None:
            metadata["snapshot_id"] = snapshot_id
        context.add_input_metadata(metadata)
        if as_reference:
            return self.table_ref(namespace, name, snapshot_id)
        return self.read_arrow(namespace, name, snapshot_id)

    def _load_pinned(
        self, context: dg.InputContext, key: dg.AssetKey, pin: InputPin, as_reference: bool
    ) -> pa.Table | TableRef:
        """An input read at the snapshot its ref names, not at the latest materialization's."""
        namespace, name = key.path[0], key.path[-1]
        snapshot_id = self.pinned_snapshot(namespace, pin)
        keys = list(context.asset_partition_keys) if context.has_asset_partitions else None
        if keys is None or len(keys) == 1:
            # Dagster takes input metadata for one partition at most; a ranged run's pins are
            # on its `quantos/refs` run tag.
            read = _read_metadata(f"{namespace}.{name}", snapshot_id)
            _record_read(context, {**read, "ref": dg.MetadataValue.text(pin.shown)})
        if as_reference:
            return self.table_ref(namespace, name, snapshot_id, tuple(keys) if keys else None)
        if keys is None:
            return self.read_arrow(namespace, name, snapshot_id)
        catalog = self._catalog_for(namespace, name, "reading")
        return read_partitions(catalog, (namespace, name), keys, [snapshot_id])

    def written(self, key: dg.AssetKey, out: WrittenTable) -> WriteResult:
        """What an engine's own write committed, read from the table's metadata (no rows)."""
        identifier = (out.namespace, out.name)
        name = ".".join(identifier)
        if identifier != (key.path[0], key.path[-1]):
            raise LakeIOError(f"asset {key.to_user_string()}: the engine wrote {name} instead")
        catalog = self._catalog_for(out.namespace, out.name, "reading")
        with unavailable_as_lake_error(catalog, name, "reading"):
            table = catalog.load_table(identifier)
        snapshot = table.snapshot_by_id(out.snapshot_id)
        if snapshot is None:
            raise LakeIOError(
                f"{name}: the engine's snapshot {out.snapshot_id} is not in the table"
            )
        summary = snapshot.summary
        # A partition write adds that session's rows; a replaced table holds only the new ones.
        field = "added-records" if out.partition_key is not None else "total-records"
        rows = int((summary.get(field) if summary is not None else None) or 0)
        schema = table.schemas().get(snapshot.schema_id or -1) or table.schema()
        return WriteResult(name, snapshot.snapshot_id, rows, schema)

    def table_ref(
        self,
        namespace: str,
        name: str,
        snapshot_id: int | None,
        partition_keys: tuple[str, ...] | None = None,
    ) -> TableRef:
        """The table at that snapshot, for a node that reads it where it computes (Ray Data)."""
        return TableRef(
            namespace,
            name,
            snapshot_id,
            self._catalog_for(namespace, name, "reading"),
            partition_keys,
        )

    def read_arrow(self, namespace: str, name: str, snapshot_id: int | None) -> pa.Table:
        """The table read path of load_input: exactly one snapshot (None: current)."""
        return read_table(
            self._catalog_for(namespace, name, "reading"), (namespace, name), snapshot_id
        )

    def _store_slices(
        self, context: dg.OutputContext, key: dg.AssetKey, obj: PartitionSlices
    ) -> dict[str, Any]:
        """A ranged run's sessions, all replaced in one Iceberg commit."""
        expected = list(context.asset_partition_keys) if context.has_asset_partitions else []
        if sorted(obj.keys) != sorted(expected):
            raise LakeIOError(
                f"asset {key.to_user_string()}: ranged output holds partitions {obj.keys}, "
                f"the run targets {expected}"
            )
        if obj.values and all(isinstance(v, WrittenTable) for v in obj.values.values()):
            return self._written_slices(key, obj)
        bad = [k for k, v in obj.values.items() if not isinstance(v, (pa.Table, pd.DataFrame))]
        if bad:
            raise LakeIOError(
                f"asset {key.to_user_string()}: a single_run backfill stores tables only, got "
                f"{type(obj.values[bad[0]]).__name__} for {bad[0]}; give the node backfill: "
                "per_session"
            )
        result = write_partitions(
            self._catalog_for(key.path[0], key.path[-1], "writing"),
            (key.path[0], key.path[-1]),
            None,
            {k: normalise_arrow(_to_arrow(v)) for k, v in obj.values.items()},
            {"dagster.run-id": context.run_id, "dagster.asset-key": key.to_user_string()},
            snapshots_to_keep=self.snapshots_to_keep,
        )
        metadata = _table_metadata(result, None)
        metadata["partition_range"] = f"{obj.keys[0]}...{obj.keys[-1]}"
        metadata["partitions"] = dg.MetadataValue.int(len(obj.keys))
        return metadata

    def _written_slices(self, key: dg.AssetKey, obj: PartitionSlices) -> dict[str, Any]:
        """A ranged run whose sessions the engine wrote one by one: the last session's snapshot
        holds them all (each write touched only its own partition), with every session's rows."""
        results = [self.written(key, v) for v in obj.values.values() if isinstance(v, WrittenTable)]
        last, rows = results[-1], sum(r.rows for r in results)
        total = WriteResult(last.identifier, last.snapshot_id, rows, last.schema)
        metadata = _table_metadata(total, None)
        metadata["partition_range"] = f"{obj.keys[0]}...{obj.keys[-1]}"
        metadata["partitions"] = dg.MetadataValue.int(len(obj.keys))
        return metadata

    def _fileio_properties(self) -> dict[str, str]:
        props = {
            "s3.endpoint": self.s3_endpoint,
            "s3.region": self.s3_region,
            "s3.access-key-id": self.s3_access_key_id,
            "s3.secret-access-key": self.s3_secret_access_key,
        }
        return {k: v for k, v in props.items() if v}

    def _load_partitions(
        self,
        instance: dg.DagsterInstance,
        key: dg.AssetKey,
        partition_keys: list[str],
        as_reference: bool = False,
    ) -> pa.Table | TableRef | Artifact | dict[str, Artifact]:
        """The asked-for partitions as their latest materializations recorded them."""
        events: dict[str, Mapping[str, dg.MetadataValue]] = {}
        for partition_key in partition_keys:
            records = instance.fetch_materializations(
                dg.AssetRecordsFilter(asset_key=key, asset_partitions=[partition_key]), limit=1
            ).records
            materialization = records[0].asset_materialization if records else None
            if materialization is None:
                raise LakeIOError(
                    f"upstream {key.to_user_string()} partition {partition_key!r} has never been "
                    "materialized"
                )
            events[partition_key] = materialization.metadata
        kinds = {_storage(key, m) for m in events.values()}
        if kinds == {"artifact"}:
            artifacts = {k: self._load_artifact(m) for k, m in events.items()}
            return next(iter(artifacts.values())) if len(artifacts) == 1 else artifacts
        if kinds != {"iceberg"}:
            raise LakeIOError(
                f"upstream {key.to_user_string()}: partitions mix tables and artifacts"
            )
        snapshot_ids = [_int(m, "snapshot_id", key) for m in events.values()]
        if as_reference:
            catalog = self._catalog_for(key.path[0], key.path[-1], "reading")
            with unavailable_as_lake_error(catalog, key.to_user_string(), "reading"):
                table = catalog.load_table((key.path[0], key.path[-1]))
                snapshot_id, keys = partitions_read(table, partition_keys, snapshot_ids)
            return self.table_ref(
                key.path[0], key.path[-1], snapshot_id, tuple(keys) if keys is not None else None
            )
        return read_partitions(
            self._catalog_for(key.path[0], key.path[-1], "reading"),
            (key.path[0], key.path[-1]),
            partition_keys,
            snapshot_ids,
        )

    # -- artifacts ----------------------------------------------------------------------------

    def _store_artifact(
        self, context: dg.OutputContext, key: dg.AssetKey, artifact: Artifact
    ) -> dict[str, Any]:
        tags = _run_tags(context)
        pipeline_id = key.path[0]
        if artifact.role == "model":
            version = tags.get(TAG_VERSION) or context.run_id
            relpath = f"models/{pipeline_id}/{version}/{artifact.filename}"
        elif artifact.role == "report":
            relpath = f"reports/{tags.get(TAG_SUBMISSION) or context.run_id}/{artifact.filename}"
        elif artifact.role == "file":
            relpath = (
                f"files/{pipeline_id}/{tags.get(TAG_VERSION) or context.run_id}/{artifact.filename}"
            )
        else:
            raise LakeIOError(
                f"asset {key.to_user_string()}: unknown artifact role {artifact.role!r} (model, "
                "report, file)"
            )
        uri = self.artifact_store.put(relpath, artifact.data)
        return {
            **artifact.metadata,
            "uri": dg.MetadataValue.path(uri),
            "sha256": hashlib.sha256(artifact.data).hexdigest(),
            "bytes": dg.MetadataValue.int(len(artifact.data)),
            "storage": "artifact",
            META_ROLE: artifact.role,
            META_FILENAME: artifact.filename,
        }

    def _load_artifact(self, metadata: Mapping[str, dg.MetadataValue]) -> Artifact:
        uri = str(metadata["uri"].value)
        data = self.artifact_store.get(uri)
        role = str(metadata[META_ROLE].value) if META_ROLE in metadata else "file"
        if role not in _ROLES:
            raise LakeIOError(
                f"artifact {uri}: unknown role {role!r} in its materialization metadata"
            )
        filename = (
            metadata[META_FILENAME].value if META_FILENAME in metadata else uri.rsplit("/", 1)[-1]
        )
        return Artifact(data=data, role=_ROLES[role], filename=str(filename))


_ROLES: dict[str, ArtifactRole] = {"model": "model", "report": "report", "file": "file"}


class _RunCommits:
    """The snapshot each unpartitioned table of one run was committed at, by this process.

    A downstream step of the same run reads its upstream at exactly the snapshot that run's
    step committed, which is what the latest materialization says unless another run of the
    pipeline committed since (then this run's own is the right one to read). Asking the
    instance instead costs a query per input (issue 19 point 4).
    """

    def __init__(self, run_id: str | None) -> None:
        self.run_id = run_id
        self._snapshots: dict[dg.AssetKey, int] = {}

    def record(self, key: dg.AssetKey, result: WriteResult, partition_key: str | None) -> None:
        if partition_key is None and self.run_id is not None:
            self._snapshots[key] = result.snapshot_id

    def snapshot(self, key: dg.AssetKey) -> int | None:
        return self._snapshots.get(key)


def _read_metadata(table: str, snapshot_id: int) -> dict[str, dg.MetadataValue]:
    return {"table": dg.MetadataValue.text(table), "snapshot_id": dg.MetadataValue.int(snapshot_id)}


def _record_read(context: dg.InputContext, metadata: Mapping[str, dg.MetadataValue]) -> None:
    """What a step read of an asset the platform materializes, on its LOADED_INPUT event (the
    run's lineage).

    `add_input_metadata` would also store an ASSET_OBSERVATION of the upstream at once: a second
    copy of the same record, and one more stored event with an asset-index write per input
    (issue 19 point 4). So the metadata goes where `add_input_metadata` keeps it for the
    LOADED_INPUT event, without the observation; should Dagster keep it elsewhere one day, the
    public call is made instead (tests/integration/test_lake_io.py notices the observation).
    """
    logged = getattr(context, "_user_generated_metadata", None)
    if isinstance(logged, dict):
        logged.update(metadata)
    else:
        context.add_input_metadata(metadata)


def _asset_key(context: dg.OutputContext | dg.InputContext) -> dg.AssetKey:
    if not context.has_asset_key:
        raise LakeIOError("LakeIOManager stores software-defined asset outputs only (no asset key)")
    return context.asset_key


def _to_arrow(obj: pa.Table | pd.DataFrame) -> pa.Table:
    if isinstance(obj, pa.Table):
        return obj
    # A named index is data; a RangeIndex is not. Pandas metadata means nothing to Iceberg.
    return pa.Table.from_pandas(obj, preserve_index=None).replace_schema_metadata(None)


def _table_metadata(result: WriteResult, partition_key: str | None) -> dict[str, Any]:
    columns = [dg.TableColumn(name=f.name, type=str(f.field_type)) for f in result.schema.fields]
    metadata: dict[str, Any] = {
        "table": result.identifier,
        "snapshot_id": dg.MetadataValue.int(result.snapshot_id),
        "rows": dg.MetadataValue.int(result.rows),
        "schema": dg.MetadataValue.table_schema(dg.TableSchema(columns=columns)),
        "storage": "iceberg",
    }
    if partition_key is not None:
        metadata["partition_key"] = partition_key
    return metadata


def pins_from_run(context: dg.InputContext | dg.OutputContext | Any) -> dict[str, InputPin]:
    """The run's refs (the `quantos/refs` tag); LakeIOError if the tag is malformed."""
    try:
        return pins_from_tags(_run_tags(context))
    except RefError as err:
        raise LakeIOError(str(err)) from None


def _run_tags(context: dg.OutputContext | dg.InputContext | Any) -> Mapping[str, str]:
    try:
        return context.step_context.dagster_run.tags
    except dg.DagsterInvariantViolationError:  # built outside a run (build_output_context)
        return {}


def _storage(key: dg.AssetKey, metadata: Mapping[str, dg.MetadataValue]) -> str:
    storage = metadata.get("storage")
    if storage is None or storage.value not in ("iceberg", "artifact"):
        raise LakeIOError(
            f"upstream {key.to_user_string()}: latest materialization was not written by "
            "LakeIOManager (no storage metadata)"
        )
    return str(storage.value)


def _int(metadata: Mapping[str, dg.MetadataValue], name: str, key: dg.AssetKey) -> int:
    if name not in metadata:
        raise LakeIOError(
            f"upstream {key.to_user_string()}: materialization metadata has no {name!r}"
        )
    value = metadata[name].value
    if not isinstance(value, int | float | str):
        raise LakeIOError(f"upstream {key.to_user_string()}: {name!r} is not a number: {value!r}")
    return int(value)


def _warehouse_uri(warehouse: str) -> str:
    """A bare folder becomes a file:// URI (created if missing); s3:// and file:// pass through."""
    if "://" in warehouse:
        if warehouse.startswith("file://"):
            Path(warehouse[len("file://") :]).mkdir(parents=True, exist_ok=True)
        return warehouse
    path = Path(warehouse).expanduser().resolve()
    path.mkdir(parents=True, exist_ok=True)
    return path.as_uri()
