"""Which entrypoint stands in for an image-only python_task on the embedded default.

An image-only task (an `image`, no `params.entrypoint`) runs its image as a Kubernetes pod in
staging/prod. The embedded default has no container runtime, so the platform keeps a map
from image (name and tag, or name and digest) to the `module:function` that computes the
same thing in a subprocess, `deploy/local_images.yaml` (`QUANTOS_LOCAL_IMAGES` names another
file). It is the platform's file, read only by the local profile, and a mapped entrypoint is
no privilege: the step checks it against the pipeline team's allow-list (deploy/teams.yaml
`entrypoints`) like any entrypoint, and runs it in the same sandbox. An image the map does not
list stays an error naming the image and the file.

Matching: an entry with a digest matches a spec image with that digest; an entry with a tag
matches a spec image with that tag (a digest-pinned spec image falls back to its tag when no
entry has its digest). A spec image with neither is `:latest`, as for Docker. Names are
compared as written.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel, ConfigDict, ValidationError, field_validator, model_validator

from quantos_assets.kinds.entrypoints import module_of
from quantos_assets.kinds.image_reference import DEFAULT_TAG, ImageReference, parse_image
from resources.profile import REPO_ROOT


class LocalImagesError(ValueError):
    """The map is malformed or does not list an image: one line naming the file."""


class LocalImage(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    image: str
    entrypoint: str
    # What the stand-in does and how far it matches the image (for the reader of the file).
    description: str = ""

    @field_validator("image")
    @classmethod
    def _pinned_reference(cls, value: str) -> str:
        ref = parse_image(value)
        if ref is None:
            raise ValueError(f"{value!r} is not an image reference (name:tag or name@sha256:...)")
        if ref.tag and ref.digest:
            raise ValueError(f"{value!r}: give a tag or a digest, not both (one entry each)")
        if not (ref.tag or ref.digest):
            raise ValueError(f"{value!r} has no tag or digest; name the version it stands in for")
        return value

    @field_validator("entrypoint")
    @classmethod
    def _module_function(cls, value: str) -> str:
        if module_of(value) is None:
            raise ValueError(f"{value!r} is not of the form 'package.module:function'")
        return value

    @property
    def reference(self) -> ImageReference:
        ref = parse_image(self.image)
        assert ref is not None  # validated
        return ref


class LocalImagesFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    images: list[LocalImage] = []

    @model_validator(mode="after")
    def _one_entry_per_image(self) -> LocalImagesFile:
        seen: set[ImageReference] = set()
        for entry in self.images:
            if entry.reference in seen:
                raise ValueError(f"image {entry.image!r} is listed twice")
            seen.add(entry.reference)
        return self

    def entrypoint_for(self, image: str) -> str | None:
        """The stand-in entrypoint of a spec's image, None if none is listed."""
        ref = parse_image(image)
        if ref is None:
            return None
        by_ref = {entry.reference: entry.entrypoint for entry in self.images}
        if ref.digest:
            pinned = by_ref.get(ImageReference(ref.name, None, ref.digest))
            if pinned is not None or ref.tag is None:
                return pinned
        return by_ref.get(ImageReference(ref.name, ref.tag or DEFAULT_TAG, None))


@dataclass(frozen=True)
class LocalImages:
    """The map and where it was read from (named in every message)."""

    file: LocalImagesFile
    where: str

    def entrypoint_for(self, image: str) -> str:
        entrypoint = self.file.entrypoint_for(image)
        if entrypoint is None:
            raise LocalImagesError(
                f"image '{image}' has no local entrypoint in {self.where}; list it there to run "
                "it on the "
                "embedded default, or run on staging/prod, where the image runs as its own pod"
            )
        return entrypoint


def load_local_images(path: Path, required: bool = False) -> LocalImages:
    """The map, read now (an edit applies to the next step). A missing default file lists
    nothing; a file QUANTOS_LOCAL_IMAGES names (the profile's `local_images_file_named`,
    passed as `required`) must exist."""
    where = _shown(path)
    if not path.exists():
        if required:
            raise LocalImagesError(
                f"QUANTOS_LOCAL_IMAGES: {path} does not exist (the local image map)"
            )
        return LocalImages(LocalImagesFile(), where)
    from quantos_assets.spec.yaml_reader import YamlFileError, read_yaml_file

    try:
        data = read_yaml_file(path, where)
    except YamlFileError as err:
        raise LocalImagesError(str(err)) from None
    try:
        return LocalImages(LocalImagesFile.model_validate(data or {}), where)
    except ValidationError as err:
        first = err.errors()[0]
        field = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in first["loc"]).lstrip(
            "."
        )
        message = str(first["msg"]).removeprefix("Value error, ")
        raise LocalImagesError(f"{where}: {field + ': ' if field else ''}{message}") from None


def _shown(path: Path) -> str:
    """The path as a reader finds it: relative to the repository when it is in it."""
    try:
        return path.resolve().relative_to(REPO_ROOT).as_posix()
    except ValueError:
        return str(path)
