"""kafka_submissions: compiler submissions from a Kafka topic become runs, each exactly once.

Seed 000 puts a job queue in front of the workflow engine. A message is
`{"dag_spec": {...} | "spec_ref": "...", "runtime_params": {...}}`; it names a pipeline of
this code location and becomes one run of its job, the runtime params as run tags and, in
staging/prod, as the run config that places and labels each step pod and mounts the
submission's secrets scopes (`submission_run_config`, what the gateway and the client send):
k8s_job_executor applies no run tag to step pods.

Exactly once across restarts, with Kafka's committed offsets as the source of truth:
- a tick reads from the group's committed offsets and returns run requests keyed by
  topic/partition/offset, plus a cursor naming the offsets it has *not yet* committed;
- Dagster records the requests and the cursor together (the daemon reserves run ids with
  the cursor before submitting, and resumes an interrupted tick), and only then evaluates
  the next tick, which commits those offsets before it reads anything.
A crash before the requests are recorded re-reads the same messages (same run keys, so
Dagster's run-key check drops what did get launched); a crash after re-commits the same
offsets. An invalid message is written to the dead-letter topic with its error (and logged
on the tick) and its offset is committed like any other: the queue never sticks on it.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from dagster import DefaultSensorStatus, RunRequest, SensorDefinition, SensorResult, sensor
from pydantic import BaseModel, ConfigDict, ValidationError, model_validator

from quantos_assets.admission.policy import admit
from quantos_assets.admission.registry_view import DirectoryRegistry
from quantos_assets.admission.request import Action, AdmissionRequest, Caller
from quantos_assets.k8s.step_config import SecretScopeError, submission_run_config
from quantos_assets.pipeline_assets import PipelineDefs
from quantos_assets.placement import PlacementError
from quantos_assets.run_tags import runtime_run_tags
from quantos_assets.spec.derived_names import KAFKA_SUBMISSIONS_SENSOR
from quantos_assets.spec.errors import SpecError
from quantos_assets.spec.input_refs import ref_problems
from quantos_assets.spec.loader import load_runtime_params
from quantos_assets.spec_rules.firm import load_spec_text
from quantos_assets.tenancy.locations import PLATFORM_LOCATION, location_group
from quantos_assets.tenancy.teams import TeamsFile, TeamsFileError, load_teams, pipeline_team
from resources.kafka_client import (
    DEFAULT_GROUP,
    KafkaClient,
    KafkaProblem,
    KafkaSettings,
    Message,
)
from resources.profile import Profile
from resources.run_tag_keys import TAG_KAFKA_MESSAGE
from sensors.run_usage import InstanceUsage, gateway_store

SENSOR_NAME = KAFKA_SUBMISSIONS_SENSOR


class SubmissionMessage(BaseModel):
    """The message body; the spec and params inside are checked by the spec loader."""

    model_config = ConfigDict(extra="forbid")

    dag_spec: dict[str, Any] | None = None
    spec_ref: str | None = None
    runtime_params: dict[str, Any]

    @model_validator(mode="after")
    def _one_spec(self) -> SubmissionMessage:
        if (self.dag_spec is None) == (self.spec_ref is None):
            raise ValueError("give exactly one of dag_spec and spec_ref")
        return self


@dataclass(frozen=True)
class Accepted:
    message: Message
    pipeline_id: str
    tags: dict[str, str]
    run_config: dict[str, Any] = field(default_factory=dict)

    @property
    def run_key(self) -> str:
        return message_id(self.message)


@dataclass(frozen=True)
class Rejected:
    message: Message
    error: str


@dataclass(frozen=True)
class Deferred:
    """Admissible later (a quota): it and the rest of its partition wait for the next tick."""

    message: Message
    reason: str


@dataclass(frozen=True)
class Elsewhere:
    """Another code location's submission: that location's sensor, reading the topic with a
    group of its own, runs it (or, for a message naming no pipeline a location serves, the
    platform's sends it to the dead-letter topic). Committed here like any handled message."""

    message: Message
    # The team location that runs it (None: the platform's, or no pipeline at all)
    location: str | None = None


# A message's ref -> the code location the registry says serves it (None: no pipeline).
Router = Callable[[str], str | None]


@dataclass(frozen=True)
class Routing:
    """Where this sensor runs, when the workspace has a location per team."""

    location: str
    route: Router
    # Groups whose committed offsets a partition starts from where this location's own group
    # never committed one: a new location's group would otherwise read the topic from its
    # earliest offset and run again every retained submission another location already ran.
    inherit: tuple[str, ...] = ()
    # The deployment's QUANTOS_KAFKA_GROUP (each location's group is named from it)
    base_group: str = DEFAULT_GROUP

    @property
    def dead_letters(self) -> bool:
        """Whether this location dead-letters what no location serves: the platform's only,
        so a bad message is dead-lettered once, not once per location reading the topic."""
        return self.location == PLATFORM_LOCATION

    def elsewhere(self, ref: str) -> bool:
        """True when another location handles `ref`: a pipeline it serves, or, seen from a
        team's location, one no location serves (the platform's dead-letters those)."""
        where = self.route(ref)
        if where is None:
            return not self.dead_letters
        return where != self.location


def message_id(msg: Message) -> str:
    return f"{msg.topic}/{msg.partition}/{msg.offset}"


def _claimed_id(dag_spec: Mapping[str, Any] | None) -> str | None:
    """The pipeline_id an inline spec claims, to route it by (its location checks the rest)."""
    claimed = (dag_spec or {}).get("pipeline_id")
    return claimed if isinstance(claimed, str) else None


def pipeline_refs(pipelines: list[PipelineDefs]) -> dict[str, PipelineDefs]:
    """What a spec_ref may say: the pipeline_id, or the registry file's name or stem."""
    refs: dict[str, PipelineDefs] = {}
    for p in pipelines:
        if p.source is not None:
            refs[p.source.name] = p
            refs[p.source.stem] = p
    for p in pipelines:
        refs[p.spec.pipeline_id] = p
    return refs


def parse_submission(
    msg: Message,
    refs: Mapping[str, PipelineDefs],
    teams: TeamsFile,
    production: bool = False,
    usage: InstanceUsage | None = None,
    registry: DirectoryRegistry | None = None,
    routing: Routing | None = None,
) -> Accepted | Rejected | Deferred | Elsewhere:
    """One message -> a run of a known pipeline, or the one-line reason it cannot be one.
    `production`: the run carries the submission's per-step Kubernetes config; params that
    config could not honour are refused in every profile, as `quantos run` refuses them.

    A Kafka message has no caller to authorize (who may write the topic is the broker's
    ACL), so the registered pipeline's team stands in for one, and the message is admitted
    by the same policy as a gateway submission (quantos_assets/admission/): its secrets_scope
    may name only scopes deploy/teams.yaml grants that team (a pipeline with no team gets the
    defaults), a labels.team naming another team is refused, and with `usage` the run
    counts against the team's quotas (over one, the message waits: `Deferred`).

    `routing` (a location per team): the registry, not this location's refs, says which one
    location handles a message; every other one answers `Elsewhere`. A message naming no
    registered pipeline, or none at all (not JSON, no spec), is the platform location's to
    dead-letter, so it is dead-lettered once however many locations read the topic."""
    where = message_id(msg)

    def unroutable(error: str) -> Rejected | Elsewhere:
        """A message naming no pipeline: the platform location's to dead-letter."""
        if routing is not None and not routing.dead_letters:
            return Elsewhere(msg)
        return Rejected(msg, error)

    try:
        body = json.loads(msg.value or b"")
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        return unroutable(f"{where}: not JSON ({err})")
    try:
        sub = SubmissionMessage.model_validate(body)
    except ValidationError as err:
        first = err.errors()[0]
        path = ".".join(str(p) for p in first["loc"]) or "message"
        return unroutable(f"{where}: {path}: {first['msg'].removeprefix('Value error, ')}")
    # Routed before anything else is read: the registry says which one location handles the
    # message, whatever this location's own refs say (one of its files may be named like
    # another team's pipeline_id), and only that location checks the rest of it.
    ref = sub.spec_ref if sub.spec_ref is not None else _claimed_id(sub.dag_spec)
    if routing is not None and (
        routing.elsewhere(ref) if ref is not None else not routing.dead_letters
    ):
        return Elsewhere(msg, routing.route(ref) if ref is not None else None)
    try:
        params = load_runtime_params(sub.runtime_params, name=f"{where} runtime_params")
        if sub.spec_ref is not None:
            pipeline = refs.get(sub.spec_ref)
            if (
                pipeline is None
                and routing is not None
                and routing.route(sub.spec_ref) == routing.location
            ):
                return Rejected(
                    msg,
                    f"{where}: spec_ref: pipeline {sub.spec_ref!r} is registered for code "
                    f"location {routing.location} but not loaded there (reload the code location)",
                )
            if pipeline is None:
                return Rejected(msg, f"{where}: spec_ref: unknown pipeline {sub.spec_ref!r}")
        else:
            loaded = load_spec_text(json.dumps(sub.dag_spec), f"{where} dag_spec", "json")
            pid = loaded.spec.pipeline_id
            pipeline = refs.get(pid)
            if pipeline is None or pipeline.spec.pipeline_id != pid:
                return Rejected(
                    msg,
                    f"{where}: dag_spec.pipeline_id: unknown pipeline {pid!r} "
                    "(add its spec to the spec registry and reload the code location)",
                )
            if loaded.spec.model_dump(mode="json") != pipeline.spec.model_dump(mode="json"):
                return Rejected(
                    msg,
                    f"{where}: dag_spec: differs from the registered spec of {pid!r} "
                    "(update the spec registry and reload, or submit a spec_ref)",
                )
    except SpecError as err:
        return Rejected(msg, "; ".join(err.lines))
    pinned = ref_problems(pipeline.spec, params)
    if pinned:
        return Rejected(msg, "; ".join(f"{where}: runtime_params.{line}" for line in pinned))
    try:
        run_config = submission_run_config(pipeline.spec, params, pipeline.cluster)
    except PlacementError as err:
        return Rejected(msg, f"{where}: runtime_params.affinity.compute_pool: {err}")
    except SecretScopeError as err:
        return Rejected(msg, f"{where}: runtime_params.secrets_scope: {err}")
    pid = pipeline.spec.pipeline_id
    owner = (registry.owner(pid) if registry is not None else None) or pipeline_team(
        pipeline.spec.labels
    )
    request = AdmissionRequest(
        action=Action.KAFKA,
        caller=Caller(team=owner or "", actor=where),
        teams=teams,
        spec=pipeline.spec,
        params=params,
        registry=registry,
        usage=usage,
    )
    refused = admit(request)
    if refused is not None and refused.later:
        return Deferred(msg, f"{where}: waits: {refused.line}")
    if refused is not None:
        return Rejected(msg, f"{where}: {refused.line}")
    if usage is not None:
        wait = usage.quota_window.take_now(
            owner or "", teams.policy(owner or "").submissions_per_minute, "kafka", where
        )
        if wait is not None:
            return Deferred(msg, f"{where}: waits: team {owner} reached its submissions per minute")
        usage.requested[owner or ""] += 1
    tags = {**runtime_run_tags(params), TAG_KAFKA_MESSAGE: where}
    return Accepted(msg, pipeline.spec.pipeline_id, tags, run_config if production else {})


@dataclass(frozen=True)
class SubmissionCursor:
    """Offsets read and handed to Dagster but not yet committed to Kafka."""

    topic: str
    pending: dict[int, int]

    @classmethod
    def parse(cls, raw: str | None, topic: str) -> SubmissionCursor:
        data = json.loads(raw) if raw else {}
        if data.get("topic") != topic:
            return cls(topic, {})
        return cls(topic, {int(p): int(o) for p, o in data.get("pending", {}).items()})

    def dump(self) -> str:
        return json.dumps(
            {"topic": self.topic, "pending": {str(p): o for p, o in sorted(self.pending.items())}}
        )


def evaluate(
    cursor: str | None,
    settings: KafkaSettings,
    refs: Mapping[str, PipelineDefs],
    teams: TeamsFile,
    log: Any,
    production: bool = False,
    usage: InstanceUsage | None = None,
    registry: DirectoryRegistry | None = None,
    routing: Routing | None = None,
) -> SensorResult:
    """One tick: commit what the previous tick handed over, read on, turn messages into runs
    (`usage`: count them against their teams' quotas)."""
    topic = settings.submissions_topic
    state = SubmissionCursor.parse(cursor, topic)
    client = KafkaClient(settings.bootstrap or "", settings.timeout_s)
    try:
        with client.consumer(settings.group) as consumer:
            partitions = consumer.partitions(topic)
            committed = consumer.committed(topic, partitions)
            if routing is not None and routing.inherit:
                started = _inherited(client, topic, committed, routing.inherit)
                consumer.commit(topic, started)  # where this group starts, from now on
                committed.update(started)
            # Forward only: another orchestrator (or an operator) may have moved the group on.
            due = {p: o for p, o in state.pending.items() if o > committed.get(p, -1)}
            consumer.commit(topic, due)
            committed.update(due)
            messages = consumer.read(topic, committed, settings.max_per_tick)
    except KafkaProblem as err:
        # Nothing is lost: the pending offsets stay in the cursor until a commit succeeds.
        return SensorResult(skip_reason=str(err), cursor=state.dump())
    outcomes: list[Accepted | Rejected | Elsewhere] = []
    waiting: dict[int, Deferred] = {}  # partition -> its first message over a quota
    for m in messages:
        if m.partition in waiting:
            continue  # a partition's messages run in order: the rest wait behind it
        outcome = parse_submission(m, refs, teams, production, usage, registry, routing)
        if isinstance(outcome, Deferred):
            waiting[m.partition] = outcome
        else:
            outcomes.append(outcome)
    if routing is not None and routing.dead_letters:
        skip = _bookmark_undeployed(client, settings, routing, outcomes)
        if skip is not None:
            return SensorResult(skip_reason=skip, cursor=state.dump())
    rejected = [o for o in outcomes if isinstance(o, Rejected)]
    if rejected:
        try:
            client.produce(settings.dead_letter_topic, [_dead_letter(r) for r in rejected])
        except KafkaProblem as err:
            # Retry the whole batch next tick (same run keys) rather than drop an error record.
            return SensorResult(skip_reason=str(err), cursor=SubmissionCursor(topic, {}).dump())
        for r in rejected:
            log.error(f"rejected submission, sent to {settings.dead_letter_topic}: {r.error}")
    # Commit what was handled; a waiting message is read again next tick.
    pending = {m.partition: m.offset + 1 for m in messages if m.partition not in waiting}
    pending.update({p: d.message.offset for p, d in waiting.items()})
    for deferred in waiting.values():
        log.warning(deferred.reason)
    requests = [
        RunRequest(run_key=a.run_key, job_name=a.pipeline_id, tags=a.tags, run_config=a.run_config)
        for a in outcomes
        if isinstance(a, Accepted)
    ]
    next_cursor = SubmissionCursor(topic, pending).dump()
    if requests:
        return SensorResult(run_requests=requests, cursor=next_cursor)
    if rejected or waiting:
        said = (
            [f"{len(rejected)} invalid submission(s) sent to {settings.dead_letter_topic}"]
            if rejected
            else []
        )
        said += [d.reason for d in waiting.values()]
        return SensorResult(skip_reason="; ".join(said), cursor=next_cursor)
    return SensorResult(skip_reason=f"no new submissions on {topic}", cursor=next_cursor)


def _bookmark_undeployed(
    client: KafkaClient,
    settings: KafkaSettings,
    routing: Routing,
    outcomes: list[Accepted | Rejected | Elsewhere],
) -> str | None:
    """Keep the place of every message for a location whose group has never committed on its
    partition (a team or shard in the teams file whose code server is not deployed yet): its
    group is committed at that message, so when the location comes up it starts there rather
    than where the platform's group is by then (past the message: it would never run). A
    group that has committed is running (or ran) and keeps its own place. The skip reason
    when the broker did not answer (nothing is committed then; the tick is read again)."""
    first: dict[tuple[str, int], int] = {}  # (location, partition) -> its first offset
    for outcome in outcomes:
        if isinstance(outcome, Elsewhere) and outcome.location not in (None, routing.location):
            key = (str(outcome.location), outcome.message.partition)
            first[key] = min(first.get(key, outcome.message.offset), outcome.message.offset)
    topic = settings.submissions_topic
    try:
        for location in sorted({loc for loc, _ in first}):
            group = location_group(routing.base_group, location)
            partitions = [(topic, p) for loc, p in first if loc == location]
            committed = client.committed_offsets(group, partitions)
            unset = [p for (_t, p), o in committed.items() if o < 0]
            if unset:
                client.commit_offsets(group, topic, {p: first[(location, p)] for p in unset})
    except KafkaProblem as err:
        return str(err)
    return None


def _inherited(
    client: KafkaClient, topic: str, committed: Mapping[int, int], groups: tuple[str, ...]
) -> dict[int, int]:
    """Start offsets for the partitions this group never committed: the first of `groups`
    that committed one (the platform location's, then the single location's group)."""
    unset = [p for p, o in committed.items() if o < 0]
    found: dict[int, int] = {}
    for group in groups:
        left = [(topic, p) for p in unset if p not in found]
        if not left:
            break
        offsets = client.committed_offsets(group, left)
        found.update({p: o for (_t, p), o in offsets.items() if o >= 0})
    return found


def _dead_letter(r: Rejected) -> tuple[bytes, bytes | None, dict[str, str]]:
    """Keyed by the source offset, so a record repeated after a crash is recognisably the same."""
    m = r.message
    return (
        message_id(m).encode(),
        m.value,
        {
            "quantos.error": r.error,
            "quantos.source": message_id(m),
        },
    )


def build_kafka_submissions(
    pipelines: list[PipelineDefs],
    profile: Profile,
    teams: TeamsFile | None = None,
    location: str | None = None,
    route: Router | None = None,
) -> SensorDefinition | None:
    """The submission sensor, or None when the profile names no broker (QUANTOS_KAFKA_BOOTSTRAP).
    Where the profile runs steps as pods (staging/prod) a run gets its run config; `teams`
    (default: the profile's teams file) grants the secrets scopes. `location` and `route`:
    where the workspace has a location per team, each reads the topic with a group of its
    own (`<group>.<location>`) and runs only its own pipelines' submissions."""
    settings, production = profile.kafka, profile.runs_pods
    if not settings.enabled:
        return None
    routing = None
    if location is not None and route is not None:
        # A new location's group starts where the platform location's is (it reads every
        # message), else where the single location's group left off (the split itself).
        base = settings.group
        inherit = (
            (base,)
            if location == PLATFORM_LOCATION
            else (location_group(base, PLATFORM_LOCATION), base)
        )
        routing = Routing(location, route, inherit, base_group=base)
        settings = replace(settings, group=location_group(base, location))
    refs = pipeline_refs(pipelines)
    grants: TeamsFile | TeamsFileError
    try:
        grants = (
            teams if teams is not None else load_teams(profile.teams_file, profile.teams_file_named)
        )
    except TeamsFileError as err:
        grants = err  # every tick says so; the code location (and its other sensors) still loads

    @sensor(
        name=SENSOR_NAME,
        jobs=[p.job for p in pipelines] or None,
        minimum_interval_seconds=10,
        default_status=DefaultSensorStatus.RUNNING,
        description=(
            f"Runs compiler submissions from Kafka topic {settings.submissions_topic} "
            f"(group {settings.group}); invalid ones go to {settings.dead_letter_topic}."
        ),
    )
    def kafka_submissions(context):  # context unannotated: see [tool.mypy]
        if isinstance(grants, TeamsFileError):
            return SensorResult(skip_reason=f"no submission read: {grants}", cursor=context.cursor)
        usage = InstanceUsage(context.instance, gateway_store(profile.gateway_store_url))
        registry = DirectoryRegistry(profile.specs_dir)
        return evaluate(
            context.cursor,
            settings,
            refs,
            grants,
            context.log,
            production,
            usage,
            registry,
            routing,
        )

    return kafka_submissions
