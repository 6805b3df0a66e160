"""How a step key becomes pipeline_id/node_id in the keyed log lines, and the QUANTOS_JSON_LOGS
switch."""

from __future__ import annotations

import pytest

from quantos_assets.observability.node_logs import iso_timestamp, step_node
from resources.profile import ProfileError, active_profile


@pytest.mark.parametrize(
    ("step_key", "pipeline", "expected"),
    [
        ("xs_daily__bars", "xs_daily", ("xs_daily", "bars")),
        (
            "xs_daily__feature__v2",
            "xs_daily",
            ("xs_daily", "feature__v2"),
        ),  # node ids may hold "__"
        ("xs_daily__bars", "__ASSET_JOB", ("xs_daily", "bars")),  # UI "Materialize" of spec assets
        ("dbt_models", "__ASSET_JOB", ("__ASSET_JOB", "dbt_models")),
        (None, "xs_daily", ("xs_daily", None)),  # run events have no node
    ],
)
def test_step_keys_map_to_pipeline_and_node(
    step_key: str | None, pipeline: str, expected: tuple
) -> None:
    assert step_node(step_key, pipeline) == expected


def test_timestamps_are_utc_milliseconds() -> None:
    assert iso_timestamp(1_700_000_000.1234) == "2023-11-14T22:13:20.123Z"


def test_json_logs_switch() -> None:
    assert active_profile({}).json_logs is None  # auto
    assert active_profile({"QUANTOS_JSON_LOGS": "on"}).json_logs is True
    assert active_profile({"QUANTOS_JSON_LOGS": "OFF"}).json_logs is False
    with pytest.raises(
        ProfileError, match="QUANTOS_JSON_LOGS: expected on, off or auto, got 'maybe'"
    ):
        active_profile({"QUANTOS_JSON_LOGS": "maybe"})


@pytest.mark.parametrize(
    ("mode", "terminal", "written"),
    [
        ("auto", True, False),  # a person at a terminal reads Dagster's own console lines
        ("auto", False, True),  # captured step output, a pod's log: the keyed lines
        ("on", True, True),
        ("off", False, False),
    ],
)
def test_json_lines_by_mode_and_terminal(
    monkeypatch: pytest.MonkeyPatch, mode: str, terminal: bool, written: bool
) -> None:
    import logging
    import os
    import sys

    from quantos_assets.observability.node_logs import NodeLogHandler

    monkeypatch.setenv("QUANTOS_JSON_LOGS", mode)
    reader, writer = os.openpty() if terminal else os.pipe()
    out = os.fdopen(writer, "w")
    monkeypatch.setattr(sys, "stdout", out)
    handler = NodeLogHandler()
    record = logging.LogRecord("dagster", logging.INFO, __file__, 1, "step started", None, None)
    record.dagster_meta = {"run_id": "r1", "job_name": "xs_daily", "step_key": "xs_daily__bars"}
    handler.handle(record)
    out.flush()
    os.set_blocking(reader, False)
    try:
        seen = os.read(reader, 65536).decode()
    except BlockingIOError:  # nothing written
        seen = ""
    finally:
        out.close()
        os.close(reader)
    assert ('"node_id": "bars"' in seen) == written, seen
