"""Registry integrity (issue 16, defects 1 and 2, and the YAML alias bomb of 11).

Each test is an attack by one team (or a careless user with file access) on the shared
spec registry, through the real gateway and a real `dagster dev`: the refusal it gets,
that nothing was stored or run, and that every other team's pipelines still load and run.
"""

from __future__ import annotations

import hashlib
import json
import time
from typing import Any

import pytest
import yaml
from dev_server import REPO, location_state, tail
from gateway_stack import Stack, one_node

from quantos_assets.apps.client.graphql import DagsterAPI

pytestmark = pytest.mark.e2e

NOOP = "quantos_assets.tasks.noop:one_row"
ASSET_NODES = "{ assetNodes { assetKey { path } groupName description } }"


@pytest.fixture(scope="module")
def stack(security_stack: Stack) -> Stack:
    """The suite's shared stack (tests/security_stack.py): rt_research, rt_execution and the
    seed (labelled research) are registered before it started."""
    return security_stack


def spec_with_node(pipeline_id: str, node_id: str) -> dict[str, Any]:
    spec = one_node(pipeline_id, None, NOOP)
    spec["nodes"][0]["id"] = node_id
    return spec


def submit(stack: Stack, token: str, sid: str, **body: Any) -> Any:
    return stack.call(
        "POST", "/api/orch/submit", token, json={**body, "runtime_params": {"submission_id": sid}}
    )


def assert_loaded(stack: Stack) -> None:
    status, error = location_state(stack.dagster)
    assert (status, error) == ("LOADED", None), f"{status}: {error}\n{tail(stack.dagster.log)}"


def reload(stack: Stack) -> None:
    DagsterAPI(stack.env["QUANTOS_DAGSTER_URL"]).reload_location()
    assert_loaded(stack)


def every_team_still_runs(stack: Stack, tag: str) -> None:
    """Both teams' own pipelines launch and succeed."""
    for team, pipeline in (("research", "rt_research"), ("execution", "rt_execution")):
        res = submit(stack, team, f"{tag}-{team}", spec_ref=pipeline)
        assert res.status_code == 202, res.text
    for team in ("research", "execution"):
        assert (
            stack.wait(f"{tag}-{team}", {"SUCCESS", "FAILURE"}, token=team)["status"] == "SUCCESS"
        )


def nothing_stored(stack: Stack, token: str, sid: str) -> None:
    assert stack.call("GET", f"/api/orch/status/{sid}", token).status_code == 404


def test_the_colliding_pair_is_refused_and_every_team_still_runs(stack: Stack) -> None:
    """Before: both passed validation, both made the op `rt_a__b__c`, and once the second
    was registered the code location failed to load for every team."""
    first = submit(stack, "research", "sec-rt-a", dag_spec=spec_with_node("rt_a", "b__c"))
    second = submit(stack, "execution", "sec-rt-a-b", dag_spec=spec_with_node("rt_a__b", "c"))
    for res, line in (
        (first, "nodes[0].id: invalid id 'b__c': letters, digits and single '_' between them"),
        (second, "pipeline_id: invalid id 'rt_a__b': letters, digits and single '_' between them"),
    ):
        assert res.status_code == 422, res.text
        body = res.json()
        assert body["error"] == "invalid dag_spec (1 problems)" and line in body["lines"][0], body
    assert not [p.name for p in stack.specs_dir.glob("rt_a*")]
    nothing_stored(stack, "research", "sec-rt-a")
    nothing_stored(stack, "execution", "sec-rt-a-b")
    assert_loaded(stack)
    every_team_still_runs(stack, "sec-pair")


