"""The user guide's walk-through, run as written on a fresh instance, so the guide cannot
drift from what the platform does (issue 21, point 6).

The commands and the outputs it quotes are read from docs/user-guide.md itself: `quantos
validate`'s output, the token and curl lines of the gateway submission, the `dagster asset
materialize --partition-range` command, the release listing and `quantos audit verify`'s line.
The two UI steps are done as the UI does them: "Materialize all…" launches the pipeline's run
over GraphQL, and the partitions dialog's "Launch backfill" is launchPartitionBackfill.

The stack is the repository's own: specs/, the per-team workspace `make run` serves, the
teams file, a real `dagster dev` and `quantos gateway`. Runs go in one process and without the
dbt models (dev_server.py's fast defaults): the guide's commands are what is under test, not
the executor.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from dev_server import (
    REPO,
    WORKSPACE_QUERY,
    Server,
    dagster_dev,
    gateway_process,
    tail,
    team_workspace,
)

from quantos_assets.apps.client.graphql import DagsterAPI

pytestmark = pytest.mark.e2e

GUIDE = REPO / "docs" / "user-guide.md"
FINISHED = {"SUCCESS", "FAILURE", "CANCELED"}

BACKFILL_MUTATION = """
mutation($params: LaunchBackfillParams!) { launchPartitionBackfill(backfillParams: $params) {
  __typename ... on LaunchBackfillSuccess { backfillId } ... on PythonError { message } } }
"""
BACKFILL_RUNS_QUERY = """
query($id: String!) {
  partitionBackfillOrError(backfillId: $id) { __typename ... on PartitionBackfill { status } }
  runsOrError(filter: {tags: [{key: "dagster/backfill", value: $id}]}) {
    ... on Runs { results { runId status } } } }
"""


def walkthrough() -> str:
    text = GUIDE.read_text()
    start = text.index("## Walk-through")
    return text[start : text.index("\n## ", start + 1)]


def quoted_output(section: str, command: str) -> list[str]:
    """The lines the guide shows after `$ COMMAND` in a text block, up to the next `$ ` line
    or the end of the block."""
    lines = section.splitlines()
    at = next(i for i, line in enumerate(lines) if line.startswith(f"$ {command}"))
    out: list[str] = []
    for line in lines[at + 1 :]:
        if line.startswith(("$ ", "```")):
            break
        out.append(line)
    return out


def guide_command(section: str, starts: str) -> list[str]:
    """The guide's shell command that starts with `starts` (backslash continuations joined,
    the `uv run` prefix dropped: the test runs this venv's tools), as argv."""
    joined = section.replace("\\\n", " ")
    line = next(
        candidate.strip().removeprefix("$ ")
        for candidate in joined.splitlines()
        if candidate.strip().removeprefix("$ ").startswith(starts)
    )
    line = line.split("  #", 1)[0].strip()
    if line.startswith("TOKEN=$(") and line.endswith(")"):  # the command whose output is kept
        line = line.removeprefix("TOKEN=$(").removesuffix(")")
    argv = shlex.split(line)
    return argv[2:] if argv[:2] == ["uv", "run"] else argv


def run_cli(
    env: dict[str, str], argv: list[str], timeout: float = 300, terminal: bool = False
) -> str:
    """A guide command in this venv: `quantos` as its module, `dagster` as this venv's. Its
    stdout; `terminal`: stdout and stderr as one stream, as a terminal shows them."""
    tool, *args = argv
    if tool == "quantos":
        cmd = [sys.executable, "-m", "quantos_assets.apps.cli.main", *args]
    else:
        cmd = [str(Path(sys.executable).parent / tool), *args]
    done = subprocess.run(
        cmd,
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT if terminal else subprocess.PIPE,
        text=True,
        timeout=timeout,
        check=False,
    )
    said = f"{done.stdout[-3000:]}{done.stderr[-3000:] if done.stderr else ''}"
    assert done.returncode == 0, f"{' '.join(argv)} -> {done.returncode}\n{said}"
    return done.stdout


def wait_run(api: DagsterAPI, run_id: str, server: Server, timeout: float = 300) -> str:
    deadline = time.monotonic() + timeout
    while (status := api.run(run_id)["status"]) not in FINISHED:
        if time.monotonic() > deadline:
            pytest.fail(f"run {run_id} still {status} after {timeout:.0f} s:\n{tail(server.log)}")
        time.sleep(1)
    return status


