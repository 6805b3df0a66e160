"""TracedK8sRunLauncher: staging/prod's run launcher, dagster-k8s's with our run worker.

dagster-k8s's K8sRunLauncher starts each run as a Job whose pod runs
`dagster api execute_run ARGS`; there no process of ours opens the run's span, so a
submission's step spans would hang straight under the submission span. This launcher changes
only that command: the pod runs `python -m quantos_assets.apps.launcher.run_worker ARGS`
(run_worker.py), the same ExecuteRunArgs, which opens the run span and writes its context
on the run, then executes the run exactly as `dagster api execute_run` does. Everything else
of the Job (image, env, secrets, service account, security context, labels, run_k8s_config)
is built by K8sRunLauncher's own code, and its configuration is K8sRunLauncher's.

Imported by the webserver and the daemon (they load the instance's run launcher), so it
imports nothing of the platform's beyond the run worker's command: no OpenTelemetry, no
code location.
"""

from __future__ import annotations

from dagster import _check as check
from dagster._core.launcher import LaunchRunContext
from dagster._grpc.types import ExecuteRunArgs
from dagster_k8s import K8sRunLauncher
from dagster_k8s.job import get_job_name_from_run_id

from quantos_assets.apps.launcher.run_worker import run_worker_command

__all__ = ["TracedK8sRunLauncher"]


class TracedK8sRunLauncher(K8sRunLauncher):
    """K8sRunLauncher whose run pod runs our run worker (a `run` span) instead of
    `dagster api execute_run`. Resuming a run (`dagster api resume_run`, run monitoring's
    crash recovery) is K8sRunLauncher's unchanged: its steps keep the run span the first pod
    wrote on the run."""

    def launch_run(self, context: LaunchRunContext) -> None:
        # K8sRunLauncher.launch_run with run_worker_command in place of get_command_args
        run = context.dagster_run
        args = ExecuteRunArgs(
            job_origin=check.not_none(run.job_code_origin),
            run_id=run.run_id,
            instance_ref=self._instance.get_ref(),
            set_exit_code_on_failure=self.fail_pod_on_run_failure,
        )
        job_name = get_job_name_from_run_id(run.run_id)
        self._launch_k8s_job_with_args(job_name, run_worker_command(args), run)
