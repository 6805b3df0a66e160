"""Scrape a Prometheus endpoint a test started (`quantos exporter`, the gateway's /metrics)."""

from __future__ import annotations

import time

import httpx
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample


def scrape(url: str, timeout: float = 30) -> dict[str, list[Sample]]:
    """Metric family name -> its samples, once the endpoint answers."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            text = httpx.get(url, timeout=5).text
        except httpx.HTTPError:
            assert time.monotonic() < deadline, f"{url} did not answer"
            time.sleep(0.3)
            continue
        return {f.name: f.samples for f in text_string_to_metric_families(text)}
