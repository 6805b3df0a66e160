"""The generated references under docs/ are exactly what `make docs` writes from the code now.

The spec's JSON Schema and its tables, the gateway's OpenAPI document and endpoint reference,
the Python client reference and the CLI reference are generated (docs/generate.py). Changing a
spec model, an endpoint, a client docstring or a CLI flag without `make docs` fails here, so the
documents cannot drift from the code.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_generated_docs_are_current(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, str(REPO / "docs" / "generate.py"), "--out", str(tmp_path)],
        check=False,
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    fresh = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*") if p.is_file())
    assert Path("api/openapi.json") in fresh and Path("spec-reference.md") in fresh
    stale = [
        f"docs/{rel}"
        for rel in fresh
        if not (REPO / "docs" / rel).is_file()
        or (REPO / "docs" / rel).read_text() != (tmp_path / rel).read_text()
    ]
    assert not stale, f"stale generated docs {stale}: run `make docs` and commit the result"
