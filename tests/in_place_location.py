"""A code location for the in-place code server's tests, served in the test's process: a
module whose jobs are named by `specs/jobs.json` (data: rebuilt in place) in a temporary
working directory (its .py is code: a change of it shuts the server down)."""

from __future__ import annotations

import json
import logging
import sys
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from dagster._core.types.loadable_target_origin import LoadableTargetOrigin
from dagster._grpc.server import FuturesAwareThreadPoolExecutor

from quantos_assets.apps.code_server.in_place import InPlaceReloadServer

MODULE = """
import json, pathlib
from dagster import Definitions, job, op

def _job(name):
    @op(name=f"{name}_op")
    def _step():
        return None

    @job(name=name)
    def _graph():
        _step()

    return _graph

names = json.loads((pathlib.Path(__file__).parent / "specs" / "jobs.json").read_text())
defs = Definitions(jobs=[_job(n) for n in names])
"""


def location_in(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Path, str]]:
    """For a test module's fixture (`yield from`): the working directory and the module name
    (unique: every test imports its own)."""
    module = f"in_place_defs_{uuid.uuid4().hex[:8]}"
    (tmp_path / "specs").mkdir()
    (tmp_path / "specs" / "jobs.json").write_text(json.dumps(["alpha"]))
    (tmp_path / f"{module}.py").write_text(MODULE)
    monkeypatch.setenv("QUANTOS_SPECS_DIR", str(tmp_path / "specs"))
    yield tmp_path, module
    sys.modules.pop(module, None)


def in_place_server(workdir: Path, module: str) -> InPlaceReloadServer:
    return InPlaceReloadServer(
        server_termination_event=threading.Event(),
        logger=logging.getLogger("in_place_location"),
        server_threadpool_executor=FuturesAwareThreadPoolExecutor(max_workers=2),
        loadable_target_origin=LoadableTargetOrigin(
            executable_path=sys.executable,
            module_name=module,
            attribute="defs",
            working_directory=str(workdir),
        ),
        location_name="team-test",
        lazy_load_user_code=True,
    )
