"""Snapshot of what each example spec compiles to (dagster-open-platform style).

A change to translation, placement or tagging shows up here as a diff a
reviewer reads. Regenerate deliberately with `UPDATE_SNAPSHOTS=1 make test`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from profiles import LOCAL

from quantos_assets.compiled_graph import describe_pipeline
from quantos_assets.pipeline_assets import build_pipeline
from quantos_assets.spec_registry import spec_files
from quantos_assets.spec_rules.firm import load_spec

REPO = Path(__file__).resolve().parents[2]
SNAPSHOTS = REPO / "tests" / "snapshots"


@pytest.mark.parametrize("path", spec_files(REPO / "specs"), ids=lambda p: p.name)
def test_compiled_graph_matches_snapshot(path: Path) -> None:
    graph = describe_pipeline(build_pipeline(load_spec(path), LOCAL))
    snapshot = SNAPSHOTS / f"{path.stem}.json"
    text = json.dumps(graph, indent=2, sort_keys=True) + "\n"
    if os.environ.get("UPDATE_SNAPSHOTS") or not snapshot.exists():
        snapshot.write_text(text)
        if not os.environ.get("UPDATE_SNAPSHOTS"):
            pytest.fail(
                f"snapshot {snapshot.name} was missing and has been written; review and commit it"
            )
    assert json.loads(text) == json.loads(snapshot.read_text()), (
        f"{path.name} compiles differently from {snapshot.name}; "
        "if intended, regenerate with UPDATE_SNAPSHOTS=1"
    )


def test_every_example_has_a_snapshot() -> None:
    stems = {p.stem for p in spec_files(REPO / "specs")}
    assert stems and stems == {p.stem for p in SNAPSHOTS.glob("*.json")}
