"""The glob of a data-arrival trigger (`triggers: [{arrivals: {uri: ...}}]`), parsed once.

Three forms: `s3://bucket/key/glob*.csv`, `file:///abs/dir/*.csv` and a relative path
(`vendor/*.csv`) under the profile's landing root. `*`, `?` and `[...]` match within one
path segment, as a shell's glob does, so the listing can start at the literal prefix before
the first wildcard: the bucket is never listed beyond it. `**`, `.`/`..` segments, an
unclosed `[` and a wildcard in the bucket are refused when the spec is loaded, so a typo
is an error naming the field, never a sensor that silently watches nothing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Literal

WILDCARDS = re.compile(r"[*?\[]")
# S3's rules for a bucket name (no dots-next-to-dashes subtleties: those fail at listing time).
BUCKET = re.compile(r"^[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9]$")


@dataclass(frozen=True)
class ArrivalGlob:
    """`scheme` s3: `root` is the bucket and `pattern` a key glob; file: `root` is "/" (an
    absolute path) or "" (relative to the landing root) and `pattern` the path glob."""

    scheme: Literal["s3", "file"]
    root: str
    pattern: str

    @property
    def prefix(self) -> str:
        """The pattern's literal part up to the first wildcard (a listing's Prefix)."""
        match = WILDCARDS.search(self.pattern)
        return self.pattern if match is None else self.pattern[: match.start()]

    @property
    def directory(self) -> str:
        """The deepest literal directory of the pattern ("" when its first segment globs)."""
        return self.prefix.rpartition("/")[0]

    def matches(self, path: str) -> bool:
        """`path` (a key, or a path relative to `root`) matches, segment by segment."""
        want = self.pattern.split("/")
        have = path.split("/")
        return len(want) == len(have) and all(map(fnmatchcase, have, want))


def parse_arrival_glob(uri: str) -> ArrivalGlob:
    """The glob of `uri`; ValueError with one line saying what is wrong."""
    if not uri.strip() or uri != uri.strip():
        raise ValueError(f"arrivals uri {uri!r} is empty or has surrounding spaces")
    scheme, sep, rest = uri.partition("://")
    if sep and scheme == "s3":
        bucket, _, pattern = rest.partition("/")
        if WILDCARDS.search(bucket):
            raise ValueError(f"arrivals uri {uri!r}: the bucket cannot hold a wildcard")
        if not BUCKET.match(bucket):
            raise ValueError(f"arrivals uri {uri!r}: {bucket!r} is not an S3 bucket name")
        glob = ArrivalGlob("s3", bucket, pattern)
    elif sep and scheme == "file":
        if not rest.startswith("/"):
            raise ValueError(f"arrivals uri {uri!r}: a file URI names an absolute path (file:///)")
        glob = ArrivalGlob("file", "/", rest.lstrip("/"))
    elif sep or ":" in uri.partition("/")[0]:
        raise ValueError(
            f"arrivals uri {uri!r}: only s3://bucket/glob, file:///dir/glob or a relative "
            "path under the landing root"
        )
    elif uri.startswith("/"):
        raise ValueError(f"arrivals uri {uri!r}: an absolute path is written file://{uri}")
    else:
        glob = ArrivalGlob("file", "", uri)
    _check_pattern(uri, glob.pattern)
    return glob


def _check_pattern(uri: str, pattern: str) -> None:
    if not pattern or pattern.endswith("/"):
        raise ValueError(f"arrivals uri {uri!r} names no object (end it with a file glob)")
    for segment in pattern.split("/"):
        if segment in ("", ".", ".."):
            raise ValueError(
                f"arrivals uri {uri!r}: empty, '.' or '..' path segments are not allowed"
            )
        if "**" in segment:
            raise ValueError(
                f"arrivals uri {uri!r}: '**' is not supported (each * matches within one "
                "path segment)"
            )
        if _unclosed_bracket(segment):
            raise ValueError(f"arrivals uri {uri!r}: unclosed '[' in {segment!r}")


def _unclosed_bracket(segment: str) -> bool:
    """fnmatch reads an unclosed `[` as a literal; in a spec it is a typo."""
    i = 0
    while i < len(segment):
        if segment[i] == "[":
            j = i + 1
            if j < len(segment) and segment[j] in "!^":
                j += 1
            if j < len(segment) and segment[j] == "]":
                j += 1
            close = segment.find("]", j)
            if close < 0:
                return True
            i = close
        i += 1
    return False
