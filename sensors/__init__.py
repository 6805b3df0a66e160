"""Sensors and schedules built from a spec's schedule/partitions/triggers blocks.

Trading-calendar schedules and session-partition syncs live here (Kafka
triggers: issue 5); `definitions` assembles whatever `build_triggers` returns.
"""
