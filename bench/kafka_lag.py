"""One kafka_lag sensor tick over 1,000 partitions against the raw admin calls it needs.

Broker: librdkafka's mock cluster (3 brokers, in this process), 250 topics x 4 partitions
(the mock cannot create a 1,000-partition topic), matched by the trigger's `^bench\\.`
pattern; a consumer group has committed offsets on every partition.
- ours: the spec's lag sensor evaluated through Dagster (`evaluate_tick`): Metadata,
  OffsetFetch, ListOffsets, the lag per partition as metadata, the run request;
- baseline: the same three batched admin calls with confluent-kafka directly, summing lag.
Both create their admin client per tick, as the sensor does. Sides alternate; best of
--repeat. Prints ratio= last (ours / baseline; goal <= 1.2).
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from dagster import build_sensor_context

from quantos_assets.pipeline_assets import build_pipeline
from quantos_assets.spec_rules.firm import load_spec_text
from resources.kafka_client import KafkaSettings
from resources.profile import active_profile
from sensors.kafka_lag import build_lag_sensors

GROUP = "bench-consumers"
SPEC = """\
version: 1
pipeline_id: bench_lag
nodes:
  - {id: n, kind: trino_sql, params: {sql: "select 1 as x"}, outs: [t]}
triggers:
  - kafka_lag: {topic: "^bench\\\\.", group: bench-consumers, threshold: 1, min_interval: 1s}
"""
QUIET = logging.getLogger("bench.kafka")
QUIET.disabled = True


def start_cluster(topics: int) -> tuple[Any, str]:
    from confluent_kafka import Consumer, Producer, TopicPartition

    holder = Producer({"test.mock.num.brokers": 3, "logger": QUIET})
    md = holder.list_topics(timeout=10)
    bootstrap = ",".join(f"{b.host}:{b.port}" for b in md.brokers.values())
    producer = Producer({"bootstrap.servers": bootstrap, "logger": QUIET, "linger.ms": 5})
    for t in range(topics):
        for p in range(4):
            for _ in range(3):
                producer.produce(f"bench.t{t:03d}", b"x", partition=p)
    assert producer.flush(30) == 0
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": GROUP, "logger": QUIET})
    consumer.commit(
        offsets=[TopicPartition(f"bench.t{t:03d}", p, 1) for t in range(topics) for p in range(4)],
        asynchronous=False,
    )
    consumer.close()
    return holder, bootstrap


def baseline(bootstrap: str) -> int:
    import re

    from confluent_kafka import ConsumerGroupTopicPartitions, TopicPartition
    from confluent_kafka.admin import AdminClient, OffsetSpec

    # confluent-kafka's stubs type config values as str|int|float; librdkafka's "logger" takes a
    # Logger
    admin = AdminClient({"bootstrap.servers": bootstrap, "logger": QUIET})  # type: ignore[dict-item]
    md = admin.list_topics(timeout=10)
    pattern = re.compile(r"^bench\.")
    tps = [
        TopicPartition(n, p) for n, t in md.topics.items() if pattern.match(n) for p in t.partitions
    ]
    committed = admin.list_consumer_group_offsets([ConsumerGroupTopicPartitions(GROUP, tps)])[
        GROUP
    ].result()
    done = {(tp.topic, tp.partition): max(tp.offset, 0) for tp in committed.topic_partitions}
    latest = OffsetSpec.latest()
    ends = {
        (k.topic, k.partition): f.result().offset
        for k, f in admin.list_offsets({tp: latest for tp in tps}).items()
    }
    return sum(max(0, e - done.get(k, 0)) for k, e in ends.items())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--topics", type=int, default=250, help="topics of 4 partitions each")
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    _holder, bootstrap = start_cluster(args.topics)
    pipeline = build_pipeline(load_spec_text(SPEC, "bench_lag.yaml", "yaml"), active_profile({}))
    [sensor] = build_lag_sensors(pipeline, KafkaSettings(bootstrap=bootstrap, timeout_s=10))

    def ours() -> int:
        result = sensor.evaluate_tick(build_sensor_context())
        assert result.run_requests, result.skip_message
        return int(result.run_requests[0].tags["quantos/kafka_lag"])

    expected = args.topics * 4 * 2
    assert ours() == baseline(bootstrap) == expected, "both sides must see the same lag"
    best_ours, best_base = float("inf"), float("inf")
    for _ in range(args.repeat):
        t = time.perf_counter()
        baseline(bootstrap)
        best_base = min(best_base, time.perf_counter() - t)
        t = time.perf_counter()
        ours()
        best_ours = min(best_ours, time.perf_counter() - t)
    print(f"partitions={args.topics * 4} lag={expected}")
    print(
        f"baseline_ms={best_base * 1000:.1f} (raw admin calls: Metadata, OffsetFetch, ListOffsets)"
    )
    print(f"ours_ms={best_ours * 1000:.1f} (lag sensor tick through Dagster)")
    print(f"ratio={best_ours / best_base:.3f}")


if __name__ == "__main__":
    main()
