"""Prometheus metrics of the runs in a Dagster instance, computed at scrape time.

Dagster OSS has no Prometheus endpoint (dagster#4480). This collector reads the
instance's run storage on each scrape (a custom `Collector`, so nothing is kept in
memory between scrapes and several exporters agree): runs by status, pipeline and
team (a run of Dagster's implicit asset job is counted under the pipeline its assets belong
to, and the team its spec names: run_owner.py); the queue's depth and how long runs waited in it;
step durations and retries of recently finished runs; asset-check failures (counted over the
instance's whole history, so the counter only grows) and the checks failing now.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path

from dagster import DagsterInstance, DagsterRunStatus, RunsFilter
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector

from quantos_assets.observability.check_results import check_results
from quantos_assets.observability.run_owner import SpecTeams, run_pipeline, run_team

# How many of the newest runs the scrape looks at (status counts use the whole storage).
RECENT_RUNS = 1000
# Step stats need one event-log query per run: only the newest finished runs.
STEP_STATS_RUNS = 100
WAIT_BUCKETS = (0.5, 1, 2, 5, 10, 30, 60, 120, 300, 900, 3600)
STEP_BUCKETS = (0.1, 0.5, 1, 2, 5, 10, 30, 60, 300, 900, 3600, 14400)
FINISHED = (DagsterRunStatus.SUCCESS, DagsterRunStatus.FAILURE, DagsterRunStatus.CANCELED)


def _histogram(
    name: str,
    doc: str,
    labels: list[str],
    series: dict[tuple[str, ...], list[float]],
    buckets: tuple[float, ...],
) -> HistogramMetricFamily:
    family = HistogramMetricFamily(name, doc, labels=labels)
    for key, values in sorted(series.items()):
        counts = [sum(1 for v in values if v <= b) for b in buckets]
        family.add_metric(
            list(key),
            [(str(b), float(c)) for b, c in zip(buckets, counts, strict=True)]
            + [("+Inf", float(len(values)))],
            sum_value=sum(values),
        )
    return family


class RunMetricsCollector(Collector):
    def __init__(self, instance: DagsterInstance, specs_dir: Path | None = None) -> None:
        self.instance = instance
        # The spec registry: the team of runs launched without one (UI, backfills)
        self.spec_teams = SpecTeams(specs_dir)

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily | HistogramMetricFamily]:
        records = self.instance.get_run_records(limit=RECENT_RUNS)
        by_status: Counter[tuple[str, str, str]] = Counter()
        waits: dict[tuple[str, ...], list[float]] = {}
        spec_teams = self.spec_teams.current()
        for record in records:
            run = record.dagster_run
            pipeline = run_pipeline(run)
            team = run_team(run, pipeline, spec_teams)
            by_status[(run.status.value, pipeline, team)] += 1
            if record.start_time is not None:
                wait = max(0.0, record.start_time - record.create_timestamp.timestamp())
                waits.setdefault((pipeline,), []).append(wait)

        runs = GaugeMetricFamily(
            "quantos_runs",
            f"Runs by status, pipeline and team (newest {RECENT_RUNS})",
            labels=["status", "pipeline", "team"],
        )
        for (status, pipeline, team), n in sorted(by_status.items()):
            runs.add_metric([status, pipeline, team], n)
        yield runs

        depth = GaugeMetricFamily("quantos_queue_depth", "Runs waiting in the run queue (QUEUED)")
        depth.add_metric(
            [], self.instance.get_runs_count(RunsFilter(statuses=[DagsterRunStatus.QUEUED]))
        )
        yield depth

        yield _histogram(
            "quantos_queue_wait_seconds",
            "From submission to the run starting",
            ["pipeline"],
            waits,
            WAIT_BUCKETS,
        )

        durations: dict[tuple[str, ...], list[float]] = {}
        retries: Counter[tuple[str, str]] = Counter()
        finished = [r for r in records if r.dagster_run.status in FINISHED][:STEP_STATS_RUNS]
        for record in finished:
            run = record.dagster_run
            pipeline = run_pipeline(run)
            for step in self.instance.get_run_step_stats(run.run_id):
                owner, node = pipeline, step.step_key.removeprefix(f"{pipeline}__")
                if "," in pipeline and "__" in step.step_key:  # a selection across pipelines
                    owner, node = step.step_key.split("__", 1)
                if step.start_time is not None and step.end_time is not None:
                    durations.setdefault((owner, node), []).append(step.end_time - step.start_time)
                attempts = step.attempts or 1
                if attempts > 1:
                    retries[(owner, node)] += attempts - 1
        yield _histogram(
            "quantos_step_duration_seconds",
            f"Step durations of the newest {STEP_STATS_RUNS} finished runs",
            ["pipeline", "node"],
            durations,
            STEP_BUCKETS,
        )
        retried = CounterMetricFamily(
            "quantos_step_retries",
            f"Step retries in the newest {STEP_STATS_RUNS} finished runs",
            labels=["pipeline", "node"],
        )
        for (pipeline, node), n in sorted(retries.items()):
            retried.add_metric([pipeline, node], n)
        yield retried
        yield from _check_families(self.instance)


def _check_families(instance: DagsterInstance) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
    labels = ["pipeline", "asset", "check", "severity"]
    failures = CounterMetricFamily(
        "quantos_check_failures",
        "Failed asset-check evaluations since the instance began",
        labels=labels,
    )
    failing = GaugeMetricFamily(
        "quantos_check_failing", "1 when the check's latest evaluation failed", labels=labels
    )
    for result in check_results(instance):
        key = [result.pipeline, result.asset.to_user_string(), result.check, result.severity]
        failures.add_metric(key, result.failures)
        failing.add_metric(key, 1 if result.failing else 0)
    yield failures
    yield failing
