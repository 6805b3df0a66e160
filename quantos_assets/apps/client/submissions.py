"""The compiler's Python client: submit a spec, follow it, cancel or retry it.

    from quantos_assets.apps.client import QuantosClient

    client = QuantosClient("http://127.0.0.1:3000")
    sid = client.submit(spec_dict, {"submission_id": "sub-42", "labels": {"team": "research"}})
    client.status(sid)["status"]            # QUEUED, STARTED, SUCCESS, FAILURE, CANCELED, ...
    client.logs(sid, node="train_model")    # that node's log lines
    client.lineage(sid)                     # assets with Iceberg snapshot ids / artifact hashes
    client.cancel(sid); client.retry(sid)   # terminate; re-execute from failure

A submission is one spec version plus its runtime params. `submit` validates the spec,
registers it in the spec registry (the folder the code location loads), reloads the code
location only if the spec changed, and launches the pipeline's asset job with the runtime
params as run tags. Every run of a submission carries the tag `quantos/submission_id`, so
the client needs no database: Dagster's run storage is the record.
"""

from __future__ import annotations

import hashlib
import json
import threading
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

from quantos_assets.apps.client.graphql import LOCATION, REPOSITORY, DagsterAPI, DagsterAPIError
from quantos_assets.asset_job_launch import IMPLICIT_ASSET_JOB, asset_job_launch, launch_asset_keys
from quantos_assets.spec.errors import SpecError
from quantos_assets.spec.loader import LoadedSpec, load_runtime_params
from quantos_assets.spec.models import EXTERNAL_KINDS, DagSpec, RuntimeParams
from quantos_assets.spec_registry import Registration
from quantos_assets.spec_rules.firm import load_spec, load_spec_text
from resources.profile import Cluster

ACTIVE_STATUSES = ["QUEUED", "NOT_STARTED", "STARTING", "STARTED", "CANCELING"]


def _check_refs(spec: DagSpec, params: RuntimeParams | None) -> None:
    """Refs must name outs the pipeline reads; whether the lake still has their snapshots is
    checked by every step of the run before it works (the gateway does not open the lake)."""
    from quantos_assets.spec.input_refs import ref_problems

    problems = ref_problems(spec, params) if params is not None else []
    if problems:
        raise SubmissionError(
            "; ".join(f"runtime_params.{line}" for line in problems),
            lines=[f"runtime_params.{line}" for line in problems],
        )


