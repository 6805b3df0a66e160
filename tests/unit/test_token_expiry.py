"""API tokens expire (issue 16, 11): a default and a bound, `--ttl`, and the records of
tokens made before expiry existed."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from quantos_assets.apps.cli.main import main
from quantos_assets.apps.gateway.tokens import (
    DEFAULT_TTL,
    MAX_TTL,
    TokenExpired,
    TokenStore,
    TokenStoreError,
    parse_ttl,
)


def test_ttl_is_a_number_and_a_unit_up_to_a_year() -> None:
    assert parse_ttl("90d") == timedelta(days=90) and parse_ttl("12h") == timedelta(hours=12)
    assert parse_ttl("2w") == timedelta(weeks=2) and parse_ttl("365d") == MAX_TTL
    for bad, why in [
        ("never", "expected a number and a unit"),
        ("0d", "at most 365d"),
        ("366d", "at most 365d"),
        ("1y", "expected"),
    ]:
        with pytest.raises(TokenStoreError, match=why):
            parse_ttl(bad)


def test_a_token_past_its_expiry_is_refused_as_expired(tmp_path: Path) -> None:
    store = TokenStore(tmp_path / "tokens.json")
    token, record = store.create("research", ["read"])
    assert record.expires_at is not None
    assert (
        datetime.fromisoformat(record.expires_at) - datetime.fromisoformat(record.created_at)
        == DEFAULT_TTL
    )
    assert store.authenticate(token) is not None
    short, _ = store.create("research", ["read"], ttl=timedelta(seconds=1))
    raw = json.loads((tmp_path / "tokens.json").read_text())
    raw["tokens"][1]["expires_at"] = (datetime.now(UTC) - timedelta(seconds=1)).isoformat(
        timespec="seconds"
    )
    (tmp_path / "tokens.json").write_text(json.dumps(raw))
    with pytest.raises(TokenExpired, match=r"token [0-9a-f]{12} expired at 20"):
        store.authenticate(short)
    assert store.authenticate(token) is not None  # the other one is untouched


def test_records_without_expiry_expire_a_year_after_creation(tmp_path: Path) -> None:
    path = tmp_path / "tokens.json"
    store = TokenStore(path)
    recent, _ = store.create("research", ["read"])
    old, _ = store.create("research", ["read"])
    raw = json.loads(path.read_text())
    for item, age in zip(raw["tokens"], (10, 400), strict=True):
        item.pop("expires_at")  # as written before tokens expired
        item["created_at"] = (datetime.now(UTC) - timedelta(days=age)).isoformat(timespec="seconds")
    path.write_text(json.dumps(raw))
    assert store.authenticate(recent) is not None
    with pytest.raises(TokenExpired):
        store.authenticate(old)


def test_token_list_shows_expiry_and_expired_tokens(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "tokens.json"
    monkeypatch.setenv("QUANTOS_API_TOKENS", str(path))
    monkeypatch.setenv("QUANTOS_DATA_DIR", str(tmp_path))
    assert main(["token", "create", "--team", "research", "--scopes", "read", "--ttl", "12h"]) == 0
    assert main(["token", "create", "--team", "ops", "--scopes", "admin", "--ttl", "never"]) == 1
    assert "--ttl 'never': expected a number and a unit" in capsys.readouterr().err
    raw = json.loads(path.read_text())
    raw["tokens"][0]["expires_at"] = "2026-01-01T00:00:00+00:00"
    path.write_text(json.dumps(raw))
    assert main(["token", "list"]) == 0
    out = capsys.readouterr().out
    assert "EXPIRED 2026-01-01T00:00:00+00:00" in out and "research" in out
