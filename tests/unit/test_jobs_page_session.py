"""The jobs page's sign-in cookie and its links into Dagster, in process (issue 21, point 2).

The page itself is driven in Chromium against a real gateway in
tests/e2e/test_gateway_calendar_jobs.py; here, what a browser test on plain http cannot see:
the cookie is Secure behind an https public URL, and no link carries the credentials the
gateway may use to reach Dagster.
"""

from __future__ import annotations

import types
from pathlib import Path

from fastapi.testclient import TestClient

from quantos_assets.apps.gateway.app import create_app
from quantos_assets.apps.gateway.dagster_links import job_runs_url, ui_base
from quantos_assets.apps.gateway.settings import GatewaySettings
from quantos_assets.apps.gateway.tokens import TokenStore
from resources.profile import LOCAL_CLUSTER


def _client(tmp_path: Path, public_url: str) -> tuple[TestClient, str]:
    tokens = TokenStore(tmp_path / "tokens.json")
    token, _ = tokens.create("research", ["read", "submit"])
    settings = GatewaySettings(
        dagster_url="http://proxyuser:s3cret@127.0.0.1:3000",
        tokens_path=tmp_path / "tokens.json",
        store_url="sqlite://",
        teams_path=tmp_path / "teams.yaml",
        specs_dir=tmp_path,
        cluster=LOCAL_CLUSTER,
        public_url=public_url,
    )
    # Signing in reads only the token store: no store, Dagster or launch threads needed.
    stub = types.SimpleNamespace(
        settings=settings, tokens=tokens, dispatcher=types.SimpleNamespace(start=lambda: None)
    )
    return TestClient(create_app(settings, stub)), token  # type: ignore[arg-type]


def test_the_sign_in_cookie_is_secure_behind_https_and_each_sign_in_has_its_own_csrf(
    tmp_path: Path,
) -> None:
    client, token = _client(tmp_path, "https://quantos.example.com")
    res = client.post("/jobs/login", data={"token": token}, follow_redirects=False)
    assert res.status_code == 303 and res.headers["location"] == "/jobs"
    cookie = res.headers["set-cookie"]
    for attribute in ("HttpOnly", "Secure", "Path=/jobs", "SameSite=strict"):
        assert attribute in cookie, cookie
    again = client.post("/jobs/login", data={"token": token}, follow_redirects=False)
    assert again.headers["set-cookie"].split(";")[0] != cookie.split(";")[0]  # a new nonce

    plain, token = _client(tmp_path / "plain", "")
    res = plain.post("/jobs/login", data={"token": token}, follow_redirects=False)
    assert "Secure" not in res.headers["set-cookie"]


def test_a_bad_token_is_the_form_again_with_one_line_and_not_the_token(tmp_path: Path) -> None:
    client, token = _client(tmp_path, "")
    res = client.post("/jobs/login", data={"token": token[:-2] + "xx"})
    assert res.status_code == 401 and "set-cookie" not in res.headers
    assert "invalid or revoked token" in res.text and token[:-2] not in res.text
    assert (
        client.post(
            "/jobs/login", data={"token": token}, headers={"Origin": "https://attacker.example"}
        ).status_code
        == 403
    )


def test_links_to_the_dagster_ui_carry_no_credentials() -> None:
    assert ui_base("http://user:pw@dagster.internal:3000/") == "http://dagster.internal:3000"
    assert ui_base("https://[::1]:3000/prefix") == "https://[::1]:3000/prefix"
    assert job_runs_url("http://u:p@h:3000", "job-1") == (
        "http://h:3000/runs?q%5B%5D=tag%3Aquantos%2Fjob_id%3Djob-1"
    )


def test_the_api_refuses_bearer_tokens_as_before_the_check_was_shared(tmp_path: Path) -> None:
    """auth.authenticate serves the bearer header and the page's cookie: the API's answers
    are the same as before (tests/e2e/test_gateway.py and tests/security/ see them too)."""
    client, _ = _client(tmp_path, "")
    tokens = TokenStore(tmp_path / "tokens.json")
    read_only, _ = tokens.create("research", ["read"])
    body = {"spec_ref": "anything"}
    for headers, status, error in [
        ({}, 401, "missing bearer token (Authorization: Bearer <token>)"),
        ({"Authorization": "Basic dXNlcjpwdw=="}, 401, "missing bearer token"),
        ({"Authorization": "Bearer qos_nope"}, 401, "invalid or revoked token"),
        ({"Authorization": f"Bearer {read_only}"}, 403, "lacks the 'submit' scope"),
    ]:
        res = client.post("/api/jobs/schedule", json=body, headers=headers)
        assert res.status_code == status and error in res.json()["error"], res.text
        if status == 401:
            assert res.headers["WWW-Authenticate"] == "Bearer"
