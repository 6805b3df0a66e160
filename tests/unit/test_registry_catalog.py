"""The registry's catalog (issue 20): a scan in a new process parses no spec the catalog
already knows in its current version, a caller parses only the specs it loads, and a
catalog that cannot be trusted (corrupt, other rules or format, a stale record) is rebuilt
without changing what the scan finds."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from quantos_assets import spec_registry
from quantos_assets.admission.registry_view import DirectoryRegistry
from quantos_assets.apps.launcher.code_fingerprint import code_fingerprint
from quantos_assets.registry_catalog import catalog_path, read_catalog
from quantos_assets.spec.derived_names import DerivedName
from quantos_assets.spec_registry import RegistryRefusal, RegistryScan, register_spec, scan_specs
from quantos_assets.spec_rules.firm import load_spec_text
from quantos_assets.spec_rules.version import rules_version

REPO = Path(__file__).resolve().parents[2]
TEAMS = ("research", "execution")

# A new process: scans the folder, prints what it found and how many files it parsed, by its
# own count and by the registry's loader's calls (counted here, not in the registry).
SCAN_IN_A_NEW_PROCESS = """
import json, sys
from pathlib import Path
from quantos_assets import spec_registry
calls = []
load_spec = spec_registry.load_spec
spec_registry.load_spec = lambda path: calls.append(path) or load_spec(path)
scan = spec_registry.scan_specs(Path(sys.argv[1]))
print(json.dumps({
    "parsed": scan.parsed,
    "load_spec_calls": len(calls),
    "entries": [[e.path.name, e.pipeline_id, e.team] for e in scan.entries],
    "invalid": {p.name: lines for p, lines in scan.invalid.items()},
    "claims": len(scan.claims),
}))
"""


def spec(pipeline_id: str, team: str | None = None, out: str = "x") -> str:
    doc: dict[str, object] = {
        "version": 1,
        "pipeline_id": pipeline_id,
        "nodes": [
            {
                "id": "a",
                "kind": "python_task",
                "params": {"entrypoint": "quantos_assets.tasks.noop:one_row"},
                "outs": [out],
            }
        ],
    }
    if team is not None:
        doc["labels"] = {"team": team}
    return json.dumps(doc)


def write_specs(folder: Path, n: int) -> None:
    for i in range(n):
        (folder / f"p{i:03d}.json").write_text(spec(f"p{i:03d}", TEAMS[i % 2]))


@pytest.fixture
def new_process(monkeypatch: pytest.MonkeyPatch) -> None:
    """This process's caches as a new process starts them: empty (restored after)."""
    for cache in ("_READS", "_RECORDS", "_SCANS"):
        monkeypatch.setattr(spec_registry, cache, {})


def forget() -> None:
    """Another new process, within one test."""
    for cache in (spec_registry._READS, spec_registry._RECORDS, spec_registry._SCANS):
        cache.clear()


def outcome(scan: RegistryScan) -> tuple[object, ...]:
    """What a scan found, whatever it parsed to find it."""
    return (
        [(e.path, e.pipeline_id, e.team) for e in scan.entries],
        scan.invalid,
        scan.claims,
        scan.index,
    )


def test_a_new_process_parses_no_spec_of_an_unchanged_folder(tmp_path: Path) -> None:
    write_specs(tmp_path, 200)
    (tmp_path / "broken.yaml").write_text("version: 1\npipeline_id: 9x\nnodes: []\n")

    def scan_in_a_new_process() -> dict[str, object]:
        done = subprocess.run(
            [sys.executable, "-c", SCAN_IN_A_NEW_PROCESS, str(tmp_path)],
            check=True,
            capture_output=True,
            text=True,
            cwd=REPO,
            timeout=120,
        )
        found: dict[str, object] = json.loads(done.stdout)
        return found

    first = scan_in_a_new_process()
    assert first["parsed"] == first["load_spec_calls"] == 201
    assert len(read_catalog(tmp_path, rules_version())) == 201
    second = scan_in_a_new_process()
    assert second["parsed"] == second["load_spec_calls"] == 0
    counts = ("parsed", "load_spec_calls")
    assert {k: v for k, v in second.items() if k not in counts} == {
        k: v for k, v in first.items() if k not in counts
    }
    assert len(second["entries"]) == 200  # type: ignore[arg-type]
    assert second["entries"][1] == ["p001.json", "p001", "execution"]  # type: ignore[index]
    assert list(second["invalid"]) == ["broken.yaml"]  # type: ignore[call-overload]


