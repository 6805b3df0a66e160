"""Child side of a python_task: run one `module:function` entrypoint under dagster-pipes.

Run as `python -m quantos_assets.kinds.pipes_entry` by the python_task runner,
which passes everything through Pipes `extras`:

    entrypoint  "package.module:function"
    allowed_modules  the module prefixes the pipeline's team may run (deploy/teams.yaml):
                the function itself must be defined under one of them, so an allowed
                module cannot lend out what it imported (`allowed.module:run` being
                subprocess.run)
    inputs      {name: {"path": file, "format": "arrow" | "bytes"}}
    params      the node's params without `entrypoint` (JSON values)
    outs        the node's out names, in order
    out_dir     where each out is written: `{out}.arrow` (a table) or `{out}.bin` (bytes)
    error_path  where the one-line error goes if the entrypoint raises
    session     the exchange session being computed (None if the spec has no
                session partitions); in a single_run backfill it differs from the
                run's partition key, which is a range
    arrival     {"uri", "version"} of the object a data-arrival trigger started the run
                for (None otherwise): `PipesContext.get().extras["arrival"]`

Calling convention: `fn(**inputs, **params)`; table inputs arrive as
`pyarrow.Table`, binary (artifact) inputs as `bytes`. With one out, `fn`
returns the value; with several, a dict `{out: value}`. A value is a
`pyarrow.Table` (or RecordBatch / pandas DataFrame, converted) or `bytes`.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pyarrow as pa
from dagster_pipes import PipesContext, open_dagster_pipes
from pyarrow import feather

# feather.write_feather's default chunk size.
_FEATHER_CHUNK_ROWS = 64 * 1024


class EntrypointError(Exception):
    """The entrypoint broke the calling convention (bad name, wrong outs or types)."""


def load_entrypoint(entrypoint: str, allowed_modules: list[str] | None = None) -> Any:
    module_name, _, function_name = entrypoint.partition(":")
    if allowed_modules is not None and not _under(module_name, allowed_modules):
        raise EntrypointError(
            f"module '{module_name}' is not under an allowed module ({', '.join(allowed_modules)})"
        )
    module = importlib.import_module(module_name)
    fn = getattr(module, function_name, None)
    if not callable(fn):
        raise EntrypointError(f"module '{module_name}' has no function '{function_name}'")
    defined_in = getattr(fn, "__module__", None)
    if allowed_modules is not None and not (
        isinstance(defined_in, str) and _under(defined_in, allowed_modules)
    ):
        raise EntrypointError(
            f"'{function_name}' comes from module '{defined_in}', which is not under an allowed "
            f"module ({', '.join(allowed_modules)})"
        )
    return fn


def _under(module: str, prefixes: list[str]) -> bool:
    """kinds.entrypoints.module_allowed, not imported: the child stays light (pyarrow only)."""
    return any(module == p or module.startswith(p + ".") for p in prefixes)


def read_inputs(inputs: Mapping[str, Mapping[str, str]]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for name, ref in inputs.items():
        path = Path(ref["path"])
        values[name] = path.read_bytes() if ref["format"] == "bytes" else feather.read_table(path)
    return values


def by_out(result: Any, outs: list[str]) -> dict[str, Any]:
    """Map the function's return value onto the declared outs."""
    if not outs:
        return {}
    if len(outs) == 1 and not (isinstance(result, Mapping) and set(result) == set(outs)):
        return {outs[0]: result}
    if not isinstance(result, Mapping):
        raise EntrypointError(
            f"returned {type(result).__name__}; with outs {outs} return a dict out -> table"
        )
    missing = [o for o in outs if o not in result]
    extra = [k for k in result if k not in outs]
    if missing or extra:
        raise EntrypointError(f"returned keys {sorted(result)}; expected exactly the outs {outs}")
    return dict(result)


def write_arrow(table: pa.Table, path: Path) -> None:
    """Write `table` as Feather V2 (the Arrow IPC file format), byte for byte what
    `feather.write_feather` writes. Not write_feather itself: its `is_data_frame` check
    imports pandas, which costs the child more start-up than pyarrow does, in every task
    (even one that never touches pandas)."""
    options = pa.ipc.IpcWriteOptions(
        compression="lz4" if pa.Codec.is_available("lz4_frame") else None
    )
    with (
        pa.OSFile(str(path), "wb") as sink,
        pa.ipc.new_file(sink, table.schema, options=options) as writer,
    ):
        writer.write_table(table, max_chunksize=_FEATHER_CHUNK_ROWS)


def write_out(out: str, value: Any, out_dir: Path) -> dict[str, Any]:
    if isinstance(value, (bytes, bytearray, memoryview)):
        (out_dir / f"{out}.bin").write_bytes(bytes(value))
        return {"format": "bytes", "bytes": len(value)}
    if isinstance(value, pa.RecordBatch):
        value = pa.Table.from_batches([value])
    elif not isinstance(value, pa.Table) and type(value).__name__ == "DataFrame":
        value = pa.Table.from_pandas(value, preserve_index=False)
    if not isinstance(value, pa.Table):
        raise EntrypointError(
            f"out '{out}' is a {type(value).__name__}; return a pyarrow.Table or bytes"
        )
    write_arrow(value, out_dir / f"{out}.arrow")
    return {"format": "arrow", "rows": value.num_rows, "columns": value.num_columns}


def run(pipes: PipesContext) -> None:
    extras = pipes.extras
    entrypoint: str = extras["entrypoint"]
    outs: list[str] = list(extras["outs"])
    out_dir = Path(extras["out_dir"])
    fn = load_entrypoint(entrypoint, extras.get("allowed_modules"))
    pipes.log.info(f"calling {entrypoint} with inputs {sorted(extras['inputs'])}")
    result = fn(**read_inputs(extras["inputs"]), **extras["params"])
    written = {out: write_out(out, value, out_dir) for out, value in by_out(result, outs).items()}
    for out, info in written.items():
        pipes.log.info(f"out {out}: {info}")
    pipes.report_custom_message({"outs": written})


def one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def main() -> None:
    with open_dagster_pipes() as pipes:
        try:
            run(pipes)
        except BaseException as exc:
            Path(pipes.extras["error_path"]).write_text(one_line(exc))
            raise


if __name__ == "__main__":
    main()
