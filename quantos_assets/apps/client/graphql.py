"""Dagster's GraphQL API over one pooled HTTP client.

dagster-graphql's `DagsterGraphQLClient` wraps a gql `Client` that refuses a second
concurrent call (`TransportAlreadyConnected`) and has no method for logs, lineage,
re-execution or dynamic partitions. The gateway serves many callers at once, so this
module sends the same documents (dagster-graphql's own mutation text where it has one)
through a thread-safe `httpx.Client`, and turns every GraphQL-level failure into one
`DagsterAPIError` line.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import httpx
from dagster_graphql.client.client_queries import (
    CLIENT_SUBMIT_PIPELINE_RUN_MUTATION,
    RELOAD_REPOSITORY_LOCATION_MUTATION,
    TERMINATE_RUN_JOB_MUTATION,
)

from resources.redaction import redact

# dagster-graphql's reload mutation, also asking a load error's causes: Dagster's own message
# only says that loading failed, the cause says why (a location's import error, ours).
RELOAD_MUTATION = RELOAD_REPOSITORY_LOCATION_MUTATION.replace(
    "... on PythonError {\n            message",
    "... on PythonError {\n            causes { message } message",
)
assert RELOAD_MUTATION != RELOAD_REPOSITORY_LOCATION_MUTATION, "dagster-graphql's text changed"

LOCATION = "quantos"
REPOSITORY = "__repository__"
# A code-location reload re-imports every spec (and dbt) in the code server: over a minute on
# a loaded machine, while any other call answers in seconds.
RELOAD_TIMEOUT = 300.0


class DagsterAPIError(RuntimeError):
    """Dagster refused or failed a call; `status` is the HTTP status a gateway should answer.

    The message is redacted here, once: it reaches answers, a submission's `error`, the
    audit trail and logs, and QUANTOS_DAGSTER_URL may carry a password."""

    def __init__(self, message: str, status: int = 502, retryable: bool = False) -> None:
        super().__init__(redact(message))
        self.status = status
        # Dagster could not be reached or answered 5xx: the same call may work later.
        self.retryable = retryable


RUN_QUERY = """
query QuantosRun($runId: ID!) { runOrError(runId: $runId) { __typename
  ... on Run { runId status jobName startTime endTime creationTime
    tags { key value }
    stepStats { stepKey status startTime endTime attempts { startTime } } }
  ... on RunNotFoundError { message } ... on PythonError { message } } }
"""

RUNS_BY_TAG_QUERY = """
query QuantosRunsByTag($filter: RunsFilter!, $limit: Int) { runsOrError(filter: $filter, limit: \
$limit) {
  __typename ... on Runs { results { runId status creationTime } }
  ... on InvalidPipelineRunsFilterError { message } ... on PythonError { message } } }
"""

RUNS_COUNT_QUERY = """
query QuantosRunsCount($filter: RunsFilter!) { runsOrError(filter: $filter) {
  __typename ... on Runs { count } ... on PythonError { message } } }
"""

LOGS_QUERY = """
query QuantosLogs($runId: ID!, $cursor: String, $limit: Int) {
  logsForRun(runId: $runId, afterCursor: $cursor, limit: $limit) { __typename
    ... on EventConnection { cursor hasMore events { __typename
      ... on MessageEvent { message timestamp level stepKey eventType } } }
    ... on RunNotFoundError { message } ... on PythonError { message } } }
"""

METADATA_FIELDS = """
  label __typename
  ... on IntMetadataEntry { intRepr } ... on FloatMetadataEntry { floatValue }
  ... on TextMetadataEntry { text } ... on PathMetadataEntry { path }
  ... on UrlMetadataEntry { url } ... on JsonMetadataEntry { jsonString }
"""

LINEAGE_QUERY = (
    """
query QuantosLineage($runId: ID!) { runOrError(runId: $runId) { __typename
  ... on Run { runId status assetMaterializations { assetKey { path } partition stepKey
      metadataEntries { """
    + METADATA_FIELDS
    + """ } } }
  ... on RunNotFoundError { message } ... on PythonError { message } }
  logsForRun(runId: $runId, limit: 10000) { __typename ... on EventConnection { events { __typename
    ... on LoadedInputEvent { stepKey inputName upstreamStepKey upstreamOutputName
      metadataEntries { """
    + METADATA_FIELDS
    + """ } } } } } }
