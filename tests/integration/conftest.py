"""Fixtures for integration tests that need a running service."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from kafka_broker import MockKafka


@pytest.fixture
def kafka_broker() -> Iterator[MockKafka]:
    """A 3-broker Kafka-protocol cluster on 127.0.0.1, in its own process, for one test."""
    broker = MockKafka.start(brokers=3)
    try:
        yield broker
    finally:
        broker.stop()
