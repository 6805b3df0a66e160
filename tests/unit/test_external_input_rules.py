"""External inputs as the spec contract and the read grants judge them (no lake, no Dagster).

The spec rules need only the spec: a name is an out or an external input, never both; a
table is `namespace.table`, outside the pipeline's own namespace. Which tables a team may
name is deploy/teams.yaml `reads`; a registered pipeline's namespace opens only to a grant
naming it. Runs, refs and refusals on every path: tests/integration/test_external_inputs.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from quantos_assets.admission.policy import admit
from quantos_assets.admission.request import Action, AdmissionRequest, Caller
from quantos_assets.spec.errors import SpecError
from quantos_assets.spec.input_refs import ref_problems
from quantos_assets.spec.loader import load_runtime_params
from quantos_assets.spec.models import DagSpec
from quantos_assets.spec_rules.firm import load_spec_text
from quantos_assets.tenancy.read_grants import granted, granted_by_name, read_problems
from quantos_assets.tenancy.teams import TeamsFile, TeamsFileError, load_teams

SPEC = """\
version: 1
pipeline_id: bars_demo
external_inputs:
  bars: {table: market.bars_1m}
nodes:
  - id: vwap
    kind: trino_sql
    params: {sql: SELECT symbol FROM bars}
    ins: [bars]
    outs: [vwap]
