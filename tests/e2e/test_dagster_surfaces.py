"""The real Dagster surfaces: `dagster dev` (webserver + daemon) over GraphQL, and the CLI.

A module-scoped `dagster dev` serves the workspace with the example, the seed and a
broken spec; the tests read the asset graph through GraphQL, launch a session of the EOD
pipeline with Dagster's GraphQL client and wait for the daemon to dequeue and run it, and
backfill a session range as the UI does. The CLI tests
materialize assets with `dagster asset materialize` into their own DAGSTER_HOME.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor

import pytest
from dagster import AssetKey, DagsterEventType, DagsterInstance
from dagster._core.events import LoadedInputData
from dev_server import (
    DAGSTER,
    LOCATION,
    REPO,
    REPOSITORY,
    Server,
    dagster_dev,
    isolated_env,
    stop,
    tail,
)

SPECS = REPO / "specs"
EXAMPLE = SPECS / "xs_momentum_backtest.yaml"
SEED = SPECS / "seed_bt_xs_bilstm_v1.yaml"
EOD = SPECS / "xs_daily_eod.yaml"
PIPELINE = "xs_momentum_v1"

BROKEN_SPEC = """\
version: 1
pipeline_id: broken
nodes:
  - id: a
    kind: pyhton_task
    outs: [x]
"""


pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("dagster_dev")
    specs = root / "specs"
    specs.mkdir()
    shutil.copy(EXAMPLE, specs / EXAMPLE.name)
    shutil.copy(SEED, specs / SEED.name)
    shutil.copy(EOD, specs / EOD.name)
    (specs / "broken.yaml").write_text(BROKEN_SPEC)
    with dagster_dev(root, specs) as srv:
        yield srv


ASSET_NODES_QUERY = """
{ assetNodes { assetKey { path } groupName description jobNames
    dependencyKeys { path } } }
"""


@pytest.fixture(scope="module")
def asset_nodes(server: Server) -> dict[str, dict]:
    nodes = server.graphql(ASSET_NODES_QUERY)["assetNodes"]
    return {"/".join(n["assetKey"]["path"]): n for n in nodes}


def test_example_asset_graph_over_graphql(asset_nodes: dict[str, dict]) -> None:
    example = {k: n for k, n in asset_nodes.items() if k.startswith(f"{PIPELINE}/")}
    assert set(example) == {
        f"{PIPELINE}/{name}"
        for name in (
            "daily_bars",
            "features",
            "universe",
            "model_uri",
            "metrics_json",
            "backtest_returns",
            # its gates block: one asset per promotion stage
            "promoted/staging",
            "promoted/canary",
            "promoted/prod",
        )
    }, sorted(asset_nodes)
    assert {n["groupName"] for n in example.values()} == {PIPELINE}

    def deps(name: str) -> set[str]:
        return {"/".join(d["path"]) for d in example[f"{PIPELINE}/{name}"]["dependencyKeys"]}

    assert deps("daily_bars") == set()
    assert deps("features") == {f"{PIPELINE}/daily_bars"}
    assert deps("universe") == {f"{PIPELINE}/features"}
    assert deps("model_uri") == {f"{PIPELINE}/universe"}
    assert deps("metrics_json") == {f"{PIPELINE}/universe"}
    assert deps("backtest_returns") == {f"{PIPELINE}/universe"}
    assert all(PIPELINE in n["jobNames"] for n in example.values())


def test_broken_spec_shown_in_invalid_specs_group(asset_nodes: dict[str, dict]) -> None:
    invalid = [n for n in asset_nodes.values() if n["groupName"] == "invalid_specs"]
    assert [n["assetKey"]["path"] for n in invalid] == [["invalid_specs", "broken"]]
    description = invalid[0]["description"]
    error_lines = [line for line in description.splitlines() if "broken.yaml" in line]
    assert any(":5: nodes[0].kind:" in line and "pyhton_task" in line for line in error_lines), (
        description
    )
    # the valid specs beside it still load
    assert any(k.startswith("bt_xs_bilstm_v1/") for k in asset_nodes)


def test_jobs_of_both_valid_specs_exist(server: Server) -> None:
    data = server.graphql(
        """query($sel: RepositorySelector!) { repositoryOrError(repositorySelector: $sel) {
             __typename ... on Repository { jobs { name } } ... on PythonError { message } } }""",
        {"sel": {"repositoryLocationName": LOCATION, "repositoryName": REPOSITORY}},
    )["repositoryOrError"]
    assert data["__typename"] == "Repository", data
    jobs = {j["name"] for j in data["jobs"]}
    assert {PIPELINE, "bt_xs_bilstm_v1"} <= jobs, jobs


RUN_QUERY = """
query($runId: ID!) { runOrError(runId: $runId) { __typename
  ... on Run { status tags { key value }
    assetMaterializations { assetKey { path } partition
      metadataEntries { label __typename
        ... on TextMetadataEntry { text }
        ... on IntMetadataEntry { intValue } } } } } }
