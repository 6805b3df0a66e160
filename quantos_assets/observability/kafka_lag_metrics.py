"""Kafka consumer lag for Prometheus, measured at scrape time where Kafka is configured.

The groups watched are the ones the orchestrator itself cares about: the submission queue's
groups on QUANTOS_SUBMISSIONS_TOPIC and every `kafka_lag` trigger of the specs in the
registry. With a code location per team each location reads the queue with a group of its
own (`<QUANTOS_KAFKA_GROUP>.<location>`, the teams file's locations): those that have
committed are watched, and the deployment's base group only until one of them has (after
the split nobody commits to it, and its growing lag would be a false alarm). Lag is read the
way the lag sensor reads it (`KafkaClient.group_lag`: one Metadata, one OffsetFetch, one
ListOffsets per leader), so the dashboard and the trigger agree. A broker that does not
answer costs at most the client timeout and shows as `quantos_kafka_lag_up 0`, never as a
failed scrape.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from quantos_assets.tenancy.locations import location_group
from resources.kafka_client import GroupLag, KafkaClient, KafkaProblem, KafkaSettings


@dataclass(frozen=True, order=True)
class LagTarget:
    group: str
    topic: str  # a topic, or a `^regex` over topics as a trigger may give


class KafkaLagCollector(Collector):
    def __init__(
        self,
        settings: KafkaSettings,
        specs_dir: Path | None = None,
        locations: Sequence[str] = (),
    ) -> None:
        """`locations`: the code locations of the workspace (none: a single location)."""
        self.settings = settings
        self.specs_dir = specs_dir
        self.locations = tuple(locations)
        self._client = (
            KafkaClient(settings.bootstrap or "", settings.timeout_s) if settings.enabled else None
        )
        self._lock = threading.Lock()
        self._specs_seen: tuple[tuple[str, int, int], ...] | None = None
        self._spec_targets: list[LagTarget] = []

    def targets(self) -> list[LagTarget]:
        """The spec triggers' groups (the submission queue's are chosen at each scrape)."""
        return sorted(set(self._triggers()))

    def _queue_lags(self) -> list[tuple[LagTarget, GroupLag | None]]:
        """The submission queue's groups to report: the locations' groups that committed,
        else the base group (None: the broker did not answer)."""
        assert self._client is not None
        topic, base = self.settings.submissions_topic, self.settings.group
        lags: list[tuple[LagTarget, GroupLag | None]] = []
        for group in [location_group(base, loc) for loc in self.locations]:
            try:
                measured = self._client.group_lag(topic, group)
            except KafkaProblem:
                return [(LagTarget(base, topic), None)]
            if any(offset >= 0 for offset in measured.committed.values()):
                lags.append((LagTarget(group, topic), measured))
        if lags:
            return lags
        try:
            return [(LagTarget(base, topic), self._client.group_lag(topic, base))]
        except KafkaProblem:
            return [(LagTarget(base, topic), None)]

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
                    if t.kafka_lag is not None
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
            measured: list[tuple[LagTarget, GroupLag | None]] = self._queue_lags()
            for target in self.targets():
                try:
                    measured.append((target, self._client.group_lag(target.topic, target.group)))
                except KafkaProblem:
                    measured.append((target, None))
            for target, group_lag in measured:
                up.add_metric([target.group, target.topic], 0 if group_lag is None else 1)
                for (topic, partition), n in (group_lag.by_partition if group_lag else {}).items():
                    lag.add_metric([target.group, topic, str(partition)], n)
        yield lag
        yield up
