"""Kafka/Redpanda access for the sensors: settings from the environment, read once, and the
few broker calls the sensors make, each batched and each failing with one line.

Every look-up is batched so a tick costs O(brokers) round trips, not O(partitions):
one Metadata request for the partitions, one OffsetFetch to the group coordinator for the
committed offsets, one ListOffsets per partition leader for the end offsets. librdkafka's
own log goes to Python logging (`quantos.kafka`), not to stderr.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from resources.env_numbers import env_number
from resources.redaction import redact

log = logging.getLogger("quantos.kafka")

DEFAULT_SUBMISSIONS_TOPIC = "orch.jobs"
DEFAULT_GROUP = "quantos-orchestrator"


class KafkaProblem(Exception):
    """The broker cannot answer now (unreachable, topic missing, timed out): skip, retry later.
    The message names the bootstrap servers, redacted (they may carry userinfo)."""

    def __init__(self, message: str) -> None:
        super().__init__(redact(message))


@dataclass(frozen=True)
class KafkaSettings:
    """QUANTOS_KAFKA_* settings; `bootstrap` None means Kafka is off (the local default)."""

    bootstrap: str | None
    submissions_topic: str = DEFAULT_SUBMISSIONS_TOPIC
    group: str = DEFAULT_GROUP
    dead_letter_topic: str = f"{DEFAULT_SUBMISSIONS_TOPIC}.dlq"
    timeout_s: float = 5.0
    max_per_tick: int = 200

    @property
    def enabled(self) -> bool:
        return bool(self.bootstrap)


def kafka_settings(env: Mapping[str, str]) -> KafkaSettings:
    """The QUANTOS_KAFKA_* settings of `env` (read by resources/profile.py, nowhere else)."""
    topic = env.get("QUANTOS_SUBMISSIONS_TOPIC") or DEFAULT_SUBMISSIONS_TOPIC
    return KafkaSettings(
        bootstrap=env.get("QUANTOS_KAFKA_BOOTSTRAP") or None,
        submissions_topic=topic,
        group=env.get("QUANTOS_KAFKA_GROUP") or DEFAULT_GROUP,
        dead_letter_topic=env.get("QUANTOS_SUBMISSIONS_DLQ_TOPIC") or f"{topic}.dlq",
        timeout_s=env_number(env, "QUANTOS_KAFKA_TIMEOUT_S", 5.0, positive=True),
        max_per_tick=int(env_number(env, "QUANTOS_KAFKA_MAX_PER_TICK", 200, positive=True)),
    )


@dataclass(frozen=True)
class GroupLag:
    """A consumer group's position on a topic (or on every topic a pattern matches)."""

    group: str
    end: dict[tuple[str, int], int]
    committed: dict[tuple[str, int], int]  # -1: nothing committed yet (counts from 0)

    def lag(self, tp: tuple[str, int]) -> int:
        return max(0, self.end[tp] - max(self.committed.get(tp, -1), 0))

    @property
    def by_partition(self) -> dict[tuple[str, int], int]:
        return {tp: self.lag(tp) for tp in sorted(self.end)}

    @property
    def total(self) -> int:
        return sum(self.lag(tp) for tp in self.end)


@dataclass(frozen=True)
class Message:
    topic: str
    partition: int
    offset: int
    value: bytes | None
    key: bytes | None = None


def _base_config(bootstrap: str, timeout_s: float) -> dict[str, Any]:
    ms = int(timeout_s * 1000)
    return {
        "bootstrap.servers": bootstrap,
        "logger": log,
        "socket.timeout.ms": max(ms, 10),
        "socket.connection.setup.timeout.ms": max(ms, 1000),
        # Probe metadata must never create the topic it asks about.
        "allow.auto.create.topics": False,
    }


def _problem(bootstrap: str, err: Any) -> KafkaProblem:
    from confluent_kafka import KafkaError, KafkaException

    kerr = err.args[0] if isinstance(err, KafkaException) and err.args else err
    if isinstance(kerr, KafkaError):
        code = kerr.code()
        if code in (KafkaError._TRANSPORT, KafkaError._TIMED_OUT, KafkaError._ALL_BROKERS_DOWN):
            return KafkaProblem(f"Kafka broker unreachable at {bootstrap} ({kerr.str()})")
        return KafkaProblem(f"Kafka at {bootstrap}: {kerr.str()}")
    return KafkaProblem(f"Kafka at {bootstrap}: {err}")


