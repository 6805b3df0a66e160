"""An Iceberg table at an exact snapshot, handed to a node that reads it where it computes.

A distributed trainer reads its input with Ray Data on the cluster; loading the table in
the step process first (what LakeIOManager.load_input does for everyone else) would pull
all of it through one machine. Such a node's inputs are loaded as a `TableRef` instead: the
table and the snapshot its upstream committed (recorded on the LOADED_INPUT event like any
load), which the node opens as a Ray Dataset. The step process reads only metadata.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
from pyiceberg.catalog import Catalog

from resources.sql_engine import ParquetView

# AssetIn metadata that asks LakeIOManager.load_input for a TableRef (kinds decide).
LOAD_AS = "quantos/load_as"
LOAD_AS_REFERENCE = "reference"
# AssetIn metadata of an external input: the lake table it reads (`namespace.table`), which no
# materialization records, so load_input reads it at its current snapshot or the run's ref.
EXTERNAL_TABLE = "quantos/external_table"


@dataclass(frozen=True)
class WrittenTable:
    """An out an engine wrote into its Iceberg table itself (a SQL node inside Trino): the
    IO manager records it from the table's metadata at `snapshot_id`, exactly as the outs it
    writes, and moves no rows."""

    namespace: str
    name: str
    snapshot_id: int
    # The session partition written (None: the whole table was replaced)
    partition_key: str | None = None


@dataclass(frozen=True)
class TableRef:
    namespace: str
    name: str
    # The snapshot to read (None: the table's current one, e.g. all its snapshots expired).
    snapshot_id: int | None
    catalog: Catalog = field(repr=False, compare=False)
    # Session partitions to read (None: the whole table).
    partition_keys: tuple[str, ...] | None = None

    @property
    def table(self) -> str:
        return f"{self.namespace}.{self.name}"

    def schema(self) -> pa.Schema:
        """The Arrow schema at that snapshot (metadata only)."""
        from pyiceberg.io.pyarrow import schema_to_pyarrow

        table = self.catalog.load_table((self.namespace, self.name))
        schema = table.scan(snapshot_id=self.snapshot_id).projection()
        return schema_to_pyarrow(schema, include_field_ids=False)

    def to_ray_dataset(self, columns: Sequence[str] | None = None) -> Any:
        """A lazy Ray Dataset over the snapshot's data files (read by Ray tasks, not here)."""
        import ray.data

        from resources.iceberg_tables import partition_filter
        from resources.ray_cluster import configure_ray_data

        configure_ray_data()
        return ray.data.read_iceberg(
            table_identifier=self.table,
            snapshot_id=self.snapshot_id,
            row_filter=partition_filter(self.partition_keys),
            selected_fields=tuple(columns) if columns else ("*",),
            # The catalog is reopened where the scan is planned from its properties (Ray's
            # `catalog=` takes Ray's own catalog type, not a pyiceberg one).
            catalog_kwargs={"name": self.catalog.name, "type": "sql", **self.catalog.properties},
        )

    def to_arrow(self) -> pa.Table:
        """The rows at that snapshot (its partitions), read into this process."""
        from resources.iceberg_tables import read_partitions, read_table

        identifier = (self.namespace, self.name)
        if self.partition_keys is None:
            return read_table(self.catalog, identifier, self.snapshot_id)
        snapshots = [self.snapshot_id] if self.snapshot_id is not None else []
        return read_partitions(self.catalog, identifier, list(self.partition_keys), snapshots)

    def local_parquet(self, hidden: str) -> ParquetView | None:
        """The snapshot as local Parquet files DuckDB can scan itself, `hidden` column left out;
        None where the files would not read as the snapshot does (object storage, delete files,
        an evolved schema, a pinned snapshot that is gone): read `to_arrow()` then."""
        from resources.iceberg_tables import snapshot_data_files

        table = self.catalog.load_table((self.namespace, self.name))
        if not table.metadata.location.startswith("file://") or len(table.schemas()) != 1:
            return None
        snapshot = (
            table.current_snapshot()
            if self.snapshot_id is None
            else table.snapshot_by_id(self.snapshot_id)
        )
        if snapshot is None:
            return None
        files = snapshot_data_files(table.io, table.metadata, snapshot, self.partition_keys)
        if not files:  # nothing to read, or delete files apply
            return None
        columns = tuple(f.name for f in table.schema().fields if f.name != hidden)
        return ParquetView(
            paths=tuple(sorted(f.file_path.removeprefix("file://") for f in files)),
            columns=columns,
            partition_keys=self.partition_keys,
            partition_column=hidden,
            size_bytes=sum(f.file_size_in_bytes for f in files),
        )
