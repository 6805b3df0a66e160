"""The jobs page's schedule and edit forms: their fields, as the API's own request bodies.

A form is turned into a `ScheduleRequest` or `JobUpdate` (schemas.py) and validated by it, so
the page refuses exactly what the API refuses, with the API's words; each problem is put
next to the field it names. Nothing here re-states a rule of the API.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from quantos_assets.apps.gateway.auth import ApiError
from quantos_assets.apps.gateway.schemas import JobUpdate, ScheduleRequest
from quantos_assets.stores.job_store import ScheduledJob

FIELDS = (
    "pipeline",
    "type",
    "description",
    "execution_time",
    "kind",
    "cron",
    "calendar",
    "at",
    "timezone",
    "runtime_params",
    "nodes",
)
# A problem the API names by its body's path -> the form field it is shown next to.
_FIELD_OF = {
    ("spec_ref",): "pipeline",
    ("type",): "type",
    ("description",): "description",
    ("execution_time",): "execution_time",
    ("recurrence",): "kind",
    ("recurrence", "cron"): "cron",
    ("recurrence", "calendar"): "calendar",
    ("recurrence", "at"): "at",
    ("recurrence", "timezone"): "timezone",
    ("runtime_params",): "runtime_params",
    ("nodes",): "nodes",
}


@dataclass
class JobForm:
    """What the user typed (shown again as typed) and the problems found, by field ("" for
    the form as a whole)."""

    values: dict[str, str]
    errors: dict[str, list[str]] = field(default_factory=dict)

    def add(self, name: str, message: str) -> None:
        self.errors.setdefault(name, []).append(message)

    @classmethod
    def of_job(cls, job: ScheduledJob) -> JobForm:
        """The edit form filled with the job as stored."""
        kind = "cron" if job.cron else "calendar" if job.calendar else "none"
        return cls(
            {
                "pipeline": job.pipeline_id,
                "type": job.type,
                "description": job.description,
                "execution_time": job.execution_time_iso(),
                "kind": kind,
                "cron": job.cron or "",
                "calendar": job.calendar or "",
                "at": job.calendar_at or "",
                "timezone": job.timezone,
                "runtime_params": json.dumps(job.runtime_params) if job.runtime_params else "",
                "nodes": ", ".join(job.nodes),
            }
        )


def schedule_request(form: JobForm) -> ScheduleRequest | None:
    """The API body the schedule form stands for; None with `form.errors` filled."""
    body: dict[str, Any] = {
        "spec_ref": form.values["pipeline"].strip() or None,
        "type": form.values["type"].strip() or "pipeline",
        "description": form.values["description"],
        "execution_time": form.values["execution_time"].strip() or None,
        "recurrence": _recurrence(form),
        "nodes": _nodes(form.values["nodes"]),
    }
    if body["spec_ref"] is None:
        form.add("pipeline", "give the pipeline_id of a registered pipeline")
    params = _params(form)
    if params is not None:
        body["runtime_params"] = params
    try:
        request = ScheduleRequest.model_validate(body)
    except ValidationError as err:
        _validation_errors(form, err)
        return None
    return None if form.errors else request


def job_update(form: JobForm, stored: JobForm) -> JobUpdate | None:
    """The API body the edit form stands for: the fields changed from `stored` (description
    and recurrence always, as the form shows them whole)."""
    body: dict[str, Any] = {
        "description": form.values["description"],
        "recurrence": _recurrence(form),
    }
    if form.values["execution_time"].strip() != stored.values["execution_time"]:
        body["execution_time"] = form.values["execution_time"].strip() or None
    if _nodes(form.values["nodes"]) != _nodes(stored.values["nodes"]):
        body["nodes"] = _nodes(form.values["nodes"])
    if form.values["runtime_params"].strip() != stored.values["runtime_params"]:
        params = _params(form)
        if params is not None:
            body["runtime_params"] = params
    try:
        update = JobUpdate.model_validate(body)
    except ValidationError as err:
        _validation_errors(form, err)
        return None
    return None if form.errors else update


def refusal(form: JobForm, err: ApiError) -> None:
    """A refusal of the API's route (after its body was valid) put next to what it names."""
    message = err.message
    if err.status == 404 and message.startswith("unknown pipeline"):
        form.add("pipeline", message)
    elif message.startswith("execution_time"):
        form.add("execution_time", message)
    elif message.startswith("nodes "):
        form.add("nodes", message)
    elif message == "invalid runtime_params":
        for line in err.lines:
            form.add("runtime_params", line)
    else:
        form.add("", message if not err.lines else f"{message}: {'; '.join(err.lines)}")


def _recurrence(form: JobForm) -> dict[str, Any] | None:
    values = form.values
    kind = values["kind"]
    zone = values["timezone"].strip() or None
    if kind == "cron":
        return {"cron": values["cron"].strip() or None, "timezone": zone}
    if kind == "calendar":
        return {
            "calendar": values["calendar"].strip() or None,
            "at": values["at"].strip() or None,
            "timezone": zone,
        }
    if kind != "none":
        form.add("kind", "choose once, cron or calendar")
    return None


def _nodes(text: str) -> list[str]:
    return [n.strip() for n in text.split(",") if n.strip()]


def _params(form: JobForm) -> dict[str, Any] | None:
    text = form.values["runtime_params"].strip()
    if not text:
        return {}
    try:
        params = json.loads(text)
    except ValueError as err:
        form.add("runtime_params", f"not valid JSON: {err}")
        return None
    if not isinstance(params, dict):
        form.add("runtime_params", 'a JSON object, e.g. {"labels": {"version": "v3"}}')
        return None
    return params


def _validation_errors(form: JobForm, err: ValidationError) -> None:
    for problem in err.errors():
        loc = tuple(str(part) for part in problem["loc"])
        name = next((_FIELD_OF[loc[:n]] for n in (2, 1) if loc[:n] in _FIELD_OF), "")
        message = str(problem["msg"]).removeprefix("Value error, ")
        form.add(name, message if name else f"{'.'.join(loc)}: {message}")
