"""Files the gateway writes are its owner's only (issue 16, 11): gateway.db and its WAL
files 0600 when created, and tightened when an older version left them wider."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from quantos_assets.apps.gateway.settings import gateway_settings
from quantos_assets.stores.submission_store import SubmissionStore


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_the_store_and_its_wal_files_are_created_0600(tmp_path: Path) -> None:
    old = os.umask(0o022)  # a common default that would give 0644
    try:
        store = SubmissionStore.from_url(f"sqlite:///{tmp_path / 'data' / 'gateway.db'}")
        with store.engine.connect():  # WAL and SHM exist while a connection is open
            files = sorted((tmp_path / "data").iterdir())
            assert [f.name for f in files] == ["gateway.db", "gateway.db-shm", "gateway.db-wal"]
            assert {f.name: _mode(f) for f in files} == dict.fromkeys(
                (f.name for f in files), 0o600
            )
    finally:
        os.umask(old)


def test_a_store_left_world_readable_is_tightened(tmp_path: Path) -> None:
    db = tmp_path / "gateway.db"
    SubmissionStore.from_url(f"sqlite:///{db}").engine.dispose()
    db.chmod(0o644)
    SubmissionStore.from_url(f"sqlite:///{db}")
    assert _mode(db) == 0o600


@pytest.mark.parametrize(
    "url",
    [
        "ftp://gw.example.com",
        "https://u:pw@gw.example.com",
        "https://gw.example.com?x=1",
        "https://gw.example.com:port",
    ],
)
def test_public_url_must_be_a_plain_http_base(url: str) -> None:
    with pytest.raises(ValueError, match="QUANTOS_PUBLIC_URL: expected http") as err:
        gateway_settings({"QUANTOS_PUBLIC_URL": url})
    assert "pw@" not in str(err.value)


def test_public_url_is_kept_without_its_trailing_slash() -> None:
    assert gateway_settings(
        {"QUANTOS_PUBLIC_URL": "https://gw.example.com/quantos/"}
    ).public_url == ("https://gw.example.com/quantos")
    assert gateway_settings({}).public_url == ""
