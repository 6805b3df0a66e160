"""Rules of a spec's `gates` block: what is promoted, and never below the firm's floor.

A gate must be able to do all three of its checks, so the spec must say which model out
and which metrics out, the model must come from a ray_job (a registered trainer and a
recorded seed are what make a retrain comparable byte for byte), and every bounded metric
must be one that node reports. The policy comparison (tighten, never loosen) is in
quantos_assets/gates/policy.py; a problem there names both files and lines. Run by the
loader through spec_rules/firm.py (the spec contract imports none of this).
"""

from __future__ import annotations

from quantos_assets.spec.errors import SpecError
from quantos_assets.spec.models import DagSpec, NodeKind


def check_gates(spec: DagSpec) -> list[tuple[str, str]]:
    gates = spec.gates
    if gates is None:
        return []
    # Imported here: only a gated spec reads the policy file (and the trainers' metric names).
    from quantos_assets.gates.policy import load_policy, loosening_problems
    from quantos_assets.trainers.evaluation import (
        FORECAST_METRICS,
        PORTFOLIO_METRICS,
        TRAINING_COUNTS,
    )

    problems: list[tuple[str, str]] = []
    producer = next((n for n in spec.nodes if gates.model in n.outs), None)
    if producer is None:
        outs = sorted({o for n in spec.nodes for o in n.outs})
        return [
            ("gates.model", f"no node has out '{gates.model}' (outs: {', '.join(outs) or 'none'})")
        ]
    if producer.kind is not NodeKind.ray_job:
        return [
            (
                "gates.model",
                (
                    f"'{gates.model}' is made by {producer.kind.value} node '{producer.id}'; a "
                    "gate retrains the model to prove it reproducible, which needs a ray_job "
                    "(registered trainer, recorded seed)"
                ),
            )
        ]
    if producer.params.get("mode") == "predict":
        return [
            (
                "gates.model",
                (
                    f"'{gates.model}' is the predictions table of predict node '{producer.id}', "
                    "not a model"
                ),
            )
        ]
    if producer.outs[0] != gates.model:
        return [
            (
                "gates.model",
                (
                    f"'{gates.model}' is not the model of '{producer.id}': its model is outs[0] "
                    f"'{producer.outs[0]}'"
                ),
            )
        ]
    if len(producer.outs) < 2:
        problems.append(
            (
                "gates.metrics",
                (
                    f"'{producer.id}' declares no metrics out: add one after '{gates.model}' in "
                    "its outs"
                ),
            )
        )
    elif gates.metrics != producer.outs[1]:
        problems.append(
            (
                "gates.metrics",
                (
                    f"'{gates.metrics}' is not the metrics of '{producer.id}': its metrics are "
                    f"outs[1] '{producer.outs[1]}'"
                ),
            )
        )
    if spec.partitions is not None:
        problems.append(
            (
                "gates",
                (
                    "a gated model is trained on one table snapshot: a session-partitioned "
                    "pipeline cannot be gated"
                ),
            )
        )

    try:
        loaded = load_policy()
    except SpecError as err:
        return [
            *problems,
            (
                "gates",
                f"the firm's promotion policy is invalid: {err.lines[0] if err.lines else err}",
            ),
        ]
    problems.extend(loosening_problems(gates, loaded))

    trades = bool(producer.params.get("return_column"))
    reported = {*FORECAST_METRICS, *TRAINING_COUNTS, *(PORTFOLIO_METRICS if trades else ())}
    firm = loaded.policy.require
    for metric in sorted({*gates.require, *firm}):
        if metric in reported:
            continue
        path = f"gates.require.{metric}" if metric in gates.require else "gates"
        who = (
            ""
            if metric in gates.require
            else f"the firm's policy requires {metric} ({loaded.where('require', metric)}), but "
        )
        if metric in PORTFOLIO_METRICS:
            problems.append(
                (
                    path,
                    (
                        f"{who}'{producer.id}' reports {metric} only when it trades its forecast: "
                        "set params.return_column"
                    ),
                )
            )
        else:
            problems.append(
                (
                    path,
                    (
                        f"{who}'{producer.id}' reports no metric '{metric}' (it reports "
                        f"{', '.join(sorted(reported))})"
                    ),
                )
            )
    return problems
