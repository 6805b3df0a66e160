"""Which inputs a submission's refs may pin: the names nodes read, outs of the pipeline or
its external inputs (lake tables no node of it writes)."""

from __future__ import annotations

from quantos_assets.spec.models import DagSpec, RuntimeParams


def ref_problems(spec: DagSpec, params: RuntimeParams) -> list[str]:
    """One line per ref that names no input of the pipeline (`refs.<out>: ...`)."""
    read = {i for node in spec.nodes for i in node.ins}
    problems = []
    for out in sorted(params.refs):
        if out not in read:
            known = ", ".join(sorted(read)) or "none"
            problems.append(
                f"refs.{out}: no node of pipeline {spec.pipeline_id} reads an input of that name "
                f"(inputs: {known})"
            )
    return problems
