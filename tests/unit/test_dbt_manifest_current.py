"""When the code location re-parses the dbt project: only when the manifest is not current.

Every run worker loads the code location; re-parsing there cost seconds per run start.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from quantos_assets.dbt_models import _PARSE_STAMP, _settings_digest, manifest_is_current
from resources.profile import active_profile


def _project(tmp_path: Path, profile) -> Path:
    project = tmp_path / "dbt_project"
    (project / "models").mkdir(parents=True)
    (project / "target").mkdir()
    (project / "models" / "m.sql").write_text("select 1")
    (project / "dbt_project.yml").write_text("name: x\n")
    os.utime(project / "models" / "m.sql", (1000, 1000))
    os.utime(project / "dbt_project.yml", (1000, 1000))
    (project / "target" / "manifest.json").write_text("{}")
    (project / _PARSE_STAMP).write_text(json.dumps({"settings": _settings_digest(profile)}))
    return project


def test_current_until_a_model_changes(tmp_path: Path) -> None:
    profile = active_profile({"QUANTOS_DATA_DIR": str(tmp_path / "data")})
    project = _project(tmp_path, profile)
    assert manifest_is_current(profile, project)
    (project / "target" / "run_results.json").write_text("{}")  # dbt's own output: not a source
    assert manifest_is_current(profile, project)
    (project / "models" / "m.sql").write_text("select 2")  # an edit after the parse
    assert not manifest_is_current(profile, project)


def test_current_across_data_dirs_and_profiles_not_without_a_stamp(tmp_path: Path) -> None:
    profile = active_profile({"QUANTOS_DATA_DIR": str(tmp_path / "data")})
    project = _project(tmp_path, profile)
    # another data dir (catalog, DuckDB file) does not change what dbt parses
    assert manifest_is_current(
        active_profile({"QUANTOS_DATA_DIR": str(tmp_path / "other")}), project
    )
    prod = active_profile(
        {
            "QUANTOS_ENV": "prod",
            "QUANTOS_CATALOG_URI": "postgresql+psycopg2://h/c",
            "QUANTOS_WAREHOUSE": "s3://w",
            "QUANTOS_ARTIFACTS": "s3://a",
        }
    )
    assert manifest_is_current(prod, project)  # the image's manifest: prod does not re-parse
    (project / _PARSE_STAMP).unlink()
    assert not manifest_is_current(profile, project)
