"""The value a node returns for a binary output (a model, a report).

Tables travel as Arrow tables; everything else is an `Artifact`. The IO manager
routes by this type: tables to Iceberg, artifacts to the object store.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

ArtifactRole = Literal["model", "report", "file"]


@dataclass(frozen=True)
class Artifact:
    data: bytes
    # model -> models/{pipeline_id}/{version}/{filename}
    # report -> reports/{submission_id}/{filename}
    # file -> files/{pipeline_id}/{version}/{filename}
    role: ArtifactRole = "file"
    filename: str = "artifact.bin"
    # What the producer knows about it (e.g. a model card): stored with the materialization,
    # beside the URI and sha256 the IO manager records. Not part of the bytes.
    metadata: Mapping[str, Any] = field(default_factory=dict, compare=False)
