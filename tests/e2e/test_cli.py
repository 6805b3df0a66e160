"""The `quantos` and `dagster` command lines as CI and researchers use them."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SPECS = REPO / "specs"
EXAMPLE = SPECS / "xs_momentum_backtest.yaml"
SEED = SPECS / "seed_bt_xs_bilstm_v1.yaml"

BAD_SPEC = """\
version: 1
pipeline_id: broken
nodes:
  - id: a
    kind: pyhton_task
    outs: [x]
  - id: b
    kind: trino_sql
    ins: [nobody_makes_this]
    outs: [y]
    resources: {mem: "lots"}
"""


def quantos(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "quantos_assets.apps.cli.main", *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={**os.environ, **(env or {})},
        timeout=600,
        check=False,
    )


def test_validate_examples_ok() -> None:
    res = quantos("validate", str(SPECS))
    assert res.returncode == 0, res.stderr
    assert "xs_momentum_v1" in res.stdout and "bt_xs_bilstm_v1" in res.stdout


def test_validate_reports_every_error_with_file_and_line(tmp_path: Path) -> None:
    bad = tmp_path / "broken.yaml"
    bad.write_text(BAD_SPEC)
    res = quantos("validate", str(bad), str(EXAMPLE))
    assert res.returncode == 1
    lines = [line for line in res.stderr.splitlines() if line.startswith(str(bad))]
    assert any(":5: nodes[0].kind:" in line for line in lines), res.stderr
    assert any("nodes[1].ins" in line and "nobody_makes_this" in line for line in lines), res.stderr
    assert any("nodes[1].resources.mem" in line for line in lines), res.stderr
    assert "Traceback" not in res.stderr
    assert "xs_momentum_v1" in res.stdout  # the valid one is still reported valid


ATTACK_SPEC = """\
version: 1
pipeline_id: shell
labels: {team: research}
nodes:
  - id: ok
    kind: python_task
    params: {entrypoint: "quant_lib.tasks.alpha:run"}
    outs: [a]
  - id: pwn
    kind: python_task
    params:
      entrypoint: "subprocess:getoutput"
      cmd: "id; cat .quantos/api_tokens.json"
    outs: [b]
