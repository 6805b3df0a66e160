"""The warm launcher tells a code change (a new interpreter) from a registry change (the
location rebuilt in place): each edit moves exactly one of its two fingerprints."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from quantos_assets.apps.launcher.run_launcher import WarmRunLauncher


def _touch(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    stamp = path.stat().st_mtime_ns + 1_000_000_000  # a later mtime, whatever the clock's tick
    os.utime(path, ns=(stamp, stamp))


@pytest.mark.parametrize("specs_inside", [True, False])
def test_a_spec_edit_moves_data_and_a_module_edit_moves_code(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, specs_inside: bool
) -> None:
    workdir = tmp_path / "repo"
    specs = workdir / "specs" if specs_inside else tmp_path / "registry"
    _touch(workdir / "quantos_assets" / "task.py", "x = 1\n")
    _touch(specs / "a.yaml", "pipeline_id: a\n")
    _touch(workdir / "dbt_project" / "target" / "manifest.json", "{}")
    monkeypatch.setenv("QUANTOS_SPECS_DIR", str(specs))
    launcher = WarmRunLauncher(spares=0)

    code, data = launcher._fingerprints(workdir)
    _touch(specs / "a.yaml", "pipeline_id: a\ndescription: v2\n")
    code2, data2 = launcher._fingerprints(workdir)
    assert code2 == code and data2 != data  # a submission: rebuilt in place

    _touch(workdir / "dbt_project" / "target" / "manifest.json", '{"nodes": {}}')
    code3, data3 = launcher._fingerprints(workdir)
    assert code3 == code and data3 != data2  # a new dbt manifest: rebuilt in place

    _touch(workdir / "quantos_assets" / "task.py", "x = 2\n")
    code4, data4 = launcher._fingerprints(workdir)
    assert code4 != code and data4 == data3  # a module edit: a new interpreter
