"""Attacks on lake maintenance and on the lake namespaces (issue 19): what a writer holding
the lake's credentials, a forged release record or another team's submission could make the
platform delete, pin or overwrite. Each is refused, and nobody else's data is touched."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pyarrow as pa
import pytest
from lake_demo import NOW_AND_EVERYTHING_OLD, SPEC, Lake, release

from quantos_assets.admission.policy import admit
from quantos_assets.admission.request import Action, AdmissionRequest, Caller
from quantos_assets.spec.derived_names import LAKE_JOB, LAKE_SCHEDULE
from quantos_assets.spec_rules.firm import load_spec_text
from quantos_assets.tenancy.teams import TeamsFile
from resources.iceberg_maintenance import pin_tags
from resources.iceberg_tables import read_table

pytestmark = pytest.mark.integration


def test_no_spec_can_take_the_lake_jobs_names() -> None:
    """A pipeline's id is its job's name: a spec named like the platform's job would replace
    it (or take the location down with a name clash)."""
    from quantos_assets.spec.errors import SpecError
    from quantos_assets.spec_rules.firm import load_spec_text

    for pid in (LAKE_JOB, LAKE_SCHEDULE):
        text = SPEC.replace("pipeline_id: lake_demo", f"pipeline_id: {pid}")
        with pytest.raises(SpecError) as err:
            load_spec_text(text, "evil.yaml", "yaml")
        assert f"evil.yaml:3: pipeline_id: {pid!r} is reserved" in str(err.value), str(err.value)


def test_a_table_placed_over_the_warehouse_cannot_make_maintenance_delete_the_lake(
    data_dir: Path,
) -> None:
    """A step holding the lake's credentials could create a table in its own namespace whose
    location is the warehouse root, or whose snapshots name another table's files. Nothing it
    names as its own is deleted outside its own folder."""
    lake = Lake(data_dir)
    lake.run()
    victims = lake.files("prices") | lake.files("signal")
    warehouse = str(lake.catalog.properties["warehouse"])
    evil = lake.catalog.create_table(
        ("lake_demo", "evil"),
        schema=pa.schema([pa.field("x", pa.int64())]),
        location=warehouse,
    )
    evil.append(pa.table({"x": pa.array([1], pa.int64())}))
    for path in victims:  # old enough to be orphans of the evil table, were they its own
        os.utime(path, (time.time() - 3 * 86400, time.time() - 3 * 86400))

    report = lake.maintain(NOW_AND_EVERYTHING_OLD)

    assert all(p.exists() for p in victims)
    assert any(
        "lake_demo.evil: location" in p and "not its own folder" in p for p in report.problems
    )
    assert lake.snapshots("prices") and read_table(lake.catalog, ("lake_demo", "prices"), None)


def test_a_forged_release_record_pins_nothing_in_another_pipelines_table(data_dir: Path) -> None:
    """The release record lives in the object store, which a team's step can write: a card
    rewritten to name another pipeline's table must not pin that team's snapshots."""
    lake = Lake(data_dir)
    lake.run()
    forged = {"training_data": {"input": "x", "table": "other_team.fills", "snapshot_id": 1}}
    release(lake, "canary", forged)
    report = lake.maintain()
    assert report.problems == [
        (
            "lake_demo/promoted/canary: training table other_team.fills is not the pipeline's own: "
            "not pinned"
        )
    ]
    assert pin_tags(lake.catalog.load_table(("lake_demo", "prices"))) == {}
    assert not [r for r in lake.trail() if r.action == "lake.pin"]


class _Registered:
    """The registry with one registered pipeline, `market`."""

    def owner(self, pipeline_id: str) -> str | None:
        return "execution" if pipeline_id == "market" else None

    def ownership(self, spec: object, team: str, admin: bool) -> str | None:
        return None

    def conflicts(self, spec: object) -> list[str]:
        return []

    def pipelines(self) -> frozenset[str]:
        return frozenset({"market"})


def test_no_new_pipeline_takes_the_namespace_of_granted_external_data() -> None:
    """A pipeline writes `<pipeline_id>.<out>`: one named `market` with an out `bars_1m`
    would overwrite the vendor's table every team granted `market.*` reads."""
    teams = TeamsFile.model_validate(
        {"teams": {"research": {"reads": ["market.*", "vendor_*.*"]}, "alpha": {"reads": ["*.*"]}}}
    )
    takeover = """\
version: 1
pipeline_id: PID
labels: {team: alpha}
nodes:
  - id: bars_1m
    kind: python_task
    params: {entrypoint: "quantos_assets.tasks.noop:run"}
    outs: [bars_1m]
"""

    def refusal(pid: str, registry: object | None = None):
        return admit(
            AdmissionRequest(
                action=Action.SUBMIT,
                caller=Caller(team="alpha", actor="t", admin=True),
                teams=teams,
                spec=load_spec_text(takeover.replace("PID", pid), "f.yaml", "yaml").spec,
                registry=registry,  # type: ignore[arg-type]
            )
        )

    for pid in ("market", "vendor_acme"):
        refused = refusal(pid)
        assert refused is not None and (refused.code, refused.status) == ("reads", 403)
        assert refused.line.startswith(f"pipeline_id: '{pid}' is the lake namespace"), refused.line
    assert refusal("marketing") is None  # only the namespace itself
    assert refusal("market", _Registered()) is None  # a registered pipeline keeps its id