"""


def test_validate_checks_entrypoints_against_the_teams_allow_list(tmp_path: Path) -> None:
    spec = tmp_path / "shell.yaml"
    spec.write_text(ATTACK_SPEC)
    teams = tmp_path / "teams.yaml"
    teams.write_text(
        "teams:\n  research: {entrypoints: [quantos_assets.tasks]}\n  quant: {entrypoints: "
        "[quant_lib.tasks]}\n"
    )
    allowed = "may run entrypoints under: {} (deploy/teams.yaml entrypoints)"
    res = quantos("validate", str(spec), env={"QUANTOS_TEAMS": str(teams)})
    assert res.returncode == 1
    assert res.stderr.splitlines() == [
        f"{spec}:7: nodes[0].params.entrypoint: 'quant_lib.tasks.alpha:run' is not allowed: team "
        "research " + allowed.format("quantos_assets.tasks"),
        f"{spec}:12: nodes[1].params.entrypoint: 'subprocess:getoutput' is not allowed: team "
        "research " + allowed.format("quantos_assets.tasks"),
        "0 valid, 1 invalid",
    ]
    # --team checks as another team: quant may run quant_lib.tasks, and no team may run subprocess
    res = quantos("validate", "--team", "quant", str(spec), env={"QUANTOS_TEAMS": str(teams)})
    assert res.returncode == 1
    assert res.stderr.splitlines() == [
        f"{spec}:12: nodes[1].params.entrypoint: 'subprocess:getoutput' is not allowed: team quant "
        + allowed.format("quant_lib.tasks"),
        "0 valid, 1 invalid",
    ]


def test_schema_is_json_schema_for_the_compiler() -> None:
    res = quantos("schema")
    assert res.returncode == 0
    schema = json.loads(res.stdout)
    assert "nodes" in schema["properties"] and schema.get("additionalProperties") is False


def test_compile_json_lists_assets_pool_retry() -> None:
    res = quantos("compile", str(SEED), "--json")
    assert res.returncode == 0, res.stderr
    graph = json.loads(res.stdout)
    keys = {a["key"] for a in graph["assets"]}
    assert keys == {
        "bt_xs_bilstm_v1/dataset_uri",
        "bt_xs_bilstm_v1/feature_table",
        "bt_xs_bilstm_v1/model_uri",
        "bt_xs_bilstm_v1/metrics_json",
    }
    train = next(a for a in graph["assets"] if a["key"].endswith("model_uri"))
    assert train["pool"] == "gpu_spot"  # gpu: 1, qos spot_ok, priority normal
    assert train["retry"] == {"max_retries": 1, "delay_sec": 60}
    assert train["deps"] == ["bt_xs_bilstm_v1/feature_table"]
    assert graph["run_tags"]["dagster/max_runtime"] == "7200"


def test_run_seed_spec_fetch_and_features_locally(data_dir: Path) -> None:
    """The seed spec, unchanged, on the embedded default: fetch_data reads s3://queries/bt_fetch.sql
    from the stand-in the local profile put in the artifact store (deploy/local_objects/), and
    the image-only compute_features runs as its deploy/local_images.yaml entrypoint. Both
    tables land in Iceberg. (train_model, the bilstm trainer, is tested with the Ray trainers.)"""
    from pyiceberg.catalog.sql import SqlCatalog

    from resources.profile import active_profile

    res = quantos("run", str(SEED), "--select", "fetch_data", "compute_features")
    assert res.returncode == 0, res.stderr
    assert "Traceback" not in res.stderr and "succeeded" in res.stderr.splitlines()[-1]
    profile = active_profile()
    catalog = SqlCatalog("quantos", uri=profile.catalog_uri, warehouse=profile.warehouse)
    dataset = catalog.load_table(("bt_xs_bilstm_v1", "dataset_uri")).scan().to_arrow()
    assert dataset.column_names == ["date", "symbol", "open", "high", "low", "close", "volume"]
    assert dataset.num_rows == 40 * 520  # 40 symbols x the business days of 2022-2023
    features = catalog.load_table(("bt_xs_bilstm_v1", "feature_table")).scan().to_arrow()
    assert features.column_names == [
        "date",
        "symbol",
        "ret_1d_z",
        "ret_5d_z",
        "ret_20d_z",
        "ret_60d_z",
        "vol_20d_z",
        "volume_z",
        "fwd_return",
    ]
    assert features.num_rows == 40 * (520 - 60)  # the 60-day lookback's warm-up dropped
    assert features["fwd_return"].null_count == 40 * 5  # the last 5 dates: no target yet


def test_unknown_command_usage_error() -> None:
    assert quantos("frobnicate").returncode == 2


def test_dagster_definitions_validate_survives_an_invalid_spec(tmp_path: Path) -> None:
    specs = tmp_path / "specs"
    specs.mkdir()
    shutil.copy(EXAMPLE, specs / EXAMPLE.name)
    (specs / "broken.yaml").write_text(BAD_SPEC)
    env = {
        **os.environ,
        "QUANTOS_SPECS_DIR": str(specs),
        "QUANTOS_DATA_DIR": str(tmp_path / "data"),
        "DAGSTER_HOME": str(tmp_path),
        # the repository's workspace: a location per team, each validated (dbt is not the point)
        "QUANTOS_DBT": "off",
    }
    (tmp_path / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    res = subprocess.run(
        [
            str(Path(sys.executable).parent / "dagster"),
            "definitions",
            "validate",
            "-w",
            "workspace.yaml",
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=env,
        timeout=300,
        check=False,
    )
    assert res.returncode == 0, res.stdout + res.stderr
    out = res.stdout + res.stderr
    assert "broken.yaml" in out and "pyhton_task" in out


@pytest.mark.e2e
def test_gateway_refuses_to_start_without_the_teams_file_it_names(tmp_path: Path) -> None:
    """A named QUANTOS_TEAMS that is missing (an unmounted ConfigMap) would give every team the
    defaults, i.e. no secrets scopes: a one-line start-up error instead, for one process or many."""
    missing = tmp_path / "etc" / "teams.yaml"
    env = {
        "QUANTOS_DATA_DIR": str(tmp_path / "data"),
        "QUANTOS_TEAMS": str(missing),
        "QUANTOS_ENV": "local",
    }
    for workers in ("1", "2"):
        res = quantos("gateway", "--port", "1", "--workers", workers, env=env)
        assert res.returncode == 2, res.stdout + res.stderr
        assert res.stderr.strip() == (
            f"quantos: error: TeamsFileError: QUANTOS_TEAMS: {missing} does not exist "
            "(the per-team secrets scopes and quotas)"
        ), res.stderr


def test_a_closed_stdout_ends_quietly_like_unix_tools() -> None:
    """`quantos schema | head -1`: the reader has gone before anything is written. No
    `quantos: error: BrokenPipeError`, the exit status a shell gives for SIGPIPE."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        res = subprocess.run(
            [sys.executable, "-m", "quantos_assets.apps.cli.main", "schema"],
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
            cwd=REPO,
            timeout=120,
            check=False,
        )
    finally:
        os.close(write_end)
    assert (res.returncode, res.stderr) == (141, ""), res.stderr


