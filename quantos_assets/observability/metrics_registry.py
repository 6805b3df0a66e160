"""The one set of Prometheus collectors, served by `quantos exporter` and the gateway's /metrics.

Both build it here so the two endpoints expose the same metric names, which the Grafana
dashboard (deploy/grafana/quantos.json) queries.
"""

from __future__ import annotations

from dagster import DagsterInstance
from prometheus_client import CollectorRegistry

from quantos_assets.observability.kafka_lag_metrics import KafkaLagCollector
from quantos_assets.observability.run_metrics import RunMetricsCollector
from resources.profile import Profile, active_profile


def metrics_registry(
    instance: DagsterInstance, profile: Profile | None = None
) -> CollectorRegistry:
    """Runs, queue, steps and checks from the instance; Kafka lag where Kafka is configured."""
    profile = profile or active_profile()
    registry = CollectorRegistry()
    registry.register(RunMetricsCollector(instance, profile.specs_dir))
    registry.register(KafkaLagCollector(profile.kafka, profile.specs_dir, _locations(profile)))
    return registry


def _locations(profile: Profile) -> list[str]:
    """The teams file's code locations, whose Kafka groups the lag collector watches; none
    when the file does not load (the base group is watched, and the sensors say why)."""
    from quantos_assets.tenancy.locations import LocationPlan
    from quantos_assets.tenancy.teams import TeamsFileError, load_teams

    try:
        return LocationPlan.of(load_teams(profile.teams_file, profile.teams_file_named)).names()
    except TeamsFileError:
        return []
