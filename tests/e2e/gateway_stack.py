"""A real `dagster dev` plus a real `quantos gateway` on loopback, with teams and tokens.

Shared by the gateway's end-to-end tests and the security suite (tests/security/): both
drive what a compiler, an operator or an attacker of another team would drive, over HTTP.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from dev_server import LOCATION, REPO, Server, dagster_dev, quantos_gateway, tail

from quantos_assets.apps.gateway.tokens import TokenStore


def one_node(
    pipeline_id: str, team: str | None, entrypoint: str, **params: object
) -> dict[str, Any]:
    """A one-node python_task spec (no team label when `team` is None)."""
    spec: dict[str, Any] = {
        "version": 1,
        "pipeline_id": pipeline_id,
        "nodes": [
            {
                "id": "task",
                "kind": "python_task",
                "params": {"entrypoint": entrypoint, **params},
                "outs": ["out"],
            }
        ],
    }
    if team is not None:
        spec["labels"] = {"team": team}
    return spec


@dataclass
class Stack:
    dagster: Server
    url: str
    env: dict[str, str]
    tokens: dict[str, str]
    root: Path

    def call(
        self, method: str, path: str, token: str | None = "research", **kwargs: Any
    ) -> httpx.Response:
        """`token` names a token of `tokens` (or is a raw token); None sends no Authorization."""
        headers = dict(kwargs.pop("headers", None) or {})
        if token is not None:
            headers["Authorization"] = f"Bearer {self.tokens.get(token, token)}"
        return httpx.request(method, f"{self.url}{path}", headers=headers, timeout=120, **kwargs)

    def wait(
        self, submission_id: str, statuses: set[str], token: str = "research", timeout: float = 240
    ) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            body = self.call("GET", f"/api/orch/status/{submission_id}", token).json()
            if body.get("status") in statuses:
                return body
            if time.monotonic() > deadline:
                pytest.fail(
                    f"{submission_id} still {body.get('status')} after {timeout} "
                    f"s:\n{tail(self.dagster.log)}"
                )
            time.sleep(0.5)

    def run_count(self) -> int:
        data = self.dagster.graphql("{ runsOrError { ... on Runs { count } } }")
        return int(data["runsOrError"]["count"])

    def quantos(
        self, *args: str, env: Mapping[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        return quantos(dict(env or self.env), *args)

    def cli(
        self, *args: str, env: Mapping[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        """`quantos ARGS` run in this process (the same `main`, arguments, output and exit
        code) with the stack's environment: for the many `audit verify` calls, each of which
        would otherwise start an interpreter (~1.5 s of CPU)."""
        return quantos_in_process(dict(env or self.env), *args)

    @property
    def specs_dir(self) -> Path:
        return Path(self.env["QUANTOS_SPECS_DIR"])

    @property
    def data_dir(self) -> Path:
        return Path(self.env["QUANTOS_DATA_DIR"])


def quantos(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """The `quantos` CLI in a subprocess, as an operator runs it."""
    return subprocess.run(
        [sys.executable, "-m", "quantos_assets.apps.cli.main", *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=env,
        timeout=120,
        check=False,
    )


def quantos_in_process(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """The `quantos` CLI's `main` with `env` as the whole environment, stdout and stderr
    captured."""
    import contextlib
    import io
    import os

    from quantos_assets.apps.cli.main import main

    out, err, saved = io.StringIO(), io.StringIO(), dict(os.environ)
    os.environ.clear()
    os.environ.update(env)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main(list(args))
    finally:
        os.environ.clear()
        os.environ.update(saved)
    return subprocess.CompletedProcess(["quantos", *args], code, out.getvalue(), err.getvalue())


@contextmanager
def gateway_stack(
    root: Path,
    specs: list[dict[str, Any]],
    teams: dict[str, Any],
    tokens: list[tuple[str, str, str]],
    extra_env: dict[str, str] | None = None,
    dagster_userinfo: str | None = None,
    workspace: Path | None = None,
    location: str | None = None,
    timeout: float = 120,
    in_place: bool = False,
) -> Iterator[Stack]:
    """`specs` registered before start (as YAML files), `teams` as the QUANTOS_TEAMS file,
    `tokens` as (name, team, scopes); yields once the location is loaded and the gateway answers.
    `dagster_userinfo` ("user:password") goes into the gateway's QUANTOS_DAGSTER_URL, as
    for a webserver behind a proxy with basic auth (Dagster ignores the header).
    `workspace` and `location`: dagster dev's workspace and the location it waits for;
    `in_place`: served by in-place code servers, as `make run` serves it (dev_server.py)."""
    spec_dir = root / "specs"
    spec_dir.mkdir()
    for spec in specs:
        (spec_dir / f"{spec['pipeline_id']}.yaml").write_text(yaml.safe_dump(spec))
    teams_file = root / "teams.yaml"
    teams_file.write_text(yaml.safe_dump(teams))
    # The code location reads the same teams file (its sensors admit job firings and Kafka
    # messages by it, steps check their entrypoint allow-list), as the one ConfigMap in production.
    # Scheduled jobs are looked for every 5 s, not 15: the tests wait for firings.
    location_env = {"QUANTOS_TEAMS": str(teams_file), "QUANTOS_JOBS_TICK_SECONDS": "5"}
    with dagster_dev(
        root,
        spec_dir,
        extra_env={**location_env, **(extra_env or {})},
        workspace=workspace,
        location=location or LOCATION,
        timeout=timeout,
        in_place=in_place,
    ) as srv:
        env = {
            **srv.env,
            "QUANTOS_DAGSTER_URL": (
                f"http://{dagster_userinfo + '@' if dagster_userinfo else ''}127.0.0.1:{srv.port}"
            ),
            "QUANTOS_API_TOKENS": str(root / "tokens.json"),
            # QUANTOS_GATEWAY_DB left to its default under QUANTOS_DATA_DIR: the code
            # location's gateway_jobs sensor must read the gateway's job table.
        }
        # The token store `quantos token create` writes, written here in process (a CLI process
        # per token costs ~1.5 s of CPU; the CLI itself is tested in test_cli and test_api_edges).
        store = TokenStore(Path(env["QUANTOS_API_TOKENS"]))
        made_tokens = {
            name: store.create(team, scopes.split(","))[0] for name, team, scopes in tokens
        }
        with quantos_gateway(env, root) as url:
            yield Stack(srv, url, env, made_tokens, root)
