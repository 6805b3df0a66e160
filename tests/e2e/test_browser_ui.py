"""The Dagster UI as its users meet it, in a real browser (issue 9, seed 003 §8 end to end).

Playwright drives Debian's Chromium (headless, /usr/bin/chromium, installed by `make
install`) against one real `dagster dev` (webserver + daemon) serving the example specs, a
spec whose second node fails until a flag file exists, and the gate fixture whose model
misses its sharpe bound. Each test does what a user does (clicks, dialogs, the session
picker), asserts what the page shows, then cross-checks the instance over GraphQL: the
page could show a status the instance does not have, or the reverse.

Queued runs: the instance's queue gives team `frozen` a limit of 0, as a team quota that
is used up would, so a run of that team waits in the queue until someone cancels it.

Screenshots of every step land in .quantos/artifacts/screenshots/<test>/ (gitignored).
"""

from __future__ import annotations

import re
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from dev_server import (
    REPO,
    REPOSITORY,
    Server,
    dagster_dev,
    location_state,
    tail,
    team_workspace,
)
from playwright.sync_api import Browser, BrowserContext, Locator, Page, expect, sync_playwright

pytestmark = pytest.mark.e2e

# Assertions wait as long as actions do (Playwright's expect defaults to 5 s): on 2 busy cores
# the asset graph's first render alone has taken longer than that.
expect.set_options(timeout=20_000)

CHROMIUM = Path("/usr/bin/chromium")
SHOTS = REPO / ".quantos" / "artifacts" / "screenshots"
EOD = "xs_daily_eod"
FLAKY = "ui_flaky"
GATED = "gated_fail"
FROZEN_TEAM = "frozen"
# The code locations serving them (tenancy/locations.py): research's pipelines, those of no team.
RESEARCH, SHARED, PLATFORM = "team-research", "quantos-shared", "quantos-platform"
# research's pipeline over ui_flaky's table, which the shared location produces: a dependency
# across code locations (research is granted that namespace in the test's teams file)
WATCH = "ui_rows_watch"
WATCH_SPEC = {
    "version": 1,
    "pipeline_id": WATCH,
    "labels": {"team": "research"},
    "external_inputs": {"flaky_rows": {"table": f"{FLAKY}.rows"}},
    "nodes": [
        {
            "id": "count",
            "kind": "trino_sql",
            "params": {"sql": "SELECT count(*) AS n FROM flaky_rows"},
            "ins": ["flaky_rows"],
            "outs": ["row_count"],
        }
    ],
}

FLAKY_SPEC = """\
version: 1
pipeline_id: ui_flaky
description: Fails at its second node until {flag} exists
nodes:
  - id: prepare
    kind: python_task
    params: {{entrypoint: "quantos_assets.tasks.noop:one_row"}}
    outs: [rows]
  - id: flaky
    kind: python_task
    params: {{entrypoint: "quantos_assets.tasks.control:fail_until", flag: "{flag}"}}
    outs: [result]
edges:
  - {{from: prepare, to: flaky}}
"""