"""
)

ASSET_NODES_QUERY = """
query QuantosAssetNodes($keys: [AssetKeyInput!]) { assetNodes(assetKeys: $keys) {
  assetKey { path } dependencyKeys { path } dependedByKeys { path } } }
"""

WORKSPACE_QUERY = """
query QuantosWorkspace { workspaceOrError { __typename
  ... on Workspace { locationEntries { name } } ... on PythonError { message } } }
"""

PIPELINE_QUERY = """
query QuantosPipeline($sel: PipelineSelector!) { pipelineOrError(params: $sel) { __typename
  ... on Pipeline { name } ... on PipelineNotFoundError { message } ... on PythonError { message \
} } }
"""

REEXECUTE_MUTATION = """
mutation QuantosReexecute($params: ReexecutionParams!) { launchRunReexecution(reexecutionParams: \
$params) {
  __typename ... on LaunchRunSuccess { run { runId } }
  ... on PythonError { message } ... on RunConflict { message } ... on UnauthorizedError { message }
  ... on InvalidStepError { invalidStepKey } ... on RunConfigValidationInvalid { errors { message \
} } } }
"""

ADD_PARTITION_MUTATION = """
mutation QuantosAddPartition($sel: RepositorySelector!, $name: String!, $key: String!) {
  addDynamicPartition(repositorySelector: $sel, partitionsDefName: $name, partitionKey: $key) {
    __typename ... on AddDynamicPartitionSuccess { partitionKey }
    ... on DuplicateDynamicPartitionError { partitionName }
    ... on PythonError { message } ... on UnauthorizedError { message } } }
