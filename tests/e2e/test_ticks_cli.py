"""`quantos ticks`: the schedule preview users check before deploying a spec."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SPEC = """\
version: 1
pipeline_id: eod_preview
schedule: {calendar: XNYS, at: close+30m}
nodes:
  - id: a
    kind: python_task
    outs: [x]
"""


def quantos(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "quantos_assets.apps.cli.main", *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=os.environ.copy(),
        timeout=300,
        check=False,
    )


def test_ticks_json_skips_thanksgiving_and_follows_the_early_close(tmp_path: Path) -> None:
    spec = tmp_path / "eod.yaml"
    spec.write_text(SPEC)
    res = quantos("ticks", str(spec), "--start", "2026-11-25", "--end", "2026-11-30", "--json")
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout) == [
        {"time": "2026-11-25T16:30:00-05:00", "partition": "2026-11-25"},
        {"time": "2026-11-27T13:30:00-05:00", "partition": "2026-11-27"},
        {"time": "2026-11-30T16:30:00-05:00", "partition": "2026-11-30"},
    ]


def test_ticks_text_lists_a_year_of_sessions(tmp_path: Path) -> None:
    spec = tmp_path / "eod.yaml"
    spec.write_text(SPEC)
    res = quantos("ticks", str(spec), "--start", "2016-01-01", "--end", "2016-12-31")
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert len(lines) == 252 and "252 ticks" in res.stderr
    assert lines[0] == "2016-01-04T16:30:00-05:00  2016-01-04"
    assert not any(line.endswith(("2016-01-18", "2016-03-25", "2016-07-04")) for line in lines)
    assert "2016-11-25T13:30:00-05:00  2016-11-25" in lines  # day after Thanksgiving


def test_ticks_of_a_spec_without_schedule_is_an_error_line(tmp_path: Path) -> None:
    spec = tmp_path / "plain.yaml"
    spec.write_text(SPEC.replace("schedule: {calendar: XNYS, at: close+30m}\n", ""))
    res = quantos("ticks", str(spec), "--start", "2026-01-01", "--end", "2026-01-31")
    assert res.returncode == 1
    assert (
        res.stderr.strip()
        == f"{spec}:1: schedule: this spec has no schedule block, so it never fires"
    )
