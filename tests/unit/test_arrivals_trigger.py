"""A spec's data-arrival trigger: the glob is checked when the spec is loaded (one line naming
the file and field), both spellings of `triggers` mean the same, and one tick's work and the
cursor stay bounded however many objects the bucket holds."""

from __future__ import annotations

import json
from bisect import bisect_right

import pytest

from quantos_assets.spec.arrival_glob import parse_arrival_glob
from quantos_assets.spec.errors import SpecError
from quantos_assets.spec_rules.firm import load_spec_text
from resources.arrival_objects import ArrivalSourceError, ListedObject, ListedPage
from sensors.arrivals import (
    GRACE_SECONDS,
    MAX_KEYS_PER_TICK,
    MAX_RUNS_PER_TICK,
    Source,
    evaluate_arrivals,
)

SPEC = """\
version: 1
pipeline_id: vendor_bars
nodes:
  - {{id: load, kind: trino_sql, params: {{sql: "select 1 as x"}}, outs: [x]}}
triggers:
{triggers}
"""


def _load(triggers: str):
    return load_spec_text(SPEC.format(triggers=triggers), "specs/vendor_bars.yaml", "yaml").spec


@pytest.mark.parametrize(
    ("uri", "why"),
    [
        ("s3://vendor/bars/[2026*.csv", "unclosed '[' in '[2026*.csv'"),
        ("s3://vendor/**/x.csv", "'**' is not supported"),
        ("s3://vendor/bars/", "names no object"),
        ("s3://ven*/bars/x.csv", "the bucket cannot hold a wildcard"),
        ("s3://Vendor_Bucket/x.csv", "'Vendor_Bucket' is not an S3 bucket name"),
        ("vendor/../../etc/*.csv", "'..' path segments are not allowed"),
        ("file://data/x.csv", "a file URI names an absolute path"),
        ("/data/vendor/*.csv", "an absolute path is written file:///data/vendor/*.csv"),
        ("https://vendor.example/x.csv", "only s3://bucket/glob, file:///dir/glob"),
    ],
)
def test_a_bad_glob_is_one_line_naming_the_file_and_field(uri: str, why: str) -> None:
    with pytest.raises(SpecError) as err:
        _load(f'  - arrivals: {{uri: "{uri}"}}')
    [line] = err.value.lines
    assert line.startswith("specs/vendor_bars.yaml:6: triggers[0].arrivals.uri: ")
    assert why in line


def test_the_mapping_form_is_a_list_of_one_trigger_per_kind() -> None:
    listed = _load('  - arrivals: {uri: "s3://vendor/bars/*.csv"}')
    mapped = _load('  arrivals: {uri: "s3://vendor/bars/*.csv"}')
    assert mapped.triggers == listed.triggers
    assert mapped.triggers[0].arrivals is not None
    assert mapped.triggers[0].kafka_lag is None
    # a problem in the mapping is on its own line
    with pytest.raises(SpecError) as err:
        _load('  kafka_lag: {topic: t, group: g, threshold: 1}\n  arrivals: {uri: "s3://x/"}')
    assert str(err.value).startswith("specs/vendor_bars.yaml:7: triggers[1].arrivals.uri: ")
    # a lag trigger alone is read as before
    lagged = _load("  - kafka_lag: {topic: t, group: g, threshold: 1}")
    assert lagged.triggers[0].kafka_lag is not None and lagged.triggers[0].arrivals is None


def test_a_trigger_is_one_kind() -> None:
    with pytest.raises(SpecError, match="give exactly one of kafka_lag and arrivals"):
        _load('  - arrivals: {uri: "x/*.csv"}\n    kafka_lag: {topic: t, group: g, threshold: 1}')


def test_a_session_partitioned_pipeline_cannot_be_started_by_an_arrival() -> None:
    spec = SPEC.replace("nodes:", "partitions: {{calendar: XNYS, start: 2026-01-02}}\nnodes:")
    with pytest.raises(SpecError) as err:
        load_spec_text(
            spec.format(triggers='  arrivals: {uri: "x/*.csv"}'), "specs/vb.yaml", "yaml"
        )
    assert str(err.value) == (
        "specs/vb.yaml:7: triggers[0].arrivals: a session-partitioned pipeline runs per "
        "session and an arrival names none: trigger an unpartitioned pipeline, or use the "
        "schedule"
    )


def test_globs_match_within_one_segment_from_their_literal_prefix() -> None:
    glob = parse_arrival_glob("s3://vendor/bars/2026-??-*.csv")
    assert (glob.root, glob.prefix, glob.directory) == ("vendor", "bars/2026-", "bars")
    assert glob.matches("bars/2026-01-02.csv")
    assert not glob.matches("bars/2026-01-02.csv.tmp")
    assert not glob.matches("bars/2026-01/02.csv")  # * stops at a /
    assert parse_arrival_glob("file:///data/vendor/*.csv").root == "/"
    assert parse_arrival_glob("vendor/*.csv").root == ""


def _bucket(n: int, every: float = 1.0) -> list[ListedObject]:
    """n objects in key order, the later keys modified later, one `every` seconds."""
    return [
        ListedObject(f"bars/{i:06d}.csv", f"etag{i}", 1_000_000.0 + i * every) for i in range(n)
    ]