class KafkaClient:
    """The calls the sensors make, on clients created per tick (a tick is seconds apart)."""

    def __init__(self, bootstrap: str, timeout_s: float = 5.0) -> None:
        self.bootstrap = bootstrap
        self.timeout_s = timeout_s
        self._admin: Any = None

    @property
    def admin(self) -> Any:
        if self._admin is None:
            from confluent_kafka.admin import AdminClient

            self._admin = AdminClient(_base_config(self.bootstrap, self.timeout_s))
        return self._admin

    def partitions(self, topic: str, client: Any = None) -> list[tuple[str, int]]:
        """(topic, partition) of a topic, or of every topic a `^regex` matches: one Metadata
        call."""
        from confluent_kafka import KafkaError, KafkaException

        source = client if client is not None else self.admin
        pattern = re.compile(topic) if topic.startswith("^") else None
        try:
            md = source.list_topics(None if pattern else topic, timeout=self.timeout_s)
        except KafkaException as err:
            raise _problem(self.bootstrap, err) from None
        if pattern is None:
            meta = md.topics.get(topic)
            if (
                meta is None
                or meta.error is not None
                and meta.error.code() == KafkaError.UNKNOWN_TOPIC_OR_PART
            ):
                raise KafkaProblem(f"Kafka topic {topic!r} does not exist at {self.bootstrap}")
            if meta.error is not None:
                raise _problem(self.bootstrap, meta.error)
            return [(topic, p) for p in sorted(meta.partitions)]
        found = [
            (name, p)
            for name, meta in sorted(md.topics.items())
            if pattern.match(name) and meta.error is None
            for p in sorted(meta.partitions)
        ]
        if not found:
            raise KafkaProblem(f"no Kafka topic matches {topic!r} at {self.bootstrap}")
        return found

    def end_offsets(self, tps: list[tuple[str, int]]) -> dict[tuple[str, int], int]:
        """High watermarks: librdkafka sends one ListOffsets per partition leader."""
        from confluent_kafka import KafkaException, TopicPartition
        from confluent_kafka.admin import OffsetSpec

        latest = OffsetSpec.latest()
        futures = self.admin.list_offsets(
            {TopicPartition(t, p): latest for t, p in tps}, request_timeout=self.timeout_s
        )
        try:
            return {(tp.topic, tp.partition): f.result().offset for tp, f in futures.items()}
        except KafkaException as err:
            raise _problem(self.bootstrap, err) from None

    def committed_offsets(
        self, group: str, tps: list[tuple[str, int]]
    ) -> dict[tuple[str, int], int]:
        """A group's committed offsets: one OffsetFetch to its coordinator (-1: none yet)."""
        from confluent_kafka import ConsumerGroupTopicPartitions, KafkaException, TopicPartition

        request = ConsumerGroupTopicPartitions(group, [TopicPartition(t, p) for t, p in tps])
        futures = self.admin.list_consumer_group_offsets([request], request_timeout=self.timeout_s)
        try:
            result = futures[group].result()
        except KafkaException as err:
            raise _problem(self.bootstrap, err) from None
        return {
            (tp.topic, tp.partition): tp.offset if tp.offset >= 0 else -1
            for tp in result.topic_partitions
        }

    def group_lag(self, topic: str, group: str) -> GroupLag:
        tps = self.partitions(topic)
        committed = self.committed_offsets(group, tps)
        return GroupLag(group=group, end=self.end_offsets(tps), committed=committed)

    def commit_offsets(self, group: str, topic: str, offsets: Mapping[int, int]) -> None:
        """Commit a group's offsets without joining it (the group has no running consumer)."""
        with self.consumer(group) as consumer:
            consumer.commit(topic, offsets)

    @contextmanager
    def consumer(self, group: str) -> Iterator[GroupConsumer]:
        from confluent_kafka import Consumer

        config = {
            **_base_config(self.bootstrap, self.timeout_s),
            "group.id": group,
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "auto.offset.reset": "earliest",
            "enable.partition.eof": True,
        }
        consumer = Consumer(config)
        try:
            yield GroupConsumer(self, consumer)
        finally:
            consumer.close()

    def produce(
        self, topic: str, records: list[tuple[bytes, bytes | None, dict[str, str]]]
    ) -> None:
        """Produce (key, value, headers) records and wait until every one is acknowledged."""
        from confluent_kafka import KafkaException, Producer

        config = {**_base_config(self.bootstrap, self.timeout_s), "acks": "all"}
        config.pop("allow.auto.create.topics")
        producer = Producer({**config, "message.timeout.ms": int(self.timeout_s * 1000)})
        failures: list[str] = []

        def delivered(err: Any, _msg: Any) -> None:
            if err is not None:
                failures.append(err.str())

        try:
            for key, value, headers in records:
                producer.produce(
                    topic,
                    value=value,
                    key=key,
                    headers=list(headers.items()),
                    on_delivery=delivered,
                )
        except KafkaException as err:
            raise _problem(self.bootstrap, err) from None
        left = producer.flush(self.timeout_s + 1)
        if left or failures:
            why = failures[0] if failures else f"{left} record(s) not acknowledged in time"
            raise KafkaProblem(
                f"could not write to Kafka topic {topic!r} at {self.bootstrap}: {why}"
            )


