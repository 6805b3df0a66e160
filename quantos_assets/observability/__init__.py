"""Observability of the platform: Prometheus metrics of the runs (issue 7)."""
