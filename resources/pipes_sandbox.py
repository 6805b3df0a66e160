"""The Pipes subprocess client of python_task steps: the child gets only the environment it is
given.

Dagster's PipesSubprocessClient starts the child from `os.environ`, the step's whole
environment: the platform's database URLs, the gateway's token store path, cloud keys.
This client is the same (context injector, message reader, termination forwarding,
stdio), except that the child's environment is exactly the client's `env`, the `env` of
the call and the Pipes bootstrap variables. What belongs in that `env` is decided by the
runner (`quantos_assets/kinds/step_environment.py`).
"""

from __future__ import annotations

import signal
from collections.abc import Mapping, Sequence
from subprocess import PIPE, Popen

from dagster import (
    AssetExecutionContext,
    DagsterExecutionInterruptedError,
    OpExecutionContext,
    PipesClientCompletedInvocation,
    PipesSubprocessClient,
    open_pipes_session,
)
from dagster._core.errors import DagsterPipesExecutionError  # the error Dagster's client raises
from dagster_pipes import PipesExtras


class SandboxedSubprocessClient(PipesSubprocessClient):
    """A PipesSubprocessClient that never hands the child `os.environ`."""

    @classmethod
    def like(cls, client: PipesSubprocessClient) -> SandboxedSubprocessClient:
        """The sandboxed twin of a configured client (a test or a Definitions may bind
        Dagster's own): same injector, reader, cwd and termination settings."""
        if isinstance(client, SandboxedSubprocessClient):
            return client
        return cls(
            env=client.env,
            cwd=client.cwd,
            context_injector=client.context_injector,
            message_reader=client.message_reader,
            forward_termination=client.forward_termination,
            forward_stdio=client.forward_stdio,
            termination_timeout_seconds=client.termination_timeout_seconds,
        )

    def run(  # type: ignore[override]  # same keyword-only signature as the base class
        self,
        *,
        context: OpExecutionContext | AssetExecutionContext,
        extras: PipesExtras | None = None,
        command: str | Sequence[str],
        env: Mapping[str, str] | None = None,
        cwd: str | None = None,
    ) -> PipesClientCompletedInvocation:
        """PipesSubprocessClient.run, with `{**self.env, **env, **bootstrap}` as the whole env."""
        with open_pipes_session(
            context=context,
            context_injector=self.context_injector,
            message_reader=self.message_reader,
            extras=extras,
        ) as pipes_session:
            process = Popen(
                command,
                cwd=cwd or self.cwd,
                env={**self.env, **(env or {}), **pipes_session.get_bootstrap_env_vars()},
                stdout=None if self.forward_stdio else PIPE,
                stderr=None if self.forward_stdio else PIPE,
            )
            try:
                process.wait()
                if process.returncode != 0:
                    raise DagsterPipesExecutionError(
                        f"External execution process failed with code {process.returncode}"
                    )
            except DagsterExecutionInterruptedError:
                if self.forward_termination:
                    context.log.info("[pipes] execution interrupted, sending SIGINT to subprocess.")
                    process.send_signal(signal.SIGINT)
                    process.wait(timeout=self.termination_timeout_seconds)
                raise
        return PipesClientCompletedInvocation(pipes_session)
