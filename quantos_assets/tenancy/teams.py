"""Per-team policy: which secret scopes a team may use, which modules its python_task
entrypoints may come from, which lake tables it may read as external inputs, and its quotas
(deploy/teams.yaml)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from quantos_assets.kinds.entrypoints import DEFAULT_ENTRYPOINT_MODULES, MODULE_PATH

# A read grant (tenancy/read_grants.py): two parts, each an identifier that may hold `*` globs.
GRANT_PATTERN = re.compile(r"^[A-Za-z0-9_*]+\.[A-Za-z0-9_*]+$")


class TeamPolicy(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    secrets_scopes: list[str] = Field(default_factory=list)
    # Module prefixes python_task entrypoints may name (whole dotted components); not
    # inherited from `defaults`, like every other field: a team entry is complete.
    entrypoints: list[str] = Field(default_factory=lambda: list(DEFAULT_ENTRYPOINT_MODULES))
    # Lake tables its pipelines may declare as external inputs: `namespace.table`, either part
    # with `*` globs (tenancy/read_grants.py). Default none.
    reads: list[str] = Field(default_factory=list)
    max_concurrent_runs: int = Field(default=20, ge=0)
    submissions_per_minute: int = Field(default=600, ge=0)
    # Code locations the team's pipelines are spread over (tenancy/locations.py); raised by
    # an operator when `quantos registry locations` says a location grew past its size.
    shards: int = Field(default=1, ge=1, le=64)

    @field_validator("entrypoints")
    @classmethod
    def _module_prefixes(cls, value: list[str]) -> list[str]:
        for prefix in value:
            if not MODULE_PATH.match(prefix):
                raise ValueError(
                    f"{prefix!r} is not a dotted module path (e.g. quantos_assets.tasks)"
                )
        return value

    @field_validator("reads")
    @classmethod
    def _table_globs(cls, value: list[str]) -> list[str]:
        for grant in value:
            if not GRANT_PATTERN.match(grant):
                raise ValueError(
                    f"{grant!r} is not namespace.table (either part may hold * globs, e.g. "
                    "market.*)"
                )
        return value


class TeamsFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    defaults: TeamPolicy = Field(default_factory=TeamPolicy)
    teams: dict[str, TeamPolicy] = Field(default_factory=dict)

    def policy(self, team: str) -> TeamPolicy:
        return self.teams.get(team, self.defaults)

    def entrypoints_for(self, team: str | None) -> list[str]:
        """The module prefixes a pipeline of `team` may run (None: a pipeline without one)."""
        return (self.policy(team) if team else self.defaults).entrypoints

    def reads_for(self, team: str | None) -> list[str]:
        """The lake tables a pipeline of `team` may read as external inputs (None: a
        pipeline without one)."""
        return (self.policy(team) if team else self.defaults).reads


def pipeline_team(labels: Mapping[str, str]) -> str | None:
    """The team a spec names for itself, from its labels (`team`, else `owner`); a
    registered pipeline without either belongs to the first team that registered it
    (spec_registry.registered_owner)."""
    return labels.get("team") or labels.get("owner")


class TeamsFileError(ValueError):
    """deploy/teams.yaml (or QUANTOS_TEAMS) is malformed: one line naming the field."""


def load_teams(path: Path, required: bool = False) -> TeamsFile:
    """The policy file; without one every team gets the defaults (no secrets scopes), which
    is what a local gateway wants but never what a named file (QUANTOS_TEAMS) means."""
    if not path.exists():
        if required:
            raise TeamsFileError(
                f"QUANTOS_TEAMS: {path} does not exist (the per-team secrets scopes and quotas)"
            )
        return TeamsFile()
    from quantos_assets.spec.yaml_reader import YamlFileError, read_yaml_file

    try:
        data = read_yaml_file(path, str(path))
    except YamlFileError as err:
        raise TeamsFileError(str(err)) from None
    try:
        return TeamsFile.model_validate(data or {})
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise TeamsFileError(f"{path}: {where}: {first['msg']}") from None
