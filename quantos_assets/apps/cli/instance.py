"""The Dagster instance a `quantos` command works on: the one at DAGSTER_HOME.

Dagster refuses a DAGSTER_HOME that does not exist with a multi-line invariant error. The
commands that write runs or partitions into an instance (`quantos run`, `quantos sessions
sync`) create the folder, as `make run` does: an empty folder is a valid SQLite instance.
The exporter only reads one, so a missing folder there is a misconfiguration (an unmounted
instance config would otherwise be served as an empty instance) and a one-line error.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from dagster import DagsterInstance


class InstanceHomeError(RuntimeError):
    """DAGSTER_HOME cannot be used; the message names it."""


def dagster_home_instance(create: bool = True) -> DagsterInstance:
    """`DagsterInstance.get()` once DAGSTER_HOME is a folder (created when `create`)."""
    from dagster import DagsterInstance

    raw = os.environ.get("DAGSTER_HOME")
    if raw:
        home = Path(raw)
        if not home.is_dir():
            if not create or home.exists():
                what = "is not a directory" if home.exists() else "does not exist"
                raise InstanceHomeError(
                    f"DAGSTER_HOME {raw} {what} (the Dagster instance: its dagster.yaml and "
                    "storage)"
                )
            try:
                home.mkdir(parents=True, exist_ok=True)
            except OSError as err:
                raise InstanceHomeError(
                    f"DAGSTER_HOME {raw} cannot be created: {err.strerror}"
                ) from None
    return DagsterInstance.get()
