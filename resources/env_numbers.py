"""A number from a setting (an environment variable), checked, with a one-line error naming
the variable: one reader for the profile's, Kafka's and lake maintenance's numeric settings."""

from __future__ import annotations

from collections.abc import Mapping


def env_number(
    env: Mapping[str, str],
    name: str,
    default: float,
    *,
    positive: bool = False,
    at_least: float | None = None,
    unit: str = "number",
) -> float:
    """`env[name]` as a float (`default` when unset or empty); ValueError (one line) when it is
    not a number, not positive (`positive`), or below `at_least`."""
    raw = env.get(name)
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"{name}: expected a {unit}, got {raw!r}") from None
    if positive and value <= 0:
        raise ValueError(f"{name}: expected a positive {unit}, got {raw!r}")
    if at_least is not None and value < at_least:
        raise ValueError(f"{name}: expected at least {at_least:g}, got {raw!r}")
    return value