def instance_config() -> str:
    """deploy/dagster.local.yaml with a used-up quota for one team."""
    config = yaml.safe_load((REPO / "deploy" / "dagster.local.yaml").read_text())
    queue = config["run_coordinator"]["config"]
    queue["tag_concurrency_limits"] = [{"key": "quantos/team", "value": FROZEN_TEAM, "limit": 0}]
    return yaml.safe_dump(config)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    root = tmp_path_factory.mktemp("browser_ui")
    specs = root / "specs"
    specs.mkdir()
    for name in ("xs_daily_eod.yaml", "xs_momentum_backtest.yaml", "seed_bt_xs_bilstm_v1.yaml"):
        shutil.copy(REPO / "specs" / name, specs / name)
    shutil.copy(
        REPO / "tests" / "fixtures" / "gates" / "gated_model_fail.yaml",
        specs / "gated_model_fail.yaml",
    )
    (specs / "ui_flaky.yaml").write_text(FLAKY_SPEC.format(flag=root / "flag"))
    (specs / f"{WATCH}.yaml").write_text(yaml.safe_dump(WATCH_SPEC, sort_keys=False))
    teams = yaml.safe_load((REPO / "deploy" / "teams.yaml").read_text())
    teams["teams"]["research"]["reads"] = ["market.*", f"{FLAKY}.*"]
    (root / "teams.yaml").write_text(yaml.safe_dump(teams))
    # The workspace a deployment generates: a location per team (research's pipelines), the
    # shared one (ui_flaky has no team), the platform's.
    workspace, names = team_workspace(root, specs, root / "teams.yaml")
    assert names == [PLATFORM, RESEARCH, SHARED], names
    with dagster_dev(
        root,
        specs,
        dagster_yaml=instance_config(),
        workspace=workspace,
        location=RESEARCH,
        extra_env={"QUANTOS_TEAMS": str(root / "teams.yaml")},
        in_place=True,  # as `make run` serves it
    ) as srv:
        wait_for(
            "the shared location", srv, lambda: location_state(srv, SHARED)[0] == "LOADED", 120
        )
        yield srv


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not CHROMIUM.exists():
        pytest.fail(
            f"{CHROMIUM} is missing: `make install` installs it (apt-get install chromium); "
            "see .quantos/chromium-install.log if that failed"
        )
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True)
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def context(browser: Browser) -> Iterator[BrowserContext]:
    """One browser profile for the module: the community pop-up is dismissed once."""
    ctx = browser.new_context(viewport={"width": 1440, "height": 900})
    ctx.set_default_timeout(20_000)
    yield ctx
    ctx.close()


class Ui:
    """A page on the server plus numbered screenshots of the steps of one test."""

    def __init__(self, page: Page, server: Server, shots: Path) -> None:
        self.page = page
        self.server = server
        self.shots = shots
        self._n = 0

    def open(self, path: str) -> Page:
        self.page.goto(f"http://127.0.0.1:{self.server.port}{path}")
        return self.page

    def shot(self, name: str) -> None:
        self._n += 1
        self.page.screenshot(path=str(self.shots / f"{self._n:02d}-{name}.png"))

    def launched_run(self) -> str:
        """Follow the "Launched run …" toast to the run page; the run's id."""
        expect(self.page.get_by_text(re.compile(r"^Launched run [0-9a-f]{8}$"))).to_be_visible()
        self.page.get_by_role("link", name="View", exact=True).click()
        self.page.wait_for_url(re.compile(r"/runs/[0-9a-f-]{36}"))
        return self.page.url.rsplit("/runs/", 1)[1].split("?")[0]

    def run_status(self, status: str, timeout: float) -> None:
        """The status tag of the open run page reads `status` (Success, Failure, ...)."""
        expect(self.page.get_by_text(status, exact=True).first).to_be_visible(
            timeout=timeout * 1000
        )


@pytest.fixture
def ui(context: BrowserContext, server: Server, request: pytest.FixtureRequest) -> Iterator[Ui]:
    page = context.new_page()
    # The Dagster UI greets a new instance with a community pop-up; "Skip" it whenever it shows.
    page.add_locator_handler(page.get_by_role("button", name="Skip"), lambda skip: skip.click())
    shots = SHOTS / request.node.name
    shutil.rmtree(shots, ignore_errors=True)
    shots.mkdir(parents=True)
    helper = Ui(page, server, shots)
    try:
        yield helper
    finally:
        helper.shot("end")
        page.close()


# --------------------------------------------------------------------- GraphQL cross-checks

RUN_QUERY = """
query($id: ID!) { runOrError(runId: $id) { __typename ... on Run {
  runId status startTime parentRunId rootRunId tags { key value }
  stepStats { stepKey status }
  assetMaterializations { assetKey { path } partition } } } }
"""


def run_record(server: Server, run_id: str) -> dict[str, Any]:
    run = server.graphql(RUN_QUERY, {"id": run_id})["runOrError"]
    assert run["__typename"] == "Run", run
    run["tags"] = {t["key"]: t["value"] for t in run["tags"]}
    return run


