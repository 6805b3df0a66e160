"""Where a SQL node's text may come from (`params.sql_uri`): the spec's own folder or the
artifact store, nothing else.

`sql_uri: /etc/passwd` used to be read and run as SQL (and its first tokens came back in the
parse error). A sql_uri is now a `.sql` file either relative to the spec file (no absolute
path, no `..`, no symlink out of the folder) or an `s3://` / `file://` URI under the artifact
store's root (QUANTOS_ARTIFACTS). What can be seen in the spec alone is refused by
`quantos validate` (`sql_uri_problem`); where the file or store resolves is checked when the
step reads it (`read_sql_uri`).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from pathlib import Path, PurePosixPath
from typing import Any

SCHEMES = ("s3", "file")
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")
_WHERE = (
    "a .sql file relative to the spec file, or an s3:// or file:// URI under the artifact store"
)


class SqlUriError(ValueError):
    """A sql_uri outside where SQL may come from, or unreadable: one line, never its content."""


def sql_uri_problem(uri: str) -> str | None:
    """Why a sql_uri is refused by its text alone (None: it may be read)."""
    scheme = _SCHEME.match(uri)
    if scheme is not None:
        if scheme.group(1).lower() not in SCHEMES:
            return f"'{uri}': scheme '{scheme.group(1)}' is not allowed; use {_WHERE}"
        path = uri[scheme.end() :]
    else:
        path = uri
        if not uri.strip():
            return f"'' is empty; use {_WHERE}"
        if uri.startswith(("/", "\\", "~")) or re.match(r"^[A-Za-z]:", uri):
            return f"'{uri}' is an absolute path; use {_WHERE}"
    if ".." in PurePosixPath(path.replace("\\", "/")).parts:
        return f"'{uri}' goes up a folder ('..'); use {_WHERE}"
    if not path.lower().endswith(".sql"):
        return f"'{uri}' is not a .sql file; use {_WHERE}"
    return None


def sql_uris(params: Mapping[str, Any]) -> Iterator[tuple[str, str]]:
    """(field path under params, uri) of a SQL node's sql_uri, a string or a map out -> uri."""
    value = params.get("sql_uri")
    if isinstance(value, Mapping):
        for out, uri in value.items():
            yield f"sql_uri.{out}", str(uri)
    elif value is not None:
        yield "sql_uri", str(value)


def read_spec_relative(spec_dir: Path, uri: str) -> str:
    """A sql_uri relative to the spec's folder, which it must not leave (symlinks included)."""
    problem = sql_uri_problem(uri)
    if problem is not None:
        raise SqlUriError(problem)
    base = spec_dir.resolve()
    target = (base / uri).resolve()
    if not target.is_relative_to(base):
        raise SqlUriError(f"'{uri}' leads out of the spec's folder (a symlink?); use {_WHERE}")
    if not target.is_file():
        raise SqlUriError(f"'{uri}' not found (looked at {target})")
    return decode_sql(uri, target.read_bytes())


def store_relpath(store: Any, uri: str) -> str:
    """The path under the artifact store's root that a URI names; SqlUriError if it is elsewhere
    (another bucket, another folder, a symlink out of a local store)."""
    problem = sql_uri_problem(uri)
    if problem is not None:
        raise SqlUriError(problem)
    relpath = store.relpath_of(uri)
    if relpath is None:
        raise SqlUriError(f"'{uri}' is outside the artifact store ({store.root}); use {_WHERE}")
    return str(relpath)


def decode_sql(uri: str, data: bytes) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise SqlUriError(f"'{uri}' is not UTF-8 text") from None
