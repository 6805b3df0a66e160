"""Check failures and Kafka lag, scraped over HTTP from `quantos exporter` and from the gateway's
/metrics, parsed with prometheus_client's parser: a real instance holding runs whose asset
checks failed (one still failing, one fixed since), a real Kafka-protocol broker with a
lagging submission group and spec lag triggers, one of them on a topic that does not exist."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import yaml
from dagster import AssetCheckResult, AssetCheckSeverity, DagsterInstance, asset_check, materialize
from kafka_broker import MockKafka
from profiles import LOCAL
from prometheus_client.parser import text_string_to_metric_families

from quantos_assets.pipeline_assets import build_pipeline
from quantos_assets.spec_rules.firm import load_spec
from resources.profile import active_profile, build_resources

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "e2e"))
from dev_server import REPO, free_port, quantos_gateway
from metrics_scrape import scrape

pytestmark = pytest.mark.integration

SPEC = {
    "version": 1,
    "pipeline_id": "checks_demo",
    "labels": {"team": "research"},
    "nodes": [
        {"id": "bars", "kind": "trino_sql", "params": {"sql": "select 1 as x"}, "outs": ["bars"]}
    ],
    "triggers": [
        {"kafka_lag": {"topic": "md.ticks", "group": "feature-builders", "threshold": 5}},
        {"kafka_lag": {"topic": "md.nothing", "group": "ghosts", "threshold": 5}},
    ],
}


def _checks(fixed: Path) -> list:
    @asset_check(asset=["checks_demo", "bars"], blocking=True, description="at least 5 rows")
    def row_count():
        return AssetCheckResult(passed=False, metadata={"rows": 1, "min_rows": 5})

    @asset_check(asset=["checks_demo", "bars"], description="spread within bounds")
    def spread():
        return AssetCheckResult(passed=fixed.exists(), severity=AssetCheckSeverity.WARN)

    return [row_count, spread]


def _by_labels(metrics: dict[str, list], name: str, *labels: str) -> dict[tuple[str, ...], float]:
    """Samples called `name` (a counter's family is named without `_total`), keyed by labels."""
    family = metrics[name] if name in metrics else metrics[name.removesuffix("_total")]
    return {tuple(s.labels[k] for k in labels): s.value for s in family if s.name == name}


def test_check_failures_and_kafka_lag_on_the_exporter_and_the_gateway(
    data_dir: Path, tmp_path: Path, kafka_broker: MockKafka
) -> None:
    specs = tmp_path / "specs"
    specs.mkdir()
    (specs / "checks_demo.yaml").write_text(yaml.safe_dump(SPEC))
    pipeline = build_pipeline(load_spec(specs / "checks_demo.yaml"), LOCAL)
    fixed = tmp_path / "spread_fixed"
    tags = {"quantos/team": "research", "quantos/pipeline_id": "checks_demo"}
    with DagsterInstance.get() as instance:
        resources = build_resources(active_profile())
        first = materialize(
            [*pipeline.assets, *_checks(fixed)],
            instance=instance,
            resources=resources,
            tags=tags,
            raise_on_error=False,
        )
        fixed.touch()
        second = materialize(
            [*pipeline.assets, *_checks(fixed)],
            instance=instance,
            resources=resources,
            tags=tags,
            raise_on_error=False,
        )
    assert not first.success and not second.success  # the blocking check failed both runs

    # The submission queue: 3 messages per partition, the group committed 3 on p0 and 1 on p1.
    kafka_broker.produce("orch.jobs", [{"n": i} for i in range(12)])
    kafka_broker.commit("orch.jobs", "quantos-orchestrator", {0: 3, 1: 1})
    # A spec's lag trigger: 1 message per partition, nothing committed.
    kafka_broker.produce("md.ticks", [{"px": i} for i in range(4)])

    env = {
        **os.environ,
        "QUANTOS_SPECS_DIR": str(specs),
        "QUANTOS_KAFKA_BOOTSTRAP": kafka_broker.bootstrap,
        "QUANTOS_KAFKA_TIMEOUT_S": "2",
    }
    port = free_port()
    exporter = subprocess.Popen(
        [sys.executable, "-m", "quantos_assets.apps.cli.main", "exporter", "--port", str(port)],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        scraped = {"exporter": scrape(f"http://127.0.0.1:{port}/metrics")}
    finally:
        exporter.kill()
        exporter.wait(timeout=10)
    with quantos_gateway(env, tmp_path) as url:
        text = httpx.get(f"{url}/metrics", timeout=30).text
        scraped["gateway"] = {f.name: f.samples for f in text_string_to_metric_families(text)}

    labels = ("pipeline", "asset", "check", "severity")
    for where, metrics in scraped.items():
        failures = _by_labels(metrics, "quantos_check_failures_total", *labels)
        assert failures == {
            ("checks_demo", "checks_demo/bars", "row_count", "ERROR"): 2,
            ("checks_demo", "checks_demo/bars", "spread", "WARN"): 1,
        }, where
        failing = _by_labels(metrics, "quantos_check_failing", *labels)
        assert failing == {
            ("checks_demo", "checks_demo/bars", "row_count", "ERROR"): 1,
            ("checks_demo", "checks_demo/bars", "spread", "WARN"): 0,
        }, where
        runs = _by_labels(metrics, "quantos_runs", "status", "pipeline", "team")
        assert runs[("FAILURE", "checks_demo", "research")] == 2, where

        lag = _by_labels(metrics, "quantos_kafka_consumer_lag", "group", "topic", "partition")
        assert lag == {
            ("quantos-orchestrator", "orch.jobs", "0"): 0,
            ("quantos-orchestrator", "orch.jobs", "1"): 2,
            ("quantos-orchestrator", "orch.jobs", "2"): 3,
            ("quantos-orchestrator", "orch.jobs", "3"): 3,
            **{("feature-builders", "md.ticks", str(p)): 1 for p in range(4)},
        }, where
        up = _by_labels(metrics, "quantos_kafka_lag_up", "group", "topic")
        assert up == {
            ("quantos-orchestrator", "orch.jobs"): 1,
            ("feature-builders", "md.ticks"): 1,
            ("ghosts", "md.nothing"): 0,
        }, where


def test_the_queue_is_watched_by_the_locations_groups_once_they_commit(
    kafka_broker: MockKafka,
) -> None:
    """Before the split the base group consumes the queue and is reported. After it each
    code location reads with a group of its own: those that committed are reported, and the
    base group, which nobody commits to any more, is not (its lag would only grow)."""
    from quantos_assets.observability.kafka_lag_metrics import KafkaLagCollector
    from resources.kafka_client import KafkaSettings

    topic, base = "orch.split", "quantos-orchestrator"
    kafka_broker.produce(topic, [{"n": i} for i in range(8)])  # 2 a partition
    kafka_broker.commit(topic, base, dict.fromkeys(range(4), 2))
    settings = KafkaSettings(
        bootstrap=kafka_broker.bootstrap, submissions_topic=topic, group=base, timeout_s=2
    )
    locations = ["quantos-platform", "team-alpha", "team-beta", "quantos-shared"]
    collector = KafkaLagCollector(settings, None, locations)

    def scraped() -> tuple[dict[tuple[str, ...], float], dict[tuple[str, ...], float]]:
        families = {f.name: f for f in collector.collect()}
        lag = {
            tuple(s.labels.values()): s.value
            for s in families["quantos_kafka_consumer_lag"].samples
        }
        up = {tuple(s.labels.values()): s.value for s in families["quantos_kafka_lag_up"].samples}
        return lag, up

    assert scraped() == (
        {(base, topic, str(p)): 0 for p in range(4)},
        {(base, topic): 1},
    )
    kafka_broker.produce(topic, [{"n": i} for i in range(4)])  # one more a partition
    kafka_broker.commit(topic, f"{base}.team-alpha", dict.fromkeys(range(4), 3))
    kafka_broker.commit(topic, f"{base}.quantos-platform", {0: 3, 1: 3, 2: 2, 3: 3})
    lag, up = scraped()
    assert lag == {
        **{(f"{base}.team-alpha", topic, str(p)): 0 for p in range(4)},
        **{(f"{base}.quantos-platform", topic, str(p)): int(p == 2) for p in range(4)},
    }
    assert up == {(f"{base}.team-alpha", topic): 1, (f"{base}.quantos-platform", topic): 1}
