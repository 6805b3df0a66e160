"""python_task through a real PipesSubprocessClient inside a real Dagster step."""

from __future__ import annotations

from pathlib import Path
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
from profiles import LOCAL, runners

from quantos_assets.kinds.base import NodeRun, NodeRunError, NodeValue
from quantos_assets.kinds.registry import runner_for
from quantos_assets.spec.models import DagSpec, Node, NodeKind
from resources.profile import Profile, active_profile

pytestmark = pytest.mark.integration

# Entrypoints of the child processes, in a module that imports only pyarrow.
HERE = "tests.integration.test_kinds_entrypoints"


# --- harness ---
def _spec(*nodes: Node, labels: dict[str, str] | None = None) -> DagSpec:
    # One node cut out of a pipeline: its ins have no producer here, so skip graph rules.
    return DagSpec.model_construct(
        version=1, pipeline_id="kinds_py", nodes=list(nodes), labels=labels or {}
    )


def run_node(
    node: Node,
    inputs: dict[str, NodeValue] | None = None,
    labels: dict[str, str] | None = None,
    profile: Profile = LOCAL,
) -> dict[str, Any]:
    """Materialize one node the way the translation does, through a real step context
    (bound to Dagster's own PipesSubprocessClient: the runner sandboxes it all the same)."""
    spec = _spec(node, labels=labels)
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
                context, NodeRun(spec=spec, node=node, spec_dir=None, inputs=inputs or {})
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


def _py(id: str, outs: list[str], ins: list[str] | None = None, **params: Any) -> Node:
    return Node(id=id, kind=NodeKind.python_task, params=params, ins=ins or [], outs=outs)


# --- tests ---
def test_market_data_features_backtest_chain_through_pipes() -> None:
    bars = run_node(
        _py(
            "market_data",
            ["daily_bars"],
            entrypoint="quantos_assets.tasks.market_data:generate",
            symbols=12,
            start="2023-01-02",
            end="2023-09-29",
            seed=3,
        )
    )["daily_bars"]
    assert isinstance(bars, pa.Table)
    assert bars.column_names == ["date", "symbol", "open", "high", "low", "close", "volume"]
    assert bars.num_rows == 12 * 195 and bars.schema.field("date").type == pa.date32()
    from quantos_assets.tasks.market_data import generate

    assert generate(symbols=12, start="2023-01-02", end="2023-09-29", seed=3).equals(bars), (
        "same seed, same bars"
    )

    features = run_node(
        _py(
            "features",
            ["features"],
            ["daily_bars"],
            entrypoint="quantos_assets.tasks.features:compute",
        ),
        {"daily_bars": bars},
    )["features"]
    assert {"mom_rank", "vol", "fwd_return"} <= set(features.column_names)
    assert 0 < features.num_rows < bars.num_rows

    returns = run_node(
        _py(
            "backtest",
            ["pnl"],
            ["universe"],
            entrypoint="quantos_assets.tasks.backtest:long_short",
            quantile=0.25,
        ),
        {"universe": features},
    )["pnl"]
    assert returns.column_names[:2] == ["date", "gross_return"] and returns.num_rows > 100


def test_dict_return_fills_several_outs() -> None:
    bars = pa.table({"symbol": ["A", "B", "C"], "volume": [10, 500, 1000]})
    values = run_node(
        _py(
            "split",
            ["liquid", "illiquid"],
            ["bars"],
            entrypoint=f"{HERE}:split_by_volume",
            threshold=500,
        ),
        {"bars": bars},
    )
    assert values["liquid"]["symbol"].to_pylist() == ["B", "C"]
    assert values["illiquid"]["symbol"].to_pylist() == ["A"]


def test_node_env_reaches_the_child() -> None:
    node = Node(
        id="env",
        kind=NodeKind.python_task,
        params={"entrypoint": f"{HERE}:echo_env"},
        env={"FEATURE_VIEW": "xs_v2"},
        outs=["view"],
    )
    assert run_node(node)["view"]["view"].to_pylist() == ["xs_v2"]


def test_child_exception_becomes_one_line() -> None:
    with pytest.raises(NodeRunError) as err:
        run_node(
            _py("boom", ["x"], ["bars"], entrypoint=f"{HERE}:explode"),
            {"bars": pa.table({"a": [1, 2]})},
        )
    assert str(err.value) == f"kinds_py.boom: {HERE}:explode failed: ValueError: bad bars: 2 rows"


def test_wrong_outs_and_missing_function_are_reported() -> None:
    with pytest.raises(
        NodeRunError, match=r"returned keys \['nope'\]; expected exactly the outs \['a', 'b'\]"
    ):
        run_node(_py("bad", ["a", "b"], entrypoint=f"{HERE}:wrong_outs"))
    with pytest.raises(
        NodeRunError, match=f"EntrypointError: module '{HERE}' has no function 'nothing'"
    ):
        run_node(_py("missing", ["a"], entrypoint=f"{HERE}:nothing"))


def test_image_only_task_not_in_the_local_image_map() -> None:
    """Locally an image-only task runs as its entry in deploy/local_images.yaml
    (tests/integration/test_local_images.py); an image without one fails before anything runs."""
    node = Node(
        id="compute_features",
        kind=NodeKind.python_task,
        image="ghcr.io/archetype/feature-kit:9.9.9",
        env={"FEATURE_VIEW": "xs_v2"},
        ins=["dataset_uri"],
        outs=["feature_table"],
    )
    spec = DagSpec.model_construct(version=1, pipeline_id="bt_xs_bilstm_v1", nodes=[node])
    with build_asset_context() as context, pytest.raises(NodeRunError) as err:
        runner_for(NodeKind.python_task, runners()).run(
            context, NodeRun(spec=spec, node=node, spec_dir=None)
        )
    assert str(err.value) == (
        "bt_xs_bilstm_v1.compute_features: image 'ghcr.io/archetype/feature-kit:9.9.9' has no "
        "local entrypoint in deploy/local_images.yaml; list it there to run it on the embedded "
        "default, or run on staging/prod, where the image runs as its own pod"
    )


