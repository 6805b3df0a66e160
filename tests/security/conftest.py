"""The security suite drives the real gateway and `dagster dev` (tests/e2e's helpers): one
stack shared by every module, all of them run by one xdist worker (security_stack.py and
xdist_scope.py say why)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "e2e"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gateway_stack import Stack, gateway_stack
from security_stack import PUBLIC_URL, TEAMS, TOKENS, USERINFO, registered_specs


@pytest.fixture(scope="session")
def security_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    root = tmp_path_factory.mktemp("security")
    with gateway_stack(
        root,
        registered_specs(root),
        TEAMS,
        TOKENS,
        extra_env={"QUANTOS_PUBLIC_URL": PUBLIC_URL},
        dagster_userinfo=USERINFO,
    ) as made:
        yield made