def wait_for(what: str, server: Server, probe: Callable[[], Any], timeout: float) -> Any:
    deadline = time.monotonic() + timeout
    while not (value := probe()):
        if time.monotonic() > deadline:
            pytest.fail(f"{what} not within {timeout:.0f} s:\n{tail(server.log)}")
        time.sleep(0.5)
    return value


def wait_for_sessions(server: Server) -> list[str]:
    """The EOD pipeline's session partitions, once the daemon's sync sensor made them."""
    query = """query($sel: PipelineSelector!) { pipelineOrError(params: $sel) {
        ... on Pipeline { partitionKeysOrError { ... on PartitionKeys { partitionKeys } } } } }"""
    selector = {
        "repositoryLocationName": RESEARCH,
        "repositoryName": REPOSITORY,
        "pipelineName": EOD,
    }

    def synced() -> list[str] | None:
        data = server.graphql(query, {"sel": selector})["pipelineOrError"]
        keys = (data.get("partitionKeysOrError") or {}).get("partitionKeys") or []
        return keys if "2016-02-17" in keys else None

    return wait_for("the session partitions (sync sensor)", server, synced, 90)


def table_row(page: Page, text: str) -> Locator:
    """The row holding `text` in one of Dagster's virtualized tables (divs, no table roles)."""
    return page.locator("div[class*='VirtualizedTable_row']", has_text=text)


def pick_sessions(page: Page, search: str, listed: list[str], chosen: list[str]) -> None:
    """In the launch dialog's partition picker: search, see exactly `listed`, tick `chosen`."""
    dialog = page.get_by_role("dialog")
    dialog.get_by_text("Select a partition or create one").click()
    page.keyboard.type(search)
    expect(page.get_by_text(f"Select all ({len(listed)})")).to_be_visible()
    for key in listed:
        expect(page.locator("label", has_text=key)).to_be_visible()
    for key in chosen:
        page.locator("label", has_text=key).click()
    page.keyboard.press("Escape")
    expect(
        dialog.get_by_text(f"{len(chosen)} partition{'s' if len(chosen) > 1 else ''}", exact=True)
    ).to_be_visible()


# --------------------------------------------------------------------------- the tests

# Two things are slow for reasons of their own: the gated model trains on a local Ray
# (~30 s) and the backfill daemon ticks every 30 s. The first two tests launch them, the
# last two judge them, so they run while the tests in between do. A judging test run on
# its own (-k) launches what it needs itself.
_launched: dict[str, str] = {}
BACKFILL_SESSIONS = ["2016-02-12", "2016-02-16", "2016-02-17"]


def launch_gated_model(ui: Ui) -> str:
    page = ui.open(f"/locations/{RESEARCH}/asset-groups/{GATED}/lineage")
    for node in ("model_uri", "metrics_json", "staging", "canary", "prod"):
        expect(page.get_by_text(node, exact=True).first).to_be_visible()
    ui.shot("gated-asset-graph")
    page.get_by_role("button", name="Materialize all").click()
    return ui.launched_run()


def launch_backfill(ui: Ui, server: Server) -> str:
    """Backfill the per-session bars over 2016-02-12..2016-02-17 from the asset's page; the
    picker lists sessions only (the weekend and Presidents' Day are not there)."""
    wait_for_sessions(server)
    page = ui.open(f"/assets/{EOD}/bars?view=partitions")
    page.get_by_role("button", name="Materialize…").click()
    pick_sessions(
        page,
        "2016-02-1",
        listed=[
            "2016-02-10",
            "2016-02-11",
            "2016-02-12",
            "2016-02-16",
            "2016-02-17",
            "2016-02-18",
            "2016-02-19",
        ],
        chosen=BACKFILL_SESSIONS,
    )
    ui.shot("range-chosen")
    page.get_by_role("button", name="Launch backfill").click()
    toast = page.get_by_text(re.compile(r"^Created backfill [a-z0-9]+$"))
    expect(toast).to_be_visible()
    return toast.inner_text().rsplit(" ", 1)[1]


