"""Data-arrival triggers: a spec's `triggers: [{arrivals: {uri: ...}}]` as a sensor that starts
one run per new object version (seed 002: a vendor's file landing starts the pipeline).

Exactly once across daemon restarts, twice over: each run request has the run key
`<uri>@<version>`, which Dagster checks against the runs this sensor already started (a tick
re-evaluated after a crash adds none), and the cursor remembers what was requested, so an
unchanged object listed again requests nothing.

The cursor stays small whatever the bucket holds. A *pass* lists the glob's prefix in key
order, at most MAX_KEYS_PER_TICK keys a tick (resuming after the last key listed, S3's
StartAfter), and requests at most MAX_RUNS_PER_TICK runs a tick. When a pass ends, the
`floor` becomes the newest modification it saw less GRACE_SECONDS: objects older than the
floor are not looked at again, and the cursor keeps only the versions it requested at or
after it. GRACE_SECONDS covers an S3 multipart upload (its LastModified is when it began)
and an object that lands behind the listing while a pass is under way.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from dagster import DefaultSensorStatus, RunRequest, SensorDefinition, SensorResult, sensor

from quantos_assets.pipeline_assets import PipelineDefs
from quantos_assets.spec.arrival_glob import ArrivalGlob, parse_arrival_glob
from quantos_assets.spec.derived_names import arrivals_sensor_name
from resources.arrival_objects import (
    ArrivalSourceError,
    ListedPage,
    list_local,
    list_s3,
)
from resources.profile import Profile
from resources.run_tag_keys import TAG_ARRIVAL_URI, TAG_ARRIVAL_VERSION

POLL_SECONDS = 30
MAX_KEYS_PER_TICK = 10_000
MAX_RUNS_PER_TICK = 25
GRACE_SECONDS = 3600.0
# The requested versions the cursor keeps at most (the newest); past it Dagster's run-key
# check is what keeps a re-listed object from running twice.
MAX_REMEMBERED = 5000

Lister = Callable[[str | None, int], ListedPage]


@dataclass(frozen=True)
class Source:
    """Where a glob's objects are listed: `list` pages them, `uri` names one of them."""

    shown: str
    list: Lister
    uri: Callable[[str], str]


@dataclass
class ArrivalCursor:
    floor: float | None = None  # objects modified before it are not new (end of last pass)
    pass_max: float | None = None  # the newest modification seen by the pass under way
    after: str | None = None  # the key the pass under way resumes after
    # digest of "path@version" -> its modification time, for the versions requested
    requested: dict[str, float] = field(default_factory=dict)

    @classmethod
    def parse(cls, raw: str | None) -> ArrivalCursor:
        if not raw:
            return cls()
        data = json.loads(raw)
        return cls(data.get("floor"), data.get("pass_max"), data.get("after"), data["requested"])

    def dump(self) -> str:
        return json.dumps(
            {
                "floor": self.floor,
                "pass_max": self.pass_max,
                "after": self.after,
                "requested": self.requested,
            },
            separators=(",", ":"),
        )

    def forget_old(self) -> None:
        """Keep only what a later pass could list again as new."""
        bounds = [b for b in (self.floor, _minus_grace(self.pass_max)) if b is not None]
        if bounds:
            bound = max(bounds)
            self.requested = {k: t for k, t in self.requested.items() if t >= bound}
        if len(self.requested) > MAX_REMEMBERED:
            newest = sorted(self.requested.items(), key=lambda kv: kv[1])[-MAX_REMEMBERED:]
            self.requested = dict(newest)


def _digest(text: str) -> str:
    """A requested version as the cursor keeps it: 16 hex digits, however long the key."""
    return hashlib.blake2b(text.encode(), digest_size=8).hexdigest()


def _minus_grace(when: float | None) -> float | None:
    return None if when is None else when - GRACE_SECONDS


