"""What a step actually read: the IO manager's record of each loaded input.

LakeIOManager.load_input notes the Iceberg snapshot id (tables) or the artifact URI and
sha256 it read on the step's LOADED_INPUT event. A node that must name its exact inputs
(a model card, so the model can be retrained bit for bit) reads them back from there
rather than asking for the upstream's latest materialization, which may have moved on.
"""

from __future__ import annotations

from typing import Any

from dagster import AssetExecutionContext, DagsterEventType


def loaded_inputs(context: AssetExecutionContext) -> dict[str, dict[str, Any]]:
    """input name -> recorded metadata (e.g. {"table": "p.universe", "snapshot_id": 1});
    empty outside a run (a directly invoked context has no event log)."""
    try:
        step_key = context.get_step_execution_context().step.key
        run_id = context.run_id
    except Exception:  # noqa: BLE001 - direct invocation: no step, no run, nothing recorded
        return {}
    found: dict[str, dict[str, Any]] = {}
    for entry in context.instance.all_logs(run_id, of_type=DagsterEventType.LOADED_INPUT):
        event = entry.dagster_event
        if event is None or event.step_key != step_key:
            continue
        data = event.event_specific_data
        # A retried step loads again: the last attempt's record wins.
        found[data.input_name] = {k: v.value for k, v in (data.metadata or {}).items()}
    return found
