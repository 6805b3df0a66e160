"""The version of the rules a spec file is checked by: when a saved check may be reused.

The registry's catalog (registry_catalog.py) keeps what checking each spec file found, across
processes and releases; a record is reused only under the same version. What a file means is
decided by this library's code (the spec model and the naming rules, and all the firm's rules
reach into: kinds, trainers, placement, gates, the profile), by the installed libraries
(pydantic, PyYAML, exchange-calendars), and by the node pools and the promotion policy. The
code part hashes every source file of quantos_assets and resources, not a list of modules
that a change could outgrow: a new release re-checks every spec once, which is cheap.
"""

from __future__ import annotations

import hashlib
import os
import sys
from functools import cache
from pathlib import Path

import pydantic

import resources
from quantos_assets.gates.policy import policy_path
from quantos_assets.placement import load_pools

_CODE_ROOTS = (Path(__file__).resolve().parents[1], Path(resources.__file__).resolve().parent)


def rules_version() -> str:
    """sha256 over the code and libraries (hashed once per process), and the pools and the
    promotion policy as this process applies them now (both may change while it runs)."""
    digest = hashlib.sha256(_code_version().encode())
    try:
        # the pools as loaded (load_pools keeps one copy per file and process), which is
        # what this process checks specs against, even if the file changed since
        digest.update(repr(sorted(load_pools().items())).encode())
    except Exception as err:  # noqa: BLE001 - a broken pools file is for load_spec to raise
        digest.update(f"pools: {err!r}".encode())
    policy = policy_path()  # re-read by the checks whenever it changes
    digest.update(f"\0{policy}\0".encode())
    try:
        digest.update(policy.read_bytes())
    except OSError as err:
        digest.update(f"policy: {err!r}".encode())
    return digest.hexdigest()


@cache
def _code_version() -> str:
    digest = hashlib.sha256(sys.version.encode())
    for dist in _installed():
        digest.update(f"\0{dist}".encode())
    for root in _CODE_ROOTS:
        for path in sorted(root.rglob("*.py")):
            digest.update(f"\0{path.relative_to(root.parent)}\0".encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()


def _installed() -> list[str]:
    """The installed distributions with their versions, as their `.dist-info` folders beside
    pydantic name them: one directory read (importlib.metadata costs more than a warm scan)."""
    site = Path(pydantic.__file__).resolve().parents[1]
    try:
        return sorted(name for name in os.listdir(site) if name.endswith(".dist-info"))
    except OSError:
        return []
