"""The security suite drives the real gateway and `dagster dev` (tests/e2e's helpers): one
stack shared by every module, all of them run by one xdist worker (security_stack.py and
xdist_scope.py say why). The stack is stopped after the worker's last security test, not at
the end of the session: dealt first, it would otherwise idle (~7% of a core: sensor ticks,
the gateway's sweeps) through the rest of the worker's run."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "e2e"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gateway_stack import Stack, gateway_stack
from security_stack import PUBLIC_URL, TEAMS, TOKENS, USERINFO, registered_specs

HERE = Path(__file__).resolve().parent
# The running stack's exit stack, while it runs.
_RUNNING: list[ExitStack] = []


@pytest.fixture(scope="session")
def security_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    root = tmp_path_factory.mktemp("security")
    with ExitStack() as exits:
        made = exits.enter_context(
            gateway_stack(
                root,
                registered_specs(root),
                TEAMS,
                TOKENS,
                extra_env={"QUANTOS_PUBLIC_URL": PUBLIC_URL},
                dagster_userinfo=USERINFO,
            )
        )
        _RUNNING.append(exits)
        yield made
    _RUNNING.clear()


def _in_this_folder(item: pytest.Item | None) -> bool:
    return item is not None and HERE in item.path.parents


def _last_here(item: pytest.Item, nextitem: pytest.Item | None) -> bool:
    """No security test comes after `item` in this worker. Known for sure only where this
    folder runs in one piece: `--dist loadfile` (xdist_scope.py deals it as one unit) and a run
    without xdist (the collection order); with other `--dist` modes the stack stays up."""
    if _in_this_folder(nextitem):
        return False
    dist = item.config.getoption("dist", default="no")
    if dist == "loadfile":
        return True
    if dist == "no":
        items = item.session.items
        return not any(_in_this_folder(later) for later in items[items.index(item) + 1 :])
    return False


@pytest.hookimpl(trylast=True)
def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> None:
    if _RUNNING and _last_here(item, nextitem):
        _RUNNING.pop().close()
