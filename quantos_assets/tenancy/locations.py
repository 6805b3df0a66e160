"""Which code location serves a pipeline: one per team, shards within a team, the platform's.

A code location is the unit Dagster loads, reloads and isolates: one per team means a
submission reloads its own team's pipelines only, a team's broken code fails its own
location only, and no team pays for another's specs at load.

- `team-<team>`: the pipelines of a team listed in deploy/teams.yaml (its spec's
  `labels.team`, else the team that registered it first).
- `team-<team>-<k>` (k = 1..shards): the same team split in `shards` locations, set in the
  teams file. A pipeline's shard is a hash of its id, so it never moves while `shards` stays.
  Sharding is an operator's decision, not automatic: moving a pipeline to another location
  resets its schedules' and sensors' state (Dagster keys it by location).
- `quantos-shared`: pipelines of no listed team (they get the teams file's defaults).
- `quantos-platform`: what belongs to no team: lake maintenance, the registry's invalid
  specs that name no team, the dbt project over every team's tables.

The set of locations depends on the teams file only, never on what is submitted, so a new
submission never changes the workspace, only the location it lands in.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from quantos_assets.tenancy.teams import TeamsFile, TeamsFileError

PLATFORM_LOCATION = "quantos-platform"
SHARED_LOCATION = "quantos-shared"
TEAM_PREFIX = "team-"
# A location past this many pipelines should be sharded (`quantos registry locations` warns):
# measured with 5-node specs (bench/registry_scale.py), 200 pipelines load in ~1.6 s and the
# build grows about linearly, so 300 keeps a reload near 2.5 s, half the 5 s a submission may
# wait for its run to start, leaving the rest to the code server's start.
SHARD_ADVICE = 300

# A location name is also a Kubernetes object name (the Helm chart's user-code deployment):
# DNS-1123, at most 63 characters. Matched whole (`fullmatch`): `$` alone would let a name
# end in a newline ("research\n"), which is neither a Kubernetes name nor team research's.
_SAFE = re.compile(r"[a-z0-9]([a-z0-9-]{0,38}[a-z0-9])?")


def _slug(team: str) -> str:
    """A team name as part of a location name; a name that had to change gets a hash of the
    original, so two teams never share a location."""
    if _SAFE.fullmatch(team):
        return team
    slug = re.sub(r"[^a-z0-9-]+", "-", team.lower()).strip("-")[:30]
    return f"{slug}-{hashlib.sha256(team.encode()).hexdigest()[:8]}".lstrip("-")


def location_group(group: str, location: str) -> str:
    """The Kafka consumer group a code location's submission sensor reads the topic with
    (`group`: the deployment's QUANTOS_KAFKA_GROUP)."""
    return f"{group}.{location}"


def shard_of(pipeline_id: str, shards: int) -> int:
    """1..shards, stable across processes and releases (not Python's salted hash)."""
    if shards <= 1:
        return 1
    digest = hashlib.sha256(pipeline_id.encode()).digest()
    return int.from_bytes(digest[:8], "big") % shards + 1


@dataclass(frozen=True)
class LocationPlan:
    """The locations of a teams file: team -> its shard count."""

    shards: dict[str, int]

    @classmethod
    def of(cls, teams: TeamsFile) -> LocationPlan:
        """Raises TeamsFileError when two teams would share a location name (`a` with two
        shards and a team `a-2`): one location must never serve two teams."""
        plan = cls({team: policy.shards for team, policy in sorted(teams.teams.items())})
        seen: dict[str, str] = {PLATFORM_LOCATION: "the platform", SHARED_LOCATION: "the shared"}
        for team, shards in plan.shards.items():
            for k in range(1, shards + 1):
                name = plan.team_location(team, k)
                if name in seen:
                    raise TeamsFileError(
                        f"teams.{team}: its code location {name!r} is also {seen[name]}'s; "
                        "rename one of the teams or change its shards"
                    )
                seen[name] = f"team {team!r}"
        return plan

    def location_of(self, pipeline_id: str, team: str | None) -> str:
        """The location that serves the pipeline (`team`: its owner, None for none)."""
        if team is None or team not in self.shards:
            return SHARED_LOCATION
        return self.team_location(team, shard_of(pipeline_id, self.shards[team]))

    def team_location(self, team: str, shard: int = 1) -> str:
        base = f"{TEAM_PREFIX}{_slug(team)}"
        return base if self.shards.get(team, 1) <= 1 else f"{base}-{shard}"

    def team_locations(self) -> list[str]:
        return [
            self.team_location(team, k)
            for team, shards in self.shards.items()
            for k in range(1, max(shards, 1) + 1)
        ]

    def names(self) -> list[str]:
        """Every location, the platform's first."""
        return [PLATFORM_LOCATION, *self.team_locations(), SHARED_LOCATION]

    def team_of(self, location: str) -> str | None:
        """The team a team location serves (None for the platform's and the shared one)."""
        for team, shards in self.shards.items():
            if location in {self.team_location(team, k) for k in range(1, max(shards, 1) + 1)}:
                return team
        return None
