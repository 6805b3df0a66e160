"""A code location per team in a real `dagster dev` (issue 20).

The workspace is the one `quantos registry workspace` generates from the teams file. Team
alpha's location fails to import (its entry points at a module that raises, as a team's
broken code would); a stale entry names a team the teams file no longer has. Team beta's
submissions, schedule and sensors go on; a submission reloads only its own location.
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from dev_server import REPOSITORY, Server, dagster_dev, isolated_env
from team_specs import TWO_TEAMS, team_spec

from quantos_assets.apps.client.graphql import DagsterAPIError
from quantos_assets.apps.client.submissions import QuantosClient

pytestmark = pytest.mark.e2e

TEAMS = TWO_TEAMS


def _spec(pid: str, team: str, schedule: bool = False) -> dict:
    spec = team_spec(pid, team, out="rows")
    if schedule:
        spec["schedule"] = {"calendar": "XNYS", "at": "close+30m"}
        spec["freshness"] = {"max_lag_sessions": 1}
    return spec


LOCATIONS_QUERY = """
{ workspaceOrError { ... on Workspace { locationEntries { name loadStatus updatedTimestamp
    locationOrLoadError { __typename ... on PythonError { message causes { message } } } } } } }
"""

TRIGGERS_QUERY = """
query Triggers($sel: RepositorySelector!) {
  schedulesOrError(repositorySelector: $sel) { __typename
    ... on Schedules { results { name scheduleState { status } } } }
  sensorsOrError(repositorySelector: $sel) { __typename
    ... on Sensors { results { name sensorState { status } } } } }
"""


def _locations(server: Server) -> dict[str, dict]:
    entries = server.graphql(LOCATIONS_QUERY)["workspaceOrError"]["locationEntries"]
    return {e["name"]: e for e in entries}


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, Path]]:
    root = tmp_path_factory.mktemp("team_locations")
    specs = root / "specs"
    specs.mkdir()
    (specs / "alpha_daily.yaml").write_text(yaml.safe_dump(_spec("alpha_daily", "alpha")))
    (specs / "beta_daily.yaml").write_text(yaml.safe_dump(_spec("beta_daily", "beta", True)))
    teams = root / "teams.yaml"
    teams.write_text(TEAMS)
    env = {**isolated_env(root / "gen", specs), "QUANTOS_TEAMS": str(teams)}
    generated = subprocess.run(
        [str(Path(sys.executable).with_name("quantos")), "registry", "workspace"],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    ).stdout
    workspace = yaml.safe_load(generated)
    names = [e["python_module"]["location_name"] for e in workspace["load_from"]]
    assert names == ["quantos-platform", "team-alpha", "team-beta", "quantos-shared"]
    # Team alpha's code fails to import; a stale entry names a team no longer in the file.
    broken = root / "alpha_code.py"
    broken.write_text("raise ImportError('alpha_lib 2.0 is not installed')\n")
    for entry in workspace["load_from"]:
        if entry["python_module"]["location_name"] == "team-alpha":
            entry.clear()
            entry["python_file"] = {"relative_path": str(broken), "location_name": "team-alpha"}
    workspace["load_from"].append(
        {
            "python_module": {
                "module_name": "definitions.locations",
                "attribute": "team-ghost",
                "location_name": "team-ghost",
            }
        }
    )
    path = root / "workspace.yaml"
    path.write_text(yaml.safe_dump(workspace))
    # served as `make run` serves it: an in-place code server per python_module entry (alpha's
    # python_file entry is left to dagster dev)
    with dagster_dev(
        root,
        specs,
        extra_env={"QUANTOS_TEAMS": str(teams)},
        workspace=path,
        location="team-beta",
        in_place=True,
    ) as server:
        yield server, specs


def _code_server(server: Server, location: str) -> int:
    """The pid of the stack's in-place code server of `location` (a child of the stack)."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            argv = (proc / "cmdline").read_bytes().decode().split("\0")
            parent = int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):  # not a process, or gone
            continue
        if (
            parent == server.proc.pid
            and "quantos_assets.apps.code_server" in argv
            and argv[argv.index("--location-name") + 1] == location
        ):
            found.append(int(proc.name))
    assert len(found) == 1, found
    return found[0]


def _wait_loaded(server: Server, names: list[str], timeout: float = 120) -> dict[str, dict]:
    deadline = time.monotonic() + timeout
    while True:
        entries = _locations(server)
        if all(entries.get(n, {}).get("loadStatus") == "LOADED" for n in names):
            return entries
        assert time.monotonic() < deadline, entries
        time.sleep(0.5)


