"""Traces when the collector is not there, and when tracing is off: a run and its steps never
fail on either, an unreachable collector delays a finishing process by the export timeout at
most, and off means no SDK provider and no exporter thread (quantos_assets/observability/
traces.py). One trace of a gateway submission is tested end to end in tests/e2e/test_gateway.py;
steps in forkserver processes in tests/e2e/test_promotion_observed.py; here, a run as its
Kubernetes run pod runs it (the command of the Job the prod run launcher creates, run as a
process), with traces on and off."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from dagster import DagsterInstance
from kube_api_stub import kube_api, prod_run_launcher
from otlp_receiver import otlp_receiver

from definitions.assemble import definitions_for
from quantos_assets.observability import traces
from quantos_assets.pipeline_assets import build_pipeline
from quantos_assets.spec_rules.firm import load_spec
from resources.profile import ProfileError, active_profile
from resources.run_tag_keys import (
    TAG_RUN_TRACEPARENT,
    TAG_SUBMISSION,
    TAG_TRACEPARENT,
    WORKER_PID_TAG,
)

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
from observability_overhead import PIPELINE, spec_text

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]


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


def _run_as_its_pod(
    data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tags: dict[str, str]
) -> tuple[Any, int, str]:
    """A run of PIPELINE (2 steps, forkserver step processes) on a local instance, launched by
    deploy/dagster.prod.yaml's run launcher (its Job sent to a loopback Kubernetes API), then
    run as its pod would: the Job's container command line, as a process of its own. Returns
    the run as stored after it, that process's pid and its stderr."""
    from dagster._core.code_pointer import ModuleCodePointer
    from dagster._core.launcher import LaunchRunContext
    from dagster._core.origin import JobPythonOrigin, RepositoryPythonOrigin

    specs = data_dir / "specs"
    specs.mkdir()
    (specs / f"{PIPELINE}.yaml").write_text(spec_text(2))
    monkeypatch.setenv("QUANTOS_SPECS_DIR", str(specs))  # the code location loads this one spec
    monkeypatch.setenv("QUANTOS_DBT", "off")
    profile = active_profile()
    job = definitions_for(
        [build_pipeline(load_spec(specs / f"{PIPELINE}.yaml"), profile)], profile
    ).resolve_job_def(PIPELINE)
    # the code location module the code server loads (definitions.definitions), run by this
    # interpreter (the image's would be /app/.venv/bin/python)
    pointer = ModuleCodePointer("definitions.definitions", "defs", str(REPO))
    repository = RepositoryPythonOrigin(sys.executable, pointer, container_image="user-code:test")
    origin = JobPythonOrigin(PIPELINE, repository)
    with kube_api(tmp_path) as api, DagsterInstance.get() as instance:
        run = instance.create_run_for_job(job, job_code_origin=origin, tags=tags)
        launcher = prod_run_launcher(api)
        launcher.register_instance(instance)
        launcher.launch_run(LaunchRunContext(dagster_run=run, workspace=None))
        [(_, manifest)] = api.created()
        [container] = manifest["spec"]["template"]["spec"]["containers"]
        assert "command" not in container
        # -X importtime: every module each process imports, listed on its stderr
        args = [container["args"][0], "-X", "importtime", *container["args"][1:]]
        with subprocess.Popen(
            args, cwd=tmp_path, env=dict(os.environ), stderr=subprocess.PIPE, text=True
        ) as pod:
            _, stderr = pod.communicate(timeout=300)
        assert pod.returncode == 0, stderr[-3000:]
        stored = instance.get_run_by_id(run.run_id)
    assert stored is not None and stored.status.value == "SUCCESS", stderr[-3000:]
    return stored, pod.pid, stderr


def test_a_run_pod_opens_the_run_span_between_the_submission_and_its_steps(
    data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On Kubernetes as locally: submission -> run -> one span per step, one trace."""
    with otlp_receiver() as receiver:
        monkeypatch.setenv("QUANTOS_OTLP_ENDPOINT", receiver.url)
        monkeypatch.setattr(traces, "_PROCESS", traces._UNSET)
        with traces.submission_span("sub-k8s", PIPELINE, "research") as submission:
            assert submission is not None
        found = traces.tracing()
        assert found is not None
        found.flush()
        tags = {TAG_TRACEPARENT: submission, TAG_SUBMISSION: "sub-k8s"}
        run, pid, _ = _run_as_its_pod(data_dir, tmp_path, monkeypatch, tags)
        trace_id = submission.split("-")[1]
        spans = receiver.spans_of(trace_id, 4)
        found.close()
    by_name: dict[str, list] = {}
    for span in spans:
        by_name.setdefault(span.name, []).append(span)
    assert sorted(by_name) == ["run", "step", "submission"], [s.name for s in spans]
    [sub], [run_span] = by_name["submission"], by_name["run"]
    assert sub.span_id == submission.split("-")[2] and sub.parent_id == ""
    assert run_span.parent_id == sub.span_id
    assert run_span.attributes[traces.ATTR_RUN] == run.run_id
    assert run_span.attributes[traces.ATTR_SUBMISSION] == "sub-k8s"
    assert run_span.resource["process.pid"] == pid  # opened by the pod's process itself
    steps = by_name["step"]
    assert sorted(s.attributes[traces.ATTR_NODE] for s in steps) == ["n0", "n1"]
    assert all(s.parent_id == run_span.span_id for s in steps)
    # the steps ran in processes of their own, and found the run span in the run's tags
    assert all(s.resource["process.pid"] != run_span.resource["process.pid"] for s in steps)
    assert run.tags[TAG_RUN_TRACEPARENT].split("-")[1:3] == [trace_id, run_span.span_id]
    assert WORKER_PID_TAG not in run.tags  # the warm launcher's: a pod's pid means nothing


def test_with_traces_off_a_run_pod_runs_as_dagster_api_execute_run(
    data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No endpoint: the run pod imports no OpenTelemetry (nor does any step process) and
    writes nothing on the run; the run succeeds as it did with `dagster api execute_run`."""
    monkeypatch.delenv("QUANTOS_OTLP_ENDPOINT", raising=False)
    run, _, stderr = _run_as_its_pod(data_dir, tmp_path, monkeypatch, {})
    imported = [line for line in stderr.splitlines() if line.startswith("import time:")]
    # the run worker ran (`-m` runs it as __main__; traces.py is its import)
    assert any(line.endswith(" quantos_assets.observability.traces") for line in imported)
    assert not [line for line in imported if "opentelemetry" in line]
    assert TAG_RUN_TRACEPARENT not in run.tags and WORKER_PID_TAG not in run.tags
