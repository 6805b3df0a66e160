"""Credentials in URLs never reach a message or a log line (issue 16, defect 10)."""

from __future__ import annotations

import io
import logging

import pytest

from quantos_assets.apps.client.graphql import DagsterAPI, DagsterAPIError
from resources.kafka_client import KafkaProblem
from resources.profile import ProfileError
from resources.redaction import install_log_redaction, redact
from resources.sql_store import StoreURLError, store_engine


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        (
            "Dagster at http://u:s3cret@127.0.0.1:9 is unreachable",
            "Dagster at http://u:***@127.0.0.1:9 is unreachable",
        ),
        # raw '@', '/' and '#' in a hand-written password: all of it is masked
        (
            "postgresql+psycopg2://quantos:p@ss/w#rd@db:5432/gw",
            "postgresql+psycopg2://quantos:***@db:5432/gw",
        ),
        (
            "Kafka at SASL_SSL://k:hunter2@broker:9093: timed out",
            "Kafka at SASL_SSL://k:***@broker:9093: timed out",
        ),
        ("a http://a:b@h/x and b https://:tok@h2", "a http://a:***@h/x and b https://:***@h2"),
        # no password: nothing to hide, and nothing else is touched
        ("redis://user@h:6379 mail ops@example.com", "redis://user@h:6379 mail ops@example.com"),
        # a port and an '@' in the path read as userinfo: masked too (less said, nothing leaked)
        ("see http://h:3000/p@x", "see http://h:***@x"),
    ],
)
def test_passwords_in_urls_are_masked_and_the_rest_kept(text: str, shown: str) -> None:
    assert redact(text) == shown


def test_log_lines_and_tracebacks_are_redacted_whatever_the_handler() -> None:
    install_log_redaction()
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    logger = logging.getLogger("quantos.test.redaction")
    logger.addHandler(handler)
    try:
        logger.warning("launch failed (%s)", "Dagster at http://u:s3cret@h:3000 is unreachable")
        try:
            raise RuntimeError("cannot connect to postgresql://gw:hunter2@db/gw")
        except RuntimeError:
            logger.exception("store down")
    finally:
        logger.removeHandler(handler)
    text = out.getvalue()
    assert "s3cret" not in text and "hunter2" not in text, text
    assert (
        "http://u:***@h:3000" in text
        and "postgresql://gw:***@db/gw" in text
        and "Traceback" in text
    )


def test_a_dagster_error_names_the_url_without_its_password() -> None:
    api = DagsterAPI("http://u:s3cret@127.0.0.1:9", timeout=5)  # nothing listens on port 9
    with pytest.raises(DagsterAPIError) as err:
        api.execute("query Q { version }")
    assert err.value.status == 503 and err.value.retryable
    assert str(err.value).startswith(
        "Dagster at http://u:***@127.0.0.1:9 is unreachable: ConnectError"
    )


def test_settings_errors_redact_the_url_they_quote() -> None:
    with pytest.raises(StoreURLError) as store:
        store_engine("mysql://gw:hunter2@db/gw")
    assert "hunter2" not in str(store.value) and "mysql://gw:***@db/gw" in str(store.value)
    assert "hunter2" not in str(
        ProfileError("QUANTOS_CATALOG_URI: got 'postgresql://c:hunter2@db/c'")
    )
    assert "hunter2" not in str(
        KafkaProblem("Kafka at SASL_SSL://k:hunter2@broker:9093: timed out")
    )
