"""Sensors and schedules built from a spec's schedule/partitions/triggers blocks.

Empty until the trading-calendar and Kafka issues land; `definitions` already
assembles whatever `build_sensors` returns, so they plug in without changes.
"""
