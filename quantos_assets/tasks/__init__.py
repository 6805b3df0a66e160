"""Example python_task entrypoints: pure functions from Arrow tables to Arrow tables."""
