"""Traces when the collector is not there, and when tracing is off: a run and its steps never
fail on either, an unreachable collector delays a finishing process by the export timeout at
most, and off means no SDK provider and no exporter thread (quantos_assets/observability/
traces.py). One trace of a gateway submission is tested end to end in tests/e2e/test_gateway.py;
steps in forkserver processes in tests/e2e/test_promotion_observed.py."""

from __future__ import annotations

import socket
import sys
import threading
import time
from pathlib import Path

import pytest
from dagster import DagsterInstance

from definitions.assemble import definitions_for
from quantos_assets.observability import traces
from quantos_assets.pipeline_assets import build_pipeline
from quantos_assets.spec_rules.firm import load_spec
from resources.profile import ProfileError, active_profile
from resources.run_tag_keys import TAG_RUN_TRACEPARENT, TAG_TRACEPARENT

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
from observability_overhead import PIPELINE, spec_text

pytestmark = pytest.mark.integration


def _closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _exporter_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if "Otel" in t.name or "BatchSpan" in t.name]


def _run(data_dir: Path, tags: dict[str, str]) -> bool:
    spec = data_dir / f"{PIPELINE}.yaml"
    spec.write_text(spec_text(2))
    profile = active_profile()
    job = definitions_for([build_pipeline(load_spec(spec), profile)], profile).resolve_job_def(
        PIPELINE
    )
    return job.execute_in_process(instance=DagsterInstance.ephemeral(), tags=tags).success


def test_an_unreachable_collector_fails_no_submission_run_or_step(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("QUANTOS_OTLP_ENDPOINT", f"http://127.0.0.1:{_closed_port()}")
    monkeypatch.setenv("QUANTOS_DBT", "off")
    monkeypatch.setattr(traces, "_PROCESS", traces._UNSET)
    with traces.submission_span("sub-closed", PIPELINE, "research") as submission:
        assert submission is not None and submission.startswith("00-")
    with traces.run_span("run-closed", PIPELINE, {TAG_TRACEPARENT: submission}) as run:
        assert run is not None and run.split("-")[1] == submission.split("-")[1]
        assert _run(data_dir, {TAG_RUN_TRACEPARENT: run})
    found = traces.tracing()
    assert found is not None and _exporter_threads()
    started = time.monotonic()
    found.close()  # what the process does at exit: bounded by QUANTOS_OTLP_TIMEOUT (2 s)
    assert time.monotonic() - started < 4


def test_off_by_default_no_provider_and_no_exporter_thread(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("QUANTOS_OTLP_ENDPOINT", raising=False)
    monkeypatch.setenv("QUANTOS_DBT", "off")
    monkeypatch.setattr(traces, "_PROCESS", traces._UNSET)
    before = _exporter_threads()
    with traces.submission_span("sub-off", PIPELINE, "research") as submission:
        assert submission is None
    assert _run(data_dir, {})
    assert traces.tracing() is None and _exporter_threads() == before


def test_a_bad_endpoint_is_one_line_naming_the_variable() -> None:
    with pytest.raises(ProfileError, match=r"^QUANTOS_OTLP_ENDPOINT: expected an OTLP/HTTP URL"):
        active_profile({"QUANTOS_OTLP_ENDPOINT": "tempo:4318"})
    with pytest.raises(ProfileError, match=r"^QUANTOS_OTLP_TIMEOUT: expected a positive"):
        active_profile({"QUANTOS_OTLP_ENDPOINT": "http://tempo:4318", "QUANTOS_OTLP_TIMEOUT": "0"})
    settings = active_profile({"QUANTOS_OTLP_ENDPOINT": "http://tempo:4318/"}).traces
    assert settings.endpoint == "http://tempo:4318/v1/traces"
