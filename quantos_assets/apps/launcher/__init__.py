"""The embedded default's run launcher: run workers started before their runs (warm_pool)."""
