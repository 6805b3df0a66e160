"""Suite-wide settings: every test gets its own data dir, nothing touches ~/."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SPECS = REPO / "specs"

os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("DAGSTER_DISABLE_TELEMETRY", "1")


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An isolated local profile: catalog, warehouse, artifacts and DAGSTER_HOME."""
    d = tmp_path / "quantos"
    home = d / "dagster_home"
    home.mkdir(parents=True)
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    monkeypatch.setenv("QUANTOS_ENV", "local")
    monkeypatch.setenv("QUANTOS_DATA_DIR", str(d))
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    return d
