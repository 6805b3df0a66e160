"""The code locations of a teams file (tenancy/locations.py): one per team or shard, the
shared one and the platform's; every name a valid Kubernetes name, no two teams in one."""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from pathlib import Path

import pytest

from quantos_assets.tenancy.locations import (
    PLATFORM_LOCATION,
    SHARED_LOCATION,
    LocationPlan,
    shard_of,
)
from quantos_assets.tenancy.teams import TeamsFile, TeamsFileError, load_teams

# DNS-1123 label: what the Helm chart's user-code Deployment and Service are named after.
K8S_NAME = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")


def plan(teams: dict[str, dict[str, object]]) -> LocationPlan:
    return LocationPlan.of(TeamsFile.model_validate({"teams": teams}))


def k8s_name(name: str) -> bool:
    return len(name) <= 63 and K8S_NAME.fullmatch(name) is not None


def test_a_plain_team_has_one_location_and_a_sharded_team_one_per_shard() -> None:
    p = plan({"research": {}, "execution": {"shards": 3}})
    assert p.names() == [
        PLATFORM_LOCATION,
        "team-execution-1",
        "team-execution-2",
        "team-execution-3",
        "team-research",
        SHARED_LOCATION,
    ]
    assert p.team_location("research") == "team-research"
    assert p.team_of("team-execution-2") == "execution"
    assert p.team_of("team-research") == "research"
    assert p.team_of(PLATFORM_LOCATION) is None and p.team_of(SHARED_LOCATION) is None
    # a plain team's pipelines all go to its one location, a sharded team's to their shard
    assert p.location_of("anything", "research") == "team-research"
    assert p.location_of("xs_daily_eod", "execution") == "team-execution-1"


@pytest.mark.parametrize(
    "team", ["Quant Research", "a_b", "q" * 70, "ÉQUIPE", "___", "-x-", "research\n"]
)
def test_a_team_name_that_is_no_kubernetes_name_gets_one(team: str) -> None:
    p = plan({team: {}, "research": {"shards": 64}})
    for name in p.names():
        assert k8s_name(name), name
    location = p.team_location(team)
    assert location.startswith("team-") and p.team_of(location) == team
    # the hash of the original keeps two names that slug alike apart
    assert hashlib.sha256(team.encode()).hexdigest()[:8] in location


def test_names_that_slug_alike_stay_distinct() -> None:
    teams = ["Quant Research", "quant research", "quant_research", "quant-research", "a" * 70]
    p = plan({t: {} for t in [*teams, "a" * 71]})
    locations = [p.team_location(t) for t in [*teams, "a" * 71]]
    assert len(set(locations)) == len(locations)
    assert p.team_location("quant-research") == "team-quant-research"  # valid: kept as it is
    assert all(k8s_name(n) for n in locations)


def test_the_longest_names_fit_kubernetes() -> None:
    """A 40-character valid name is kept, with 64 shards: 5 + 40 + 3 characters."""
    p = plan({"a" * 40: {"shards": 64}, "b" * 41: {"shards": 64}, "c" * 1000: {"shards": 64}})
    assert max(len(n) for n in p.names()) <= 63
    assert all(k8s_name(n) for n in p.names())
    assert p.team_location("a" * 40, 64) == f"team-{'a' * 40}-64"


def _one_line_error(teams: dict[str, dict[str, object]]) -> str:
    with pytest.raises(TeamsFileError) as err:
        plan(teams)
    line = str(err.value)
    assert "\n" not in line
    return line


def test_a_shard_named_like_another_team_is_refused() -> None:
    line = _one_line_error({"a": {"shards": 2}, "a-2": {}})
    assert line.startswith("teams.a-2: its code location 'team-a-2' is also team 'a''s")


def test_a_name_equal_to_another_teams_slug_is_refused() -> None:
    """`A` is no Kubernetes name, so its location carries its hash: a team named that very
    slug would share the location (and its Kafka group, its gateway jobs)."""
    forged = f"a-{hashlib.sha256(b'A').hexdigest()[:8]}"
    line = _one_line_error({"A": {}, forged: {}})
    assert f"'team-{forged}'" in line and ("teams.A:" in line or f"teams.{forged}:" in line)


def test_a_team_cannot_take_the_platform_or_shared_location() -> None:
    """Every team location starts with `team-`, so no team name reaches the two others."""
    p = plan({PLATFORM_LOCATION: {}, SHARED_LOCATION: {}, "shared": {}, "platform": {}})
    assert p.team_location(PLATFORM_LOCATION) == f"team-{PLATFORM_LOCATION}"
    assert p.team_location(SHARED_LOCATION) == f"team-{SHARED_LOCATION}"
    assert len(set(p.names())) == len(p.names()) == 6
    assert p.team_of(PLATFORM_LOCATION) is None


def test_shards_are_bounded_in_the_teams_file(tmp_path: Path) -> None:
    teams = tmp_path / "teams.yaml"
    for shards, problem in [(0, "greater than or equal to 1"), (65, "less than or equal to 64")]:
        teams.write_text(f"teams:\n  research: {{shards: {shards}}}\n")
        with pytest.raises(
            TeamsFileError, match=f"teams.research.shards: Input should be {problem}"
        ):
            load_teams(teams)
    teams.write_text("teams:\n  research: {shards: 4}\n")
    assert load_teams(teams).teams["research"].shards == 4


def test_a_pipelines_shard_is_a_stable_hash_spread_evenly() -> None:
    """sha256, not Python's salted hash(): the same shard in every process and release."""
    assert [shard_of(p, 4) for p in ["xs_momentum_v1", "bt_xs_bilstm_v1", "xs_daily_eod"]] == [
        2,
        1,
        4,
    ]
    assert shard_of("xs_momentum_v1", 1) == 1
    counts = Counter(shard_of(f"pipeline_{i}", 4) for i in range(1000))
    assert sorted(counts) == [1, 2, 3, 4]
    assert all(200 <= n <= 300 for n in counts.values()), counts  # within 20% of 250


def test_a_pipeline_of_a_team_not_in_the_file_is_shared() -> None:
    p = plan({"research": {"shards": 2}})
    assert p.location_of("p", "marketing") == SHARED_LOCATION
    assert p.location_of("p", None) == SHARED_LOCATION
    assert p.location_of("p", "Research") == SHARED_LOCATION  # team names are exact
