"""The lake maintenance tests' demo pipeline on the test's own local profile
(tests/integration/test_lake_maintenance.py, tests/security/test_lake_maintenance_attacks.py)."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

from dagster import AssetKey, AssetMaterialization, DagsterInstance, MetadataValue

from definitions.assemble import definitions_for
from quantos_assets.lake.upkeep import UpkeepReport, maintain
from quantos_assets.pipeline_assets import build_pipeline
from quantos_assets.run_tags import runtime_run_tags
from quantos_assets.spec.derived_names import PROMOTED
from quantos_assets.spec.loader import load_runtime_params
from quantos_assets.spec_rules.firm import load_spec
from resources.lake_upkeep_settings import LakeUpkeep
from resources.profile import active_profile, build_resources
from resources.run_tag_keys import TAG_PIPELINE

SPEC = """
version: 1
pipeline_id: lake_demo
labels: {team: quant-eq}
nodes:
  - id: prices
    kind: python_task
    params: {entrypoint: "tests.integration.test_kinds_entrypoints:fresh_prices", symbols: 20}
    outs: [prices]
  - id: signal
    kind: trino_sql
    params:
      sql: SELECT symbol, px - avg(px) OVER () AS excess FROM prices ORDER BY symbol
    ins: [prices]
    outs: [signal]
"""
NOW_AND_EVERYTHING_OLD = LakeUpkeep(snapshot_days=0, orphan_grace_hours=0)


class Lake:
    """The demo pipeline on the test's own local profile."""

    def __init__(self, folder: Path) -> None:
        self.spec = folder / "lake_demo.yaml"
        self.spec.write_text(SPEC)
        self.profile = active_profile()
        pipeline = build_pipeline(load_spec(self.spec), self.profile)
        self.defs = definitions_for([pipeline], self.profile)
        self.job = self.defs.resolve_job_def("lake_demo")
        self.resources = build_resources(self.profile)
        self.catalog = self.resources["io_manager"].catalog()

    def run(self, nodes: list[str] | None = None, tags: dict[str, str] | None = None) -> str:
        selection = [AssetKey(["lake_demo", n]) for n in nodes] if nodes else None
        with DagsterInstance.get() as instance:
            result = self.job.execute_in_process(
                instance=instance, tags=tags or {}, asset_selection=selection
            )
        assert result.success
        return result.run_id

    def snapshots(self, out: str) -> list[int]:
        table = self.catalog.load_table(("lake_demo", out))
        return [s.snapshot_id for s in sorted(table.snapshots(), key=lambda s: s.sequence_number)]

    def files(self, out: str) -> set[Path]:
        root = Path(self.profile.data_dir) / "warehouse" / "lake_demo" / out
        return {p for p in root.rglob("*") if p.is_file()}

    def maintain(
        self, settings: LakeUpkeep = NOW_AND_EVERYTHING_OLD, now: datetime | None = None
    ) -> UpkeepReport:
        with DagsterInstance.get() as instance:
            return maintain(
                instance,
                self.resources["io_manager"],
                self.resources["artifact_store"],
                self.resources["audit"].log(),
                {"lake_demo": "quant-eq"},
                settings,
                now,
            )

    def trail(self) -> list:
        log = self.resources["audit"].log()
        return [r for r in log.records() if r.action.startswith("lake.")]


def refs_tags(snapshot_id: int) -> dict[str, str]:
    params = load_runtime_params(
        {"submission_id": "bt", "refs": {"prices": {"snapshot_id": snapshot_id}}}
    )
    return {**runtime_run_tags(params), TAG_PIPELINE: "lake_demo"}


def release(lake: Lake, stage: str, card: dict[str, Any], **metadata: str) -> None:
    """A stage holding a model whose card is `card`, as a promotion records it."""
    store = lake.resources["artifact_store"]
    uri = store.put(f"releases/lake_demo/{stage}.json", json.dumps({"model_card": card}).encode())
    with DagsterInstance.get() as instance:
        instance.report_runless_asset_event(
            AssetMaterialization(
                AssetKey(["lake_demo", PROMOTED, stage]),
                metadata={"release": MetadataValue.path(uri), **metadata},
            )
        )