def test_malformed_entrypoint() -> None:
    with pytest.raises(NodeRunError, match="is not of the form 'package.module:function'"):
        run_node(_py("bad", ["a"], entrypoint="just_a_module"))


# --- the sandbox (issue 16, defect 3) ---
PLATFORM_SECRETS = {
    "QUANTOS_API_TOKENS": "/srv/quantos/api_tokens.json",
    "QUANTOS_GATEWAY_DB": "postgresql://gateway:gw-password@db/gateway",
    "QUANTOS_CATALOG_URI": "postgresql://catalog:cat-password@db/catalog",
    "QUANTOS_DAGSTER_PG_URL": "postgresql://dagster:pg-password@db/dagster",
    "AWS_ACCESS_KEY_ID": "AKIAPLATFORM",
    "AWS_SECRET_ACCESS_KEY": "platform-secret-key",
    "QUANTOS_AUDIT_KEY": "audit-hmac-key",
}


@pytest.fixture
def platform_env(tmp_path, monkeypatch: pytest.MonkeyPatch):
    """A step process as the platform runs it: secrets in its env, the token store in its cwd."""
    for name, value in PLATFORM_SECRETS.items():
        monkeypatch.setenv(name, value)
    (tmp_path / ".quantos").mkdir()
    (tmp_path / ".quantos" / "api_tokens.json").write_text('{"tokens": ["TOKEN-STORE-CONTENT"]}')
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_an_allowed_task_sees_none_of_the_platforms_secrets(platform_env) -> None:
    node = Node(
        id="env",
        kind=NodeKind.python_task,
        params={"entrypoint": f"{HERE}:environment"},
        env={"FEATURE_VIEW": "xs_v2", "LD_PRELOAD": "/tmp/evil.so", "PYTHONPATH": "/tmp/evil"},
        outs=["env"],
    )
    seen = dict(zip(*run_node(node)["env"].to_pydict().values(), strict=True))
    cwd = Path(seen.pop("<cwd>"))
    leaked = {
        k: v for k, v in seen.items() if k in PLATFORM_SECRETS or v in PLATFORM_SECRETS.values()
    }
    assert not leaked, leaked
    assert seen["FEATURE_VIEW"] == "xs_v2"  # the node's own env still arrives
    assert (
        "LD_PRELOAD" not in seen and "/tmp/evil" not in seen["PYTHONPATH"]
    )  # but not the loader's
    # Only the allow-list: nothing of the step's own QUANTOS_* / DAGSTER_HOME, only Pipes' bootstrap
    assert not [k for k in seen if k.startswith("QUANTOS_") or k == "DAGSTER_HOME"], sorted(seen)
    assert {k for k in seen if k.startswith("DAGSTER_")} == {
        "DAGSTER_PIPES_CONTEXT",
        "DAGSTER_PIPES_MESSAGES",
    }
    # A working directory of its own, HOME and TMPDIR inside it, gone afterwards
    assert cwd != platform_env and not cwd.is_relative_to(platform_env)
    assert Path(seen["HOME"]).parent == cwd and Path(seen["TMPDIR"]).parent == cwd
    assert not cwd.exists()


def test_a_shell_that_got_through_cannot_read_the_token_store(platform_env, monkeypatch) -> None:
    """The attack of issue 16 with the allow-list bypassed (this team may run `tests.`): no
    token store through the cwd, no secret through the environment."""
    cmd = "id; cat .quantos/api_tokens.json; env"
    out = run_node(_py("attack", ["out"], entrypoint=f"{HERE}:shell", cmd=cmd))["out"]["out"][
        0
    ].as_py()
    assert "uid=" in out, out  # the shell ran
    assert "TOKEN-STORE-CONTENT" not in out
    assert not [v for v in PLATFORM_SECRETS.values() if v in out]


def test_an_entrypoint_outside_the_teams_modules_is_refused_before_it_starts(
    platform_env,
) -> None:
    teams = platform_env / "teams.yaml"
    teams.write_text(
        "defaults: {entrypoints: [quantos_assets.tasks]}\nteams: {quant: {entrypoints: "
        "[tests.integration]}}\n"
    )
    profile = active_profile({"QUANTOS_TEAMS": str(teams)})
    with pytest.raises(NodeRunError) as err:
        run_node(
            _py(
                "attack",
                ["out"],
                entrypoint="subprocess:getoutput",
                cmd="id; cat .quantos/api_tokens.json",
            ),
            profile=profile,
        )
    assert str(err.value) == (
        "kinds_py.attack: params.entrypoint 'subprocess:getoutput' is not allowed: pipelines "
        "without labels.team (defaults) may run entrypoints under: quantos_assets.tasks "
        "(deploy/teams.yaml entrypoints)"
    )
    # The team's own prefix is whole components: tests.integration allows tests.integration.x, not
    # tests.integrationx
    node = _py("ok", ["view"], entrypoint=f"{HERE}:echo_env")
    with pytest.raises(NodeRunError, match="is not allowed: pipelines without labels.team"):
        run_node(node, profile=profile)
    assert run_node(node, labels={"team": "quant"}, profile=profile)["view"].num_rows == 1


def test_an_allowed_module_cannot_lend_out_what_it_imported() -> None:
    with pytest.raises(
        NodeRunError,
        match=r"'getoutput' comes from module 'subprocess', which is not under an allowed module",
    ):
        run_node(_py("lent", ["out"], entrypoint=f"{HERE}:getoutput", cmd="id"))
