"""The one exception spec loading raises.

Loading reports every problem of a file at once, one `FILE:LINE: path: message`
line each, so an author (or the compiler's CI) fixes a spec in one round trip
and editors can jump to each line.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True, order=True)
class SpecProblem:
    """One problem; ordered by file and line so reports read top to bottom."""

    source: str
    line: int
    path: str
    message: str

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