def test_a_broken_team_location_stops_no_other_team(
    stack: tuple[Server, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    server, specs = stack
    # the client places pipelines by the same teams file as the deployment
    monkeypatch.setenv("QUANTOS_TEAMS", server.env["QUANTOS_TEAMS"])
    entries = _wait_loaded(
        server, ["quantos-platform", "team-alpha", "team-beta", "quantos-shared", "team-ghost"]
    )
    alpha = entries["team-alpha"]["locationOrLoadError"]
    assert alpha["__typename"] == "PythonError" and "alpha_lib 2.0" in alpha["message"]
    ghost = entries["team-ghost"]["locationOrLoadError"]
    assert ghost["__typename"] == "PythonError"
    why = " ".join(c["message"] for c in ghost["causes"])
    assert "'team-ghost' is not a code location of" in why, ghost
    assert entries["team-beta"]["locationOrLoadError"]["__typename"] == "RepositoryLocation"

    # Beta's schedule and sensors are in beta's location and on.
    sel = {"repositoryLocationName": "team-beta", "repositoryName": REPOSITORY}
    triggers = server.graphql(TRIGGERS_QUERY, {"sel": sel})
    schedules = {
        s["name"]: s["scheduleState"]["status"] for s in triggers["schedulesOrError"]["results"]
    }
    sensors = {s["name"]: s["sensorState"]["status"] for s in triggers["sensorsOrError"]["results"]}
    assert schedules == {"beta_daily__xnys_schedule": "RUNNING"}, schedules
    assert sensors.get("beta_daily__freshness") == "RUNNING", sensors
    # The platform location holds the lake's schedule, no team's pipelines.
    platform = server.graphql(
        TRIGGERS_QUERY, {"sel": {**sel, "repositoryLocationName": "quantos-platform"}}
    )
    assert [s["name"] for s in platform["schedulesOrError"]["results"]] == [
        "quantos_lake_maintenance_daily"
    ]

    # A new spec version of beta's reloads beta's location only, and its run succeeds.
    client = QuantosClient(f"http://127.0.0.1:{server.port}", specs)
    before = _locations(server)
    beta_server = _code_server(server, "team-beta")
    changed = _spec("beta_daily", "beta", True)
    changed["description"] = "a new version"
    submitted = client.submit_detailed(changed, {"submission_id": "beta-1"}, team="beta")
    assert submitted.reloaded
    after = _locations(server)
    moved = {n for n in after if after[n]["updatedTimestamp"] != before[n]["updatedTimestamp"]}
    assert moved == {"team-beta"}, moved
    assert client.location_of("beta_daily") == "team-beta"
    # rebuilt in the process that served it, not in a new one
    assert _code_server(server, "team-beta") == beta_server
    assert "Reloaded team-beta in place" in server.log.read_text(errors="replace")
    deadline = time.monotonic() + 120
    while (status := client.status("beta-1", team="beta")["status"]) not in (
        "SUCCESS",
        "FAILURE",
        "CANCELED",
    ):
        assert time.monotonic() < deadline, status
        time.sleep(0.5)
    assert status == "SUCCESS"

    # Alpha's own submission is refused with one line naming its location; beta never noticed.
    with pytest.raises(DagsterAPIError) as refused:
        client.submit(_spec("alpha_daily", "alpha"), {"submission_id": "alpha-1"}, team="alpha")
    assert "code location 'team-alpha' failed to load" in str(refused.value)
    assert "\n" not in str(refused.value)
    # Beta is still served as it was (its entry's timestamp may move when Dagster's watch
    # thread sees beta's new server from the reload above, so the location itself is checked).
    beta = _locations(server)["team-beta"]
    assert beta["loadStatus"] == "LOADED"
    assert beta["locationOrLoadError"]["__typename"] == "RepositoryLocation"
    assert client.api.has_job("beta_daily", "team-beta")


def _quantos(server: Server, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**server.env, "QUANTOS_DAGSTER_URL": f"http://127.0.0.1:{server.port}"}
    quantos = str(Path(sys.executable).with_name("quantos"))
    return subprocess.run(
        [quantos, *args], check=False, capture_output=True, text=True, env=env, timeout=300
    )


def test_the_cli_reloads_only_the_locations_it_names(
    stack: tuple[Server, Path], tmp_path: Path
) -> None:
    """`quantos register --reload` and `quantos registry reload` restart only the pipeline's
    or the team's location; a broken one answers its root cause in one line (exit 2)."""
    server, _ = stack
    _wait_loaded(server, ["quantos-platform", "team-beta", "quantos-shared"])
    listed = _quantos(server, "registry", "locations", "--team", "beta")
    assert (listed.returncode, listed.stdout) == (0, "team-beta\t1\n"), listed.stderr

    spec = tmp_path / "beta_daily.yaml"
    changed = _spec("beta_daily", "beta", True)
    changed["description"] = "registered from the CLI"
    spec.write_text(yaml.safe_dump(changed))
    before = _locations(server)
    registered = _quantos(server, "register", str(spec), "--team", "beta", "--reload")
    assert registered.returncode == 0, registered.stderr
    assert registered.stdout.startswith("replaced (previous kept at "), registered.stdout
    assert re.search(r"^reloaded team-beta \(\d+\.\d s\)$", registered.stdout, re.MULTILINE)
    after = _locations(server)
    moved = {n for n in after if after[n]["updatedTimestamp"] != before[n]["updatedTimestamp"]}
    # alpha's entry is a load error, which Dagster's watch thread may refresh on its own
    assert moved - {"team-alpha"} == {"team-beta"}, moved

    broken = _quantos(server, "registry", "reload", "--team", "alpha")
    assert broken.returncode == 2 and broken.stdout == ""
    assert broken.stderr.count("\n") == 1 and "alpha_lib 2.0 is not installed" in broken.stderr
    unknown = _quantos(server, "registry", "reload", "--team", "nobody")
    assert (unknown.returncode, unknown.stderr) == (
        1,
        "quantos: error: --team nobody: not in the teams file\n",
    )