class GroupConsumer:
    """A consumer of one group with manual assignment: no group join, no rebalance, and offsets
    move only when `commit` is called."""

    def __init__(self, client: KafkaClient, consumer: Any) -> None:
        self._client = client
        self._consumer = consumer

    def partitions(self, topic: str) -> list[int]:
        return [p for _t, p in self._client.partitions(topic, client=self._consumer)]

    def committed(self, topic: str, partitions: list[int]) -> dict[int, int]:
        from confluent_kafka import KafkaException, TopicPartition

        try:
            found = self._consumer.committed(
                [TopicPartition(topic, p) for p in partitions], timeout=self._client.timeout_s
            )
        except KafkaException as err:
            raise _problem(self._client.bootstrap, err) from None
        return {tp.partition: tp.offset if tp.offset >= 0 else -1 for tp in found}

    def commit(self, topic: str, offsets: Mapping[int, int]) -> None:
        """Synchronous commit of `next offset to read` per partition."""
        from confluent_kafka import KafkaException, TopicPartition

        if not offsets:
            return
        try:
            result = self._consumer.commit(
                offsets=[TopicPartition(topic, p, o) for p, o in sorted(offsets.items())],
                asynchronous=False,
            )
        except KafkaException as err:
            raise _problem(self._client.bootstrap, err) from None
        failed = [tp for tp in result or [] if tp.error is not None]
        if failed:
            raise _problem(self._client.bootstrap, failed[0].error)

    def read(self, topic: str, start: Mapping[int, int], limit: int) -> list[Message]:
        """Up to `limit` messages from `start` (next offset per partition; -1 = earliest),
        stopping once every partition reached its end or the timeout passed."""
        from confluent_kafka import OFFSET_BEGINNING, KafkaError, TopicPartition

        if not start:
            return []
        self._consumer.assign(
            [
                TopicPartition(topic, p, o if o >= 0 else OFFSET_BEGINNING)
                for p, o in sorted(start.items())
            ]
        )
        pending = set(start)
        out: list[Message] = []
        deadline = time.monotonic() + self._client.timeout_s
        while pending and len(out) < limit and time.monotonic() < deadline:
            for msg in self._consumer.consume(num_messages=limit - len(out), timeout=0.2):
                err = msg.error()
                if err is None:
                    out.append(
                        Message(topic, msg.partition(), msg.offset(), msg.value(), msg.key())
                    )
                elif err.code() == KafkaError._PARTITION_EOF:
                    pending.discard(msg.partition())
                elif err.fatal() or err.code() in (
                    KafkaError._TRANSPORT,
                    KafkaError._ALL_BROKERS_DOWN,
                ):
                    raise _problem(self._client.bootstrap, err)
        if pending and not out and time.monotonic() >= deadline:
            log.info("no end-of-partition from %s before the timeout: %s", topic, sorted(pending))
        # Keep each partition's messages contiguous from its start: a partial read never skips.
        out.sort(key=lambda m: (m.partition, m.offset))
        return out[:limit]
