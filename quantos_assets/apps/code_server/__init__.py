"""Code servers that rebuild a location in place on a registry change (in_place.py), and the
embedded default's stack that runs them beside `dagster dev` (local_stack.py)."""
