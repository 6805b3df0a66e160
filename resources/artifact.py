"""The value a node returns for a binary output (a model, a report).

Tables travel as Arrow tables; everything else is an `Artifact`. The IO manager
routes by this type: tables to Iceberg, artifacts to the object store.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

ArtifactRole = Literal["model", "report", "file"]


@dataclass(frozen=True)
class Artifact:
    data: bytes
    # model -> models/{pipeline_id}/{version}/{filename}
    # report -> reports/{submission_id}/{filename}
    # file -> files/{pipeline_id}/{version}/{filename}
    role: ArtifactRole = "file"
    filename: str = "artifact.bin"
