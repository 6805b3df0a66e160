"""A one-node pipeline of a team: the spec the location, routing and isolation tests share."""

from __future__ import annotations

from typing import Any

# Two teams and nothing else: each gets a code location of its own (tenancy/locations.py).
TWO_TEAMS = "defaults: {entrypoints: [quantos_assets.tasks]}\nteams:\n  alpha: {}\n  beta: {}\n"


def team_spec(pid: str, team: str | None = None, out: str | None = None) -> dict[str, Any]:
    """One python_task writing one row to `out` (default `<pid>_rows`); `labels.team` when
    `team` is given."""
    body: dict[str, Any] = {
        "version": 1,
        "pipeline_id": pid,
        "nodes": [
            {
                "id": "rows",
                "kind": "python_task",
                "params": {"entrypoint": "quantos_assets.tasks.noop:one_row"},
                "outs": [out or f"{pid}_rows"],
            }
        ],
    }
    if team is not None:
        body["labels"] = {"team": team}
    return body