def evaluate_arrivals(
    cursor: str | None,
    source: Source,
    log: Callable[[str], None] = lambda _: None,
) -> SensorResult:
    """One tick: the run requests for new object versions and the next cursor, or a skip
    reason (nothing new, or the source cannot be listed)."""
    state = ArrivalCursor.parse(cursor)
    try:
        page = source.list(state.after, MAX_KEYS_PER_TICK)
    except ArrivalSourceError as err:
        return SensorResult(skip_reason=str(err), cursor=cursor)
    requests: list[RunRequest] = []
    resume_after: str | None = page.last if page.truncated else None
    previous: str | None = None
    for obj in page.objects:
        if len(requests) >= MAX_RUNS_PER_TICK:
            resume_after = previous
            break
        previous = obj.path
        state.pass_max = max(obj.modified, state.pass_max or obj.modified)
        seen = _digest(f"{obj.path}@{obj.version}")
        if (state.floor is not None and obj.modified < state.floor) or seen in state.requested:
            continue
        uri = source.uri(obj.path)
        requests.append(
            RunRequest(
                run_key=f"{uri}@{obj.version}",
                tags={TAG_ARRIVAL_URI: uri, TAG_ARRIVAL_VERSION: obj.version},
            )
        )
        state.requested[seen] = obj.modified
    if resume_after is None:  # the pass is complete: what it saw raises the floor
        bounds = [b for b in (state.floor, _minus_grace(state.pass_max)) if b is not None]
        state.floor = max(bounds) if bounds else None
        state.pass_max = None
    state.after = resume_after
    state.forget_old()
    where = source.shown
    if resume_after is not None:
        log(
            f"{where}: {len(requests)} run(s) this tick (at most {MAX_RUNS_PER_TICK}, "
            f"{MAX_KEYS_PER_TICK} keys listed a tick); the listing resumes after {resume_after}"
        )
    if not requests:
        more = f"; listing resumes after {resume_after}" if resume_after else ""
        return SensorResult(
            skip_reason=f"no new object matching {where} ({len(page.objects)} listed){more}",
            cursor=state.dump(),
        )
    return SensorResult(run_requests=requests, cursor=state.dump())


def build_arrival_sensors(pipeline: PipelineDefs, profile: Profile) -> list[SensorDefinition]:
    """One sensor per arrivals trigger of the spec, in the pipeline's own code location."""
    return [
        _arrival_sensor(pipeline, i, parse_arrival_glob(t.arrivals.uri), profile)
        for i, t in enumerate(pipeline.spec.triggers)
        if t.arrivals is not None
    ]


def arrival_source(glob: ArrivalGlob, profile: Profile) -> Source | str:
    """How to list the glob's objects with the profile's settings, or why it may not be."""
    if glob.scheme == "s3":
        bucket, prefix = glob.root, glob.prefix

        def s3(after: str | None, max_keys: int) -> ListedPage:
            endpoint, region = profile.s3_endpoint, profile.s3_region
            return list_s3(endpoint, region, bucket, prefix, glob.matches, after, max_keys)

        return Source(f"s3://{bucket}/{glob.pattern}", s3, lambda key: f"s3://{bucket}/{key}")
    # Local: listed from the glob's literal directory, which must be the landing root or
    # under it (a relative glob starts at the root; `..` was refused at spec load).
    landing = profile.landing_dir.resolve()
    start = (Path("/") if glob.root else landing) / glob.directory
    pattern = glob.pattern[len(glob.directory) :].lstrip("/")
    shown = f"file://{start}/{pattern}"
    if not start.resolve().is_relative_to(landing):
        return f"{shown} is outside the landing root {landing} (QUANTOS_LANDING_DIR)"

    def local(after: str | None, max_keys: int) -> ListedPage:
        return list_local(start, pattern, after, max_keys)

    return Source(shown, local, lambda rel: f"file://{start / rel}")


def _arrival_sensor(
    pipeline: PipelineDefs, index: int, glob: ArrivalGlob, profile: Profile
) -> SensorDefinition:
    pid = pipeline.spec.pipeline_id
    source = arrival_source(glob, profile)
    shown = source if isinstance(source, str) else source.shown

    @sensor(
        name=arrivals_sensor_name(pid, index),
        job=pipeline.job,
        minimum_interval_seconds=POLL_SECONDS,
        default_status=DefaultSensorStatus.RUNNING,
        description=f"Runs {pid} once per new version of an object matching {shown}.",
    )
    def _arrivals(context):  # context unannotated: see [tool.mypy]
        if isinstance(source, str):
            return SensorResult(skip_reason=source, cursor=context.cursor)
        return evaluate_arrivals(context.cursor, source, context.log.info)

    return _arrivals