"""


class DagsterAPI:
    """One webserver (QUANTOS_DAGSTER_URL), one code location."""

    def __init__(
        self,
        url: str,
        location: str = LOCATION,
        repository: str = REPOSITORY,
        timeout: float = 60.0,
        headers: dict[str, str] | None = None,
        reload_timeout: float = RELOAD_TIMEOUT,
    ) -> None:
        self.url = url.rstrip("/")
        self.location = location
        self.repository = repository
        self.timeout = timeout
        self.reload_timeout = reload_timeout
        self._http = httpx.Client(
            timeout=timeout,
            headers=headers,
            limits=httpx.Limits(max_connections=64, max_keepalive_connections=64),
        )

    def close(self) -> None:
        self._http.close()

    # -- transport -------------------------------------------------------------------------

    def execute(
        self,
        query: str,
        variables: dict[str, Any] | None = None,
        *,
        what: str | None = None,
        timeout: float | None = None,
    ) -> dict[str, Any]:
        """One GraphQL document; `what` names it in a timeout's message (default: its operation)."""
        limit = timeout or self.timeout
        try:
            response = self._http.post(
                f"{self.url}/graphql",
                json={"query": query, "variables": variables or {}},
                timeout=limit,
            )
        except (httpx.ReadTimeout, httpx.WriteTimeout, httpx.PoolTimeout) as err:
            # Reached but no answer in time: the call may still complete in Dagster.
            raise DagsterAPIError(
                f"Dagster at {self.url} did not answer {what or _operation(query)} within "
                f"{limit:g} s ({type(err).__name__})",
                504,
                retryable=True,
            ) from None
        except httpx.HTTPError as err:
            raise DagsterAPIError(
                f"Dagster at {self.url} is unreachable: {type(err).__name__}: {err}",
                503,
                retryable=True,
            ) from None
        if response.status_code != 200:
            raise DagsterAPIError(
                f"Dagster at {self.url} answered HTTP {response.status_code}",
                502,
                retryable=response.status_code >= 500,
            )
        try:
            body = response.json()
        except ValueError:  # e.g. the UI's HTML: the URL names the webserver but not its root
            raise DagsterAPIError(
                f"Dagster at {self.url} answered HTTP 200 without JSON: is QUANTOS_DAGSTER_URL "
                "the webserver's root?",
                502,
            ) from None
        if not isinstance(body, dict) or not ("data" in body or "errors" in body):
            raise DagsterAPIError(
                f"Dagster at {self.url} answered HTTP 200 without a GraphQL result", 502
            )
        if body.get("errors"):
            raise DagsterAPIError(
                f"Dagster GraphQL error: {body['errors'][0].get('message', body['errors'][0])}", 502
            )
        return body["data"]

    # -- calls -----------------------------------------------------------------------------

    def location_names(self) -> list[str]:
        """The code locations of the webserver's workspace, loaded or not."""
        data = self.execute(WORKSPACE_QUERY, {})["workspaceOrError"]
        if data["__typename"] != "Workspace":
            raise DagsterAPIError(f"workspace: {data.get('message')}", 502)
        return [e["name"] for e in data["locationEntries"]]

    def reload_location(self, location: str | None = None) -> None:
        location = location or self.location
        data = self.execute(
            RELOAD_MUTATION,
            {"repositoryLocationName": location},
            what=f"the reload of code location {location!r}",
            timeout=self.reload_timeout,
        )
        entry = data["reloadRepositoryLocation"]
        if entry["__typename"] != "WorkspaceLocationEntry":
            raise DagsterAPIError(
                f"reload of code location {location!r}: {entry.get('message')}", 502
            )
        loaded = entry["locationOrLoadError"] or {}
        if loaded.get("__typename") == "PythonError":
            innermost = (loaded.get("causes") or [loaded])[-1]  # the root cause says why
            first = (innermost.get("message") or "").strip().splitlines()[:1]
            raise DagsterAPIError(
                f"code location {location!r} failed to load: {' '.join(first)}", 502
            )

    def has_job(self, job: str, location: str | None = None) -> bool:
        data = self.execute(PIPELINE_QUERY, {"sel": self._job_selector(job, location)})
        return data["pipelineOrError"]["__typename"] == "Pipeline"

    def launch(
        self,
        job: str,
        tags: dict[str, str],
        run_config: dict[str, Any] | None = None,
        asset_keys: list[list[str]] | None = None,
        location: str | None = None,
    ) -> str:
        selector: dict[str, Any] = self._job_selector(job, location)
        if asset_keys:
            selector["assetSelection"] = [{"path": k} for k in asset_keys]
        params = {
            "selector": selector,
            "runConfigData": run_config or {},
            "executionMetadata": {"tags": [{"key": k, "value": v} for k, v in tags.items()]},
        }
        result = self.execute(
            CLIENT_SUBMIT_PIPELINE_RUN_MUTATION,
            {"executionParams": params},
            what=f"the launch of {job!r}",
        )["launchPipelineExecution"]
        if result["__typename"] == "LaunchRunSuccess" or "run" in result:
            return str(result["run"]["runId"])
        if result["__typename"] in (
            "RunConfigValidationInvalid",
            "PipelineConfigValidationInvalid",
        ):
            reasons = "; ".join(e["message"] for e in result.get("errors", []))
            raise DagsterAPIError(f"run config rejected by Dagster: {reasons}", 422)
        if result["__typename"] in ("PipelineNotFoundError", "JobNotFoundError"):
            raise DagsterAPIError(
                f"job {job!r} is not in code location {selector['repositoryLocationName']!r}", 404
            )
        raise DagsterAPIError(
            f"launch of {job!r} failed: {result.get('message') or result['__typename']}", 502
        )

    def run(self, run_id: str) -> dict[str, Any]:
        data = self.execute(RUN_QUERY, {"runId": run_id})["runOrError"]
        if data["__typename"] != "Run":
            raise DagsterAPIError(f"run {run_id}: {data.get('message') or data['__typename']}", 404)
        return data

    def runs_with_tag(self, key: str, value: str, limit: int = 50) -> list[dict[str, Any]]:
        return self.runs_with_tags({key: value}, limit)

    def runs_with_tags(self, tags: Mapping[str, str], limit: int = 50) -> list[dict[str, Any]]:
        """Runs carrying every one of `tags`."""
        flt = {"tags": [{"key": k, "value": v} for k, v in tags.items()]}
        data = self.execute(RUNS_BY_TAG_QUERY, {"filter": flt, "limit": limit})["runsOrError"]
        if data["__typename"] != "Runs":
            raise DagsterAPIError(f"runs lookup failed: {data.get('message')}", 502)
        return list(data["results"])

    def count_runs(self, tags: dict[str, str], statuses: list[str]) -> int:
        flt = {"tags": [{"key": k, "value": v} for k, v in tags.items()], "statuses": statuses}
        data = self.execute(RUNS_COUNT_QUERY, {"filter": flt})["runsOrError"]
        if data["__typename"] != "Runs":
            raise DagsterAPIError(f"runs count failed: {data.get('message')}", 502)
        return int(data["count"])

    def logs(self, run_id: str, page: int = 1000) -> list[dict[str, Any]]:
        events: list[dict[str, Any]] = []
        cursor = None
        while True:
            data = self.execute(LOGS_QUERY, {"runId": run_id, "cursor": cursor, "limit": page})[
                "logsForRun"
            ]
            if data["__typename"] != "EventConnection":
                raise DagsterAPIError(f"logs of run {run_id}: {data.get('message')}", 404)
            events.extend(e for e in data["events"] if "message" in e)
            cursor = data["cursor"]
            if not data["hasMore"]:
                return events

    def lineage(self, run_id: str) -> dict[str, Any]:
        data = self.execute(LINEAGE_QUERY, {"runId": run_id})
        if data["runOrError"]["__typename"] != "Run":
            raise DagsterAPIError(f"run {run_id}: {data['runOrError'].get('message')}", 404)
        return data

    def asset_nodes(self, keys: list[list[str]]) -> list[dict[str, Any]]:
        return list(
            self.execute(ASSET_NODES_QUERY, {"keys": [{"path": k} for k in keys]})["assetNodes"]
        )

    def terminate(self, run_id: str) -> None:
        result = self.execute(TERMINATE_RUN_JOB_MUTATION, {"runId": run_id})["terminateRun"]
        if result["__typename"] != "TerminateRunSuccess":
            raise DagsterAPIError(
                f"cancel of run {run_id}: {result.get('message') or result['__typename']}", 409
            )

    def reexecute_from_failure(self, run_id: str) -> str:
        result = self.execute(
            REEXECUTE_MUTATION, {"params": {"parentRunId": run_id, "strategy": "FROM_FAILURE"}}
        )["launchRunReexecution"]
        if result["__typename"] != "LaunchRunSuccess":
            raise DagsterAPIError(
                f"retry of run {run_id}: {result.get('message') or result['__typename']}", 409
            )
        return str(result["run"]["runId"])

    def add_dynamic_partition(
        self, partitions_def: str, key: str, location: str | None = None
    ) -> None:
        result = self.execute(
            ADD_PARTITION_MUTATION,
            {"sel": self._repo_selector(location), "name": partitions_def, "key": key},
        )["addDynamicPartition"]
        if result["__typename"] not in (
            "AddDynamicPartitionSuccess",
            "DuplicateDynamicPartitionError",
        ):
            raise DagsterAPIError(
                f"partition {key!r}: {result.get('message') or result['__typename']}", 502
            )

    def _repo_selector(self, location: str | None = None) -> dict[str, str]:
        return {
            "repositoryLocationName": location or self.location,
            "repositoryName": self.repository,
        }

    def _job_selector(self, job: str, location: str | None = None) -> dict[str, Any]:
        return {**self._repo_selector(location), "pipelineName": job}


def _operation(query: str) -> str:
    """`query QuantosRun(...)` -> 'the GraphQL query QuantosRun'."""
    words = query.replace("(", " ").replace("{", " ").split()
    if len(words) >= 2 and words[0] in ("query", "mutation"):
        return f"the GraphQL {words[0]} {words[1]}"
    return "a GraphQL call"