def test_launch_a_gated_model_from_its_asset_graph(ui: Ui, server: Server) -> None:
    """The gated pipeline's graph shows the promotion stages behind the model; a launch
    opens the run page, queued or running."""
    _launched["gated_run"] = run_id = launch_gated_model(ui)
    expect(ui.page.get_by_text(re.compile(r"^(Queued|Starting|Started)$")).first).to_be_visible()
    ui.shot("gated-run-launched")
    assert run_record(server, run_id)["status"] in {"QUEUED", "NOT_STARTED", "STARTING", "STARTED"}


BACKFILL_QUERY = """
query($id: String!) {
  partitionBackfillOrError(backfillId: $id) { __typename
    ... on PartitionBackfill { partitionNames assetSelection { path } } }
  runsOrError(filter: {tags: [{key: "dagster/backfill", value: $id}]}) {
    ... on Runs { results { runId status tags { key value } } } } }
"""


def test_launch_a_backfill_of_a_session_range(ui: Ui, server: Server) -> None:
    """The backfill is created for exactly the chosen sessions of the bars."""
    _launched["backfill"] = backfill_id = launch_backfill(ui, server)
    backfill = server.graphql(BACKFILL_QUERY, {"id": backfill_id})["partitionBackfillOrError"]
    assert backfill["__typename"] == "PartitionBackfill", backfill
    assert sorted(backfill["partitionNames"]) == BACKFILL_SESSIONS
    assert backfill["assetSelection"] == [{"path": [EOD, "bars"]}]


def test_materialize_a_pipeline_from_its_asset_graph(ui: Ui, server: Server) -> None:
    """A session of the EOD example from its asset graph: the picker lists sessions only
    (no weekend, no MLK day), the run page turns Success, both assets hold that session."""
    wait_for_sessions(server)
    page = ui.open(f"/locations/{RESEARCH}/asset-groups/{EOD}/lineage")
    expect(page.get_by_text("bars", exact=True).first).to_be_visible()
    expect(page.get_by_text("eod_summary", exact=True).first).to_be_visible()
    ui.shot("asset-graph")
    page.get_by_role("button", name="Materialize all").click()
    expect(page.get_by_text("Launch runs to materialize 2 assets")).to_be_visible()
    pick_sessions(
        page,
        "2016-01-1",
        listed=["2016-01-11", "2016-01-12", "2016-01-13", "2016-01-14", "2016-01-15", "2016-01-19"],
        chosen=["2016-01-14"],
    )
    ui.shot("one-session-chosen")
    page.get_by_role("button", name="Launch 1 run").click()
    run_id = ui.launched_run()
    ui.run_status("Success", timeout=90)
    ui.shot("run-succeeded")

    run = run_record(server, run_id)
    assert run["status"] == "SUCCESS" and run["tags"]["dagster/partition"] == "2016-01-14", run
    assert {
        ("/".join(m["assetKey"]["path"]), m["partition"]) for m in run["assetMaterializations"]
    } == {
        (f"{EOD}/bars", "2016-01-14"),
        (f"{EOD}/eod_summary", "2016-01-14"),
    }


def test_re_execute_a_failed_run_from_failure(ui: Ui, server: Server) -> None:
    """The run fails at its second node; once the cause is fixed (the flag file), the run
    page's "From failure" re-execution runs only that node and succeeds."""
    page = ui.open(f"/locations/{SHARED}/asset-groups/{FLAKY}/lineage")
    page.get_by_role("button", name="Materialize all").click()
    failed_id = ui.launched_run()
    ui.run_status("Failure", timeout=90)
    expect(page.get_by_text("fail_until failed").first).to_be_visible()
    ui.shot("run-failed")

    flag = Path(server.env["QUANTOS_SPECS_DIR"]).parent / "flag"
    flag.touch()  # the fix: the node's input now exists
    reexecute = page.get_by_role("button", name="Re-execute all (*)")
    reexecute.locator("xpath=following-sibling::span//button").click()  # its dropdown
    page.get_by_role("menuitem", name="From failure").click()
    page.wait_for_url(lambda url: failed_id not in url and "/runs/" in url)
    retry_id = page.url.rsplit("/runs/", 1)[1].split("?")[0]
    ui.run_status("Success", timeout=90)
    expect(page.get_by_text("Re-executions (1)")).to_be_visible()
    ui.shot("re-execution-succeeded")

    failed, retry = run_record(server, failed_id), run_record(server, retry_id)
    assert failed["status"] == "FAILURE" and retry["status"] == "SUCCESS"
    assert (retry["parentRunId"], retry["rootRunId"]) == (failed_id, failed_id)
    assert {s["stepKey"]: s["status"] for s in failed["stepStats"]} == {
        f"{FLAKY}__prepare": "SUCCESS",
        f"{FLAKY}__flaky": "FAILURE",
    }
    assert {s["stepKey"]: s["status"] for s in retry["stepStats"]} == {f"{FLAKY}__flaky": "SUCCESS"}
    assert [m["assetKey"]["path"] for m in retry["assetMaterializations"]] == [[FLAKY, "result"]]


