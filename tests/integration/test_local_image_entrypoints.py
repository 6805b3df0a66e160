"""Image-only python_tasks on the embedded default, through the real python_task dispatch in a
real Dagster step: an image the local map lists runs as its entrypoint in the Pipes sandbox,
an unlisted image is one line naming it and the map, and a listed entrypoint is still held
to the pipeline team's allow-list."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
import yaml
from dagster import AssetOut, Output, PipesSubprocessClient, materialize, multi_asset
from profiles import LOCAL, runners

from quantos_assets.kinds.base import NodeRun, NodeRunError, NodeValue
from quantos_assets.kinds.registry import runner_for
from quantos_assets.spec.models import DagSpec, Node
from quantos_assets.spec_rules.firm import load_spec
from quantos_assets.tasks.market_data import generate
from resources.profile import Profile, active_profile

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
SEED = REPO / "specs" / "seed_bt_xs_bilstm_v1.yaml"


def run_node(
    node: Node, inputs: dict[str, NodeValue], labels: dict[str, str], profile: Profile = LOCAL
) -> dict[str, Any]:
    """One node materialized the way the translation does it (see test_kinds_python_task)."""
    spec = DagSpec.model_construct(
        version=1, pipeline_id="local_images", nodes=[node], labels=labels
    )
    runner = runner_for(node.kind, runners(profile))
    caught: list[NodeRunError] = []

    @multi_asset(
        name=node.id,
        outs={o: AssetOut(key=[spec.pipeline_id, o]) for o in node.outs},
        required_resource_keys=set(runner.required_resource_keys),
    )
    def _node(context):
        try:
            values = runner.run(
                context, NodeRun(spec=spec, node=node, spec_dir=None, inputs=inputs)
            )
        except NodeRunError as err:
            caught.append(err)
            raise
        for out in node.outs:
            yield Output(values[out], output_name=out)

    result = materialize(
        [_node],
        resources={"pipes_subprocess_client": PipesSubprocessClient()},
        raise_on_error=False,
    )
    if caught:
        raise caught[0]
    assert result.success
    return {o: result.output_for_node(node.id, o) for o in node.outs}


def _seed_node(**changes: Any) -> Node:
    """The seed's compute_features node, unchanged unless asked."""
    node = load_spec(SEED).spec.nodes[1]
    assert node.id == "compute_features" and node.image and "entrypoint" not in node.params
    return node.model_copy(update=changes)


def _refused(node: Node, labels: dict[str, str] | None = None, profile: Profile = LOCAL) -> str:
    with pytest.raises(NodeRunError) as err:
        run_node(
            node, {"dataset_uri": pa.table({"x": [1]})}, labels or {"team": "research"}, profile
        )
    message = str(err.value)
    assert "\n" not in message
    return message


def test_the_seed_image_runs_as_its_local_entrypoint_with_the_node_env() -> None:
    bars = generate(symbols=6, start="2023-01-02", end="2023-06-30", seed=11)
    table = run_node(_seed_node(), {"dataset_uri": bars}, {"team": "research"})["feature_table"]
    assert table.column_names[:2] == ["date", "symbol"] and table.column_names[-1] == "fwd_return"
    assert "ret_60d_z" in table.column_names and table.num_rows == 6 * (130 - 60)


def test_an_unlisted_image_fails_with_one_line_naming_it_and_the_map() -> None:
    for image in ("ghcr.io/archetype/feature-kit:0.3.3", "ghcr.io/archetype/other-kit:1.0"):
        assert _refused(_seed_node(image=image)) == (
            f"local_images.compute_features: image '{image}' has no local entrypoint in "
            "deploy/local_images.yaml; "
            "list it there to run it on the embedded default, or run on staging/prod, where the "
            "image runs as its own pod"
        )


def test_a_listed_entrypoint_outside_the_team_allow_list_is_refused(
    tmp_path: Path,
) -> None:
    """The map is no privilege: a shell named in it, or the feature kit for a team not given
    quantos_assets.tasks, is refused before any process starts."""
    images = tmp_path / "local_images.yaml"
    images.write_text(
        yaml.safe_dump(
            {
                "images": [
                    {
                        "image": "ghcr.io/archetype/feature-kit:0.3.2",
                        "entrypoint": "quantos_assets.tasks.feature_kit:build",
                    },
                    {"image": "ghcr.io/evil/shell:1", "entrypoint": "subprocess:getoutput"},
                ]
            }
        )
    )
    teams = tmp_path / "teams.yaml"
    teams.write_text(
        yaml.safe_dump(
            {
                "teams": {
                    "research": {"entrypoints": ["quantos_assets.tasks"]},
                    "quant_b": {"entrypoints": ["quant_b.tasks"]},
                }
            }
        )
    )
    profile = active_profile({"QUANTOS_LOCAL_IMAGES": str(images), "QUANTOS_TEAMS": str(teams)})

    assert _refused(_seed_node(image="ghcr.io/evil/shell:1"), None, profile) == (
        "local_images.compute_features: the local entrypoint of image 'ghcr.io/evil/shell:1' "
        f"({images}) 'subprocess:getoutput' is not allowed: team research may run entrypoints "
        "under: quantos_assets.tasks (deploy/teams.yaml entrypoints)"
    )
    assert _refused(_seed_node(), {"team": "quant_b"}, profile) == (
        "local_images.compute_features: the local entrypoint of image "
        "'ghcr.io/archetype/feature-kit:0.3.2' "
        f"({images}) 'quantos_assets.tasks.feature_kit:build' is not allowed: team quant_b may "
        "run entrypoints "
        "under: quant_b.tasks (deploy/teams.yaml entrypoints)"
    )
