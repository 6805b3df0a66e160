"""The one gateway + `dagster dev` the security suite shares, and what it holds.

Each stack costs ~15 s of CPU to start and a little to idle, and the suite must stay within its
time budget, so the security modules share one session stack: the union of their teams, tokens
and registered specs. Each module still attacks only its own pipelines, and asserts what its
attack left behind (nothing stored, run or leaked) against the stack's state before it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from gateway_stack import one_node

REPO = Path(__file__).resolve().parents[1]
NOOP = "quantos_assets.tasks.noop:one_row"
LIMITS = {"secrets_scopes": [], "max_concurrent_runs": 20, "submissions_per_minute": 600}
TEAMS = {
    "defaults": {**LIMITS, "entrypoints": ["quantos_assets.tasks"]},
    "teams": {
        "research": {
            **LIMITS,
            "secrets_scopes": ["research-readonly"],
            "entrypoints": ["quantos_assets.tasks"],
        },
        "execution": {
            **LIMITS,
            "secrets_scopes": ["execution-prod"],
            "entrypoints": ["quantos_assets.tasks"],
        },
        "tiny": {**LIMITS, "submissions_per_minute": 1},  # at its per-minute limit after one submit
        "solo": {**LIMITS, "max_concurrent_runs": 1},  # at its run limit while one run is active
        "frozen": {**LIMITS, "max_concurrent_runs": 0},  # every submit refused with 429
    },
}
TOKENS = [
    ("research", "research", "submit,read"),
    ("execution", "execution", "submit,read"),
    ("admin", "platform", "submit,read,admin"),
    ("tiny", "tiny", "submit,read"),
    ("solo", "solo", "submit,read"),
    ("frozen", "frozen", "submit,read"),
]
# The gateway reaches Dagster through a URL with a password (a webserver behind a proxy with
# basic auth; Dagster ignores the header) and answers with a configured public URL.
PASSWORD = "s3cr3t-pw"
USERINFO = f"quantos:{PASSWORD}"
PUBLIC_URL = "https://quantos.example.com"

ATTACK_CMD = (
    "id > {marker}; cat .quantos/api_tokens.json >> {marker}; cat $QUANTOS_API_TOKENS >> {marker}"
)


def shell_attack(pipeline_id: str, marker: Path) -> dict[str, Any]:
    """Issue 16 defect 3: a python_task that is a shell reading the token store."""
    return one_node(
        pipeline_id, "research", "subprocess:getoutput", cmd=ATTACK_CMD.format(marker=marker)
    )


SANDBOX_OTHER: dict[str, Any] = {
    "version": 1,
    "pipeline_id": "sb_other",
    "labels": {"team": "execution"},
    "nodes": [
        {"id": "rows", "kind": "python_task", "params": {"entrypoint": NOOP}, "outs": ["rows"]},
        {
            "id": "total",
            "kind": "trino_sql",
            "params": {"sql": "SELECT count(*) AS n FROM rows"},
            "ins": ["rows"],
            "outs": ["total"],
        },
    ],
}


def registered_specs(root: Path) -> list[dict[str, Any]]:
    """Every module's specs, in the registry before start (as if copied there by hand)."""
    seed = yaml.safe_load(
        (REPO / "specs" / "seed_bt_xs_bilstm_v1.yaml").read_text()
    )  # labels.team: research
    return [
        # test_api_edges
        one_node("edge_ok", "research", NOOP),
        one_node("edge_exec", "execution", NOOP),
        one_node("adm_tiny", "tiny", NOOP),
        one_node("adm_solo_slow", "solo", "quantos_assets.tasks.control:sleep", seconds=600),
        one_node("adm_solo_job", "solo", NOOP),
        # test_audit_trail
        one_node("audit_ok", "research", NOOP),
        one_node("audit_frozen", "frozen", NOOP),
        # test_launch_queue
        one_node("lq_quick", "research", NOOP),
        # test_registry_integrity
        one_node("rt_research", "research", NOOP),
        one_node("rt_execution", "execution", NOOP),
        seed,
        # test_step_sandbox: never through the gateway
        shell_attack("sb_handplaced", root / "handplaced_marker"),
        SANDBOX_OTHER,
    ]
