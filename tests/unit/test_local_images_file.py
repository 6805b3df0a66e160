"""deploy/local_images.yaml: the shipped map loads and lists the seed's image, lookups follow
tag and digest, and a broken map is one line naming the file and the field."""

from __future__ import annotations

from pathlib import Path

import pytest

from quantos_assets.kinds.image_reference import ImageReference, parse_image
from quantos_assets.kinds.local_images import LocalImagesError, load_local_images
from quantos_assets.spec_rules.firm import load_spec
from resources.profile import active_profile

REPO = Path(__file__).resolve().parents[2]
SEED_IMAGE = "ghcr.io/archetype/feature-kit:0.3.2"
DIGEST = "sha256:" + "ab" * 32


@pytest.mark.parametrize(
    ("reference", "parsed"),
    [
        (SEED_IMAGE, ImageReference("ghcr.io/archetype/feature-kit", "0.3.2", None)),
        ("localhost:5000/team/kit:v1", ImageReference("localhost:5000/team/kit", "v1", None)),
        (f"kit@{DIGEST.upper().replace('SHA', 'sha')}", ImageReference("kit", None, DIGEST)),
        (f"ghcr.io/a/kit:1@{DIGEST}", ImageReference("ghcr.io/a/kit", "1", DIGEST)),
        ("python", ImageReference("python", None, None)),
        ("Ghcr.io/UPPER/kit:1", None),  # path components are lower case
        ("kit:1 ; rm -rf /", None),
        ("kit:", None),
        ("kit@sha256:short", None),
        ("", None),
    ],
)
def test_image_references_follow_the_distribution_grammar(
    reference: str, parsed: ImageReference | None
) -> None:
    assert parse_image(reference) == parsed


def test_the_shipped_map_lists_the_seed_image_in_the_tasks_package() -> None:
    images = load_local_images(REPO / "deploy" / "local_images.yaml")
    seed_images = {
        n.image
        for n in load_spec(REPO / "specs" / "seed_bt_xs_bilstm_v1.yaml").spec.nodes
        if n.image
    }
    assert SEED_IMAGE in seed_images
    assert images.entrypoint_for(SEED_IMAGE) == "quantos_assets.tasks.feature_kit:build"
    assert images.where == "deploy/local_images.yaml"


def test_lookups_by_tag_and_digest(tmp_path: Path) -> None:
    path = tmp_path / "images.yaml"
    path.write_text(
        "images:\n"
        "  - {image: 'ghcr.io/a/kit:1', entrypoint: 'pkg.tagged:run'}\n"
        f"  - {{image: 'ghcr.io/a/kit@{DIGEST}', entrypoint: 'pkg.pinned:run'}}\n"
        "  - {image: 'ghcr.io/a/kit:latest', entrypoint: 'pkg.latest:run'}\n"
    )
    images = load_local_images(path)
    assert images.entrypoint_for("ghcr.io/a/kit:1") == "pkg.tagged:run"
    assert images.entrypoint_for(f"ghcr.io/a/kit@{DIGEST}") == "pkg.pinned:run"
    assert images.entrypoint_for(f"ghcr.io/a/kit:1@{DIGEST}") == "pkg.pinned:run", "the digest wins"
    assert images.entrypoint_for("ghcr.io/a/kit:1@sha256:" + "cd" * 32) == "pkg.tagged:run"
    assert images.entrypoint_for("ghcr.io/a/kit") == "pkg.latest:run"
    for unlisted in (
        "ghcr.io/a/kit:2",
        "ghcr.io/b/kit:1",
        "kit:1",
        "sha256:" + "cd" * 32,
        "not an image",
    ):
        with pytest.raises(LocalImagesError) as err:
            images.entrypoint_for(unlisted)
        assert str(err.value) == (
            f"image '{unlisted}' has no local entrypoint in {path}; list it there to run it on "
            "the embedded default, or run on staging/prod, where the image runs as its own pod"
        )


@pytest.mark.parametrize(
    ("text", "says"),
    [
        (
            "images:\n  - {image: 'kit', entrypoint: 'a.b:c'}\n",
            "images[0].image: 'kit' has no tag or digest",
        ),
        (
            f"images:\n  - {{image: 'kit:1@{DIGEST}', entrypoint: 'a.b:c'}}\n",
            "images[0].image: 'kit:1@sha256:",
        ),
        (
            "images:\n  - {image: 'Kit:1', entrypoint: 'a.b:c'}\n",
            "images[0].image: 'Kit:1' is not an image reference",
        ),
        (
            "images:\n  - {image: 'kit:1', entrypoint: 'os.system'}\n",
            "images[0].entrypoint: 'os.system' is not of the form 'package.module:function'",
        ),
        ("images:\n  - {image: 'kit:1'}\n", "images[0].entrypoint: Field required"),
        (
            "images:\n  - {image: 'kit:1', entrypoint: 'a.b:c', cmd: 'sh'}\n",
            "images[0].cmd: Extra inputs",
        ),
        (
            (
                "images:\n  - {image: 'kit:1', entrypoint: 'a.b:c'}\n  - {image: 'kit:1', "
                "entrypoint: 'd.e:f'}\n"
            ),
            "image 'kit:1' is listed twice",
        ),
        ("images: [a\n", "images.yaml:2: not YAML"),
    ],
)
def test_a_broken_map_is_one_line_naming_the_file_and_field(
    tmp_path: Path, text: str, says: str
) -> None:
    path = tmp_path / "images.yaml"
    path.write_text(text)
    with pytest.raises(LocalImagesError) as err:
        load_local_images(path)
    message = str(err.value)
    assert message.startswith(str(path)) and says in message and "\n" not in message, message


def test_a_missing_map_lists_nothing(tmp_path: Path) -> None:
    images = load_local_images(tmp_path / "absent.yaml")
    with pytest.raises(LocalImagesError, match="has no local entrypoint in"):
        images.entrypoint_for(SEED_IMAGE)


def test_a_map_the_environment_names_must_exist(tmp_path: Path) -> None:
    profile = active_profile({"QUANTOS_LOCAL_IMAGES": str(tmp_path / "absent.yaml")})
    assert not active_profile({}).local_images_file_named
    with pytest.raises(LocalImagesError) as err:
        load_local_images(profile.local_images_file, profile.local_images_file_named)
    assert (
        str(err.value)
        == f"QUANTOS_LOCAL_IMAGES: {tmp_path / 'absent.yaml'} does not exist (the local image map)"
    )