"""

STEP_FAILURES_QUERY = """
query($runId: ID!) { logsForRun(runId: $runId) { __typename
  ... on EventConnection { events { __typename
    ... on ExecutionStepFailureEvent { stepKey error { message } }
    ... on RunFailureEvent { message } } } } }
"""

SESSION_KEYS_QUERY = """query($sel: PipelineSelector!) { pipelineOrError(params: $sel) {
    ... on Pipeline { partitionKeysOrError { ... on PartitionKeys { partitionKeys } } } } }"""


def _eod_sessions(server: Server) -> list[str]:
    """The EOD pipeline's session partitions, once the daemon's sync sensor has made them."""
    selector = {
        "repositoryLocationName": LOCATION,
        "repositoryName": REPOSITORY,
        "pipelineName": "xs_daily_eod",
    }

    def synced() -> list[str] | None:
        data = server.graphql(SESSION_KEYS_QUERY, {"sel": selector})["pipelineOrError"]
        keys = (data.get("partitionKeysOrError") or {}).get("partitionKeys") or []
        return keys if "2016-01-20" in keys else None

    return _wait_for("the session sync sensor", server, synced, 90)


def test_launch_a_session_through_the_graphql_client(server: Server) -> None:
    """Dagster's own Python GraphQL client (what CI and scripts use) launches one session of
    the EOD pipeline; the daemon dequeues and runs it and both assets hold that session.
    (The example model through GraphQL end to end, gate included, is
    test_promotion_observed.py: one full example run per stack is enough.)"""
    from dagster import DagsterRunStatus

    assert "2016-01-14" in _eod_sessions(server)
    client = server.client()
    run_id = client.submit_job_execution(
        "xs_daily_eod",
        repository_location_name=LOCATION,
        repository_name=REPOSITORY,
        tags={"dagster/partition": "2016-01-14"},
    )
    finished = {DagsterRunStatus.SUCCESS, DagsterRunStatus.FAILURE, DagsterRunStatus.CANCELED}
    deadline = time.monotonic() + 150
    status = client.get_run_status(run_id)
    while status not in finished:
        if time.monotonic() > deadline:
            pytest.fail(f"run {run_id} still {status} after 150 s:\n{tail(server.log)}")
        time.sleep(0.5)
        status = client.get_run_status(run_id)
    if status != DagsterRunStatus.SUCCESS:
        events = server.graphql(STEP_FAILURES_QUERY, {"runId": run_id})["logsForRun"]
        failures = [e for e in events.get("events", []) if e["__typename"].endswith("FailureEvent")]
        pytest.fail(f"run {run_id} ended {status}: {failures}\n{tail(server.log)}")

    run = server.graphql(RUN_QUERY, {"runId": run_id})["runOrError"]
    assert run["status"] == "SUCCESS"
    assert {t["key"]: t["value"] for t in run["tags"]}["dagster/partition"] == "2016-01-14"
    mats = {
        ("/".join(m["assetKey"]["path"]), m["partition"]): m for m in run["assetMaterializations"]
    }
    assert set(mats) == {
        ("xs_daily_eod/bars", "2016-01-14"),
        ("xs_daily_eod/eod_summary", "2016-01-14"),
    }
    summary = {
        e["label"]: e for e in mats[("xs_daily_eod/eod_summary", "2016-01-14")]["metadataEntries"]
    }
    assert summary["rows"]["intValue"] == 1, summary  # one session rolled up
    assert summary["snapshot_id"], summary  # stored in the lake


# ---------------------------------------------------------------- the dagster CLI


def _dagster(
    *args: str, env: dict[str, str], timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    """One dagster CLI call in its own process group, so nothing it starts outlives it."""
    proc = subprocess.Popen(
        [str(DAGSTER), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
        cwd=REPO,
        env=env,
        start_new_session=True,
    )
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        stop(proc, timeout=10)
        out, err = proc.communicate()
        pytest.fail(f"dagster {' '.join(args)} still running after {timeout} s:\n{out}\n{err}")
    stop(proc)  # leftovers of the group, if any
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


@pytest.fixture(scope="module")
def cli_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("dagster_cli")
    specs = root / "specs"
    specs.mkdir()
    shutil.copy(EXAMPLE, specs / EXAMPLE.name)
    return {**isolated_env(root, specs), "QUANTOS_DBT": "off"}


def _latest_meta(home: str, key: AssetKey) -> dict:
    with DagsterInstance.from_config(home) as instance:
        event = instance.get_latest_materialization_event(key)
        assert event is not None and event.asset_materialization is not None, (
            f"{key.to_user_string()} was never materialized in {home}"
        )
        return {k: v.value for k, v in event.asset_materialization.metadata.items()}


def test_cli_asset_materialize_then_downstream_alone(cli_env: dict[str, str]) -> None:
    home = cli_env["DAGSTER_HOME"]
    first = _dagster(
        "asset",
        "materialize",
        "-m",
        "definitions.definitions",
        "--select",
        f"{PIPELINE}/daily_bars,{PIPELINE}/features",
        env=cli_env,
    )
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    bars = _latest_meta(home, AssetKey([PIPELINE, "daily_bars"]))
    features = _latest_meta(home, AssetKey([PIPELINE, "features"]))
    assert bars.get("snapshot_id") is not None, bars
    assert features.get("snapshot_id") is not None, features
    with DagsterInstance.from_config(home) as instance:
        assert instance.get_latest_materialization_event(AssetKey([PIPELINE, "universe"])) is None

    second = _dagster(
        "asset",
        "materialize",
        "-m",
        "definitions.definitions",
        "--select",
        f"{PIPELINE}/universe",
        env=cli_env,
    )
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    universe = _latest_meta(home, AssetKey([PIPELINE, "universe"]))
    assert universe.get("snapshot_id") is not None and universe.get("rows", 0) > 0, universe
    with DagsterInstance.from_config(home) as instance:
        # features were read, not recomputed: still one materialization, the first run's
        latest = instance.get_latest_materialization_event(AssetKey([PIPELINE, "features"]))
        assert latest is not None and latest.asset_materialization is not None
        assert latest.asset_materialization.metadata["snapshot_id"].value == features["snapshot_id"]
        # ... and the second run read exactly the snapshot the first one recorded
        universe_event = instance.get_latest_materialization_event(AssetKey([PIPELINE, "universe"]))
        assert universe_event is not None
        run_id = universe_event.run_id
        assert run_id != latest.run_id
        inputs = [
            e.dagster_event.event_specific_data
            for e in instance.all_logs(run_id, of_type=DagsterEventType.LOADED_INPUT)
            if e.dagster_event
        ]
        loaded = [data.metadata for data in inputs if isinstance(data, LoadedInputData)]
        assert len(loaded) == len(inputs)
    read = [m["snapshot_id"].value for m in loaded if "snapshot_id" in m]
    assert read == [features["snapshot_id"]], loaded


BACKFILL_MUTATION = """
mutation($params: LaunchBackfillParams!) { launchPartitionBackfill(backfillParams: $params) {
  __typename ... on LaunchBackfillSuccess { backfillId } ... on PythonError { message }
  ... on PartitionKeysNotFoundError { message } ... on InvalidSubsetError { message } } }
