"""The one exception spec loading raises.

Loading reports every problem of a file at once, one `FILE:LINE: path: message`
line each, so an author (or the compiler's CI) fixes a spec in one round trip
and editors can jump to each line.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

# Line breaks and other control characters, escaped so a problem stays on its line.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_MAX_PATH = 100
_MAX_MESSAGE = 240


def one_line(text: str, limit: int) -> str:
    """`text` on one line, its middle elided past `limit` characters (a quoted value can
    be megabytes; the start and the hint at the end are what a reader needs)."""
    text = _CONTROL.sub(lambda m: repr(m.group())[1:-1], text)
    if len(text) <= limit:
        return text
    head = (limit - 5) * 2 // 3
    return f"{text[:head]} ... {text[len(text) - (limit - 5 - head) :]}"


@dataclass(frozen=True, order=True)
class SpecProblem:
    """One problem; ordered by file and line so reports read top to bottom.

    Path and message are made one bounded line here, whoever builds the problem: keys and
    values come from the file and may hold line breaks or be huge (found by fuzzing)."""

    source: str
    line: int
    path: str
    message: str

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", one_line(self.path, _MAX_PATH))
        object.__setattr__(self, "message", one_line(self.message, _MAX_MESSAGE))

    def __str__(self) -> str:
        return f"{self.source}:{self.line}: {self.path}: {self.message}"


class SpecError(Exception):
    """All problems of one spec or runtime-params file; `str()` is one line per problem.

    Takes SpecProblem objects or ready-made `FILE:LINE: path: message` strings
    (callers outside the loader, e.g. the CLI, raise it with plain lines).
    `problems` holds only the structured ones.
    """

    def __init__(self, lines: Iterable[SpecProblem | str]) -> None:
        items = list(lines)
        self.problems: list[SpecProblem] = [p for p in items if isinstance(p, SpecProblem)]
        self.lines: list[str] = [str(p) for p in items]
        super().__init__("\n".join(self.lines))

    def __str__(self) -> str:
        return "\n".join(self.lines)