RUN_EVENTS = """
query($id: ID!) { logsForRun(runId: $id) { ... on EventConnection { events { __typename } } } }
"""


def test_cancel_a_queued_run(ui: Ui, server: Server) -> None:
    """A run of a team whose quota is used up waits in the queue; the Runs page says why,
    and the run page's Terminate, once confirmed, cancels it before it ever starts."""
    run_id = server.client().submit_job_execution(
        FLAKY,
        repository_location_name=SHARED,
        repository_name=REPOSITORY,
        tags={"quantos/team": FROZEN_TEAM},
    )
    page = ui.open("/runs?tab=queued")
    row = table_row(page, run_id[:8])
    expect(row).to_contain_text("Queued")
    expect(row).to_contain_text(f"quantos/team: {FROZEN_TEAM}")
    row.get_by_text("View queue criteria").click()
    criteria = page.get_by_role("dialog")
    expect(criteria).to_contain_text(f'quantos/team="{FROZEN_TEAM}"')
    ui.shot("queue-criteria")
    criteria.get_by_role("button", name="Close").click()

    page = ui.open(f"/runs/{run_id}")
    ui.run_status("Queued", timeout=20)
    page.get_by_role("button", name="Terminate").click()
    confirm = page.get_by_role("dialog")
    expect(confirm).to_contain_text("1 run will be terminated. Do you wish to continue?")
    ui.shot("confirm-terminate")
    confirm.get_by_role("button", name="Terminate 1 run").click()
    ui.run_status("Canceled", timeout=20)
    ui.shot("canceled")

    run = run_record(server, run_id)
    assert run["status"] == "CANCELED", run
    assert run["stepStats"] == [] and run["assetMaterializations"] == [], run
    events = server.graphql(RUN_EVENTS, {"id": run_id})["logsForRun"]["events"]
    kinds = [e["__typename"] for e in events]
    assert "RunCanceledEvent" in kinds and "RunStartEvent" not in kinds, kinds


PARTITION_STATS = """
query($key: AssetKeyInput!) { assetNodeOrError(assetKey: $key) {
  ... on AssetNode { partitionStats { numMaterialized } } } }
"""


def test_the_backfill_runs_one_run_per_session(ui: Ui, server: Server) -> None:
    """The backfill page lists one run per chosen session, each Success, and the asset's
    partitions count them materialized, as the instance does."""
    backfill_id = _launched.get("backfill") or launch_backfill(ui, server)
    page = ui.open(f"/runs/b/{backfill_id}?tab=runs")
    for session in BACKFILL_SESSIONS:
        expect(table_row(page, f"partition: {session}")).to_contain_text("Success", timeout=120_000)
    expect(table_row(page, "partition: ")).to_have_count(len(BACKFILL_SESSIONS))
    ui.shot("one-run-per-session")

    runs = server.graphql(BACKFILL_QUERY, {"id": backfill_id})["runsOrError"]["results"]
    partitions = sorted(
        t["value"] for r in runs for t in r["tags"] if t["key"] == "dagster/partition"
    )
    assert partitions == BACKFILL_SESSIONS, runs
    assert all(r["status"] == "SUCCESS" for r in runs), runs

    stats = server.graphql(PARTITION_STATS, {"key": {"path": [EOD, "bars"]}})["assetNodeOrError"]
    materialized = stats["partitionStats"]["numMaterialized"]
    assert materialized >= len(BACKFILL_SESSIONS), stats
    page = ui.open(f"/assets/{EOD}/bars?view=partitions")
    expect(page.get_by_text(f"Materialized ({materialized})")).to_be_visible()
    ui.shot("partitions-materialized")