def test_a_colliding_file_dropped_by_hand_is_left_out_and_the_others_run(stack: Stack) -> None:
    """Files placed in the registry by hand (no gateway): the pair, and a copy of a
    registered pipeline that sorts first. Each is left out like an invalid spec, the copy
    because the registered file came first; the location loads and runs the rest."""
    assert (
        submit(
            stack, "research", "sec-first", dag_spec=one_node("rt_first", None, NOOP)
        ).status_code
        == 202
    )
    assert stack.wait("sec-first", {"SUCCESS", "FAILURE"}, token="research")["status"] == "SUCCESS"
    registered = stack.specs_dir / "rt_first.json"
    assert registered.is_file()
    copy = spec_with_node("rt_first", "hijack")
    copy["nodes"][0]["outs"] = ["hijacked"]
    dropped = {
        "rt_c.yaml": spec_with_node("rt_c", "d__e"),
        "rt_c__d.yaml": spec_with_node("rt_c__d", "e"),
        "aa_copy.yaml": copy,  # before rt_first.json in file order
    }
    for name, spec in dropped.items():
        (stack.specs_dir / name).write_text(yaml.safe_dump(spec))
    try:
        reload(stack)
        nodes = stack.dagster.graphql(ASSET_NODES)["assetNodes"]
        invalid = {
            n["assetKey"]["path"][1]: n["description"]
            for n in nodes
            if n["groupName"] == "invalid_specs"
        }
        assert {"rt_c", "rt_c__d", "aa_copy"} <= set(invalid), invalid
        assert (
            "invalid id 'd__e'" in invalid["rt_c"] and "invalid id 'rt_c__d'" in invalid["rt_c__d"]
        )
        assert "pipeline_id: 'rt_first' is already defined by rt_first.json" in invalid["aa_copy"]
        keys = {"/".join(n["assetKey"]["path"]) for n in nodes}
        assert "rt_first/out" in keys and "rt_first/hijacked" not in keys
        # the registered version is what runs
        assert submit(stack, "research", "sec-first-again", spec_ref="rt_first").status_code == 202
        status = stack.wait("sec-first-again", {"SUCCESS", "FAILURE"}, token="research")
        assert status["status"] == "SUCCESS" and [s["node"] for s in status["steps"]] == ["task"]
        every_team_still_runs(stack, "sec-dropped")
    finally:
        for name in dropped:
            (stack.specs_dir / name).unlink()


def test_the_asset_job_name_is_refused(stack: Stack) -> None:
    """Before: `pipeline_id: __ASSET_JOB` was accepted and replaced Dagster's asset job."""
    res = submit(
        stack, "research", "sec-asset-job", dag_spec=one_node("__ASSET_JOB", "research", NOOP)
    )
    assert res.status_code == 422, res.text
    (line,) = res.json()["lines"]
    assert line.endswith(
        "pipeline_id: invalid id '__ASSET_JOB': names starting with '__' are reserved by Dagster "
        "(e.g. __ASSET_JOB)"
    ), line
    assert not list(stack.specs_dir.glob("__ASSET_JOB*"))
    nothing_stored(stack, "research", "sec-asset-job")
    assert_loaded(stack)


@pytest.fixture(scope="module")
def owned(stack: Stack) -> bytes:
    """`rt_owned`, registered without labels.team by research through the gateway: the
    bytes of its registry file."""
    assert (
        submit(
            stack, "research", "sec-owned", dag_spec=one_node("rt_owned", None, NOOP)
        ).status_code
        == 202
    )
    assert stack.wait("sec-owned", {"SUCCESS", "FAILURE"}, token="research")["status"] == "SUCCESS"
    return (stack.specs_dir / "rt_owned.json").read_bytes()


def test_another_team_cannot_take_over_an_unlabelled_pipeline(stack: Stack, owned: bytes) -> None:
    """Before: 202, and `specs/rt_owned.json` was overwritten with the other team's code."""
    hijack = one_node("rt_owned", None, "quantos_assets.tasks.control:sleep", seconds=1)
    res = submit(stack, "execution", "sec-takeover", dag_spec=hijack)
    assert res.status_code == 403, res.text
    assert (
        res.json()["error"]
        == "pipeline 'rt_owned' belongs to team research: only that team or an admin can replace it"
    )
    assert (stack.specs_dir / "rt_owned.json").read_bytes() == owned
    nothing_stored(stack, "execution", "sec-takeover")
    # nor may it run research's pipeline by reference, nor re-submit the labelled seed example
    res = submit(stack, "execution", "sec-takeover-ref", spec_ref="rt_owned")
    assert (
        res.status_code == 403 and "only that team or an admin can run it" in res.json()["error"]
    ), res.text
    seed = yaml.safe_load((REPO / "specs" / "seed_bt_xs_bilstm_v1.yaml").read_text())
    res = submit(stack, "execution", "sec-takeover-seed", dag_spec={**seed, "labels": {}})
    assert res.status_code == 403 and "belongs to team research" in res.json()["error"], res.text
    records = [
        json.loads(line)
        for line in stack.cli("audit", "show", "--subject", "sec-takeover").stdout.splitlines()
    ]
    assert [(r["decision"], r["team"]) for r in records] == [("rejected", "execution")], records