class SubmissionError(ValueError):
    """The submission itself is wrong (unknown node, bad partition...): `status` 4xx."""

    def __init__(self, message: str, status: int = 422, lines: list[str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.lines = lines or [message]


@dataclass(frozen=True)
class Submitted:
    """What `submit_detailed` launched: the submission, its pipeline and Dagster run."""

    submission_id: str
    pipeline_id: str
    run_id: str
    spec_sha256: str  # of the validated spec (canonical JSON), whatever its formatting
    reloaded: bool  # the registry changed and the code location was reloaded
    # What registering the spec did (None: this client had registered it already), for the
    # caller's audit: a replacement names the version it replaced and where it is kept.
    registration: Registration | None = None


@dataclass(frozen=True)
class Registered:
    """What `ensure_registered` did: reloaded the code location, and the registry's answer
    (None when this client knew the spec was in the location already)."""

    reloaded: bool
    registration: Registration | None


def spec_digest(spec: DagSpec) -> str:
    canonical = json.dumps(
        spec.model_dump(mode="json", by_alias=True), sort_keys=True, separators=(",", ":")
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


def parse_spec(
    spec: Mapping[str, Any] | str | Path | LoadedSpec, source: str = "dag_spec"
) -> LoadedSpec:
    """A dict (JSON body), YAML/JSON text, a file path or an already loaded spec."""
    if isinstance(spec, LoadedSpec):
        return spec
    if isinstance(spec, Path):
        return load_spec(spec)
    if isinstance(spec, Mapping):
        return load_spec_text(json.dumps(spec, indent=1, default=str), source, "json")
    text = str(spec)
    return load_spec_text(text, source, "json" if text.lstrip().startswith("{") else "yaml")


def parse_params(params: Mapping[str, Any] | RuntimeParams | None) -> RuntimeParams:
    """Runtime params; a missing submission_id gets a fresh one."""
    if isinstance(params, RuntimeParams):
        return params
    raw = dict(params or {})
    raw.setdefault("submission_id", f"sub-{uuid.uuid4().hex[:16]}")
    return load_runtime_params(raw, name="runtime_params")


class QuantosClient:
    """Submissions against one Dagster webserver and the spec registry its code location loads."""

    def __init__(
        self,
        dagster_url: str,
        specs_dir: Path | None = None,
        *,
        location: str | None = None,
        repository: str = REPOSITORY,
        cluster: Cluster | None = None,
        api: DagsterAPI | None = None,
    ) -> None:
        """`location`: the one code location to use; None: each pipeline's own, from the
        registry (a location per team), or the workspace's only location."""
        from resources.profile import active_profile

        profile = active_profile()
        self.api = api or DagsterAPI(dagster_url, location or LOCATION, repository)
        self._fixed_location = location
        self._workspace: list[str] | None = None  # the webserver's location names, cached
        self._profile = profile
        self.specs_dir = specs_dir or profile.specs_dir
        # Where the location's steps run (default: this process's profile). Per-step
        # Kubernetes run config only where k8s_job_executor reads it, on pods.
        self.cluster = profile.cluster if cluster is None else cluster
        self._registry_lock = threading.Lock()
        # (pipeline_id, team, admin) -> digest known to be in the code location for that caller
        self._loaded: dict[tuple[str, str | None, bool], str] = {}

    # -- submit ----------------------------------------------------------------------------

    def submit(
        self,
        spec: Mapping[str, Any] | str | Path | LoadedSpec,
        runtime_params: Mapping[str, Any] | RuntimeParams | None = None,
        nodes: list[str] | None = None,
        partition: str | None = None,
        *,
        team: str | None = None,
        admin: bool = False,
    ) -> str:
        """Validate, register, launch; the submission id (raises SpecError on an invalid spec,
        SubmissionError 403/409 when the registry refuses it for `team`)."""
        return self.submit_detailed(
            spec, runtime_params, nodes, partition, team=team, admin=admin
        ).submission_id

    def submit_detailed(
        self,
        spec: Mapping[str, Any] | str | Path | LoadedSpec,
        runtime_params: Mapping[str, Any] | RuntimeParams | None = None,
        nodes: list[str] | None = None,
        partition: str | None = None,
        *,
        team: str | None = None,
        admin: bool = False,
        extra_tags: Mapping[str, str] | None = None,
    ) -> Submitted:
        """As `submit`, returning the run id, the spec's sha256 and whether the code location
        was reloaded; `extra_tags` are added to the run's tags."""
        loaded = parse_spec(spec)
        params = parse_params(runtime_params)
        return self.launch(
            loaded, params, nodes, partition, team=team, admin=admin, extra_tags=extra_tags
        )

    def launch(
        self,
        loaded: LoadedSpec,
        params: RuntimeParams,
        nodes: list[str] | None = None,
        partition: str | None = None,
        *,
        team: str | None = None,
        admin: bool = False,
        extra_tags: Mapping[str, str] | None = None,
    ) -> Submitted:
        """Launch an already validated spec (the gateway validates and authorizes first).
        `team` registers it (the owner of a new pipeline; only the owner, or an `admin`,
        may replace a registered one) and tags its run."""
        from quantos_assets.run_tags import runtime_run_tags
        from resources.run_tag_keys import TAG_TEAM

        spec = loaded.spec
        asset_keys = self._asset_keys(spec, nodes)
        self._check_partition(spec, partition)
        _check_refs(spec, params)
        digest = spec_digest(spec)
        registered = self.ensure_registered(loaded, digest, team=team, admin=admin)
        location = self.location_of(spec.pipeline_id)
        if partition is not None:
            from quantos_assets.calendars.partitions import partitions_name

            self.api.add_dynamic_partition(partitions_name(spec), partition, location)
        tags = {**runtime_run_tags(params), **(extra_tags or {})}
        if team:
            tags[TAG_TEAM] = team
        if partition is not None:
            tags["dagster/partition"] = partition
        run_config = None
        if self.cluster.pods:
            from quantos_assets.k8s.step_config import submission_run_config

            run_config = submission_run_config(spec, params, self.cluster)
        job = spec.pipeline_id
        if asset_job_launch():  # prototype: see quantos_assets/asset_job_launch.py
            from quantos_assets.run_tags import spec_run_tags

            job, asset_keys = IMPLICIT_ASSET_JOB, asset_keys or launch_asset_keys(spec)
            tags = {**spec_run_tags(spec), **tags}
        run_id = self.api.launch(job, tags, run_config, asset_keys, location)
        return Submitted(
            params.submission_id,
            spec.pipeline_id,
            run_id,
            digest,
            registered.reloaded,
            registered.registration,
        )

    def check(
        self,
        spec: DagSpec,
        nodes: list[str] | None = None,
        partition: str | None = None,
        params: RuntimeParams | None = None,
    ) -> None:
        """What `launch` would refuse in the request itself (unknown or external nodes, a bad
        partition, refs to no input), without calling Dagster: raises SubmissionError."""
        self._asset_keys(spec, nodes)
        self._check_partition(spec, partition)
        _check_refs(spec, params)

    def ensure_registered(
        self,
        loaded: LoadedSpec,
        digest: str | None = None,
        *,
        team: str | None = None,
        admin: bool = False,
    ) -> Registered:
        """Make the code location serve this exact spec, registered for `team` (see
        `spec_registry.register_spec`; its refusals raise SubmissionError 403 or 409)."""
        from quantos_assets.spec_registry import RegistryRefusal, register_spec

        spec = loaded.spec
        digest = digest or spec_digest(spec)
        known = (spec.pipeline_id, team, admin)  # the registry answered this team already
        if self._loaded.get(known) == digest:
            return Registered(False, None)
        with self._registry_lock:
            if self._loaded.get(known) == digest:
                return Registered(False, None)
            try:
                registration = register_spec(self.specs_dir, loaded, team=team, admin=admin)
            except RegistryRefusal as refusal:
                raise SubmissionError(str(refusal), refusal.status) from None
            location = self.location_of(spec.pipeline_id)
            job = IMPLICIT_ASSET_JOB if asset_job_launch() else spec.pipeline_id
            reloaded = registration.changed or not self.api.has_job(job, location)
            if reloaded:
                self.api.reload_location(location)  # this pipeline's location only
                if not self.api.has_job(job, location):
                    raise DagsterAPIError(
                        f"code location {location!r} reloaded without job "
                        f"{spec.pipeline_id!r}: "
                        f"is {self.specs_dir} the folder it loads (QUANTOS_SPECS_DIR)?",
                        502,
                    )
            self._loaded[known] = digest
            return Registered(reloaded, registration)

    def location_of(self, pipeline_id: str) -> str:
        """The code location serving a registered pipeline: the registry's answer (its team's
        location, tenancy/locations.py) when the webserver's workspace has it; in a workspace
        of one location (a single-location deployment), that one."""
        if self._fixed_location is not None:
            return self._fixed_location
        from quantos_assets.registry_locations import RegistryLocations
        from quantos_assets.tenancy.teams import TeamsFileError, load_teams

        try:
            teams = load_teams(self._profile.teams_file, required=self._profile.teams_file_named)
            planned = RegistryLocations.read(self.specs_dir, teams).location_of(pipeline_id)
        except TeamsFileError as err:
            raise DagsterAPIError(f"cannot place pipeline {pipeline_id!r}: {err}", 500) from None
        for fresh in (False, True):
            if self._workspace is None or fresh:
                self._workspace = self.api.location_names()
            if planned in self._workspace:
                return planned
            if len(self._workspace) == 1:
                return self._workspace[0]
        raise DagsterAPIError(
            f"pipeline {pipeline_id!r} belongs in code location {planned!r}, which Dagster's "
            f"workspace does not have ({', '.join(self._workspace or []) or 'none'}): "
            "regenerate it with `quantos registry workspace`",
            503,
        )

    def forget_loaded(self) -> None:
        """Re-check the code location on the next submit (after someone else reloaded it)."""
        self._loaded.clear()

    # -- follow ----------------------------------------------------------------------------

    def runs(self, submission_id: str, team: str | None = None) -> list[dict[str, Any]]:
        """Every run of the submission, newest first (a retry adds one). With `team`, only
        runs tagged as that team's: a submission id is a tag anyone launching a run can
        set, so the gateway follows the runs of the team that owns the submission only."""
        from resources.run_tag_keys import TAG_SUBMISSION, TAG_TEAM

        tags = {TAG_SUBMISSION: submission_id, **({TAG_TEAM: team} if team is not None else {})}
        runs = self.api.runs_with_tags(tags)
        if not runs:
            raise SubmissionError(f"no submission {submission_id!r}", status=404)
        return sorted(runs, key=lambda r: r["creationTime"], reverse=True)

    def status(self, submission_id: str, team: str | None = None) -> dict[str, Any]:
        """The latest run: `status` (Dagster's: QUEUED, STARTING, STARTED, SUCCESS, FAILURE,
        CANCELING, CANCELED), `run_id`, `partition`, `start_time`, `end_time`, `steps` (`node`,
        `status`, `start_time`, `end_time`, `attempts`), and `runs`: every run, newest first.
        Raises SubmissionError (status 404) for an unknown submission."""
        runs = self.runs(submission_id, team)
        run = self.api.run(runs[0]["runId"])
        tags = {t["key"]: t["value"] for t in run["tags"]}
        prefix = f"{run['jobName']}__"
        steps = [
            {
                "node": s["stepKey"].removeprefix(prefix),
                "status": s["status"],
                "start_time": s["startTime"],
                "end_time": s["endTime"],
                "attempts": max(1, len(s.get("attempts") or [])),
            }
            for s in run["stepStats"]
        ]
        return {
            "submission_id": submission_id,
            "pipeline_id": run["jobName"],
            "run_id": run["runId"],
            "status": run["status"],
            "partition": tags.get("dagster/partition"),
            "start_time": run["startTime"],
            "end_time": run["endTime"],
            "steps": steps,
            "runs": [{"run_id": r["runId"], "status": r["status"]} for r in runs],
        }

    def logs(
        self, submission_id: str, node: str | None = None, team: str | None = None
    ) -> list[dict[str, Any]]:
        """The latest run's event log, each line keyed by submission, pipeline, node and run
        (seed 000 §6), like the JSON lines runs write for Loki."""
        run = self.runs(submission_id, team)[0]
        pipeline = self.api.run(run["runId"])["jobName"]
        step = f"{pipeline}__{node}" if node else None
        lines = []
        for event in self.api.logs(run["runId"]):
            if step is not None and event.get("stepKey") != step:
                continue
            step_key = event.get("stepKey") or ""
            lines.append(
                {
                    "time": float(event["timestamp"]) / 1000.0,
                    "level": event["level"],
                    "node": step_key[len(pipeline) + 2 :]
                    if step_key.startswith(f"{pipeline}__")
                    else None,
                    "event": event.get("eventType"),
                    "message": event["message"],
                    "submission_id": submission_id,
                    "pipeline_id": pipeline,
                    "run_id": run["runId"],
                }
            )
        return lines

    def lineage(self, submission_id: str, team: str | None = None) -> dict[str, Any]:
        """Assets the submission's latest run produced, with their up/downstream assets, Iceberg
        snapshot ids and artifact hashes, and what each step read."""
        run_id = self.runs(submission_id, team)[0]["runId"]
        data = self.api.lineage(run_id)
        run = data["runOrError"]
        produced = [
            {
                "key": "/".join(m["assetKey"]["path"]),
                "partition": m["partition"],
                **_metadata(m["metadataEntries"]),
            }
            for m in run["assetMaterializations"]
        ]
        nodes = self.api.asset_nodes([m["assetKey"]["path"] for m in run["assetMaterializations"]])
        graph = {
            "/".join(n["assetKey"]["path"]): (
                sorted("/".join(d["path"]) for d in n["dependencyKeys"]),
                sorted("/".join(d["path"]) for d in n["dependedByKeys"]),
            )
            for n in nodes
        }
        for asset in produced:
            upstream, downstream = graph.get(asset["key"], ([], []))
            asset["upstream"], asset["downstream"] = upstream, downstream
        events = (
            data["logsForRun"].get("events", [])
            if data["logsForRun"]["__typename"] == "EventConnection"
            else []
        )
        inputs = [
            {
                "step": e["stepKey"],
                "input": e["inputName"],
                "from_step": e["upstreamStepKey"],
                **_metadata(e["metadataEntries"]),
            }
            for e in events
            if e["__typename"] == "LoadedInputEvent"
        ]
        return {
            "submission_id": submission_id,
            "run_id": run_id,
            "status": run["status"],
            "assets": produced,
            "inputs": inputs,
        }

    # -- act -------------------------------------------------------------------------------

    def cancel(self, submission_id: str, team: str | None = None) -> str:
        """Terminate the latest run; its id. SubmissionError (409) if it is not active."""
        run = self.runs(submission_id, team)[0]
        if run["status"] not in ACTIVE_STATUSES:
            raise SubmissionError(
                f"submission {submission_id} has no active run (latest is {run['status']})", 409
            )
        self.api.terminate(run["runId"])
        return str(run["runId"])

    def retry(self, submission_id: str, team: str | None = None) -> str:
        """Re-execute the latest run from failure; the new run id."""
        run = self.runs(submission_id, team)[0]
        if run["status"] not in ("FAILURE", "CANCELED"):
            raise SubmissionError(
                f"submission {submission_id}: only a failed or canceled run is retried (latest is "
                f"{run['status']})",
                409,
            )
        return self.api.reexecute_from_failure(run["runId"])

    # -- checks ----------------------------------------------------------------------------

    @staticmethod
    def _asset_keys(spec: DagSpec, nodes: list[str] | None) -> list[list[str]] | None:
        if not nodes:
            return None
        known = {n.id: n for n in spec.nodes}
        unknown = [n for n in nodes if n not in known]
        if unknown:
            raise SubmissionError(f"nodes {unknown} are not in pipeline {spec.pipeline_id!r}")
        external = [n for n in nodes if known[n].kind in EXTERNAL_KINDS]
        if external:
            kinds = ", ".join(sorted(k.value for k in EXTERNAL_KINDS))
            raise SubmissionError(f"nodes {external} are external ({kinds}): not run")
        return [[spec.pipeline_id, out] for n in nodes for out in (known[n].outs or [n])]

    @staticmethod
    def _check_partition(spec: DagSpec, partition: str | None) -> None:
        if partition is None:
            if spec.partitions is not None:
                raise SubmissionError(
                    f"pipeline {spec.pipeline_id!r} is partitioned by session: give a partition"
                )
            return
        if spec.partitions is None:
            raise SubmissionError(
                f"pipeline {spec.pipeline_id!r} has no partitions; drop 'partition'"
            )
        from quantos_assets.calendars.sessions import is_session

        try:
            day = date.fromisoformat(partition)
        except ValueError:
            raise SubmissionError(
                f"partition {partition!r}: expected a session date YYYY-MM-DD"
            ) from None
        code = spec.partitions.calendar
        if not is_session(code, day) or day < spec.partitions.start:
            raise SubmissionError(
                f"partition {partition}: not a {code} session on or after "
                f"{spec.partitions.start.isoformat()}"
            )


def _metadata(entries: list[dict[str, Any]]) -> dict[str, Any]:
    """The lineage-relevant metadata of a materialization or a loaded input."""
    out: dict[str, Any] = {}
    for entry in entries:
        label = entry["label"]
        if label not in (
            "snapshot_id",
            "table",
            "rows",
            "uri",
            "sha256",
            "partition_key",
            "partition_range",
        ):
            continue
        value = entry.get("intRepr") or entry.get("text") or entry.get("path") or entry.get("url")
        if value is None and entry.get("floatValue") is not None:
            value = entry["floatValue"]
        out[label] = int(value) if label in ("snapshot_id", "rows") and value is not None else value
    return out


__all__ = ["DagsterAPIError", "QuantosClient", "SpecError", "SubmissionError", "Submitted"]
