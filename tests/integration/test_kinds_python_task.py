"""python_task through a real PipesSubprocessClient inside a real Dagster step."""
from __future__ import annotations

from typing import Any

import pyarrow as pa
import pytest
from dagster import (
    AssetOut,
    Output,
    PipesSubprocessClient,
    build_asset_context,
    materialize,
    multi_asset,
)

from quantos_assets.kinds.base import NodeRun, NodeRunError, NodeValue
from quantos_assets.kinds.registry import runner_for
from quantos_assets.spec.models import DagSpec, Node, NodeKind

pytestmark = pytest.mark.integration

# Entrypoints of the child processes, in a module that imports only pyarrow.
HERE = "tests.integration.test_kinds_entrypoints"


# --- harness ---
def _spec(*nodes: Node) -> DagSpec:
    # One node cut out of a pipeline: its ins have no producer here, so skip graph rules.
    return DagSpec.model_construct(version=1, pipeline_id="kinds_py", nodes=list(nodes))


def run_node(node: Node, inputs: dict[str, NodeValue] | None = None) -> dict[str, Any]:
    """Materialize one node the way the translation does, through a real step context."""
    spec = _spec(node)
    runner = runner_for(node.kind)
    caught: list[NodeRunError] = []

    @multi_asset(
        name=node.id,
        outs={o: AssetOut(key=[spec.pipeline_id, o]) for o in node.outs},
        required_resource_keys=set(runner.required_resource_keys),
    )
    def _node(context):
        try:
            values = runner.run(context, NodeRun(spec=spec, node=node, spec_dir=None, inputs=inputs or {}))
        except NodeRunError as err:
            caught.append(err)
            raise
        for out in node.outs:
            yield Output(values[out], output_name=out)

    result = materialize(
        [_node], resources={"pipes_subprocess_client": PipesSubprocessClient()}, raise_on_error=False
    )
    if caught:
        raise caught[0]
    assert result.success
    return {o: result.output_for_node(node.id, o) for o in node.outs}


def _py(id: str, outs: list[str], ins: list[str] | None = None, **params: Any) -> Node:
    return Node(id=id, kind=NodeKind.python_task, params=params, ins=ins or [], outs=outs)


# --- tests ---
def test_market_data_features_backtest_chain_through_pipes() -> None:
    bars = run_node(
        _py("market_data", ["daily_bars"], entrypoint="quantos_assets.tasks.market_data:generate",
            symbols=12, start="2023-01-02", end="2023-09-29", seed=3)
    )["daily_bars"]
    assert isinstance(bars, pa.Table)
    assert bars.column_names == ["date", "symbol", "open", "high", "low", "close", "volume"]
    assert bars.num_rows == 12 * 195 and bars.schema.field("date").type == pa.date32()
    from quantos_assets.tasks.market_data import generate

    assert generate(symbols=12, start="2023-01-02", end="2023-09-29", seed=3).equals(bars), "same seed, same bars"

    features = run_node(
        _py("features", ["features"], ["daily_bars"], entrypoint="quantos_assets.tasks.features:compute"),
        {"daily_bars": bars},
    )["features"]
    assert {"mom_rank", "vol", "fwd_return"} <= set(features.column_names)
    assert 0 < features.num_rows < bars.num_rows

    returns = run_node(
        _py("backtest", ["pnl"], ["universe"], entrypoint="quantos_assets.tasks.backtest:long_short",
            quantile=0.25),
        {"universe": features},
    )["pnl"]
    assert returns.column_names[:2] == ["date", "gross_return"] and returns.num_rows > 100


def test_dict_return_fills_several_outs() -> None:
    bars = pa.table({"symbol": ["A", "B", "C"], "volume": [10, 500, 1000]})
    values = run_node(
        _py("split", ["liquid", "illiquid"], ["bars"], entrypoint=f"{HERE}:split_by_volume", threshold=500),
        {"bars": bars},
    )
    assert values["liquid"]["symbol"].to_pylist() == ["B", "C"]
    assert values["illiquid"]["symbol"].to_pylist() == ["A"]


def test_node_env_reaches_the_child() -> None:
    node = Node(id="env", kind=NodeKind.python_task, params={"entrypoint": f"{HERE}:echo_env"},
                env={"FEATURE_VIEW": "xs_v2"}, outs=["view"])
    assert run_node(node)["view"]["view"].to_pylist() == ["xs_v2"]


def test_child_exception_becomes_one_line() -> None:
    with pytest.raises(NodeRunError) as err:
        run_node(_py("boom", ["x"], ["bars"], entrypoint=f"{HERE}:explode"), {"bars": pa.table({"a": [1, 2]})})
    assert str(err.value) == f"kinds_py.boom: {HERE}:explode failed: ValueError: bad bars: 2 rows"


def test_wrong_outs_and_missing_function_are_reported() -> None:
    with pytest.raises(NodeRunError, match=r"returned keys \['nope'\]; expected exactly the outs \['a', 'b'\]"):
        run_node(_py("bad", ["a", "b"], entrypoint=f"{HERE}:wrong_outs"))
    with pytest.raises(NodeRunError, match=f"EntrypointError: module '{HERE}' has no function 'nothing'"):
        run_node(_py("missing", ["a"], entrypoint=f"{HERE}:nothing"))


def test_image_only_task_needs_production() -> None:
    node = Node(id="compute_features", kind=NodeKind.python_task,
                image="ghcr.io/archetype/feature-kit:0.3.2", env={"FEATURE_VIEW": "xs_v2"},
                ins=["dataset_uri"], outs=["feature_table"])
    spec = DagSpec.model_construct(version=1, pipeline_id="bt_xs_bilstm_v1", nodes=[node])
    with build_asset_context() as context, pytest.raises(NodeRunError) as err:
        runner_for(NodeKind.python_task).run(context, NodeRun(spec=spec, node=node, spec_dir=None))
    assert str(err.value) == (
        "bt_xs_bilstm_v1.compute_features: python_task has no params.entrypoint; "
        "image 'ghcr.io/archetype/feature-kit:0.3.2' needs the production profile (Kubernetes pods) to run"
    )


def test_malformed_entrypoint() -> None:
    with pytest.raises(NodeRunError, match="is not of the form 'package.module:function'"):
        run_node(_py("bad", ["a"], entrypoint="just_a_module"))
