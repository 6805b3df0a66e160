"""A code server that reloads a location in place when only the registry changed.

Dagster's reload of a code location restarts its server process: `dagster dev`'s proxy
starts a new `dagster api grpc`, which imports Dagster, dbt, pandas and our modules again
before it builds the location (~3 s of CPU before the build, on the cores the other servers
and the daemon share); a plain `dagster api grpc` (the Helm chart's user deployments) ignores
the reload and keeps serving what it built at start, so a new spec never appears. A
submission reloads its location every time, so that restart was the floor of its wait
(docs/decisions.md, issue 20).

This server is `dagster api grpc` with one method changed: `ReloadCode`. When the code is
what the process imported (code_fingerprint.py: modules, policies) and only the specs or the
dbt manifest changed, it re-executes the location's module (not what it imports), loads the
location again, swaps it in atomically and takes a new server id; the webserver then fetches
the new snapshot from the same process, and the daemon's watch of the server id does the
same. When the code changed, it answers and shuts down, and whoever runs it starts it again
(local_stack.py locally, the kubelet in a cluster): new code needs a new interpreter, as with
Dagster's own reload. A rebuild that fails leaves the server in Dagster's error state (the
location shows the error); the next reload tries again.

`python -m quantos_assets.apps.code_server` takes `dagster api grpc`'s own options.
"""

from __future__ import annotations

import sys
import time
import uuid
from pathlib import Path
from typing import Any

from dagster._core.remote_origin import RemoteRepositoryOrigin
from dagster._core.remote_representation.external_data import RepositorySnap
from dagster._grpc.__generated__ import dagster_api_pb2
from dagster._grpc.server import DagsterApiServer, LoadedRepositories
from dagster._serdes import deserialize_value, serialize_value
from dagster._utils.error import serializable_error_info_from_exc_info

from quantos_assets.apps.launcher.code_fingerprint import location_fingerprints

__all__ = ["InPlaceReloadServer", "main"]


class InPlaceReloadServer(DagsterApiServer):
    """`dagster api grpc`'s servicer whose ReloadCode rebuilds the location in this process."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._location_name: str | None = kwargs.get("location_name")
        origin = self._loadable_target_origin
        self._workdir = Path(
            (origin.working_directory if origin is not None else None) or Path.cwd()
        )
        self._code = location_fingerprints(self._workdir)[0]
        # Snapshots of what is loaded now, serialized once: after a reload the webserver
        # fetches the location, its watch of the server id fetches it again and the daemon
        # fetches it too; each would build every job's snapshot anew (the bulk of a reload).
        # Replaced, never cleared, with the definitions: a reader holds the dict of its time.
        # Keyed by what the answer depends on (repository, job), never by the request's bytes:
        # only answers for repositories and jobs that exist are kept, so whoever can reach the
        # server (any pod in the namespace) cannot grow it with varied requests.
        self._snapshots: dict[tuple[str, str, str], Any] = {}

    def ReloadCode(
        self, _request: dagster_api_pb2.ReloadCodeRequest, _context: Any
    ) -> dagster_api_pb2.ReloadCodeReply:
        started = time.perf_counter()
        with self._reload_lock:
            code = location_fingerprints(self._workdir)[0]
            if code != self._code:
                self._logger.info(
                    "Reload: the code changed since this server started; shutting down to be "
                    "started again with it"
                )
                # as ShutdownServer does: stop once running executions (none here) finish
                self._shutdown_once_executions_finish_event.set()
                return dagster_api_pb2.ReloadCodeReply()
            self._rebuild()
        self._logger.info(
            "Reloaded %s in place in %.2f s%s",
            self._location_name or "the location",
            time.perf_counter() - started,
            " (it failed to load: see its error)" if self._serializable_load_error else "",
        )
        return dagster_api_pb2.ReloadCodeReply()

    def _get_serialized_external_repository_data(
        self, request: dagster_api_pb2.ExternalRepositoryRequest
    ) -> str:
        cache = self._snapshots  # taken before the definitions: see _rebuild
        try:
            origin = deserialize_value(
                request.serialized_repository_python_origin, RemoteRepositoryOrigin
            )
            key = ("repository", origin.repository_name, str(request.defer_snapshots))
            found = cache.get(key)
            if found is None:
                found = serialize_value(
                    RepositorySnap.from_def(
                        self._get_repo_for_origin(origin), defer_snapshots=request.defer_snapshots
                    )
                )
                cache[key] = found
        except Exception:  # noqa: BLE001 - Dagster's own answer: the error, logged (not kept)
            return super()._get_serialized_external_repository_data(request)
        return found

    def ExternalJob(
        self, request: dagster_api_pb2.ExternalJobRequest, context: Any
    ) -> dagster_api_pb2.ExternalJobReply:
        cache = self._snapshots
        try:
            origin = deserialize_value(request.serialized_repository_origin, RemoteRepositoryOrigin)
        except Exception:  # noqa: BLE001 - Dagster's own answer for a bad request
            return super().ExternalJob(request, context)
        key = ("job", origin.repository_name, request.job_name)
        found = cache.get(key)
        if found is None:
            found = super().ExternalJob(request, context)
            if found.serialized_job_data:  # an error answer is not kept
                cache[key] = found
        return found

    def _rebuild(self) -> None:
        """Re-execute the location's module and load it again; swap on success, record the
        error on failure (what a restarted server would show)."""
        origin = self._loadable_target_origin
        try:
            if origin is not None and origin.module_name:
                # imported again below, as at start (Dagster's sys.path for the working
                # directory included); what it imports stays loaded
                sys.modules.pop(origin.module_name, None)
            loaded = LoadedRepositories(
                origin,
                entry_point=self._entry_point,
                container_image=self._container_image,
                container_context=self._container_context,
                defs_state_info=self._defs_state_info,
                code_location_name=self._location_name,
            )
            for repo_def in loaded.definitions_by_name.values():
                repo_def.load_all_definitions()  # resolved here, not in the first request
        except Exception:  # noqa: BLE001 - any load error is the location's, shown as Dagster shows it
            self._loaded_repositories = None
            self._serializable_load_error = serializable_error_info_from_exc_info(sys.exc_info())
            self._logger.error(
                "Reload of %s failed: %s",
                self._location_name or "the location",
                self._serializable_load_error.to_string().strip().splitlines()[-1],
            )
        else:
            self._loaded_repositories = loaded  # one reference swap: readers see old or new
            self._serializable_load_error = None
        # After the definitions: a request that takes the new cache reads the new definitions
        # (one that took the old cache may put a new snapshot there, never the reverse).
        self._snapshots = {}
        self._server_id = str(uuid.uuid4())


def main(argv: list[str]) -> int:
    """Run `dagster api grpc ARGV` with this servicer. The CLI resolves its options (and
    their DAGSTER_CLI_API_GRPC_* environment, as the Helm chart sets) and then builds
    `dagster._grpc.server.DagsterApiServer`; that name is pointed at this class in this
    process only, so every option keeps Dagster's meaning."""
    import dagster._grpc.server as grpc_server
    from dagster._cli.api import grpc_command

    grpc_server.DagsterApiServer = InPlaceReloadServer  # type: ignore[misc]
    grpc_command.main(
        args=argv, prog_name="quantos code server", auto_envvar_prefix="DAGSTER_CLI_API_GRPC"
    )
    return 0
