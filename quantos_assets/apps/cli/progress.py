"""Per-node progress lines for `quantos run`, instead of Dagster's full event log."""

from __future__ import annotations

import logging
import sys
from typing import Any, TextIO

from dagster import LoggerDefinition, logger
from dagster._core.log_manager import get_log_record_metadata, has_log_record_metadata

_SHOWN = {
    "STEP_START": "started",
    "STEP_SUCCESS": "succeeded",
    "STEP_FAILURE": "FAILED",
    "STEP_UP_FOR_RETRY": "up for retry",
}


class ProgressHandler(logging.Handler):
    def __init__(self, stream: TextIO) -> None:
        super().__init__(logging.DEBUG)
        self.stream = stream

    def emit(self, record: logging.LogRecord) -> None:
        if not has_log_record_metadata(record):
            return
        event = get_log_record_metadata(record).get("dagster_event")
        if event is None:
            return
        kind = event.event_type_value
        step = event.step_key or ""
        if kind in _SHOWN:
            line = f"  {step:<40} {_SHOWN[kind]}"
            if kind == "STEP_FAILURE":
                err = event.step_failure_data.error
                user = event.step_failure_data.user_failure_data
                message = user.description if user and user.description else None
                line += f": {(message or (err.message if err else '')).strip()}"
            print(line, file=self.stream, flush=True)
        elif kind == "ASSET_MATERIALIZATION":
            mat = event.step_materialization_data.materialization
            meta = ", ".join(
                f"{k}={_short(v.value)}" for k, v in mat.metadata.items() if k != "schema"
            )
            print(
                f"  {'/'.join(mat.asset_key.path):<40} materialized {meta}",
                file=self.stream,
                flush=True,
            )
        elif kind == "ASSET_CHECK_EVALUATION":
            check = event.asset_check_evaluation_data
            verdict = "passed" if check.passed else "FAILED"
            where = f"{check.asset_key.to_user_string()}:{check.check_name}"
            print(
                f"  {where:<40} check {verdict}: {check.description or ''}",
                file=self.stream,
                flush=True,
            )


def _short(value: Any) -> str:
    text = str(value)
    return text if len(text) <= 80 else text[:77] + "..."


def progress_logger(stream: TextIO = sys.stderr) -> LoggerDefinition:
    @logger(config_schema=None, description="quantos run progress")
    def _progress(_init_context: Any) -> logging.Logger:
        log = logging.getLogger("quantos.progress")
        log.setLevel(logging.DEBUG)
        log.propagate = False
        log.handlers = [ProgressHandler(stream)]
        return log

    return _progress