def test_a_changed_file_is_parsed_again_and_its_new_pipeline_seen(
    tmp_path: Path, new_process: None
) -> None:
    write_specs(tmp_path, 5)
    assert scan_specs(tmp_path).parsed == 5
    forget()
    (tmp_path / "p002.json").write_text(spec("renamed", "research"))
    scan = scan_specs(tmp_path)
    assert scan.parsed == 1
    assert [e.pipeline_id for e in scan.entries] == ["p000", "p001", "renamed", "p003", "p004"]
    assert [s.spec.pipeline_id for s in scan.load(["renamed"])] == ["renamed"]
    assert read_catalog(tmp_path, rules_version())["p002.json"].pipeline_id == "renamed"
    forget()
    assert scan_specs(tmp_path).parsed == 0  # the catalog was written back


@pytest.mark.parametrize(
    "spoil",
    [
        pytest.param(lambda doc: b"{not json", id="corrupt"),
        pytest.param(lambda doc: json.dumps({**doc, "rules": "0" * 64}).encode(), id="rules"),
        pytest.param(lambda doc: json.dumps({**doc, "format": 2}).encode(), id="format"),
        pytest.param(lambda doc: json.dumps({**doc, "directory": "/elsewhere"}).encode(), id="dir"),
        pytest.param(lambda doc: json.dumps({**doc, "files": 3}).encode(), id="shape"),
        pytest.param(lambda doc: b"", id="empty"),
    ],
)
def test_a_catalog_that_cannot_be_trusted_is_ignored_and_rebuilt(
    tmp_path: Path, new_process: None, spoil: object
) -> None:
    write_specs(tmp_path, 4)
    cold = scan_specs(tmp_path)
    path = catalog_path(tmp_path)
    assert callable(spoil)
    path.write_bytes(spoil(json.loads(path.read_bytes())))
    forget()
    again = scan_specs(tmp_path)
    assert again.parsed == 4 and outcome(again) == outcome(cold)
    assert len(read_catalog(tmp_path, rules_version())) == 4  # rebuilt


def test_a_record_whose_stamp_no_longer_matches_is_not_used(
    tmp_path: Path, new_process: None
) -> None:
    write_specs(tmp_path, 3)
    cold = scan_specs(tmp_path)
    path = catalog_path(tmp_path)
    doc = json.loads(path.read_bytes())
    # the record of another version of p001.json that says it is another pipeline
    record = doc["files"]["p001.json"]
    record["stamp"][0] -= 1
    record["pipeline_id"] = "stale"
    path.write_text(json.dumps(doc))
    forget()
    again = scan_specs(tmp_path)
    assert again.parsed == 1 and outcome(again) == outcome(cold)
    assert read_catalog(tmp_path, rules_version())["p001.json"].pipeline_id == "p001"


def test_a_file_made_readable_again_is_read_again(tmp_path: Path, new_process: None) -> None:
    """A chmod changes neither mtime nor size: the stamp's ctime sees it."""
    write_specs(tmp_path, 2)
    before = scan_specs(tmp_path)
    st = (tmp_path / "p001.json").stat()
    os.utime(tmp_path / "p001.json", ns=(st.st_atime_ns, st.st_mtime_ns))  # ctime only
    forget()
    assert scan_specs(tmp_path).parsed == 1 and outcome(scan_specs(tmp_path)) == outcome(before)


def test_the_catalog_is_private(tmp_path: Path, new_process: None) -> None:
    write_specs(tmp_path, 1)
    scan_specs(tmp_path)
    assert stat.S_IMODE(catalog_path(tmp_path).stat().st_mode) == 0o600
    assert stat.S_IMODE(catalog_path(tmp_path).parent.stat().st_mode) & 0o077 == 0


def test_a_folder_that_cannot_be_written_is_scanned_all_the_same(
    tmp_path: Path, new_process: None
) -> None:
    write_specs(tmp_path, 3)
    # root writes into a read-only folder: a directory where the catalog goes fails for all
    catalog_path(tmp_path).mkdir(parents=True)
    tmp_path.chmod(0o555)
    try:
        scan = scan_specs(tmp_path)
        assert scan.parsed == 3 and [e.pipeline_id for e in scan.entries] == [
            "p000",
            "p001",
            "p002",
        ]
        assert [s.spec.pipeline_id for s in scan.valid] == ["p000", "p001", "p002"]
        assert scan.parsed == 3  # loading them parsed nothing more
    finally:
        tmp_path.chmod(0o755)
    assert catalog_path(tmp_path).is_dir() and not list(catalog_path(tmp_path).parent.glob("*.tmp"))
    # within this process, what was parsed stays known: a change is one parse
    (tmp_path / "p000.json").write_text(spec("p000", "ops"))
    rescan = scan_specs(tmp_path)
    assert rescan.parsed == 1 and rescan.entries[0].team == "ops"


