"""Messages a compiler gets back from the client (and the gateway's 422s): the same text on
every run, whatever the interpreter's hash seed."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from quantos_assets.apps.client.submissions import QuantosClient, SubmissionError, parse_spec

REPO = Path(__file__).resolve().parents[2]
SPEC = {
    "version": 1,
    "pipeline_id": "stream_demo",
    "nodes": [
        {"id": "ticks", "kind": "flink_job", "params": {"job": "ticks"}, "outs": ["ticks"]},
        {
            "id": "bars",
            "kind": "trino_sql",
            "params": {"sql": "select 1 as x"},
            "ins": ["ticks"],
            "outs": ["bars"],
        },
    ],
}
EXTERNAL = "nodes ['ticks'] are external (flink_job, materialize_view): not run"


def test_external_nodes_are_named_with_the_kinds_sorted() -> None:
    client = QuantosClient("http://127.0.0.1:9")  # check() never calls Dagster
    with pytest.raises(SubmissionError) as err:
        client.check(parse_spec(SPEC).spec, ["ticks"])
    assert str(err.value) == EXTERNAL


@pytest.mark.parametrize("seed", ["1"])  # a seed under which the kinds' set iterates in reverse
def test_the_message_does_not_follow_the_hash_seed(seed: str) -> None:
    code = (
        "from quantos_assets.apps.client.submissions import QuantosClient, parse_spec\n"
        f"spec = parse_spec({SPEC!r}).spec\n"
        "try:\n    QuantosClient('http://127.0.0.1:9').check(spec, ['ticks'])\n"
        "except ValueError as err:\n    print(err)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={**os.environ, "PYTHONHASHSEED": seed},
        timeout=120,
        check=True,
    )
    assert out.stdout.strip() == EXTERNAL
