"""The spec registry: every spec file in a directory, valid or not, and who owns each.

One spec must never take the others down: an invalid one is kept aside with its error
lines, and so is a valid one that would make a name another registered spec already makes
(the code location would fail to load as a whole), so the code location, the CLI and the
UI can all report it while every other spec loads. Of two colliding specs the one
registered first wins (the registry index), else the first in file order.

A registered pipeline belongs to the team its spec names (`labels.team`, else
`labels.owner`), else to the first team that registered it (the index). Only that team or
an admin may replace it; a replacement keeps the previous version (registry_index.py).

Every process that loads specs scans the folder (each team's code location, the gateway,
the sensors), so what each file means is kept across them in the registry's catalog
(registry_catalog.py): a scan parses only the files no process has read in their current
version, and a spec is parsed only when a caller asks for it (`RegistryScan.load`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from quantos_assets.bulk_build import cyclic_gc_paused
from quantos_assets.registry_catalog import SpecRecord, Stamp, read_catalog, write_catalog
from quantos_assets.registry_index import (
    IndexEntry,
    RegistryIndex,
    RegistryIndexError,
    index_path,
    keep_version,
    read_index,
    registry_lock,
    write_index,
    write_spec_file,
)
from quantos_assets.spec.derived_names import (
    DerivedName,
    Namespace,
    derived_names,
    platform_conflict,
)
from quantos_assets.spec.errors import SpecError
from quantos_assets.spec.loader import LoadedSpec
from quantos_assets.spec.models import DagSpec
from quantos_assets.spec_rules.firm import FIRM_RULES, load_spec
from quantos_assets.spec_rules.version import rules_version
from quantos_assets.tenancy.teams import pipeline_team

SPEC_SUFFIXES = (".yaml", ".yml", ".json")
log = logging.getLogger("quantos.registry")

NameKey = tuple[Namespace, str]


@dataclass(frozen=True)
class RegistryEntry:
    """A valid spec file as a scan knows it without parsing it (the catalog's record)."""

    path: Path
    pipeline_id: str
    team: str | None  # what its labels name (`team`, else `owner`); the index may know more


@dataclass(frozen=True)
class RegistryScan:
    """The folder's specs as of one scan. Valid ones are listed (`entries`) without being
    parsed; a caller parses only those it needs (`load`): a team's code location never reads
    another team's specs. `valid` and `by_pipeline()` parse every one on first use."""

    entries: list[RegistryEntry] = field(default_factory=list)  # valid specs, in file order
    invalid: dict[Path, list[str]] = field(default_factory=dict)
    index: RegistryIndex = field(default_factory=RegistryIndex)
    # Every name the valid specs make -> (pipeline_id, its file).
    claims: dict[NameKey, tuple[str, Path]] = field(default_factory=dict)
    _stamps: Mapping[Path, Stamp] = field(default_factory=dict, repr=False)
    _rules: str = field(default="", repr=False)
    _parses: list[Path] = field(default_factory=list, repr=False)

    @property
    def parsed(self) -> int:
        """Spec files parsed for this scan and its `load`s; the catalog and this process's
        earlier reads spare the others."""
        return len(self._parses)

    def entry(self, pipeline_id: str) -> RegistryEntry | None:
        return self._entries.get(pipeline_id)

    def load(self, pipeline_ids: Iterable[str]) -> list[LoadedSpec]:
        """The valid specs of these pipelines in file order, parsing only their files (once
        per process); unknown ids are skipped. A file that changed since the scan and is no
        longer that valid pipeline is left out: the next scan sees the change."""
        wanted = set(pipeline_ids)
        loaded: list[LoadedSpec] = []
        for entry in self.entries:
            if entry.pipeline_id not in wanted:
                continue
            with _CACHE_LOCK:  # a scan prunes the reads
                result, parsed = _read(entry.path, self._stamps[entry.path], self._rules)
            if parsed:
                self._parses.append(entry.path)
            if isinstance(result, LoadedSpec) and result.spec.pipeline_id == entry.pipeline_id:
                loaded.append(result)
            else:
                log.warning("%s changed since the registry was scanned: left out", entry.path)
        return loaded

    @cached_property
    def valid(self) -> list[LoadedSpec]:
        """Every valid spec, in file order (parses all not read before in this process)."""
        return self.load(self._entries)

    def by_pipeline(self) -> dict[str, LoadedSpec]:
        return self._by_pipeline

    @cached_property
    def _by_pipeline(self) -> dict[str, LoadedSpec]:  # a scan is cached and asked per request
        return {s.spec.pipeline_id: s for s in self.valid}

    @cached_property
    def _entries(self) -> dict[str, RegistryEntry]:
        return {e.pipeline_id: e for e in self.entries}


class RegistryRefusal(Exception):
    """A registration the registry will not make: `code` for machines, `status` for HTTP
    (403 not the owner, 409 a name another pipeline makes or a file changed by hand during the
    registration, 500 an unreadable index), and one line for people."""

    def __init__(self, code: str, status: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.status = status
        self.message = message

    def __str__(self) -> str:
        return self.message


def spec_files(directory: Path) -> list[Path]:
    return [directory / name for name, _ in _listing(directory)]


# -- reading --------------------------------------------------------------------------------------

# path -> (the version read, the rules it was checked by, what it is): parsed once per process
_READS: dict[Path, tuple[Stamp, str, LoadedSpec | list[str]]] = {}
# folder -> (rules, file name -> record) of its last scan in this process
_RECORDS: dict[Path, tuple[str, dict[str, SpecRecord]]] = {}
_SCANS: dict[Path, tuple[tuple[object, ...], RegistryScan]] = {}
_CACHE_LOCK = threading.Lock()


def _stamp(path: Path) -> Stamp | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_ctime_ns, st.st_size, st.st_ino)


def _listing(directory: Path) -> list[tuple[str, Stamp]]:
    """(name, stamp) of the folder's spec files, by name: one directory read and one stat per
    file. The registry is asked on every request, so this is what a cached scan costs."""
    try:
        with os.scandir(directory) as entries:
            found: list[tuple[str, Stamp]] = []
            for entry in entries:
                if os.path.splitext(entry.name)[1] not in SPEC_SUFFIXES:
                    continue
                try:
                    if not entry.is_file():  # follows symlinks, as Path.is_file
                        continue
                    st = entry.stat()
                except OSError:  # removed while listing: the next scan sees it
                    continue
                found.append((entry.name, (st.st_mtime_ns, st.st_ctime_ns, st.st_size, st.st_ino)))
    except (FileNotFoundError, NotADirectoryError):
        return []
    found.sort()
    return found


def _read(path: Path, stamp: Stamp, rules: str) -> tuple[LoadedSpec | list[str], bool]:
    """The file's version `stamp` (taken before reading it: a later change always shows)
    loaded and checked, once per process and rules; True when it was parsed now."""
    cached = _READS.get(path)
    if cached is not None and cached[0] == stamp and cached[1] == rules:
        return cached[2], False
    result: LoadedSpec | list[str]
    try:
        result = load_spec(path)
    except SpecError as err:
        result = err.lines
    _READS[path] = (stamp, rules, result)
    return result, True


def _record(stamp: Stamp, result: LoadedSpec | list[str]) -> SpecRecord:
    if isinstance(result, list):
        return SpecRecord(stamp=stamp, errors=tuple(result))
    spec = result.spec
    names = _names(derived_names(spec, FIRM_RULES.gate_floor()))
    return SpecRecord(
        stamp=stamp,
        pipeline_id=spec.pipeline_id,
        team=pipeline_team(spec.labels),
        names=tuple((namespace, name, where) for (namespace, name), where in names.items()),
    )


def _names(names: list[DerivedName]) -> dict[NameKey, str]:
    out: dict[NameKey, str] = {}
    for n in names:
        out.setdefault((n.namespace, n.name), n.field)
    return out


def scan_specs(directory: Path) -> RegistryScan:
    """Every spec file of the folder: valid ones in file order, the others with their lines.

    A cached scan is reused until a file's stamp (mtime, ctime, size, inode) or the index's
    changes, or a file comes or goes. A rescan parses only the files that neither this
    process nor the catalog (registry_catalog.py, shared by every process) knows in their
    current version."""
    listing = _listing(directory)
    key = (_stamp(index_path(directory)), tuple(listing))
    with _CACHE_LOCK:  # the gateway scans from request and launch threads at once
        cached = _SCANS.get(directory)
        if cached is not None and cached[0] == key:
            return cached[1]
        names = {name for name, _ in listing}
        for stale in [p for p in _READS if p.parent == directory and p.name not in names]:
            del _READS[stale]
        with cyclic_gc_paused():  # tens of thousands of records' names, none of them cyclic
            scan = _scan(directory, listing)
        _SCANS[directory] = (key, scan)
        return scan


def _records(
    directory: Path, listing: list[tuple[str, Stamp]], rules: str, parses: list[Path]
) -> dict[str, SpecRecord]:
    """Each listed file's record, in file order: from this process's last scan, else from
    the catalog, else parsed now (appended to `parses`). The catalog is read only when this
    process lacks a record, and rewritten when it lacked or differed in one."""
    known_rules, known = _RECORDS.get(directory, ("", {}))
    found = {
        name: known[name]
        for name, stamp in listing
        if known_rules == rules and name in known and known[name].stamp == stamp
    }
    missing = [(name, stamp) for name, stamp in listing if name not in found]
    if missing:
        stored = read_catalog(directory, rules)
        for name, stamp in missing:
            record = stored.get(name)
            if record is None or record.stamp != stamp:
                result, parsed = _read(directory / name, stamp, rules)
                if parsed:
                    parses.append(directory / name)
                record = _record(stamp, result)
            found[name] = record
        if stored.keys() != found.keys() or any(stored[n] != r for n, r in found.items()):
            write_catalog(directory, rules, {name: found[name] for name, _ in listing})
    records = {name: found[name] for name, _ in listing}
    _RECORDS[directory] = (rules, records)
    return records


def _scan(directory: Path, listing: list[tuple[str, Stamp]]) -> RegistryScan:
    try:
        index = read_index(directory)
    except RegistryIndexError as err:
        log.error("%s; specs load in file order, registrations are refused until it is fixed", err)
        index = RegistryIndex()
    rules = rules_version()
    parses: list[Path] = []
    records = {
        directory / name: r for name, r in _records(directory, listing, rules, parses).items()
    }
    invalid: dict[Path, list[str]] = {
        p: list(r.errors) for p, r in records.items() if r.pipeline_id is None
    }

    def priority(item: tuple[int, Path]) -> tuple[int, int, int]:
        position, path = item
        pid = records[path].pipeline_id
        entry = index.pipelines.get(pid) if pid is not None else None
        if entry is not None and entry.file == path.name:
            return (0, entry.seq, position)  # registered: first registered first
        return (1, 0, position)

    candidates = [(i, p) for i, p in enumerate(records) if p not in invalid]
    claims: dict[NameKey, tuple[str, Path]] = {}
    defined: dict[str, Path] = {}
    for _, path in sorted(candidates, key=priority):
        record = records[path]
        pid = record.pipeline_id
        assert pid is not None
        if pid in defined:
            invalid[path] = [
                f"{path}:1: pipeline_id: '{pid}' is already defined by {defined[pid].name}"
            ]
            continue
        clash = next(
            (((ns, name), where) for ns, name, where in record.names if (ns, name) in claims),
            None,
        )
        if clash is not None:
            (namespace, name), where = clash
            other, other_path = claims[(namespace, name)]
            invalid[path] = [
                (
                    f"{path}:1: {where}: makes the {namespace} '{name}', which pipeline '{other}' "
                    f"({other_path.name}) makes too; left out so the other specs load"
                )
            ]
            continue
        defined[pid] = path
        claims.update(dict.fromkeys(((ns, name) for ns, name, _ in record.names), (pid, path)))
    entries = [
        RegistryEntry(path, r.pipeline_id, r.team)
        for path, r in records.items()
        if path not in invalid and r.pipeline_id is not None
    ]
    return RegistryScan(
        entries=entries,
        invalid={p: invalid[p] for p in records if p in invalid},
        index=index,
        claims=claims,
        _stamps={p: r.stamp for p, r in records.items()},
        _rules=rules,
        _parses=parses,
    )


# -- ownership and names --------------------------------------------------------------------------


def registered_owner(registry_dir: Path, pipeline_id: str) -> str | None:
    """The team that owns a registered pipeline: its spec's label, else the first team that
    registered it; None for an unknown pipeline or one registered before owners were recorded."""
    scan = scan_specs(registry_dir)
    registered = scan.entry(pipeline_id)
    entry = scan.index.pipelines.get(pipeline_id)
    return (registered.team if registered is not None else None) or (
        entry.team if entry is not None else None
    )


def registered_spec(registry_dir: Path, pipeline_id: str) -> LoadedSpec | None:
    """The registered spec of a pipeline (None: unknown or invalid), parsing only its file."""
    return _registered(scan_specs(registry_dir), pipeline_id)


def _registered(scan: RegistryScan, pipeline_id: str) -> LoadedSpec | None:
    return next(iter(scan.load([pipeline_id])), None)


def name_conflicts(spec: DagSpec, registry_dir: Path) -> list[str]:
    """One line per name the spec would make that another registered pipeline (or the
    platform) already makes; empty when it can be registered beside every other spec."""
    return _conflicts(spec, scan_specs(registry_dir).claims)


def _conflicts(spec: DagSpec, claims: Mapping[NameKey, tuple[str, Path]]) -> list[str]:
    lines: dict[str, None] = {}
    for n in derived_names(spec, FIRM_RULES.gate_floor()):
        clash = platform_conflict(n.namespace, n.name)
        if clash is not None:
            lines[f"{n.field}: makes the {n.namespace} '{n.name}', which is {clash}"] = None
            continue
        other = claims.get((n.namespace, n.name))
        if other is not None and other[0] != spec.pipeline_id:
            lines[
                f"{n.field}: makes the {n.namespace} '{n.name}', which registered pipeline "
                f"'{other[0]}' makes too"
            ] = None
    return list(lines)


def registration_refusal(
    registry_dir: Path, loaded: LoadedSpec, *, team: str | None, admin: bool = False
) -> RegistryRefusal | None:
    """Why `team` may not register (or run) this spec as it is, or None. The same rule at
    admission (the gateway) and at registration (under the lock), so a race between two
    teams ends in one refusal, never in a take-over."""
    scan = scan_specs(registry_dir)
    return _refusal(scan, loaded, team=team, admin=admin)


def ownership_refusal(
    registry_dir: Path, loaded: LoadedSpec, *, team: str | None, admin: bool = False
) -> RegistryRefusal | None:
    """The owner half of `registration_refusal` (admission asks the name half on its own,
    as its UniqueNames rule)."""
    return _owner_refusal(scan_specs(registry_dir), loaded, team=team, admin=admin)


def _refusal(
    scan: RegistryScan, loaded: LoadedSpec, *, team: str | None, admin: bool
) -> RegistryRefusal | None:
    refusal = _owner_refusal(scan, loaded, team=team, admin=admin)
    if refusal is not None:
        return refusal
    conflicts = _conflicts(loaded.spec, scan.claims)
    if conflicts:
        return RegistryRefusal(
            "name_conflict", 409, f"pipeline '{loaded.spec.pipeline_id}': {conflicts[0]}"
        )
    return None


def _owner_refusal(
    scan: RegistryScan, loaded: LoadedSpec, *, team: str | None, admin: bool
) -> RegistryRefusal | None:
    spec = loaded.spec
    pid = spec.pipeline_id
    known = scan.entry(pid)
    entry = scan.index.pipelines.get(pid)
    if not admin:
        # a request naming the registered pipeline (spec_ref) carries the registry's own spec;
        # a file changed since the scan compares as a replacement (the stricter answer)
        registered = _registered(scan, pid) if known is not None else None
        same = registered is not None and (
            registered.spec is spec or _dumped(registered) == _dumped(loaded)
        )
        verb = "run" if same else "replace"
        owner = (known.team if known is not None else None) or (
            entry.team if entry is not None else None
        )
        if owner is not None and owner != team:
            return RegistryRefusal(
                "not_owner",
                403,
                f"pipeline '{pid}' belongs to team {owner}: only that team or an admin can {verb} "
                "it",
            )
        if owner is None and known is not None and not same:
            return RegistryRefusal(
                "not_owner",
                403,
                f"pipeline '{pid}' is registered without an owning team: only an admin can "
                "replace it",
            )
        claimed = pipeline_team(spec.labels)
        if claimed is not None and claimed != team:
            return RegistryRefusal(
                "not_owner",
                403,
                f"pipeline '{pid}' names team {claimed} in its labels, not {team}: a team "
                "registers only its own pipelines",
            )
    return None


def _dumped(loaded: LoadedSpec) -> object:
    """Specs compare as validated models: formatting is no change."""
    return loaded.spec.model_dump(mode="json", by_alias=True)


# -- writing ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Registration:
    """What `register_spec` did, for the caller's audit record."""

    path: Path
    changed: bool  # False: the registry already held this exact spec
    owner: str | None = None  # the pipeline's owning team after this registration
    created: bool = False  # a new pipeline, no earlier version
    sha256: str | None = None  # of the file as now registered
    previous_sha256: str | None = None  # of the version it replaced ...
    kept: Path | None = None  # ... kept here (specs/.registry/history/<pipeline_id>/)


def register_spec(
    directory: Path, loaded: LoadedSpec, *, team: str | None, admin: bool = False
) -> Registration:
    """Put a submitted spec in the registry for `team`, replacing the file of its pipeline_id.

    Refuses (RegistryRefusal) a replacement by any team but the owner unless `admin`, and a
    spec that would make a name another registered pipeline makes. Specs are compared as
    validated models, so formatting differences are no change (and force no code-location
    reload). The file is replaced atomically and keeps its name (JSON is valid YAML), so no
    two files ever define one pipeline_id; the version it replaces is kept, and the first
    registering team is recorded. Writers serialize on the registry lock: the gateway may
    run several workers.
    """
    pipeline_id = loaded.spec.pipeline_id
    wanted = _dumped(loaded)
    with registry_lock(directory):
        try:
            index = read_index(directory)
        except RegistryIndexError as err:
            raise RegistryRefusal("registry_index", 500, str(err)) from None
        scan = scan_specs(directory)
        refusal = _refusal(scan, loaded, team=team, admin=admin)
        if refusal is not None:
            raise refusal
        existing = _registered(scan, pipeline_id)
        if existing is None and scan.entry(pipeline_id) is not None:
            # its file changed between the scan and now, by hand (writers hold the lock)
            raise RegistryRefusal(
                "registry_changed",
                409,
                f"pipeline '{pipeline_id}': its spec file changed during the registration; "
                "try again",
            )
        entry = index.pipelines.get(pipeline_id)
        labelled = pipeline_team(loaded.spec.labels)
        if existing is not None and _dumped(existing) == wanted:
            assert existing.path is not None
            owner = pipeline_team(existing.spec.labels) or (entry.team if entry else None)
            return Registration(existing.path, changed=False, owner=owner, sha256=existing.sha256)

        data = json.dumps(wanted, indent=2).encode()
        target = (
            existing.path
            if existing is not None and existing.path is not None
            else _free_name(directory, pipeline_id)
        )
        previous_sha256 = kept = None
        versions = entry.versions if entry is not None else 1
        if existing is not None and existing.path is not None:
            raw = existing.path.read_bytes()
            previous_sha256 = hashlib.sha256(raw).hexdigest()
            kept = keep_version(directory, pipeline_id, versions, raw, existing.path.suffix)
            versions += 1
        write_spec_file(target, data)
        # The first registering team stays the recorded owner through every replacement
        # (an admin's included); a label, when there is one, overrides it.
        if entry is not None:
            first = entry.team
        else:
            first = pipeline_team(existing.spec.labels) if existing is not None else team
        index.pipelines[pipeline_id] = IndexEntry(
            team=first,
            file=target.name,
            seq=entry.seq if entry is not None else index.next_seq,
            sha256=hashlib.sha256(data).hexdigest(),
            versions=versions,
        )
        if entry is None:
            index.next_seq += 1
        write_index(directory, index)
        return Registration(
            target,
            changed=True,
            owner=labelled or first,
            created=existing is None,
            sha256=hashlib.sha256(data).hexdigest(),
            previous_sha256=previous_sha256,
            kept=kept,
        )


def _free_name(directory: Path, pipeline_id: str) -> Path:
    """`<pipeline_id>.json`, unless a file of another pipeline (or an invalid one) has it:
    a new pipeline must never overwrite a file it does not own."""
    target = directory / f"{pipeline_id}.json"
    n = 2
    while target.exists():
        target = directory / f"{pipeline_id}-{n}.json"
        n += 1
    return target
