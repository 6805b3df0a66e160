"""A real Kafka-protocol broker on loopback for tests: librdkafka's mock cluster.

confluent-kafka ships librdkafka, whose `test.mock.num.brokers` setting starts an in-process
cluster that speaks the Kafka protocol on 127.0.0.1 (Metadata, Produce, Fetch, ListOffsets,
OffsetFetch/OffsetCommit; topics are auto-created with 4 partitions on first produce; no
CreateTopics, no group listing). It lives as long as the client that created it, so it runs
in its own process: run as a script it prints `bootstrap=<servers>` and serves until its
stdin closes. Pausing that process (SIGSTOP) is a broker that stops answering.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass
class MockKafka:
    process: subprocess.Popen[str]
    bootstrap: str

    @classmethod
    def start(cls, brokers: int = 3) -> MockKafka:
        proc = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), str(brokers)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        assert proc.stdout is not None
        line = proc.stdout.readline().strip()
        if not line.startswith("bootstrap="):
            proc.kill()
            raise RuntimeError(f"mock Kafka cluster did not start: {line!r}")
        return cls(proc, line.removeprefix("bootstrap="))

    def pause(self) -> None:
        os.kill(self.process.pid, signal.SIGSTOP)

    def resume(self) -> None:
        os.kill(self.process.pid, signal.SIGCONT)

    def stop(self) -> None:
        self.resume()
        if self.process.stdin:
            self.process.stdin.close()
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    # Client-side helpers: what a compiler or an operator would do against the broker.

    def config(self, **extra: Any) -> dict[str, Any]:
        import logging

        return {
            "bootstrap.servers": self.bootstrap,
            "logger": logging.getLogger("test.kafka"),
            **extra,
        }

    def produce(self, topic: str, values: list[Any], partition: int | None = None) -> None:
        """JSON-encode dicts, send bytes/str as they are; wait for every acknowledgement."""
        from confluent_kafka import Producer

        producer = Producer(self.config())
        for i, value in enumerate(values):
            raw = value if isinstance(value, (bytes, str)) else json.dumps(value)
            producer.produce(topic, raw, partition=partition if partition is not None else i % 4)
        assert producer.flush(10) == 0

    def committed(self, topic: str, group: str) -> dict[int, int]:
        from confluent_kafka import Consumer, TopicPartition

        consumer = Consumer(self.config(**{"group.id": group}))
        try:
            found = consumer.committed([TopicPartition(topic, p) for p in range(4)], timeout=10)
            return {tp.partition: tp.offset for tp in found}
        finally:
            consumer.close()

    def commit(self, topic: str, group: str, offsets: dict[int, int]) -> None:
        """Commit offsets for a group, as one of its consumers would."""
        from confluent_kafka import Consumer, TopicPartition

        consumer = Consumer(self.config(**{"group.id": group}))
        try:
            consumer.commit(
                offsets=[TopicPartition(topic, p, o) for p, o in offsets.items()],
                asynchronous=False,
            )
        finally:
            consumer.close()

    def end_offsets(self, topic: str) -> dict[int, int]:
        from confluent_kafka import Consumer

        consumer = Consumer(self.config(**{"group.id": "test-probe"}))
        try:
            from confluent_kafka import TopicPartition

            return {
                p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
                for p in range(4)
            }
        finally:
            consumer.close()

    def read_all(self, topic: str) -> list[Any]:
        """Every message of a topic (for checking a dead-letter topic)."""
        from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition

        consumer = Consumer(
            self.config(**{"group.id": "test-reader", "enable.partition.eof": True})
        )
        try:
            consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(4)])
            out, eof = [], set()
            for _ in range(100):
                for msg in consumer.consume(100, timeout=0.2):
                    error = msg.error()
                    if error is None:
                        out.append(msg)
                    elif error.code() == KafkaError._PARTITION_EOF:
                        eof.add(msg.partition())
                if len(eof) == 4:
                    break
            return out
        finally:
            consumer.close()


def _serve(brokers: int) -> None:
    import logging

    from confluent_kafka import Producer

    logging.disable(logging.CRITICAL)
    holder = Producer({"test.mock.num.brokers": brokers, "logger": logging.getLogger("mock")})
    md = holder.list_topics(timeout=10)
    servers = ",".join(
        f"{b.host}:{b.port}" for b in sorted(md.brokers.values(), key=lambda b: b.id)
    )
    print(f"bootstrap={servers}", flush=True)
    sys.stdin.read()  # until the test closes our stdin (or dies)


if __name__ == "__main__":
    _serve(int(sys.argv[1]) if len(sys.argv) > 1 else 3)
