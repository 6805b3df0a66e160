"""The registry's ownership and history (issue 16, defect 2): only the owning team or an
admin replaces a registered pipeline, a replacement keeps the version it replaced, and of
two files defining one pipeline the one registered first wins."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from quantos_assets.admission.registry_view import DirectoryRegistry
from quantos_assets.registry_index import IndexEntry, index_path, read_index, write_index
from quantos_assets.spec.loader import LoadedSpec
from quantos_assets.spec.models import DagSpec
from quantos_assets.spec_registry import (
    RegistryRefusal,
    name_conflicts,
    register_spec,
    registered_owner,
    scan_specs,
)
from quantos_assets.spec_rules.firm import load_spec_text

TASK = "kind: python_task, params: {entrypoint: 'quantos_assets.tasks.noop:one_row'}"


def spec(pipeline_id: str, out: str = "x", team: str | None = None) -> LoadedSpec:
    labels = f"labels: {{team: {team}}}\n" if team else ""
    text = (
        f"version: 1\npipeline_id: {pipeline_id}\n{labels}nodes:\n  - {{id: a, {TASK}, outs: "
        f"[{out}]}}\n"
    )
    return load_spec_text(text, f"{pipeline_id}.yaml", "yaml")


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_the_first_team_owns_an_unlabelled_pipeline_and_only_it_replaces_it(tmp_path: Path) -> None:
    first = register_spec(tmp_path, spec("p"), team="research")
    assert first.created and first.changed and first.owner == "research"
    assert registered_owner(tmp_path, "p") == "research"
    entry = read_index(tmp_path).pipelines["p"]
    assert (entry.team, entry.file, entry.seq, entry.versions) == ("research", "p.json", 1, 1)
    assert mode(first.path) == mode(index_path(tmp_path)) == 0o600
    before = first.path.read_bytes()

    with pytest.raises(RegistryRefusal) as refused:
        register_spec(tmp_path, spec("p", out="y"), team="execution")
    assert (refused.value.code, refused.value.status) == ("not_owner", 403)
    assert (
        str(refused.value)
        == "pipeline 'p' belongs to team research: only that team or an admin can replace it"
    )
    assert first.path.read_bytes() == before  # nothing written
    assert not (tmp_path / ".registry" / "history").exists()

    again = register_spec(tmp_path, spec("p"), team="research")
    assert not again.changed

    replaced = register_spec(tmp_path, spec("p", out="y"), team="research")
    assert replaced.changed and not replaced.created and replaced.path == first.path
    (kept,) = (tmp_path / ".registry" / "history" / "p").iterdir()
    assert replaced.kept == kept and kept.read_bytes() == before and mode(kept) == 0o600
    assert kept.name == f"1-{replaced.previous_sha256}.json"
    assert read_index(tmp_path).pipelines["p"].versions == 2

    # an admin may; the recorded owner stays the first team
    by_admin = register_spec(tmp_path, spec("p", out="z"), team="platform", admin=True)
    assert by_admin.changed and by_admin.owner == "research"
    assert registered_owner(tmp_path, "p") == "research"
    assert len(list((tmp_path / ".registry" / "history" / "p").iterdir())) == 2


def test_a_spec_placed_by_hand_without_a_team_is_replaced_only_by_an_admin(tmp_path: Path) -> None:
    (tmp_path / "seed.yaml").write_text(
        f"version: 1\npipeline_id: seed\nnodes:\n  - {{id: a, {TASK}, outs: [x]}}\n"
    )
    assert registered_owner(tmp_path, "seed") is None
    # running it unchanged is no replacement (no team claims it by doing so)
    assert not register_spec(tmp_path, spec("seed"), team="execution").changed
    assert registered_owner(tmp_path, "seed") is None
    with pytest.raises(
        RegistryRefusal, match="registered without an owning team: only an admin can replace it"
    ):
        register_spec(tmp_path, spec("seed", out="y"), team="execution")
    assert register_spec(
        tmp_path, spec("seed", out="y", team="research"), team="ops", admin=True
    ).changed
    assert registered_owner(tmp_path, "seed") == "research"


def test_a_label_names_the_owner_and_a_team_registers_only_its_own(tmp_path: Path) -> None:
    register_spec(tmp_path, spec("p", team="research"), team="research")
    with pytest.raises(
        RegistryRefusal, match="belongs to team research: only that team or an admin can run it"
    ):
        register_spec(tmp_path, spec("p", team="research"), team="execution")
    with pytest.raises(RegistryRefusal, match="names team research in its labels, not execution"):
        register_spec(tmp_path, spec("q", team="research"), team="execution")


def test_a_new_pipeline_never_overwrites_a_file_it_does_not_own(tmp_path: Path) -> None:
    # team research's pipeline `alpha` lives in beta.json (placed by hand)
    (tmp_path / "beta.json").write_text(
        json.dumps(spec("alpha", team="research").spec.model_dump(mode="json", by_alias=True))
    )
    made = register_spec(tmp_path, spec("beta"), team="execution")
    assert made.path.name == "beta-2.json"
    assert {s.spec.pipeline_id for s in scan_specs(tmp_path).valid} == {"alpha", "beta"}


def test_of_two_files_defining_one_pipeline_the_registered_one_wins(tmp_path: Path) -> None:
    registered = register_spec(tmp_path, spec("p"), team="research").path  # p.json
    (tmp_path / "a_copy.yaml").write_text(
        f"version: 1\npipeline_id: p\nnodes:\n  - {{id: b, {TASK}, outs: [y]}}\n"
    )
    scan = scan_specs(tmp_path)
    assert [s.path for s in scan.valid] == [registered]
    assert scan.invalid == {
        tmp_path / "a_copy.yaml": [
            f"{tmp_path / 'a_copy.yaml'}:1: pipeline_id: 'p' is already defined by p.json"
        ]
    }
    # without an index, file order decides
    index_path(tmp_path).unlink()
    assert [s.path for s in scan_specs(tmp_path).valid] == [tmp_path / "a_copy.yaml"]


def test_an_unreadable_index_stops_registration_but_not_loading(tmp_path: Path) -> None:
    register_spec(tmp_path, spec("p"), team="research")
    index_path(tmp_path).write_text("{not json")
    with pytest.raises(RegistryRefusal) as refused:
        register_spec(tmp_path, spec("q"), team="research")
    assert refused.value.status == 500 and "not a registry index" in str(refused.value)
    assert [s.spec.pipeline_id for s in scan_specs(tmp_path).valid] == ["p"]


def test_name_conflicts_name_the_platforms_names(tmp_path: Path) -> None:
    register_spec(tmp_path, spec("p"), team="research")
    assert name_conflicts(spec("q").spec, tmp_path) == []
    # a spec built around the id rules (they refuse this one first)
    reserved = DagSpec.model_validate(
        spec("q").spec.model_dump(by_alias=True) | {"pipeline_id": "invalid_specs"}
    )
    assert name_conflicts(reserved, tmp_path) == [
        (
            "pipeline_id: makes the group 'invalid_specs', which is the platform's group "
            "'invalid_specs'"
        ),
        (
            "nodes[0].outs[0]: makes the asset key 'invalid_specs/x', which is the platform's "
            "assets under 'invalid_specs'"
        ),
    ]


def test_a_cached_scan_is_used_until_the_folder_changes_and_never_after(tmp_path: Path) -> None:
    """The gateway asks the registry on every request, so a scan is cached by each spec
    file's (mtime, size, inode) and the index's: any change of a spec file (edited in place,
    replaced by a rename, added, removed) or of the index is seen at the next request."""
    registry = DirectoryRegistry(tmp_path)
    path = tmp_path / "p.yaml"
    text = (
        f"version: 1\npipeline_id: p\nlabels: {{team: research}}\nnodes:\n  - {{id: a, {TASK}, "
        "outs: [x]}\n"
    )
    path.write_text(text)
    first = scan_specs(tmp_path)
    assert registry.owner("p") == "research"
    (tmp_path / "notes.md").write_text("not a spec")
    assert scan_specs(tmp_path) is first  # nothing that is a spec changed: not read again

    path.write_text(text.replace("research", "trading"))  # edited in place
    assert registry.owner("p") == "trading"
    st = path.stat()
    swapped = tmp_path / "swap.tmp"  # replaced by a rename: same size and mtime, another inode
    swapped.write_text(text.replace("research", "markets"))  # as long as "trading"
    os.utime(swapped, ns=(st.st_atime_ns, st.st_mtime_ns))
    swapped.replace(path)
    assert path.stat().st_size == st.st_size and path.stat().st_mtime_ns == st.st_mtime_ns
    assert registry.owner("p") == "markets"

    (tmp_path / "q.yml").write_text(text.replace("pipeline_id: p", "pipeline_id: q"))
    assert registry.get("q") is not None
    (tmp_path / "q.yml").unlink()
    assert registry.get("q") is None

    # an unlabelled pipeline is owned through the index, which may change on its own
    (tmp_path / "u.yaml").write_text(
        f"version: 1\npipeline_id: u\nnodes:\n  - {{id: a, {TASK}, outs: [z]}}\n"
    )
    assert registry.owner("u") is None
    index = read_index(tmp_path)
    index.pipelines["u"] = IndexEntry(team="research", file="u.yaml", seq=1, sha256="0" * 64)
    write_index(tmp_path, index)
    assert registry.owner("u") == "research"
    assert registry.ownership(spec("u", out="z").spec, "execution", admin=False) == (
        "pipeline 'u' belongs to team research: only that team or an admin can run it"
    )