def test_the_owner_replaces_it_and_the_previous_version_is_kept_and_audited(
    stack: Stack, owned: bytes
) -> None:
    changed = one_node("rt_owned", None, "quantos_assets.tasks.control:sleep", seconds=0.1)
    assert submit(stack, "research", "sec-replace", dag_spec=changed).status_code == 202
    assert (
        stack.wait("sec-replace", {"SUCCESS", "FAILURE"}, token="research")["status"] == "SUCCESS"
    )
    current = stack.specs_dir / "rt_owned.json"
    assert (
        current.read_bytes() != owned
        and json.loads(current.read_bytes())["nodes"][0]["params"]["seconds"] == 0.1
    )
    previous = hashlib.sha256(owned).hexdigest()
    (kept,) = (stack.specs_dir / ".registry" / "history" / "rt_owned").iterdir()
    assert kept.name == f"1-{previous}.json" and kept.read_bytes() == owned
    records = [
        json.loads(line)
        for line in stack.cli("audit", "show", "--subject", "rt_owned").stdout.splitlines()
    ]
    register = [r for r in records if r["action"] == "register"]
    assert [r["detail"] for r in register] == [
        "registered new pipeline rt_owned (owner research)",
        f"replaced pipeline rt_owned (owner research); previous file sha256 {previous} kept",
    ], register
    assert register[-1]["team"] == "research" and json.loads(register[-1]["params"])["kept"] == str(
        kept
    )

    # an admin may replace it (the flag travels in the submission to its launch); the
    # owner stays research, and execution is still refused
    by_admin = one_node("rt_owned", None, NOOP)
    by_admin["description"] = "fixed by the platform team"
    assert submit(stack, "admin", "sec-admin-replace", dag_spec=by_admin).status_code == 202
    assert (
        stack.wait("sec-admin-replace", {"SUCCESS", "FAILURE"}, token="admin")["status"]
        == "SUCCESS"
    )
    assert json.loads(current.read_bytes())["description"] == "fixed by the platform team"
    assert len(list(kept.parent.iterdir())) == 2
    res = submit(
        stack, "execution", "sec-takeover-after-admin", dag_spec=one_node("rt_owned", None, NOOP)
    )
    assert res.status_code == 403 and "belongs to team research" in res.json()["error"], res.text


def test_an_alias_bomb_in_the_registry_is_refused_fast(stack: Stack) -> None:
    """Before: a bomb in a registry file parsed in 0.2 s, then spec_digest took minutes and
    13 GB. Now the gateway and the code location refuse it in milliseconds, as an invalid spec."""
    anchors = ["      l0: &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    anchors += [f"      l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 9)}]" for i in range(1, 9)]
    bomb = stack.specs_dir / "rt_bomb.yaml"
    bomb.write_text(
        "version: 1\npipeline_id: rt_bomb\nnodes:\n  - id: a\n    kind: python_task\n    outs: "
        "[x]\n"
        f"    params:\n      entrypoint: {NOOP}\n" + "\n".join(anchors) + "\n"
    )
    try:
        started = time.monotonic()
        res = submit(stack, "research", "sec-bomb", spec_ref="rt_bomb")
        assert time.monotonic() - started < 5, "the gateway must not expand the bomb"
        assert res.status_code == 404 and "unknown pipeline 'rt_bomb'" in res.json()["error"], (
            res.text
        )
        started = time.monotonic()
        reload(stack)
        assert time.monotonic() - started < 60
        nodes = stack.dagster.graphql(ASSET_NODES)["assetNodes"]
        (marker,) = [n for n in nodes if n["assetKey"]["path"] == ["invalid_specs", "rt_bomb"]]
        description = marker["description"]
        assert (
            "rt_bomb.yaml:12: <root>: invalid YAML: aliases expand the document to " in description
        ), description
        assert "(a YAML alias bomb?)" in description, description
        every_team_still_runs(stack, "sec-bomb")
    finally:
        bomb.unlink()
