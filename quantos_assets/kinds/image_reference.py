"""A container image reference, `name[:tag][@digest]`, parsed the way registries parse it.

The grammar is the OCI distribution project's (github.com/distribution/reference,
`reference.go`): a name of lower-case path components with an optional `host[:port]/`
domain, a tag of up to 128 word characters, dots and dashes, and a digest
`algorithm:hex`. A regular expression of that grammar, rather than the `docker` package's
`parse_repository_tag`: that package is only a transitive dependency here, and it splits
without validating. Names are compared as written (no `docker.io/library/` expansion): the
local image map lists images exactly as specs name them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_HOST = (
    r"(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*"
    r"|\[[0-9a-fA-F:]+\])(?::[0-9]+)?"
)
_REFERENCE = re.compile(
    rf"^(?P<name>(?:{_HOST}/)?{_COMPONENT}(?:/{_COMPONENT})*)"
    r"(?::(?P<tag>[\w][\w.-]{0,127}))?"
    r"(?:@(?P<digest>[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}))?$"
)
_MAX_NAME = 255
DEFAULT_TAG = "latest"


@dataclass(frozen=True)
class ImageReference:
    name: str
    tag: str | None
    digest: str | None

    def __str__(self) -> str:
        return (
            self.name
            + (f":{self.tag}" if self.tag else "")
            + (f"@{self.digest}" if self.digest else "")
        )


def parse_image(reference: str) -> ImageReference | None:
    """The parts of `reference`, None if it is not an image reference."""
    match = _REFERENCE.match(reference)
    if match is None or len(match.group("name")) > _MAX_NAME:
        return None
    digest = match.group("digest")
    return ImageReference(
        name=match.group("name"),
        tag=match.group("tag"),
        digest=digest.lower() if digest else None,
    )