"""

BACKFILL_RUNS_QUERY = """
query($id: String!) {
  partitionBackfillOrError(backfillId: $id) { __typename ... on PartitionBackfill { status } }
  runsOrError(filter: {tags: [{key: "dagster/backfill", value: $id}]}) {
    ... on Runs { results { runId status tags { key value } } } } }
"""


def _wait_for(what: str, server: Server, probe, timeout: float):
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"{what} not within {timeout:.0f} s:\n{tail(server.log)}")
        time.sleep(0.5)


@pytest.fixture(scope="module", autouse=True)
def ui_backfill(server: Server) -> Iterator[Future[tuple[list[str], str]]]:
    """The UI's launchPartitionBackfill over 2016-01-15..2016-01-19 of the per-session bars,
    launched (in a thread, once the daemon's sync sensor has made the sessions) as the
    module's stack comes up: (the session keys in that range, the backfill's id).

    The sync sensor and the backfill daemon are each looked at every 30 s (the backfill: once
    to launch its runs, once more to mark it done), so the backfill starts here and its test
    waits for it while the module's other tests run, rather than idle in that test."""

    def launch() -> tuple[list[str], str]:
        keys = _eod_sessions(server)
        in_range = keys[keys.index("2016-01-15") : keys.index("2016-01-19") + 1]
        launched = server.graphql(
            BACKFILL_MUTATION,
            {
                "params": {
                    "partitionNames": in_range,
                    "assetSelection": [{"path": ["xs_daily_eod", "bars"]}],
                }
            },
        )["launchPartitionBackfill"]
        assert launched["__typename"] == "LaunchBackfillSuccess", launched
        return in_range, launched["backfillId"]

    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="ui_backfill") as pool:
        yield pool.submit(launch)


