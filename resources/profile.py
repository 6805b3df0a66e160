"""The environment, resolved in one place.

`QUANTOS_ENV=local` (the default) needs nothing but the Python environment:
SQLite catalog, file warehouse, a local artifact folder, DuckDB, a local Ray.
`staging`/`prod` read their endpoints from the environment; nothing secret
lives in the repository.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from resources.env_numbers import env_number
from resources.kafka_client import KafkaSettings, kafka_settings
from resources.lake_upkeep_settings import LakeUpkeep, lake_upkeep_settings
from resources.notifier import NotifySettings, notify_settings
from resources.redaction import redact

REPO_ROOT = Path(__file__).resolve().parent.parent
PROFILES = ("local", "staging", "prod")


class ProfileError(ValueError):
    """A missing or invalid setting; the message names the variable (URLs in it redacted)."""

    def __init__(self, message: str) -> None:
        super().__init__(redact(message))


LINEAGE_TRANSPORTS = ("off", "file", "http", "openlineage")


@dataclass(frozen=True)
class LineageSettings:
    """Where the OpenLineage sensor sends events (sensors/openlineage.py).

    `file`: JSON lines appended to `file_path`; `http`: POSTed to a Marquez-compatible
    `url` + `endpoint`; `openlineage`: whatever openlineage-python's own configuration says
    (OPENLINEAGE_CONFIG, openlineage.yml, OPENLINEAGE__TRANSPORT__...); `off`: no sensor.
    """

    transport: str = "off"
    file_path: Path | None = None
    url: str | None = None
    endpoint: str = "api/v1/lineage"
    api_key: str | None = None
    timeout_s: float = 5.0
    # Job namespace of runs that carry no team (the run label `team`).
    namespace: str = "quantos"

    @property
    def enabled(self) -> bool:
        return self.transport != "off"


@dataclass(frozen=True)
class TraceSettings:
    """Where spans of submissions, runs and steps go (quantos_assets/observability/traces.py).

    `endpoint` (QUANTOS_OTLP_ENDPOINT): an OTLP/HTTP collector's base URL, e.g.
    `http://tempo:4318` (`/v1/traces` is appended unless it is there); None: no tracing at
    all. `timeout_s` (QUANTOS_OTLP_TIMEOUT): what one export may take, retries included, so
    an unreachable collector delays a finishing process by about that much and no more.
    Headers, TLS and compression come from the OTEL_EXPORTER_OTLP_* variables, which the
    OpenTelemetry SDK reads itself; OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES too.
    """

    endpoint: str | None = None
    timeout_s: float = 2.0

    @property
    def enabled(self) -> bool:
        return self.endpoint is not None


@dataclass(frozen=True)
class Cluster:
    """Where a profile's steps run: the part of the profile that a runner and a step's
    Kubernetes config depend on, passed to them instead of each reading the environment.

    Every process that builds a step's config (the code server's op tags, the gateway's and
    the sensors' run configs, `quantos manifests` on a laptop) gets it from its own profile,
    so they agree as long as their environments do.
    """

    # staging/prod: steps and image-only python_tasks become pods (secrets scoped per step)
    pods: bool = False
    # The Ray cluster a ray_job's step drives as a thin driver (QUANTOS_RAY_ADDRESS, pods
    # only: locally a step is a process, and an address changes where Ray runs, not how a
    # step is placed)
    ray_cluster: str | None = None


LOCAL_CLUSTER = Cluster()


@dataclass(frozen=True)
class Profile:
    name: str
    data_dir: Path
    specs_dir: Path
    catalog_uri: str
    warehouse: str
    artifacts_root: str
    s3_endpoint: str | None
    ray_address: str | None
    # QUANTOS_RAY_AUTOSCALING (staging/prod, default on): the Ray cluster grows to fit a
    # training's request; off (and always locally) a request is cut to the largest node
    ray_autoscaling: bool = False
    # staging/prod: trino_sql/spark_sql run on Trino when a host is set (DuckDB in the step pod
    # otherwise)
    trino_host: str | None = None
    trino_port: int = 8080
    trino_user: str = "quantos"
    trino_catalog: str = "iceberg"
    trino_schema: str = "default"
    s3_region: str | None = None
    # staging/prod outside a cluster (a laptop, CI): where image-only python_task pods go
    kubeconfig: str | None = None
    # The hash-chained audit trail runs append decisions to (promotion gates): the gateway's
    # store, QUANTOS_GATEWAY_DB; locally its default file, in staging/prod None unless set
    audit_url: str | None = None
    # Its anchor (QUANTOS_AUDIT_ANCHOR; locally $QUANTOS_DATA_DIR/audit.anchor, staging/prod
    # None unless set) and, locally, the key file used when QUANTOS_AUDIT_KEY is not set
    # (resources/audit_settings.py): the database never holds the key.
    audit_anchor: str | None = None
    audit_key_file: Path | None = None
    # QUANTOS_DBT=off leaves the dbt models out of the code location (dagster-dbt costs
    # ~2 s per code-location load: every run and step process pays it)
    dbt: bool = True
    # QUANTOS_LOCAL_EXECUTOR: how a local run's steps run (LOCAL_EXECUTORS below); staging/prod
    # always use k8s_job_executor
    local_executor: str = "forkserver"
    # QUANTOS_JSON_LOGS: keyed JSON lines of run and node events on stdout
    # (quantos_assets/observability/node_logs.py): on, off, or auto (the default: on unless
    # stdout is a terminal, where a person running `dagster asset materialize` would see every
    # event twice, beside Dagster's own console log, which is unchanged). None: auto.
    json_logs: bool | None = None
    # QUANTOS_DAGSTER_URL: the webserver whose GraphQL `quantos logs` reads
    dagster_url: str = "http://127.0.0.1:3000"
    # OpenLineage events of every node run (QUANTOS_LINEAGE, OPENLINEAGE_*): see lineage_settings
    lineage: LineageSettings = field(default_factory=LineageSettings)
    # OpenTelemetry spans over OTLP (QUANTOS_OTLP_ENDPOINT, QUANTOS_OTLP_TIMEOUT); off when unset
    traces: TraceSettings = field(default_factory=TraceSettings)
    # The compiler's submission queue and lag triggers (QUANTOS_KAFKA_*, QUANTOS_SUBMISSIONS_*)
    kafka: KafkaSettings = field(default_factory=lambda: KafkaSettings(bootstrap=None))
    # Run and step notifications (QUANTOS_SLACK_*, QUANTOS_NOTIFY_WEBHOOK_URL)
    notify: NotifySettings = field(default_factory=NotifySettings)
    # Lake maintenance: retention, compaction, orphans, its schedule (QUANTOS_LAKE_*)
    lake_upkeep: LakeUpkeep = field(default_factory=LakeUpkeep)
    # The per-team policy (QUANTOS_TEAMS, default deploy/teams.yaml); named: it must exist
    teams_file: Path = REPO_ROOT / "deploy" / "teams.yaml"
    teams_file_named: bool = False
    # The embedded default's image -> entrypoint map for image-only python_tasks
    # (QUANTOS_LOCAL_IMAGES, default deploy/local_images.yaml); named: it must exist
    local_images_file: Path = REPO_ROOT / "deploy" / "local_images.yaml"
    local_images_file_named: bool = False
    # The gateway's tables (submissions, scheduled jobs), shared with the sensors that fire
    # scheduled jobs and Kafka submissions (QUANTOS_GATEWAY_DB, default a SQLite file)
    gateway_store_url: str = ""
    # How often the gateway_jobs sensor looks for due jobs (QUANTOS_JOBS_TICK_SECONDS)
    jobs_tick_seconds: int = 15
    # Where a spec's local data-arrival globs may look (QUANTOS_LANDING_DIR, default
    # $QUANTOS_DATA_DIR/landing): a relative glob is under it, a file:/// glob must be
    landing_dir: Path = REPO_ROOT / ".quantos" / "landing"

    @property
    def runs_pods(self) -> bool:
        """staging/prod run on Kubernetes: steps and image-only python_tasks become pods."""
        return not self.is_local

    @property
    def is_local(self) -> bool:
        return self.name == "local"

    @property
    def sql_in_trino(self) -> bool:
        """staging/prod with a Trino coordinator: SQL nodes run inside Trino against the lake
        (inputs by reference, outs written by Trino), not in the step."""
        return not self.is_local and bool(self.trino_host)

    @property
    def cluster(self) -> Cluster:
        if not self.runs_pods:
            return LOCAL_CLUSTER
        return Cluster(pods=True, ray_cluster=(self.ray_address or "").strip() or None)


def active_profile(environ: dict[str, str] | None = None) -> Profile:
    env = dict(os.environ if environ is None else environ)
    name = env.get("QUANTOS_ENV", "local")
    if name not in PROFILES:
        raise ProfileError(
            f"QUANTOS_ENV: unknown profile '{name}' (expected {', '.join(PROFILES)})"
        )
    data_dir = Path(env.get("QUANTOS_DATA_DIR") or REPO_ROOT / ".quantos").resolve()
    specs_dir = Path(env.get("QUANTOS_SPECS_DIR") or REPO_ROOT / "specs").resolve()
    switches = {
        **_switches(env),
        **_services(env),
        "lineage": lineage_settings(env, name, data_dir),
        "traces": trace_settings(env),
        "gateway_store_url": env.get("QUANTOS_GATEWAY_DB")
        or f"sqlite:///{data_dir / 'gateway.db'}",
        "jobs_tick_seconds": _positive_int_env(env, "QUANTOS_JOBS_TICK_SECONDS", 15),
        "landing_dir": Path(env.get("QUANTOS_LANDING_DIR") or data_dir / "landing").resolve(),
    }
    if name == "local":
        return Profile(
            **switches,
            name=name,
            data_dir=data_dir,
            specs_dir=specs_dir,
            catalog_uri=env.get("QUANTOS_CATALOG_URI") or f"sqlite:///{data_dir / 'catalog.db'}",
            warehouse=env.get("QUANTOS_WAREHOUSE") or f"file://{data_dir / 'warehouse'}",
            artifacts_root=env.get("QUANTOS_ARTIFACTS") or str(data_dir / "artifacts"),
            s3_endpoint=env.get("QUANTOS_S3_ENDPOINT"),
            ray_address=env.get("QUANTOS_RAY_ADDRESS"),
            audit_url=env.get("QUANTOS_GATEWAY_DB") or f"sqlite:///{data_dir / 'gateway.db'}",
            audit_anchor=env.get("QUANTOS_AUDIT_ANCHOR") or str(data_dir / "audit.anchor"),
            audit_key_file=data_dir / "audit.key",
        )
    missing = [
        v
        for v in ("QUANTOS_CATALOG_URI", "QUANTOS_WAREHOUSE", "QUANTOS_ARTIFACTS")
        if not env.get(v)
    ]
    if missing:
        raise ProfileError(f"QUANTOS_ENV={name}: set {', '.join(missing)}")
    return Profile(
        **switches,
        name=name,
        data_dir=data_dir,
        specs_dir=specs_dir,
        catalog_uri=env["QUANTOS_CATALOG_URI"],
        warehouse=env["QUANTOS_WAREHOUSE"],
        artifacts_root=env["QUANTOS_ARTIFACTS"],
        s3_endpoint=env.get("QUANTOS_S3_ENDPOINT"),
        ray_address=env.get("QUANTOS_RAY_ADDRESS"),
        ray_autoscaling=env.get("QUANTOS_RAY_AUTOSCALING", "on").lower()
        not in ("off", "0", "false", "no"),
        trino_host=env.get("QUANTOS_TRINO_HOST") or None,
        trino_port=_int_env(env, "QUANTOS_TRINO_PORT", 8080),
        trino_user=env.get("QUANTOS_TRINO_USER") or "quantos",
        trino_catalog=env.get("QUANTOS_TRINO_CATALOG") or "iceberg",
        trino_schema=env.get("QUANTOS_TRINO_SCHEMA") or "default",
        s3_region=env.get("QUANTOS_S3_REGION") or env.get("AWS_REGION") or None,
        kubeconfig=env.get("KUBECONFIG") or None,
        audit_url=env.get("QUANTOS_GATEWAY_DB") or None,
        audit_anchor=env.get("QUANTOS_AUDIT_ANCHOR") or None,
    )


# forkserver (default): a process per step, forked from one server per run that imported the
# code location once (a 10-node run: 10 CPU-s); multiprocess: a process per step, spawned, each
# importing the code location (38 CPU-s); in_process: every step in the run's own process
# (4 CPU-s, but steps no longer run in parallel and a crashing step takes the run with it).
LOCAL_EXECUTORS = ("multiprocess", "forkserver", "in_process")


def _switches(env: dict[str, str]) -> dict[str, Any]:
    dbt = (env.get("QUANTOS_DBT") or "on").lower()
    if dbt not in ("on", "off"):
        raise ProfileError(f"QUANTOS_DBT: expected on or off, got {dbt!r}")
    executor = env.get("QUANTOS_LOCAL_EXECUTOR") or "forkserver"
    if executor not in LOCAL_EXECUTORS:
        raise ProfileError(
            f"QUANTOS_LOCAL_EXECUTOR: expected {', '.join(LOCAL_EXECUTORS)}, got {executor!r}"
        )
    json_logs = (env.get("QUANTOS_JSON_LOGS") or "auto").lower()
    if json_logs not in ("on", "off", "auto"):
        raise ProfileError(f"QUANTOS_JSON_LOGS: expected on, off or auto, got {json_logs!r}")
    return {
        "dbt": dbt == "on",
        "local_executor": executor,
        "json_logs": None if json_logs == "auto" else json_logs == "on",
        "dagster_url": env.get("QUANTOS_DAGSTER_URL") or "http://127.0.0.1:3000",
    }


def _services(env: dict[str, str]) -> dict[str, Any]:
    """The settings of the services around the platform (Kafka, notifications) and the
    files a step reads at run time (teams, local images)."""
    try:
        kafka, notify = kafka_settings(env), notify_settings(env)
        upkeep = lake_upkeep_settings(env)
    except ValueError as err:  # one line naming the variable
        raise ProfileError(str(err)) from None
    teams_file, named = teams_setting(env)
    images = env.get("QUANTOS_LOCAL_IMAGES")
    return {
        "kafka": kafka,
        "notify": notify,
        "lake_upkeep": upkeep,
        "teams_file": teams_file,
        "teams_file_named": named,
        "local_images_file": Path(images) if images else REPO_ROOT / "deploy" / "local_images.yaml",
        "local_images_file_named": bool(images),
    }


def trace_settings(env: Mapping[str, str]) -> TraceSettings:
    """QUANTOS_OTLP_ENDPOINT and QUANTOS_OTLP_TIMEOUT; unset or `off`: no tracing."""
    raw = (env.get("QUANTOS_OTLP_ENDPOINT") or "").strip()
    if raw.lower() in ("", "off"):
        return TraceSettings()
    parsed = urlparse(raw)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise ProfileError(
            "QUANTOS_OTLP_ENDPOINT: expected an OTLP/HTTP URL such as http://tempo:4318, "
            f"got {raw!r}"
        )
    endpoint = raw.rstrip("/")
    if not endpoint.endswith("/v1/traces"):
        endpoint += "/v1/traces"
    try:
        timeout = env_number(
            env, "QUANTOS_OTLP_TIMEOUT", 2.0, positive=True, unit="number of seconds"
        )
    except ValueError as err:
        raise ProfileError(str(err)) from None
    return TraceSettings(endpoint=endpoint, timeout_s=timeout)


def pools_file(environ: Mapping[str, str] | None = None) -> Path:
    """The node pools (QUANTOS_POOLS_FILE, default deploy/pools.yaml): an input of spec
    validation and placement, read wherever a spec is checked, so read alone."""
    env = os.environ if environ is None else environ
    return Path(env.get("QUANTOS_POOLS_FILE") or REPO_ROOT / "deploy" / "pools.yaml")


def promotion_policy_file(environ: Mapping[str, str] | None = None) -> Path:
    """The firm's promotion policy (QUANTOS_PROMOTION_POLICY, default
    deploy/policies/promotion.yaml): like the pools, an input of spec validation."""
    env = os.environ if environ is None else environ
    return Path(
        env.get("QUANTOS_PROMOTION_POLICY") or REPO_ROOT / "deploy" / "policies" / "promotion.yaml"
    )


def calendars_setting(environ: Mapping[str, str] | None = None) -> tuple[Path, bool]:
    """The custom trading calendars, one YAML file each (QUANTOS_CALENDARS_DIR, default
    deploy/calendars), and whether the directory was named (then it must exist: an unmounted
    ConfigMap must not silently leave every custom code unknown). Like the pools, read
    wherever a calendar code is resolved (spec validation, schedules, the gateway's calendar
    jobs), so read alone."""
    env = os.environ if environ is None else environ
    named = env.get("QUANTOS_CALENDARS_DIR")
    return (Path(named) if named else REPO_ROOT / "deploy" / "calendars"), bool(named)


SERVICE_ACCOUNT_TOKEN = Path("/var/run/secrets/kubernetes.io/serviceaccount/token")


def kube_config_source(environ: Mapping[str, str] | None = None) -> str | None:
    """'in-cluster', the kubeconfig file to use, or None when no cluster is configured."""
    env = os.environ if environ is None else environ
    if env.get("KUBERNETES_SERVICE_HOST") and SERVICE_ACCOUNT_TOKEN.is_file():
        return "in-cluster"
    listed = env.get("KUBECONFIG")
    candidates = listed.split(os.pathsep) if listed else [str(Path("~/.kube/config").expanduser())]
    return next((p for p in candidates if p and Path(p).expanduser().is_file()), None)


def teams_setting(environ: Mapping[str, str] | None = None) -> tuple[Path, bool]:
    """The teams file (QUANTOS_TEAMS, default deploy/teams.yaml) and whether it was named
    (then it must exist). Also read alone, by what needs no stores: `quantos validate` and a
    python_task step checking its entrypoint."""
    env = os.environ if environ is None else environ
    named = env.get("QUANTOS_TEAMS")
    return (Path(named) if named else REPO_ROOT / "deploy" / "teams.yaml"), bool(named)


def lineage_settings(env: dict[str, str], profile: str, data_dir: Path) -> LineageSettings:
    """QUANTOS_LINEAGE picks the transport; unset, it follows the OpenLineage variables a
    Marquez deployment documents (OPENLINEAGE_URL -> http, OPENLINEAGE_CONFIG or
    OPENLINEAGE__TRANSPORT__* -> the client's own config), else a local file locally and
    nothing in staging/prod. OPENLINEAGE_DISABLED=true turns it off whatever the rest says."""
    namespace = env.get("OPENLINEAGE_NAMESPACE") or "quantos"
    if (env.get("OPENLINEAGE_DISABLED") or "").strip().lower() == "true":
        return LineageSettings(namespace=namespace)
    transport = (env.get("QUANTOS_LINEAGE") or "").strip().lower()
    if not transport:
        if env.get("OPENLINEAGE_URL"):
            transport = "http"
        elif env.get("OPENLINEAGE_CONFIG") or any(
            k.startswith("OPENLINEAGE__TRANSPORT") for k in env
        ):
            transport = "openlineage"
        else:
            transport = "file" if profile == "local" else "off"
    if transport not in LINEAGE_TRANSPORTS:
        raise ProfileError(
            f"QUANTOS_LINEAGE: expected one of {', '.join(LINEAGE_TRANSPORTS)}, got {transport!r}"
        )
    try:
        timeout = env_number(
            env, "QUANTOS_LINEAGE_TIMEOUT", 5.0, positive=True, unit="number of seconds"
        )
    except ValueError as err:
        raise ProfileError(str(err)) from None
    if transport == "file":
        path = Path(env.get("QUANTOS_LINEAGE_FILE") or data_dir / "lineage" / "openlineage.jsonl")
        return LineageSettings(
            transport, file_path=path.resolve(), namespace=namespace, timeout_s=timeout
        )
    if transport == "http":
        url = env.get("OPENLINEAGE_URL") or ""
        parsed = urlparse(url)
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            got = f"got {url!r}" if url else "it is not set"
            raise ProfileError(
                "OPENLINEAGE_URL: QUANTOS_LINEAGE=http needs the lineage server's base URL, e.g. "
                f"http://marquez:5000 ({got})"
            )
        return LineageSettings(
            transport,
            url=url.rstrip("/"),
            endpoint=(env.get("OPENLINEAGE_ENDPOINT") or "api/v1/lineage").lstrip("/"),
            api_key=env.get("OPENLINEAGE_API_KEY") or None,
            timeout_s=timeout,
            namespace=namespace,
        )
    return LineageSettings(transport, namespace=namespace, timeout_s=timeout)


def _int_env(env: dict[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if not raw:
        return default
    try:
        return int(raw)
    except ValueError:
        raise ProfileError(f"{name}: expected an integer, got {raw!r}") from None


def _positive_int_env(env: dict[str, str], name: str, default: int) -> int:
    value = _int_env(env, name, default)
    if value <= 0:
        raise ProfileError(f"{name}: expected a positive integer, got {env.get(name)!r}")
    return value


def build_executor(profile: Profile, preload: Sequence[str] = ()) -> Any:
    """k8s_job_executor in staging/prod: one pod per step, so each step's `dagster-k8s/config`
    tag (pool, resources, hardening) applies. Locally None: Dagster's default executor, which
    ignores those tags. `preload`: the modules of the code location, imported once by the
    forkserver executor's server so each forked step starts with them loaded."""
    if profile.is_local:
        if profile.local_executor == "in_process":
            from dagster import in_process_executor

            return in_process_executor
        if profile.local_executor == "forkserver":
            from dagster import multiprocess_executor

            # Named, not left to Dagster's documented default (the job's module): Dagster
            # 1.13 reads an absent preload_modules as [] (check.opt_list_elem), so that
            # default never applies and every step re-imported the location (measured:
            # 25 CPU-s for a 10-node run instead of 10).
            start = {"forkserver": {"preload_modules": list(preload)} if preload else {}}
            return multiprocess_executor.configured({"start_method": start})
        return None
    from dagster_k8s import k8s_job_executor

    return k8s_job_executor


def build_resources(profile: Profile) -> dict[str, Any]:
    """The resource dict every pipeline's assets are bound to."""
    from resources.artifact_store import ArtifactStore
    from resources.audit_trail import AuditTrail
    from resources.dbt import dbt_resource
    from resources.lake_io_manager import LakeIOManager
    from resources.pipes_sandbox import SandboxedSubprocessClient
    from resources.ray_cluster import RayResource

    if profile.is_local:
        profile.data_dir.mkdir(parents=True, exist_ok=True)
        (profile.data_dir / "warehouse").mkdir(exist_ok=True)
    artifact_store = ArtifactStore(
        root=profile.artifacts_root,
        endpoint_url=profile.s3_endpoint,
        region=profile.s3_region,
        local_buckets=list(_local_buckets(profile, ArtifactStore(root=profile.artifacts_root))),
    )
    resources: dict[str, Any] = {
        "io_manager": LakeIOManager(
            catalog_uri=profile.catalog_uri,
            warehouse=profile.warehouse,
            s3_endpoint=profile.s3_endpoint,
            s3_region=profile.s3_region,
            artifact_store=artifact_store,
        ),
        "artifact_store": artifact_store,
        "sql_engine": _sql_engine(profile),
        "ray": RayResource(address=profile.ray_address, autoscaling=profile.ray_autoscaling),
        # python_task children get an allow-listed env, never the step's (kinds/step_environment.py)
        "pipes_subprocess_client": SandboxedSubprocessClient(),
        "dbt": dbt_resource(profile),
        "audit": AuditTrail(
            url=profile.audit_url,
            anchor=profile.audit_anchor,
            key_file=str(profile.audit_key_file) if profile.audit_key_file else None,
            s3_endpoint=profile.s3_endpoint,
            s3_region=profile.s3_region,
        ),
    }
    if not profile.is_local:
        resources["pipes_k8s_client"] = pipes_k8s_client(profile)
    return resources


def _local_buckets(profile: Profile, store: Any) -> tuple[str, ...]:
    """On the embedded default with a folder store: the platform's stand-ins for objects specs
    name in other buckets (deploy/local_objects/), synced into the store now; the buckets it
    then serves. Staging/prod, or a local profile on S3: none."""
    if not profile.is_local or store.is_s3:
        return ()
    from resources.local_objects import LocalObjectsError, sync_local_objects

    try:
        return sync_local_objects(store.local_folder()).buckets
    except (LocalObjectsError, OSError) as err:
        raise ProfileError(
            f"QUANTOS_ARTIFACTS: cannot put the local stand-in objects in the store: {err}"
        ) from None


def pipes_k8s_client(profile: Profile) -> Any:
    """Launches the pods of image-only python_tasks (placement comes from the runner).

    In a step pod (no KUBECONFIG) the in-cluster config applies and the pod goes into the
    step's namespace; elsewhere KUBECONFIG and the namespace of its current context. KUBECONFIG
    is passed explicitly: the kubernetes client reads the variable once, at import.
    """
    from dagster_k8s import PipesK8sClient

    return PipesK8sClient(kubeconfig_file=profile.kubeconfig, poll_interval=5.0)


def _sql_engine(profile: Profile) -> Any:
    from resources.sql_engine import DuckDBEngine

    if not profile.sql_in_trino:
        return DuckDBEngine()
    from resources.trino_engine import TrinoEngine

    assert profile.trino_host is not None
    return TrinoEngine(
        host=profile.trino_host,
        port=profile.trino_port,
        user=profile.trino_user,
        catalog=profile.trino_catalog,
        schema=profile.trino_schema,
    )