CHECK_EXECUTIONS = """
query($key: AssetKeyInput!, $check: String!) {
  assetCheckExecutions(assetKey: $key, checkName: $check, limit: 1) {
    runId status evaluation { severity description } } }
"""


def test_a_failing_gate_check_blocks_promotion(ui: Ui, server: Server) -> None:
    """The gated fixture's model misses its sharpe bound: the run fails at the gate, the
    model's Checks tab shows metric_sharpe failed with the measured value, and no stage
    is promoted. The run is the one launched by the first test, if it ran."""
    run_id = _launched.get("gated_run") or launch_gated_model(ui)
    page = ui.open(f"/runs/{run_id}")
    ui.run_status("Failure", timeout=180)
    ui.shot("run-failed-at-the-gate")

    page = ui.open(f"/assets/{GATED}/model_uri?view=checks")
    row = table_row(page, "metric_sharpe")
    expect(row).to_contain_text("Failed")
    row.click()
    expect(
        page.get_by_text(re.compile(r"^sharpe 0\.\d+ < 1\.0 \(>= 1\.0 required\)$")).first
    ).to_be_visible()
    ui.shot("gate-check-failed")

    (execution,) = server.graphql(
        CHECK_EXECUTIONS, {"key": {"path": [GATED, "model_uri"]}, "check": "metric_sharpe"}
    )["assetCheckExecutions"]
    assert execution["runId"] == run_id and execution["status"] == "FAILED", execution
    assert execution["evaluation"]["severity"] == "ERROR"
    assert re.fullmatch(
        r"sharpe 0\.\d+ < 1\.0 \(>= 1\.0 required\)", execution["evaluation"]["description"]
    )
    run = run_record(server, run_id)
    assert run["status"] == "FAILURE", run
    materialized = {"/".join(m["assetKey"]["path"]) for m in run["assetMaterializations"]}
    assert f"{GATED}/model_uri" in materialized
    assert not {k for k in materialized if "/promoted/" in k}, materialized


LINEAGE_QUERY = """
query($keys: [AssetKeyInput!]) { assetNodes(assetKeys: $keys) {
  assetKey { path } isMaterializable isExecutable repository { location { name } }
  dependencyKeys { path } dependedByKeys { path } } }
"""


def test_a_dependency_across_code_locations_shows_whole(ui: Ui, server: Server) -> None:
    """research's ui_rows_watch reads the table ui_flaky (the shared location) writes: the
    UI joins the two locations' assets in one lineage, the upstream served (materializable)
    by its own location and the downstream by research's."""
    wait_for(
        "the shared location", server, lambda: location_state(server, SHARED)[0] == "LOADED", 120
    )
    page = ui.open(f"/assets/{WATCH}/row_count?view=lineage&lineageScope=upstream")
    expect(page.get_by_text("row_count", exact=True).first).to_be_visible()
    expect(page.get_by_text("rows", exact=True).first).to_be_visible()
    ui.shot("cross-location-lineage")

    keys = [{"path": [FLAKY, "rows"]}, {"path": [WATCH, "row_count"]}]
    nodes = {
        "/".join(n["assetKey"]["path"]): n
        for n in server.graphql(LINEAGE_QUERY, {"keys": keys})["assetNodes"]
    }
    upstream, downstream = nodes[f"{FLAKY}/rows"], nodes[f"{WATCH}/row_count"]
    assert upstream["repository"]["location"]["name"] == SHARED and upstream["isMaterializable"]
    assert downstream["repository"]["location"]["name"] == RESEARCH
    assert {"path": [WATCH, "row_count"]} in upstream["dependedByKeys"]
    assert downstream["dependencyKeys"] == [{"path": [FLAKY, "rows"]}]
