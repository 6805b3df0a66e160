"""Kafka consumer lag for Prometheus, measured at scrape time where Kafka is configured.

The groups watched are the ones the orchestrator itself cares about: the submission queue's
group (QUANTOS_KAFKA_GROUP on QUANTOS_SUBMISSIONS_TOPIC) and every `kafka_lag` trigger of the
specs in the registry. Lag is read the way the lag sensor reads it
(`KafkaClient.group_lag`: one Metadata, one OffsetFetch, one ListOffsets per leader), so the
dashboard and the trigger agree. A broker that does not answer costs at most the client
timeout and shows as `quantos_kafka_lag_up 0`, never as a failed scrape.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from resources.kafka_client import KafkaClient, KafkaProblem, KafkaSettings


@dataclass(frozen=True, order=True)
class LagTarget:
    group: str
    topic: str  # a topic, or a `^regex` over topics as a trigger may give


class KafkaLagCollector(Collector):
    def __init__(self, settings: KafkaSettings, specs_dir: Path | None = None) -> None:
        self.settings = settings
        self.specs_dir = specs_dir
        self._client = (
            KafkaClient(settings.bootstrap or "", settings.timeout_s) if settings.enabled else None
        )
        self._lock = threading.Lock()
        self._specs_seen: tuple[tuple[str, int, int], ...] | None = None
        self._spec_targets: list[LagTarget] = []

    def targets(self) -> list[LagTarget]:
        found = {LagTarget(self.settings.group, self.settings.submissions_topic), *self._triggers()}
        return sorted(found)

    def _triggers(self) -> list[LagTarget]:
        """The specs' lag triggers, re-read only when a spec file changed (the gateway adds
        specs)."""
        if self.specs_dir is None or not self.specs_dir.is_dir():
            return []
        from quantos_assets.spec_registry import scan_specs, spec_files

        files = spec_files(self.specs_dir)
        seen = tuple((str(f), f.stat().st_mtime_ns, f.stat().st_size) for f in files)
        with self._lock:
            if seen != self._specs_seen:
                self._spec_targets = [
                    LagTarget(t.kafka_lag.group, t.kafka_lag.topic)
                    for loaded in scan_specs(self.specs_dir).valid
                    for t in loaded.spec.triggers
                ]
                self._specs_seen = seen
            return list(self._spec_targets)

    def collect(self) -> Iterator[GaugeMetricFamily]:
        lag = GaugeMetricFamily(
            "quantos_kafka_consumer_lag",
            "Messages a consumer group has not committed yet, per partition",
            labels=["group", "topic", "partition"],
        )
        up = GaugeMetricFamily(
            "quantos_kafka_lag_up",
            "1 when the group's lag was read in this scrape, 0 when the broker or topic did not "
            "answer",
            labels=["group", "topic"],
        )
        if self._client is not None:
            for target in self.targets():
                try:
                    measured = self._client.group_lag(target.topic, target.group)
                except KafkaProblem:
                    up.add_metric([target.group, target.topic], 0)
                    continue
                up.add_metric([target.group, target.topic], 1)
                for (topic, partition), n in measured.by_partition.items():
                    lag.add_metric([target.group, topic, str(partition)], n)
        yield lag
        yield up