def _source(objects: list[ListedObject], calls: list[str | None]) -> Source:
    """A bucket listed as S3 does: in key order, from after a key, at most max_keys."""

    def listing(after: str | None, max_keys: int) -> ListedPage:
        calls.append(after)
        first = 0 if after is None else bisect_right([o.path for o in objects], after)
        page = objects[first : first + max_keys]
        return ListedPage(page, first + max_keys < len(objects), page[-1].path if page else None)

    return Source("s3://vendor/bars/*.csv", listing, lambda key: f"s3://vendor/{key}")


def _tick(cursor: str | None, source: Source, log: list[str] | None = None) -> tuple[list, str]:
    result = evaluate_arrivals(cursor, source, (log if log is not None else []).append)
    assert result.cursor is not None
    return [r.tags["quantos/arrival_uri"] for r in result.run_requests or []], result.cursor


def test_runs_per_tick_are_capped_and_the_listing_resumes() -> None:
    objects = _bucket(60)
    calls: list[str | None] = []
    log: list[str] = []
    first, cursor = _tick(None, _source(objects, calls), log)
    assert len(first) == MAX_RUNS_PER_TICK
    assert f"at most {MAX_RUNS_PER_TICK}" in log[0]
    second, cursor = _tick(cursor, _source(objects, calls))
    third, cursor = _tick(cursor, _source(objects, calls))
    assert calls == [None, objects[24].path, objects[49].path]
    assert first + second + third == [f"s3://vendor/{o.path}" for o in objects]
    assert _tick(cursor, _source(objects, calls))[0] == []


def test_a_hundred_thousand_objects_cost_bounded_ticks_and_a_small_cursor() -> None:
    objects = _bucket(100_000)
    calls: list[str | None] = []
    source = _source(objects, calls)
    # A cursor that has seen everything but the last 20 seconds' objects.
    floor = objects[-1].modified - 20
    cursor = json.dumps({"floor": floor, "pass_max": None, "after": None, "requested": {}})
    runs: list[str] = []
    for _ in range(len(objects) // MAX_KEYS_PER_TICK):
        requested, cursor = _tick(cursor, source)
        runs += requested
    # One pass: ten ticks of at most MAX_KEYS_PER_TICK keys, each resuming after the last.
    assert calls == [None, *(objects[k * MAX_KEYS_PER_TICK - 1].path for k in range(1, 10))]
    # The objects above the floor ran; older did not.
    assert runs == [f"s3://vendor/{o.path}" for o in objects[-21:]]
    state = json.loads(cursor)
    assert state["after"] is None and state["floor"] == floor  # a floor never goes down
    assert len(state["requested"]) == 21
    assert len(cursor) < 1000
    # Steady state: the next pass requests nothing, a new object once.
    objects.append(ListedObject("bars/zzz.csv", "new", objects[-1].modified + 5))
    again: list[str] = []
    for _ in range(len(objects) // MAX_KEYS_PER_TICK + 1):
        requested, cursor = _tick(cursor, source)
        again += requested
    assert again == ["s3://vendor/bars/zzz.csv"]
    assert json.loads(cursor)["floor"] == floor


def test_the_cursor_forgets_what_the_floor_has_passed() -> None:
    objects = _bucket(150, every=60.0)  # two and a half hours of one object a minute
    calls: list[str | None] = []
    cursor: str | None = None
    for _ in range(len(objects) // MAX_RUNS_PER_TICK + 1):
        _, cursor = _tick(cursor, _source(objects, calls))
    assert cursor is not None
    state = json.loads(cursor)
    assert state["floor"] == objects[-1].modified - GRACE_SECONDS
    # the last hour's 60 objects and the one exactly on the floor
    assert len(state["requested"]) == 61


def test_an_unlistable_source_keeps_the_cursor() -> None:
    def broken(after: str | None, max_keys: int) -> ListedPage:
        raise ArrivalSourceError("s3://vendor: cannot list: AccessDenied (Access Denied)")

    source = Source("s3://vendor/bars/*.csv", broken, str)
    result = evaluate_arrivals('{"floor":1.0,"pass_max":null,"after":null,"requested":{}}', source)
    assert result.skip_reason is not None
    assert (
        result.skip_reason.skip_message == "s3://vendor: cannot list: AccessDenied (Access Denied)"
    )
    assert result.cursor == '{"floor":1.0,"pass_max":null,"after":null,"requested":{}}'


def test_the_json_schema_takes_both_forms_of_triggers() -> None:
    jsonschema = pytest.importorskip("jsonschema")
    from quantos_assets.spec.json_schema import spec_json_schema

    validator = jsonschema.Draft202012Validator(spec_json_schema())
    spec = {
        "version": 1,
        "pipeline_id": "vendor_bars",
        "nodes": [{"id": "load", "kind": "trino_sql", "outs": ["x"]}],
    }
    arrivals = {"arrivals": {"uri": "s3://vendor/bars/*.csv"}}
    assert validator.is_valid({**spec, "triggers": [arrivals]})
    assert validator.is_valid({**spec, "triggers": arrivals})
    assert not validator.is_valid({**spec, "triggers": [{}]})
    assert not validator.is_valid({**spec, "triggers": {"arrivals": {"url": "x"}}})
