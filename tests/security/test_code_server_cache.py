"""A code server's snapshot cache cannot be grown by whoever reaches the server.

Any pod in the namespace (a team's step, say) can reach a code server's gRPC port. The
in-place server (quantos_assets/apps/code_server/in_place.py) keeps serialized snapshots per
load; were they keyed by the request's bytes, the same job asked for under ever-different
origins, or jobs that do not exist, would add an entry each until the server ran out of
memory and its team's location went down.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from dagster._core.remote_origin import GrpcServerCodeLocationOrigin, RemoteRepositoryOrigin
from dagster._grpc.__generated__ import dagster_api_pb2
from dagster._serdes import serialize_value
from in_place_location import in_place_server, location_in


@pytest.fixture
def location(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Path, str]]:
    yield from location_in(tmp_path, monkeypatch)


def test_varied_requests_keep_one_entry_per_real_job(location: tuple[Path, str]) -> None:
    workdir, module = location
    server = in_place_server(workdir, module)
    loaded = server._loaded_repositories
    assert loaded is not None
    (repo_name,) = loaded.definitions_by_name
    for i in range(200):
        # the same job under 200 different origins (hosts, ports, location names)
        origin = RemoteRepositoryOrigin(
            code_location_origin=GrpcServerCodeLocationOrigin(
                host=f"h{i}", port=1000 + i, location_name=f"x-{uuid.uuid4().hex}"
            ),
            repository_name=repo_name,
        )
        for job in ("alpha", f"nope-{i}"):
            request = dagster_api_pb2.ExternalJobRequest(
                serialized_repository_origin=serialize_value(origin), job_name=job
            )
            server.ExternalJob(request, None)
        repo_request = dagster_api_pb2.ExternalRepositoryRequest(
            serialized_repository_python_origin=serialize_value(origin),
            defer_snapshots=bool(i % 2),
        )
        server._get_serialized_external_repository_data(repo_request)
    assert sorted(server._snapshots) == [
        ("job", repo_name, "alpha"),
        ("repository", repo_name, "False"),
        ("repository", repo_name, "True"),
    ]
