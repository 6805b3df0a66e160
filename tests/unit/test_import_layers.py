"""The layers contract (pyproject.toml [tool.importlinter]) holds, and it is not a contract
that cannot fail: an import against the layers, planted in a copy of the packages, breaks it
with a message naming the import."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PACKAGES = ("quantos_assets", "resources", "sensors", "definitions")
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def lint_imports(root: Path) -> subprocess.CompletedProcess[str]:
    """lint-imports on the packages under `root` with the repository's contracts."""
    return subprocess.run(
        [str(LINT_IMPORTS), "--config", str(REPO / "pyproject.toml"), "--no-cache"],
        check=False,
        cwd=root,
        env={"PYTHONPATH": str(root), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture(scope="module")
def copy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("layers")
    for package in PACKAGES:
        shutil.copytree(
            REPO / package, root / package, ignore=shutil.ignore_patterns("__pycache__")
        )
    return root


def test_the_repository_keeps_its_layers(copy: Path) -> None:
    done = lint_imports(copy)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert "0 broken" in done.stdout


@pytest.mark.parametrize(
    ("module", "line", "broken"),
    [
        # the bottom layer reaching up into the platform
        (
            "resources/layer_probe.py",
            "import sensors.registry\n",
            "resources is not allowed to import sensors",
        ),
        # the spec contract reaching up into the gateway application
        (
            "quantos_assets/spec/layer_probe.py",
            "from quantos_assets.apps.gateway import app\n",
            "quantos_assets.spec is not allowed to import quantos_assets.apps.gateway",
        ),
        # a function-level import counts too: hiding a loop in a function does not hide it
        (
            "quantos_assets/kinds/layer_probe.py",
            "def f():\n    import quantos_assets.apps.cli.main\n",
            "quantos_assets.kinds is not allowed to import quantos_assets.apps.cli",
        ),
    ],
)
def test_an_import_against_the_layers_breaks_the_contract(
    copy: Path, module: str, line: str, broken: str
) -> None:
    probe = copy / module
    probe.write_text(line)
    try:
        done = lint_imports(copy)
    finally:
        probe.unlink()
    assert done.returncode != 0
    assert broken in " ".join(done.stdout.split())