def test_a_caller_parses_only_the_specs_it_loads(tmp_path: Path, new_process: None) -> None:
    write_specs(tmp_path, 6)
    scan_specs(tmp_path)
    forget()
    scan = scan_specs(tmp_path)
    assert scan.parsed == 0
    assert [e.team for e in scan.entries] == ["research", "execution"] * 3
    (loaded,) = scan.load(["p003"])
    assert loaded.spec.pipeline_id == "p003" and loaded.path == tmp_path / "p003.json"
    assert scan.parsed == 1
    assert scan.load(["p003", "unknown"]) == [loaded] and scan.parsed == 1  # once per process
    # the registry's questions about one pipeline read that pipeline's file only
    registry = DirectoryRegistry(tmp_path)
    assert registry.owner("p004") == "research" and scan.parsed == 1
    assert registry.get("p005") is not None and scan.parsed == 2
    assert registry.pipelines() == {f"p{i:03d}" for i in range(6)} and scan.parsed == 2
    # the whole list, for callers that want it: in file order, the rest parsed now
    assert [s.spec.pipeline_id for s in scan.valid] == [f"p{i:03d}" for i in range(6)]
    assert scan.parsed == 6 and scan.by_pipeline()["p003"] is loaded


def test_two_files_of_one_pipeline_are_reported_alike_from_the_catalog(
    tmp_path: Path, new_process: None
) -> None:
    write_specs(tmp_path, 2)
    (tmp_path / "a_copy.json").write_text(spec("p001", "research", out="y"))
    cold = scan_specs(tmp_path)
    assert cold.invalid == {
        tmp_path / "p001.json": [
            f"{tmp_path / 'p001.json'}:1: pipeline_id: 'p001' is already defined by a_copy.json"
        ]
    }
    forget()
    warm = scan_specs(tmp_path)
    assert warm.parsed == 0 and outcome(warm) == outcome(cold)


def test_a_name_clash_is_reported_alike_from_the_catalog(
    tmp_path: Path, new_process: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The id rules keep two specs' names apart; should a clash happen all the same (the
    scan's own guard), records from the catalog report it as a parse does."""
    write_specs(tmp_path, 3)
    real = spec_registry.derived_names

    def with_a_shared_group(spec: object, floor: object) -> list[DerivedName]:
        return [*real(spec, floor), DerivedName("group", "shared", "labels")]  # type: ignore[arg-type]

    monkeypatch.setattr(spec_registry, "derived_names", with_a_shared_group)
    cold = scan_specs(tmp_path)
    line = (
        "{path}:1: labels: makes the group 'shared', which pipeline 'p000' (p000.json) makes "
        "too; left out so the other specs load"
    )
    assert cold.invalid == {
        tmp_path / name: [line.format(path=tmp_path / name)] for name in ("p001.json", "p002.json")
    }
    assert cold.claims[("group", "shared")] == ("p000", tmp_path / "p000.json")
    monkeypatch.setattr(spec_registry, "derived_names", real)
    forget()
    warm = scan_specs(tmp_path)  # the clash is in the records only: none is parsed
    assert warm.parsed == 0 and outcome(warm) == outcome(cold)


def test_a_scan_never_makes_warm_workers_stale(tmp_path: Path, new_process: None) -> None:
    """The launcher discards a worker whose code fingerprint changed; the catalog is derived
    from the specs, so a scan writing it is no change."""
    specs = tmp_path / "specs"
    specs.mkdir()
    write_specs(specs, 2)
    before = code_fingerprint(tmp_path, [specs])
    scan_specs(specs)
    assert catalog_path(specs).is_file()
    assert code_fingerprint(tmp_path, [specs]) == before
    (specs / "p000.json").write_text(spec("p000", "ops"))
    assert code_fingerprint(tmp_path, [specs]) != before


def test_a_file_changed_by_hand_during_a_registration_refuses_it(
    tmp_path: Path, new_process: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The scan knew p.json as pipeline p; read for the registration, it is another pipeline
    (an edit by hand between the two): writing a new p.json-2 would make two files of p."""
    (tmp_path / "p.json").write_text(spec("p", "research"))
    scan = scan_specs(tmp_path)
    (tmp_path / "p.json").write_text(spec("other", "research"))
    forget()
    monkeypatch.setattr(spec_registry, "scan_specs", lambda directory: scan)
    submitted = load_spec_text(spec("p", "research", out="y"), "p.json", "json")
    with pytest.raises(RegistryRefusal) as refused:
        register_spec(tmp_path, submitted, team="research")
    assert (refused.value.code, refused.value.status) == ("registry_changed", 409)
    assert sorted(p.name for p in tmp_path.glob("*.json")) == ["p.json"]
