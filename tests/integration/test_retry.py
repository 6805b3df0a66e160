"""slo.retry as a user sees it: transient failures retried, configuration errors not."""

from __future__ import annotations

from pathlib import Path

from dagster import DagsterEventType, DagsterInstance
from profiles import LOCAL

from definitions.assemble import definitions_for
from quantos_assets.pipeline_assets import build_pipeline
from quantos_assets.spec_rules.firm import load_spec_text
from resources.profile import active_profile

SPEC = """\
version: 1
pipeline_id: flaky
slo: {{retry: {{max_attempts: 2, backoff_sec: 0}}}}
nodes:
  - id: fetch
    kind: python_task
    params: {{entrypoint: "{entrypoint}", marker: "{marker}"}}
    outs: [rows]
"""


def _run(text: str):
    pipeline = build_pipeline(load_spec_text(text, "flaky.yaml", "yaml"), LOCAL)
    defs = definitions_for([pipeline], active_profile())
    with DagsterInstance.get() as instance:
        return defs.resolve_job_def("flaky").execute_in_process(
            instance=instance, raise_on_error=False
        )


def _events(result, kind):
    return [e for e in result.all_events if e.event_type == kind]


def test_a_transient_failure_is_retried_and_the_run_completes(data_dir: Path) -> None:
    marker = data_dir / "attempted"
    result = _run(
        SPEC.format(
            entrypoint="tests.integration.test_kinds_entrypoints:fail_first_attempt", marker=marker
        )
    )
    assert result.success
    retries = _events(result, DagsterEventType.STEP_UP_FOR_RETRY)
    assert len(retries) == 1
    assert "feature store timed out" in str(retries[0].event_specific_data.error)
    assert marker.exists()


def test_a_node_that_cannot_run_here_fails_at_once(data_dir: Path) -> None:
    text = SPEC.format(entrypoint="no_such_module_anywhere:fn", marker=data_dir / "m").replace(
        'entrypoint: "no_such_module_anywhere:fn", ', ""
    )
    text = text.replace("kind: python_task", "kind: python_task\n    image: ghcr.io/x/y:1")
    result = _run(text)
    assert not result.success
    assert not _events(result, DagsterEventType.STEP_UP_FOR_RETRY)
    failure = _events(result, DagsterEventType.STEP_FAILURE)[0]
    assert (
        "has no local entrypoint in deploy/local_images.yaml"
        in failure.event_specific_data.user_failure_data.description
    )
