"""The code locations of a workspace with one location per team: `attribute` is its name.

workspace.yaml (generated: `quantos registry workspace`) names this module once per
location, e.g. `attribute: team-research`. Each code server builds only the location it is
asked for, on first access, so a team's location loads its own pipelines, fails alone, and
reloads alone. Names are those of tenancy/locations.py; any other raises LocationError (not
AttributeError, which Dagster's `hasattr` would turn into a bare "not found"), reported as
that location's load error only.

Steps forked by the forkserver executor inherit `QUANTOS_CODE_LOCATION` from their run
worker, and this module prebuilds that location when the forkserver preloads it, so each
step starts with the location built (as `definitions.definitions` does for one location).
"""

import os as _os
from contextlib import suppress as _suppress

from dagster import Definitions as _Definitions

_BUILT: dict[str, _Definitions] = {}
_ENV = "QUANTOS_CODE_LOCATION"


def __getattr__(name: str) -> _Definitions:
    if name.startswith("_"):  # import machinery and introspection, never a location
        raise AttributeError(name)
    built = _BUILT.get(name)
    if built is None:
        from definitions.assemble import build_definitions
        from resources.redaction import install_log_redaction

        install_log_redaction()
        built = build_definitions(location=name)
        _BUILT[name] = built
        _os.environ[_ENV] = name
    return built


if _os.environ.get(_ENV):
    # not a location here: loading it by name reports that, once
    with _suppress(Exception):
        __getattr__(_os.environ[_ENV])