ONE_ROW = """\
version: 1
pipeline_id: home_demo
nodes:
  - {id: rows, kind: python_task, params: {entrypoint: "quantos_assets.tasks.noop:one_row"}, \
outs: [rows]}
"""


@pytest.mark.e2e
def test_a_dagster_home_that_does_not_exist_yet(tmp_path: Path) -> None:
    """`quantos run` and `quantos sessions sync` create it (an empty folder is an instance);
    the exporter only reads an instance, so a missing one is one line naming it."""
    spec = tmp_path / "home_demo.yaml"
    spec.write_text(ONE_ROW)
    for command, home in (
        (("run", str(spec)), tmp_path / "run" / "dagster_home"),
        (
            ("sessions", "sync", str(SPECS / "xs_daily_eod.yaml")),
            tmp_path / "sync" / "dagster_home",
        ),
    ):
        env = {
            "DAGSTER_HOME": str(home),
            "QUANTOS_DATA_DIR": str(tmp_path / "data"),
            "QUANTOS_DBT": "off",
        }
        res = quantos(*command, env=env)
        assert res.returncode == 0, res.stdout + res.stderr
        assert home.is_dir() and "Traceback" not in res.stderr
    sync = quantos(
        "sessions", "sync", str(SPECS / "xs_daily_eod.yaml"), env={"DAGSTER_HOME": str(home)}
    )
    assert "added 0 sessions" in sync.stdout, sync.stdout + sync.stderr  # the same instance, kept

    missing = tmp_path / "exporter" / "dagster_home"
    res = quantos("exporter", "--port", "1", env={"DAGSTER_HOME": str(missing)})
    assert res.returncode == 2 and not missing.exists()
    assert res.stderr.strip() == (
        f"quantos: error: InstanceHomeError: DAGSTER_HOME {missing} does not exist "
        "(the Dagster instance: its dagster.yaml and storage)"
    ), res.stderr


def test_register_writes_the_registry_as_a_team_through_admission_and_audits_it(
    tmp_path: Path,
) -> None:
    """`quantos register`: the CLI's registry write asks the admission policy, refuses another
    team's pipeline and a shell entrypoint with one line, keeps what it replaces and audits."""
    import yaml

    specs = tmp_path / "specs"
    env = {
        "QUANTOS_ENV": "local",
        "QUANTOS_DATA_DIR": str(tmp_path / "data"),
        "QUANTOS_SPECS_DIR": str(specs),
    }
    spec = {
        "version": 1,
        "pipeline_id": "cli_reg",
        "nodes": [
            {
                "id": "n",
                "kind": "python_task",
                "params": {"entrypoint": "quantos_assets.tasks.noop:one_row"},
                "outs": ["x"],
            }
        ],
    }
    path = tmp_path / "cli_reg.yaml"
    path.write_text(yaml.safe_dump(spec))
    made = quantos("register", str(path), "--team", "research", env=env)
    assert (
        made.returncode == 0
        and made.stdout.startswith("registered ")
        and "owner research" in made.stdout
    ), made.stderr

    path.write_text(yaml.safe_dump({**spec, "description": "v2"}))
    other = quantos("register", str(path), "--team", "execution", env=env)
    assert other.returncode == 1 and other.stderr.strip() == (
        "quantos: register refused (not_owner): pipeline 'cli_reg' belongs to team research: "
        "only that team or an admin can replace it"
    )
    replaced = quantos("register", str(path), "--team", "research", env=env)
    assert replaced.returncode == 0 and replaced.stdout.startswith("replaced (previous kept at "), (
        replaced.stderr
    )
    assert len(list((specs / ".registry" / "history" / "cli_reg").iterdir())) == 1

    shell = tmp_path / "cli_shell.yaml"
    shell.write_text(
        yaml.safe_dump(
            {
                **spec,
                "pipeline_id": "cli_shell",
                "nodes": [
                    {
                        "id": "n",
                        "kind": "python_task",
                        "params": {"entrypoint": "subprocess:getoutput", "cmd": "id"},
                        "outs": ["x"],
                    }
                ],
            }
        )
    )
    refused = quantos("register", str(shell), "--team", "research", env=env)
    assert (
        refused.returncode == 1
        and "register refused (entrypoint): nodes[0].params.entrypoint: 'subprocess:getoutput'"
        in refused.stderr
    )
    assert not (specs / "cli_shell.json").exists() and not (specs / "cli_shell.yaml").exists()

    records = [
        json.loads(line)
        for line in quantos("audit", "show", "--subject", "cli_reg", env=env).stdout.splitlines()
    ]
    assert [(r["action"], r["team"], r["actor"].startswith("cli:")) for r in records] == [
        ("register", "research", True)
    ] * 2
