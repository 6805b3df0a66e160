"""What a team's spec may do beyond its own text, checked by the CLI before anything runs:
the python_task entrypoints it may name and the lake tables it may read as external inputs
(deploy/teams.yaml). The gateway, the code location and the step refuse the same."""

from __future__ import annotations

from quantos_assets.kinds.entrypoints import entrypoint_problems, entrypoint_team
from quantos_assets.spec.errors import SpecError, SpecProblem
from quantos_assets.spec.loader import LoadedSpec, load_document
from quantos_assets.spec.models import DagSpec
from quantos_assets.spec.source_map import parse_path
from quantos_assets.spec_rules.firm import FIRM_RULES
from quantos_assets.tenancy.read_grants import read_problems
from quantos_assets.tenancy.teams import TeamsFile


def check_team_grants(
    loaded: LoadedSpec, teams: TeamsFile, team: str | None, pipelines: frozenset[str]
) -> None:
    """SpecError, one `FILE:LINE: field: message` per refusal; `team`: whose grants (None: the
    spec's labels.team, else the defaults); `pipelines`: the registered ids, whose namespaces
    only a grant naming them opens."""
    team = team or entrypoint_team(loaded.spec.labels)
    problems = [
        *entrypoint_problems(loaded.spec, teams.entrypoints_for(team), team),
        *read_problems(loaded.spec, teams.reads_for(team), team, pipelines),
    ]
    if not problems:
        return
    source = str(loaded.path)
    _, positions = load_document(source, DagSpec, FIRM_RULES)  # read again only to cite the lines
    raise SpecError([SpecProblem(source, positions.line(parse_path(p)), p, m) for p, m in problems])