def test_ui_backfill_of_a_session_range_runs_one_run_per_session(
    server: Server, ui_backfill: Future[tuple[list[str], str]]
) -> None:
    """The UI's backfill over 2016-01-15..2016-01-19 of the per-session bars (`ui_backfill`):
    the daemon's sync sensor has made the sessions partitions, and the backfill runs exactly
    the two sessions (the weekend and MLK day are not keys)."""
    in_range, backfill_id = ui_backfill.result(timeout=180)
    assert in_range == ["2016-01-15", "2016-01-19"]

    def finished() -> dict | None:
        data = server.graphql(BACKFILL_RUNS_QUERY, {"id": backfill_id})
        runs = data["runsOrError"]["results"]
        done = data["partitionBackfillOrError"]["status"] in (
            "COMPLETED",
            "COMPLETED_SUCCESS",
            "FAILED",
        )
        return (
            data
            if done and runs and all(r["status"] in ("SUCCESS", "FAILURE") for r in runs)
            else None
        )

    data = _wait_for(f"backfill {backfill_id}", server, finished, 240)
    runs = data["runsOrError"]["results"]
    partitions = sorted(
        t["value"] for r in runs for t in r["tags"] if t["key"] == "dagster/partition"
    )
    assert partitions == in_range, runs
    assert all(r["status"] == "SUCCESS" for r in runs), runs


CHECK_EXECUTIONS_QUERY = """
query($key: AssetKeyInput!) { assetCheckExecutions(assetKey: $key, checkName: \
"calendar_freshness", limit: 5) {
  status evaluation { severity description } } }
"""


def test_daemon_records_calendar_freshness_as_check_results(server: Server) -> None:
    """The freshness sensor runs in the daemon and stores its verdict on the asset's check."""

    def recorded() -> list[dict] | None:
        rows = server.graphql(
            CHECK_EXECUTIONS_QUERY, {"key": {"path": ["xs_daily_eod", "eod_summary"]}}
        )
        return rows["assetCheckExecutions"] or None

    executions = _wait_for("a calendar_freshness result", server, recorded, 90)
    latest = executions[0]
    # eod_summary holds no session or only 2016-01-14 (the GraphQL launch above): stale, as
    # a warning, with why.
    assert latest["status"] == "FAILED", latest
    assert latest["evaluation"]["severity"] == "WARN"
    assert re.search(
        r"never materialized|\d+ sessions behind \(holds 2016-01-14",
        latest["evaluation"]["description"],
    )
