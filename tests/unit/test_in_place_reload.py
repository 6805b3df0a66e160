"""The in-place code server (quantos_assets/apps/code_server/in_place.py), in this process.

A registry change (the specs) is rebuilt in the same process under a new server id; a spec
that breaks the build leaves the location in its error state until the next reload; a code
change shuts the server down to be started again, never rebuilt on the old imports.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from dagster._grpc.__generated__ import dagster_api_pb2
from in_place_location import MODULE, in_place_server, location_in

from quantos_assets.apps.code_server.in_place import InPlaceReloadServer
from quantos_assets.apps.code_server.local_stack import served_workspace


@pytest.fixture
def location(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Path, str]]:
    yield from location_in(tmp_path, monkeypatch)


def _jobs(server: InPlaceReloadServer) -> set[str]:
    loaded = server._loaded_repositories
    assert loaded is not None, server._serializable_load_error
    (repo,) = loaded.definitions_by_name.values()
    return {j.name for j in repo.get_all_jobs()}


def _reload(server: InPlaceReloadServer) -> None:
    server.ReloadCode(dagster_api_pb2.ReloadCodeRequest(), None)


def test_a_registry_change_is_rebuilt_in_the_same_process(location: tuple[Path, str]) -> None:
    workdir, module = location
    server = in_place_server(workdir, module)
    assert _jobs(server) == {"alpha"}
    first_id = server._server_id

    (workdir / "specs" / "jobs.json").write_text(json.dumps(["alpha", "beta"]))
    _reload(server)
    assert _jobs(server) == {"alpha", "beta"}
    assert server._server_id != first_id  # the webserver and the daemon refetch on this
    assert not server._shutdown_once_executions_finish_event.is_set()


def test_a_broken_spec_shows_its_error_until_a_reload_finds_it_fixed(
    location: tuple[Path, str],
) -> None:
    workdir, module = location
    server = in_place_server(workdir, module)
    (workdir / "specs" / "jobs.json").write_text("[not json")
    _reload(server)
    assert server._loaded_repositories is None
    assert server._serializable_load_error is not None
    assert "JSONDecodeError" in server._serializable_load_error.to_string()
    (workdir / "specs" / "jobs.json").write_text(json.dumps(["gamma"]))
    _reload(server)
    assert server._serializable_load_error is None
    assert _jobs(server) == {"gamma"}


def test_a_code_change_shuts_the_server_down_instead(location: tuple[Path, str]) -> None:
    workdir, module = location
    server = in_place_server(workdir, module)
    (workdir / f"{module}.py").write_text(MODULE + "\n# edited\n")
    (workdir / "specs" / "jobs.json").write_text(json.dumps(["alpha", "beta"]))
    _reload(server)
    assert server._shutdown_once_executions_finish_event.is_set()
    assert _jobs(server) == {"alpha"}  # never rebuilt on the old imports


def test_snapshots_are_served_from_what_is_loaded_now(location: tuple[Path, str]) -> None:
    """Kept per load: the second fetch of a job's snapshot is the first's answer, and a
    reload never serves a snapshot of the definitions before it."""
    from dagster._core.remote_origin import RemoteRepositoryOrigin
    from dagster._serdes import serialize_value

    workdir, module = location
    server = in_place_server(workdir, module)
    loaded = server._loaded_repositories
    assert loaded is not None
    (repo_name,) = loaded.definitions_by_name
    origin = RemoteRepositoryOrigin(code_location_origin=_grpc_origin(), repository_name=repo_name)
    request = dagster_api_pb2.ExternalJobRequest(
        serialized_repository_origin=serialize_value(origin), job_name="alpha"
    )
    first = server.ExternalJob(request, None)
    assert first.serialized_job_data
    assert server.ExternalJob(request, None) is first
    (workdir / "specs" / "jobs.json").write_text(json.dumps(["alpha", "beta"]))
    _reload(server)
    assert server.ExternalJob(request, None) is not first
    missing = dagster_api_pb2.ExternalJobRequest(
        serialized_repository_origin=serialize_value(origin), job_name="nope"
    )
    assert not server.ExternalJob(missing, None).serialized_job_data
    assert ("job", repo_name, "nope") not in server._snapshots


def _grpc_origin() -> Any:
    from dagster._core.remote_origin import GrpcServerCodeLocationOrigin

    return GrpcServerCodeLocationOrigin(host="localhost", port=1, location_name="team-test")


def test_the_stack_serves_python_modules_and_passes_other_entries_through(tmp_path: Path) -> None:
    workspace = {
        "load_from": [
            {
                "python_module": {
                    "module_name": "definitions.locations",
                    "attribute": "team-a",
                    "location_name": "team-a",
                }
            },
            {"python_file": {"relative_path": "x.py", "location_name": "x"}},
        ]
    }
    served, servers = served_workspace(workspace, tmp_path)
    assert served["load_from"][1] == workspace["load_from"][1]
    grpc = served["load_from"][0]["grpc_server"]
    assert grpc == {"socket": str(tmp_path / "0.sock"), "location_name": "team-a"}
    (server,) = servers
    assert server.location == "team-a"
    argv = server.argv
    assert argv[1:3] == ["-m", "quantos_assets.apps.code_server"]
    assert argv[argv.index("--socket") + 1] == str(tmp_path / "0.sock")
    assert argv[argv.index("-a") + 1] == "team-a"
    assert "--lazy-load-user-code" in argv  # a broken location answers with its error
