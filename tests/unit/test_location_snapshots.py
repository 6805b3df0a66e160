"""The whole code location, built from fixed local and prod profiles, against golden files
(tests/snapshots/location/*.json) reviewed in diffs: asset keys and deps, op tags with each
step's `dagster-k8s/config`, checks, jobs and their selections, schedules (cron, timezone),
sensors, resource keys and the executor. Drift in the production build, which no local run
exercises, shows up here. Regenerate deliberately with `UPDATE_SNAPSHOTS=1`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from definitions.assemble import build_definitions
from quantos_assets.compiled_graph import describe_location
from resources.profile import active_profile

REPO = Path(__file__).resolve().parents[2]
SNAPSHOTS = REPO / "tests" / "snapshots" / "location"
# Fixed values, nothing from the machine: no store is opened while the location is built.
PROFILES = {
    "local": {"QUANTOS_ENV": "local", "QUANTOS_LINEAGE": "file"},
    "prod": {
        "QUANTOS_ENV": "prod",
        "QUANTOS_CATALOG_URI": "postgresql+psycopg2://catalog.quantos.svc/iceberg",
        "QUANTOS_WAREHOUSE": "s3://quantos-lake/warehouse",
        "QUANTOS_ARTIFACTS": "s3://quantos-artifacts",
        "QUANTOS_RAY_ADDRESS": "ray://quantos-ray-head.compute.svc:10001",
        "QUANTOS_TRINO_HOST": "trino.quantos.svc",
        "QUANTOS_KAFKA_BOOTSTRAP": "kafka.quantos.svc:9092",
        "QUANTOS_NOTIFY_WEBHOOK_URL": "https://hooks.example.invalid/quantos",
        "QUANTOS_LINEAGE": "http",
        "OPENLINEAGE_URL": "http://marquez.quantos.svc:5000",
    },
}


@pytest.mark.parametrize("name", sorted(PROFILES))
def test_code_location_matches_snapshot(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = {
        **PROFILES[name],
        "QUANTOS_DATA_DIR": str(tmp_path / "data"),
        "QUANTOS_SPECS_DIR": str(REPO / "specs"),
        "QUANTOS_TEAMS": str(REPO / "deploy" / "teams.yaml"),
    }
    # The profile is passed in and the environment holds none of it: whatever the build
    # needs (pods or processes, the Ray cluster of a thin driver, the teams file) must come
    # from the profile. The pools and promotion policy files, still resolved from the
    # environment at every spec check (profile.pools_file), take their defaults here, and
    # this machine's settings must not leak in.
    for key in [k for k in os.environ if k.startswith(("QUANTOS_", "OPENLINEAGE_"))]:
        monkeypatch.delenv(key)
    location = describe_location(build_definitions(active_profile(env)))
    text = json.dumps(location, indent=2, sort_keys=True) + "\n"
    snapshot = SNAPSHOTS / f"{name}.json"
    if os.environ.get("UPDATE_SNAPSHOTS") or not snapshot.exists():
        snapshot.parent.mkdir(parents=True, exist_ok=True)
        snapshot.write_text(text)
        if not os.environ.get("UPDATE_SNAPSHOTS"):
            pytest.fail(
                f"snapshot {snapshot.name} was missing and has been written; review and commit it"
            )
    assert json.loads(text) == json.loads(snapshot.read_text()), (
        f"the {name} code location builds differently from {snapshot.relative_to(REPO)}; "
        "if intended, regenerate with UPDATE_SNAPSHOTS=1 and review the diff"
    )


def test_the_prod_location_differs_from_local_where_it_should() -> None:
    """The two snapshots are not the same build twice: prod runs steps on the k8s executor,
    its ray_job step is a thin driver (the GPU goes to the Ray workers), and it has the
    sensors and resources only a cluster has."""
    local, prod = (json.loads((SNAPSHOTS / f"{n}.json").read_text()) for n in ("local", "prod"))
    assert prod["executor"] == "k8s" and local["executor"] != "k8s"
    # every spec node's step carries its pod (dbt's step takes the run launcher's pod config)
    prod_tags = [
        a["op_tags"]
        for key, a in prod["assets"].items()
        if a["op_tags"] and not key.startswith("dbt/")
    ]
    assert prod_tags and all("dagster-k8s/config" in t for t in prod_tags)
    train = "bt_xs_bilstm_v1/model_uri"
    pods = [
        s["assets"][train]["op_tags"]["dagster-k8s/config"]["container_config"]["resources"]
        for s in (local, prod)
    ]
    assert pods[0]["limits"]["nvidia.com/gpu"] == "1" and "nvidia.com/gpu" not in pods[1]["limits"]
    assert "kafka_submissions" in prod["sensors"] and "kafka_submissions" not in local["sensors"]
    assert "pipes_k8s_client" in prod["resources"] and "pipes_k8s_client" not in local["resources"]
