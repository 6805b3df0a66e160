"""The schedule/partitions/freshness blocks of a spec: errors a spec author reads."""

from __future__ import annotations

from pathlib import Path

import pytest

from quantos_assets.spec.errors import SpecError
from quantos_assets.spec_rules.firm import load_spec

HEAD = """\
version: 1
pipeline_id: cal
nodes:
  - id: a
    kind: python_task
    outs: [x]
"""


def problems(tmp_path: Path, blocks: str) -> list[str]:
    path = tmp_path / "cal.yaml"
    path.write_text(HEAD + blocks)
    with pytest.raises(SpecError) as err:
        load_spec(path)
    return [line.removeprefix(f"{path}:") for line in err.value.lines]


def test_valid_blocks_load(tmp_path: Path) -> None:
    path = tmp_path / "ok.yaml"
    path.write_text(
        HEAD
        + "schedule: {calendar: XNYS, at: close+30m, timezone: Europe/London, catch_up: true}\n"
        + "partitions: {calendar: XNYS, start: 2015-01-02}\n"
        + "freshness: {max_lag_sessions: 1, deadline: close+2h}\n"
    )
    spec = load_spec(path).spec
    assert spec.schedule and spec.schedule.catch_up and spec.schedule.timezone == "Europe/London"
    assert spec.partitions and spec.partitions.start.isoformat() == "2015-01-02"


def test_unknown_calendar_lists_close_matches(tmp_path: Path) -> None:
    lines = problems(tmp_path, "schedule:\n  calendar: XNYSE\n  at: close\n")
    assert lines[0].startswith("8: schedule.calendar: unknown exchange calendar 'XNYSE'")
    assert "XNYS" in lines[0]


def test_bad_at_timezone_and_start_each_get_their_line(tmp_path: Path) -> None:
    lines = problems(
        tmp_path,
        "schedule:\n  calendar: XNYS\n  at: close+30x\n  timezone: America/NewYork\n"
        "partitions:\n  calendar: XNYS\n  start: '1985-01-02'\n",
    )
    assert lines[0].startswith("9: schedule.at: invalid market time 'close+30x'")
    assert lines[1].startswith("10: schedule.timezone: unknown timezone 'America/NewYork'")
    assert "America/New_York" in lines[1]
    assert lines[2] == (
        "13: partitions.start: start 1985-01-02 is before the first session of XNYS "
        "that this orchestrator knows (1990-01-02)"
    )


def test_schedule_and_partitions_must_share_a_calendar(tmp_path: Path) -> None:
    lines = problems(
        tmp_path,
        "schedule: {calendar: XNYS, at: close}\npartitions: {calendar: XLON, start: 2020-01-02}\n",
    )
    assert lines == [
        (
            "7: schedule.calendar: schedule runs on XNYS but partitions are sessions of XLON: "
            "use one calendar for both"
        )
    ]


def test_freshness_needs_a_calendar_and_a_limit(tmp_path: Path) -> None:
    lines = problems(tmp_path, "freshness: {}\n")
    assert any("add a schedule or partitions block" in line for line in lines)
    assert any("give max_lag_sessions, deadline or both" in line for line in lines)