"""


def _load(text: str) -> DagSpec:
    return load_spec_text(text, "f.yaml", "yaml").spec


def _errors(text: str) -> list[str]:
    with pytest.raises(SpecError) as err:
        _load(text)
    return str(err.value).splitlines()


def test_a_node_reads_an_external_input_by_its_name() -> None:
    spec = _load(SPEC)
    assert spec.input_table("bars") == ("market", "bars_1m")
    assert spec.input_table("vwap") == ("bars_demo", "vwap")
    assert spec.external_tables() == {"bars": ("market", "bars_1m")}


@pytest.mark.parametrize("table", ["bars_1m", "market.bars.1m", "market.", "mar-ket.bars"])
def test_a_table_is_a_namespace_and_a_table(table: str) -> None:
    assert _errors(SPEC.replace("market.bars_1m", table)) == [
        (
            f"f.yaml:4: external_inputs.bars.table: invalid table {table!r}: a namespace and a "
            "table of the lake catalog, two ids joined by one '.' (e.g. market.bars_1m)"
        )
    ]


def test_an_external_input_is_not_also_an_out() -> None:
    assert _errors(SPEC.replace("outs: [vwap]", "outs: [bars]").replace("ins: [bars]", "")) == [
        (
            "f.yaml:4: external_inputs.bars: 'bars' is also an out of node 'vwap' "
            "(nodes[0].outs[0]): an input is read from the lake or made by a node, not both; "
            "rename one of them"
        )
    ]


def test_the_pipelines_own_namespace_is_read_by_out_name() -> None:
    assert _errors(SPEC.replace("market.bars_1m", "bars_demo.vwap")) == [
        (
            "f.yaml:4: external_inputs.bars.table: 'bars_demo.vwap' is in this pipeline's own "
            "namespace: read the out 'vwap' by its name in ins"
        )
    ]


def test_an_undeclared_in_is_still_refused_with_a_hint() -> None:
    assert _errors(SPEC.replace("ins: [bars]", "ins: [bar]")) == [
        "f.yaml:9: nodes[0].ins[0]: no node produces 'bar' (did you mean 'bars'?)"
    ]


def test_an_external_input_named_like_a_dagster_name_is_refused() -> None:
    text = SPEC.replace("  bars: {table", "  input: {table").replace("[bars]", "[input]")
    assert _errors(text) == [
        (
            "f.yaml:4: external_inputs.input: 'input' is reserved by Dagster (a Python keyword or "
            "one of its own names); it names the input of the nodes that read it"
        )
    ]


def test_external_is_the_platforms_prefix_not_a_pipeline_id() -> None:
    (line,) = _errors(SPEC.replace("pipeline_id: bars_demo", "pipeline_id: external"))
    assert line.startswith("f.yaml:2: pipeline_id: 'external' is reserved by the platform")


def test_an_otherwise_broken_spec_does_not_report_its_external_ins_as_unproduced() -> None:
    assert _errors(SPEC.replace("kind: trino_sql", "kind: trino_sql\n    resources: {cpu: x}")) == [
        'f.yaml:8: nodes[0].resources.cpu: cpu must be a quantity like "4" or "500m", not \'x\''
    ]


def test_a_ref_may_pin_an_external_input() -> None:
    spec = _load(SPEC)
    params = load_runtime_params({"submission_id": "s", "refs": {"bars": {"snapshot_id": 1}}})
    assert ref_problems(spec, params) == []
    params = load_runtime_params({"submission_id": "s", "refs": {"bar": {"snapshot_id": 1}}})
    assert ref_problems(spec, params) == [
        "refs.bar: no node of pipeline bars_demo reads an input of that name (inputs: bars)"
    ]


# -- read grants --------------------------------------------------------------------------------


def test_grants_match_part_by_part() -> None:
    assert granted(("market", "bars_1m"), ["market.*"])
    assert granted(("market", "bars_1m"), ["market.bars_1m"])
    assert granted(("vendor_x", "eod"), ["vendor_*.*"])
    assert not granted(("marketx", "bars_1m"), ["market.*"])
    assert not granted(("market", "bars_1m"), ["market.bars_1"])
    assert not granted(("market", "bars_1m"), [])
    # a pipeline's namespace: only a grant naming it
    assert granted(("alpha", "prices"), ["*.*"])
    assert not granted_by_name(("alpha", "prices"), ["*.*", "alph*.*"])
    assert granted_by_name(("alpha", "prices"), ["alpha.*"])


def test_read_problems_name_the_field_and_the_grants() -> None:
    spec = _load(SPEC)
    assert read_problems(spec, ["market.*"], "research", frozenset()) == []
    assert read_problems(spec, [], None, frozenset()) == [
        (
            "external_inputs.bars.table",
            (
                "'market.bars_1m' is not granted: pipelines without labels.team (defaults) may "
                "read: none (deploy/teams.yaml reads)"
            ),
        )
    ]
    # `market` is a registered pipeline: the glob no longer opens it
    assert read_problems(spec, ["*.*"], "research", frozenset({"market"})) == [
        (
            "external_inputs.bars.table",
            (
                "'market.bars_1m' is in the namespace of pipeline 'market': only a grant naming "
                "'market' opens it; team research may read: *.* (deploy/teams.yaml reads)"
            ),
        )
    ]
    assert read_problems(spec, ["market.*"], "research", frozenset({"market"})) == []


def test_a_grant_is_namespace_dot_table(tmp_path: Path) -> None:
    path = tmp_path / "teams.yaml"
    path.write_text("teams:\n  research: {reads: [market]}\n")
    with pytest.raises(TeamsFileError) as err:
        load_teams(path)
    assert str(err.value) == (
        f"{path}: teams.research.reads: Value error, 'market' is not namespace.table (either "
        "part may hold * globs, e.g. market.*)"
    )


class _Registry:
    """The registry protocol, with one registered pipeline: `market`."""

    def owner(self, pipeline_id: str) -> str | None:
        return "execution" if pipeline_id == "market" else None

    def ownership(self, spec: DagSpec, team: str, admin: bool) -> str | None:
        return None

    def conflicts(self, spec: DagSpec) -> list[str]:
        return []

    def pipelines(self) -> frozenset[str]:
        return frozenset({"market"})


def test_admission_refuses_reads_on_every_path_admins_too() -> None:
    teams = TeamsFile.model_validate({"teams": {"research": {"reads": ["*.*"]}}})
    spec = _load(SPEC.replace("version: 1\n", "version: 1\nlabels: {team: research}\n"))
    for action in Action:
        for admin in (False, True):
            refused = admit(
                AdmissionRequest(
                    action=action,
                    caller=Caller(team="research", actor="t", admin=admin),
                    teams=teams,
                    spec=spec,
                    registry=_Registry(),
                )
            )
            assert refused is not None and refused.code == "reads", (action, admin)
            assert refused.status == 403
            assert refused.line.startswith(
                "external_inputs.bars.table: 'market.bars_1m' is in the namespace of pipeline "
                "'market'"
            )
    # without the registered pipeline, the glob grant reads it
    assert (
        admit(
            AdmissionRequest(
                action=Action.SUBMIT,
                caller=Caller(team="research", actor="t"),
                teams=teams,
                spec=spec,
            )
        )
        is None
    )
