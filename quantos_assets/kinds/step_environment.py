"""What a python_task's subprocess may see: an allow-listed environment and a working directory
of its own.

The step process holds the platform's settings (database URLs with passwords, the gateway's
token store path, cloud keys, QUANTOS_GATEWAY_DB...). None of that is the node's business,
so the child is given only:

- `PATH`, locale and time zone (`LANG`, `LC_ALL`, `LC_CTYPE`, `TZ`) and the CA bundle
  (`SSL_CERT_FILE`, `SSL_CERT_DIR`) as the step has them;
- `HOME` and `TMPDIR` inside the run's own working directory, which is also its cwd (so a
  relative path such as `.quantos/api_tokens.json` resolves to nothing of the platform's);
- `PYTHONPATH`: the project (and the step's own `PYTHONPATH`), `PYTHONNOUSERSITE`;
- the secrets of the submission's granted scopes: in staging/prod each granted scope's
  Secret reaches the step pod as `envFrom` with the prefix `QUANTOS_SCOPE__`, which is
  removed here (locally no scope provides anything: `secrets_scope` is recorded only);
- the node's own `env`, except names that would change how the interpreter, the dynamic
  loader or Pipes start (`reserved_env_name`; `quantos validate` refuses them too);
- the Pipes bootstrap variables, added by the client.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import quantos_assets

PROJECT_ROOT = Path(quantos_assets.__file__).resolve().parent.parent
PASSTHROUGH = ("PATH", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "SSL_CERT_FILE", "SSL_CERT_DIR")
# envFrom prefix of the granted scopes' Secrets in a step pod (k8s/step_config.py): a scope's
# key can then neither be mistaken for nor override a platform setting of the step itself.
SCOPE_ENV_PREFIX = "QUANTOS_SCOPE__"
_RESERVED_NAMES = frozenset({"PATH", "HOME", "TMPDIR", "BROWSER"})
_RESERVED_PREFIXES = ("PYTHON", "LD_", "DYLD_", "DAGSTER_", SCOPE_ENV_PREFIX)


def reserved_env_name(name: str) -> bool:
    """A name the sandbox sets itself, or one that runs code before the entrypoint does
    (PYTHONSTARTUP/PYTHONWARNINGS imports, LD_PRELOAD, BROWSER via webbrowser)."""
    upper = name.upper()
    return upper in _RESERVED_NAMES or upper.startswith(_RESERVED_PREFIXES)


def scope_secrets(environ: Mapping[str, str]) -> dict[str, str]:
    """The granted scopes' keys as the step pod has them, without the prefix."""
    return {
        key[len(SCOPE_ENV_PREFIX) :]: value
        for key, value in environ.items()
        if key.startswith(SCOPE_ENV_PREFIX) and len(key) > len(SCOPE_ENV_PREFIX)
    }


def prepare_workdir(work: Path) -> dict[str, Path]:
    """HOME and TMPDIR inside the run's working directory (created 0700)."""
    dirs = {"HOME": work / "home", "TMPDIR": work / "tmp"}
    for path in dirs.values():
        path.mkdir(mode=0o700)
    return dirs


def step_environment(
    node_env: Mapping[str, str],
    work: Path,
    scopes: Mapping[str, str],
    environ: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The whole environment of the child (the Pipes client adds only its bootstrap vars)."""
    env = dict(os.environ if environ is None else environ)
    child = {name: env[name] for name in PASSTHROUGH if env.get(name)}
    child.setdefault("PATH", os.defpath)
    child.update({k: v for k, v in scopes.items() if not reserved_env_name(k)})
    child.update({k: v for k, v in node_env.items() if not reserved_env_name(k)})
    paths = [str(PROJECT_ROOT), env.get("PYTHONPATH", "")]
    child.update(
        HOME=str(work / "home"),
        TMPDIR=str(work / "tmp"),
        PYTHONPATH=os.pathsep.join(p for p in paths if p),
        PYTHONNOUSERSITE="1",
    )
    return child