def test_the_walkthrough_works_as_written(tmp_path: Path) -> None:
    section = walkthrough()
    specs = REPO / "specs"
    workspace, _ = team_workspace(tmp_path, specs)

    # 2. validate prints exactly what the guide shows (compile: it runs)
    env_cli = {**os.environ, "QUANTOS_SPECS_DIR": str(specs)}
    shown = quoted_output(section, "uv run quantos validate specs/")
    validated = run_cli(env_cli, ["quantos", "validate", "specs/"], terminal=True)
    assert validated.splitlines() == shown
    run_cli(env_cli, guide_command(section, "uv run quantos compile specs/"))

    # served as `make run` serves it (in-place code servers, then dagster dev)
    with dagster_dev(
        tmp_path, specs, workspace=workspace, location="team-research", in_place=True
    ) as srv:
        deadline = time.monotonic() + 180
        while {
            e["loadStatus"]
            for e in srv.graphql(WORKSPACE_QUERY)["workspaceOrError"]["locationEntries"]
        } != {"LOADED"}:
            assert time.monotonic() < deadline, tail(srv.log)
            time.sleep(1)
        env = {**srv.env, "QUANTOS_DAGSTER_URL": f"http://127.0.0.1:{srv.port}"}
        api = DagsterAPI(env["QUANTOS_DAGSTER_URL"])

        # 3. "Materialize all…" in the group's graph: the pipeline's run
        ui_run = api.launch("xs_momentum_v1", {}, location="team-research")
        assert wait_run(api, ui_run, srv) == "SUCCESS"  # the guide's reader waits for it

        # ... and the compiler's submission through the gateway, with the guide's token
        token = run_cli(env, guide_command(section, "TOKEN=$(uv run quantos token create"))
        token = token.strip()
        body = json.loads(re.search(r"-d '(\{.*?\})'", section, re.DOTALL).group(1))  # type: ignore[union-attr]
        submission = body["runtime_params"]["submission_id"]
        with gateway_process(env, tmp_path) as (url, _proc, _log):
            headers = {"Authorization": f"Bearer {token}"}
            res = httpx.post(f"{url}/api/orch/submit", json=body, headers=headers, timeout=60)
            assert res.status_code == 202, res.text
            answer = res.json()
            shown = json.loads(quoted_output(section, "curl -s -X POST")[2])
            assert set(answer) == set(shown), (answer, shown)
            same = ("submission_id", "run_id", "state", "pipeline_id")
            assert {k: answer[k] for k in same} == {k: shown[k] for k in same}
            deadline = time.monotonic() + 300
            while (
                status := httpx.get(
                    f"{url}/api/orch/status/{submission}", headers=headers, timeout=30
                ).json()
            )["status"] not in FINISHED:
                assert time.monotonic() < deadline, (status, tail(srv.log))
                time.sleep(1)
            assert status["status"] == "SUCCESS", status
        logs = run_cli(env, ["quantos", "logs", submission, "--node", "train_model"])
        assert logs.strip(), "quantos logs printed nothing for the guide's node"

        # 4. the partitions dialog's backfill of three sessions, then the guide's range command
        run_cli(env, guide_command(section, "uv run quantos sessions sync"))
        sessions = ["2026-11-23", "2026-11-24", "2026-11-25"]
        launched = srv.graphql(
            BACKFILL_MUTATION,
            {
                "params": {
                    "partitionNames": sessions,
                    "assetSelection": [{"path": ["xs_daily_eod", "bars"]}],
                }
            },
        )["launchPartitionBackfill"]
        assert launched["__typename"] == "LaunchBackfillSuccess", launched
        deadline = time.monotonic() + 300
        while True:
            data = srv.graphql(BACKFILL_RUNS_QUERY, {"id": launched["backfillId"]})
            runs = data["runsOrError"]["results"]
            if len(runs) == len(sessions) and all(r["status"] in FINISHED for r in runs):
                break
            assert time.monotonic() < deadline, (data, tail(srv.log))
            time.sleep(1)
        assert {r["status"] for r in runs} == {"SUCCESS"}, runs
        run_cli(env, guide_command(section, "uv run dagster asset materialize"))

    # 5. the release records and the audit chain, as the guide lists them
    releases = Path(env["QUANTOS_DATA_DIR"]) / "artifacts" / "releases" / "xs_momentum_v1"
    listing = quoted_output(section, "ls $QUANTOS_DATA_DIR/artifacts/releases/xs_momentum_v1/")
    assert "  ".join(sorted(p.name for p in releases.iterdir())) == listing[0].strip()
    verified = run_cli(env, ["quantos", "audit", "verify"], terminal=True).strip().splitlines()[-1]
    assert verified == quoted_output(section, "uv run quantos audit verify")[0]
