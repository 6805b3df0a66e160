"""`quantos manifests SPEC -o DIR`: the Kubernetes Job of every step, as production would launch it,
and the Pod of every image-only python_task (`<op>.pipes-pod.yaml`), as its step would create it.

Built by dagster-k8s's own job and Pipes pod construction from the same config k8s_job_executor
and PipesK8sClient get (quantos_assets/k8s/), so reviewing these files is reviewing what the
cluster gets. `--params` applies a submission (secrets, affinity, priority, labels) to both.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import yaml


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    m = sub.add_parser(
        "manifests",
        help=(
            "write the Kubernetes Job of every step and Pod of every image-only task (production "
            "profile)"
        ),
    )
    m.add_argument("path", type=Path, help="a spec file")
    m.add_argument(
        "-o",
        "--output",
        type=Path,
        required=True,
        metavar="DIR",
        help="folder for one YAML per step",
    )
    m.add_argument(
        "--params", type=Path, help="runtime params (JSON/YAML): secrets, affinity, labels"
    )
    m.add_argument("--image", help="user code image (default: the quantos user-code image)")
    m.set_defaults(handler=cmd_manifests)


def cmd_manifests(args: argparse.Namespace) -> int:
    from quantos_assets.apps.cli.main import EXIT_INVALID, EXIT_OK, _check_placement
    from quantos_assets.k8s.manifests import DEFAULT_IMAGE, pipes_pod_manifests, step_job_manifests
    from quantos_assets.k8s.step_config import SecretScopeError
    from quantos_assets.placement import PlacementError
    from quantos_assets.spec.loader import load_runtime_params
    from quantos_assets.spec_rules.firm import load_spec

    pipeline = _check_placement(load_spec(args.path))
    params = load_runtime_params(args.params) if args.params else None
    try:
        manifests = step_job_manifests(pipeline, params, image=args.image or DEFAULT_IMAGE)
        pods = pipes_pod_manifests(pipeline, params)
    except (PlacementError, SecretScopeError) as err:  # the runtime params ask for the impossible
        print(f"{args.params}: {err}", file=sys.stderr)
        return EXIT_INVALID
    args.output.mkdir(parents=True, exist_ok=True)
    for op, manifest in manifests.items():
        target = args.output / f"{op}.yaml"
        target.write_text(yaml.safe_dump(manifest, sort_keys=False))
        pool = manifest["spec"]["template"]["metadata"]["labels"].get("quantos.io/pool", "?")
        print(f"{target}  pool={pool}", file=sys.stdout)
    for op, pod in pods.items():
        target = args.output / f"{op}.pipes-pod.yaml"
        target.write_text(yaml.safe_dump(pod, sort_keys=False))
        pool = pod["metadata"]["labels"].get("quantos.io/pool", "?")
        print(
            f"{target}  pool={pool} image={pod['spec']['containers'][0]['image']}", file=sys.stdout
        )
    return EXIT_OK
