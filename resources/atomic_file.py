"""Replacing a file all at once, readable by its owner only.

Token store, registry index and spec files, artifacts: a reader (another gateway worker, the
code location, a run) must see the old file or the new one, never half of one, and files
that hold secrets or decisions are 0600 from the moment they exist (mkstemp creates them so).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def write_atomically(path: Path, data: bytes, *, dir_mode: int = 0o777) -> None:
    """Write `data` to a hidden temp file beside `path` (0600), fsync it, rename it over `path`.
    `dir_mode`: of a parent folder this creates (0o700 for private folders; umask applies)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=dir_mode)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
