"""Cross-node rules of a DAG spec: ids, producers, edges, cycles.

Field-level checks live on the models; these rules need the whole spec. Each
rule is a pure function returning (field_path, message) pairs so the loader can
put every problem on its own line of the file. All rules are linear in nodes +
edges (dict lookups, Kahn's algorithm): benchmark specs have 10,000 nodes.

The rules also run on a salvaged, partly invalid spec (built with
`model_construct`), so an id, an in or an out may be None there: such entries
are skipped, their own field error is reported elsewhere.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from quantos_assets.spec.models import DagSpec

Problem = tuple[str, str]

# difflib is O(candidates) per lookup: only the first few misses get a hint.
_HINT_BUDGET = 20
_CYCLE_SHOWN = 12


class _Hints:
    """'did you mean' suggestions, with a budget so 10,000 misses stay linear."""

    def __init__(self, candidates: Iterable[str]) -> None:
        self._candidates = [c for c in candidates if isinstance(c, str)]
        self._left = _HINT_BUDGET

    def __call__(self, name: str) -> str:
        if self._left <= 0 or not self._candidates:
            return ""
        self._left -= 1
        close = difflib.get_close_matches(name, self._candidates, n=1, cutoff=0.6)
        return f" (did you mean '{close[0]}'?)" if close else ""


class GraphIndex:
    """Lookups every rule needs, built once per spec in one pass over nodes."""

    def __init__(self, spec: DagSpec) -> None:
        self.first: dict[str, int] = {}  # node id -> index of its first definition
        self.producers: dict[str, tuple[int, int]] = {}  # out -> (node index, outs position)
        for i, node in enumerate(spec.nodes):
            if isinstance(node.id, str) and node.id not in self.first:
                self.first[node.id] = i
            for k, out in enumerate(node.outs):
                if isinstance(out, str) and out not in self.producers:
                    self.producers[out] = (i, k)
        # (consumer, producer) -> one out name the consumer reads from the producer
        self.deps: dict[tuple[int, int], str] = {}
        producers = self.producers
        for i, node in enumerate(spec.nodes):
            for name in node.ins:
                where = producers.get(name) if isinstance(name, str) else None
                if where is not None and where[0] != i and (i, where[0]) not in self.deps:
                    self.deps[(i, where[0])] = name

    def edge(self, spec: DagSpec, k: int) -> tuple[int, int] | None:
        """(from, to) node indices of edge k, or None if it names no two distinct nodes."""
        edge = spec.edges[k]
        src = self.first.get(edge.from_) if isinstance(edge.from_, str) else None
        dst = self.first.get(edge.to) if isinstance(edge.to, str) else None
        if src is None or dst is None or src == dst:
            return None
        return src, dst


def duplicate_node_ids(spec: DagSpec) -> list[Problem]:
    """Ids become asset keys and op names: two nodes cannot share one."""
    seen: dict[str, int] = {}
    problems: list[Problem] = []
    for i, node in enumerate(spec.nodes):
        if not isinstance(node.id, str):
            continue
        if node.id in seen:
            problems.append(
                (
                    f"nodes[{i}].id",
                    f"duplicate node id '{node.id}' (first defined at nodes[{seen[node.id]}])",
                )
            )
        else:
            seen[node.id] = i
    return problems


def duplicate_producers(spec: DagSpec) -> list[Problem]:
    """Each out is one asset: it must have exactly one producing node."""
    first: dict[str, tuple[int, int]] = {}
    problems: list[Problem] = []
    for i, node in enumerate(spec.nodes):
        for k, out in enumerate(node.outs):
            if not isinstance(out, str):
                continue
            if out not in first:
                first[out] = (i, k)
                continue
            j, m = first[out]
            if j == i:
                msg = f"out '{out}' is listed twice in node '{node.id}' (also at outs[{m}])"
            else:
                msg = (
                    f"out '{out}' is already produced by node '{spec.nodes[j].id}' "
                    f"(nodes[{j}].outs[{m}]); an out must have exactly one producer"
                )
            problems.append((f"nodes[{i}].outs[{k}]", msg))
    return problems


def unproduced_ins(spec: DagSpec, index: GraphIndex | None = None) -> list[Problem]:
    """Every in must be some other node's out or an external input (a lake table the spec
    declares), or the node could never run."""
    producers = (index or GraphIndex(spec)).producers
    external = spec.external_inputs or {}
    hint = _Hints([*producers, *external])
    problems: list[Problem] = []
    for i, node in enumerate(spec.nodes):
        for k, name in enumerate(node.ins):
            if not isinstance(name, str) or (name in external and name not in producers):
                continue
            where = producers.get(name)
            if where is None:
                problems.append((f"nodes[{i}].ins[{k}]", f"no node produces '{name}'{hint(name)}"))
            elif where[0] == i:
                problems.append(
                    (f"nodes[{i}].ins[{k}]", f"node '{node.id}' consumes its own out '{name}'")
                )
    return problems


def edge_endpoints(spec: DagSpec, index: GraphIndex | None = None) -> list[Problem]:
    """Edges must name existing nodes and must not point a node at itself."""
    first = (index or GraphIndex(spec)).first
    hint = _Hints(first)
    problems: list[Problem] = []
    for k, edge in enumerate(spec.edges):
        for field, name in (("from", edge.from_), ("to", edge.to)):
            if isinstance(name, str) and name not in first:
                problems.append((f"edges[{k}].{field}", f"unknown node '{name}'{hint(name)}"))
        if isinstance(edge.from_, str) and edge.from_ == edge.to:
            problems.append(
                (f"edges[{k}]", f"self-edge: node '{edge.from_}' cannot depend on itself")
            )
    return problems


def reversed_edges(spec: DagSpec, index: GraphIndex | None = None) -> list[Problem]:
    """An edge B -> A while B consumes an out of A says 'B first' and 'A first' at once."""
    index = index or GraphIndex(spec)
    problems: list[Problem] = []
    for k, edge in enumerate(spec.edges):
        pair = index.edge(spec, k)
        out = index.deps.get(pair) if pair is not None else None
        if out is not None:
            problems.append(
                (
                    f"edges[{k}]",
                    (
                        f"edge {edge.from_} -> {edge.to} reverses a data dependency: "
                        f"'{edge.from_}' consumes '{out}', which '{edge.to}' produces"
                    ),
                )
            )
    return problems


def cycles(spec: DagSpec, index: GraphIndex | None = None) -> list[Problem]:
    """Cycles over edges and data dependencies together, each named node by node.

    Kahn's algorithm removes everything that can be ordered; from each leftover
    node a walk along leftover predecessors must come back to itself, which
    names one cycle. Every node is walked at most once, so this stays linear.
    Self-edges and reversed edges are reported by their own rules and skipped.
    """
    index = index or GraphIndex(spec)
    n = len(spec.nodes)
    # (src, dst, why): why is an edge index, or the out name of a data dependency.
    links: list[tuple[int, int, int | str]] = []
    for k in range(len(spec.edges)):
        pair = index.edge(spec, k)
        if pair is not None and pair not in index.deps:  # reversed edges: own rule
            links.append((pair[0], pair[1], k))
    links.extend((producer, consumer, out) for (consumer, producer), out in index.deps.items())

    succ: list[list[int]] = [[] for _ in range(n)]
    indeg = [0] * n
    for src, dst, _ in links:
        succ[src].append(dst)
        indeg[dst] += 1
    queue = [i for i in range(n) if indeg[i] == 0]
    while queue:
        i = queue.pop()
        for j in succ[i]:
            indeg[j] -= 1
            if indeg[j] == 0:
                queue.append(j)
    if not any(indeg):
        return []

    # Only leftover nodes need their predecessors (and the why of each step).
    preds: dict[int, list[tuple[int, str]]] = {}
    for src, dst, why in links:
        if indeg[src] > 0 and indeg[dst] > 0:
            preds.setdefault(dst, []).append(
                (src, f"edges[{why}]" if isinstance(why, int) else f"'{why}'")
            )

    problems: list[Problem] = []
    walked = [False] * n
    for start in range(n):
        if indeg[start] == 0 or walked[start]:
            continue
        path: list[tuple[int, str]] = []  # (node, why its predecessor leads to it)
        pos: dict[int, int] = {}
        cur = start
        while not walked[cur]:
            walked[cur] = True
            pos[cur] = len(path)
            prev, why = preds[cur][0]
            path.append((cur, why))
            cur = prev
        if cur in pos:  # came back within this walk: path[pos[cur]:] is a cycle, reversed
            problems.append(_describe_cycle(spec, path[pos[cur] :][::-1]))
    return problems


def _describe_cycle(spec: DagSpec, ring: list[tuple[int, str]]) -> Problem:
    """ring: (node, why) in forward order; why explains the step into that node."""
    first = min(range(len(ring)), key=lambda r: ring[r][0])
    ring = ring[first:] + ring[:first]
    ids = [str(spec.nodes[i].id) for i, _ in ring] + [str(spec.nodes[ring[0][0]].id)]
    whys = [why for _, why in ring[1:]] + [ring[0][1]]
    steps = [f"{a} -> {b} via {w}" for a, b, w in zip(ids, ids[1:], whys, strict=False)]
    if len(ring) > _CYCLE_SHOWN:
        shown = " -> ".join([*ids[: _CYCLE_SHOWN - 2], "...", *ids[-2:]])
        detail = "; ".join([*steps[:3], "..."])
    else:
        shown = " -> ".join(ids)
        detail = "; ".join(steps)
    return (
        f"nodes[{ring[0][0]}]",
        f"cycle of {len(ring)} nodes: {shown} ({detail})",
    )


def check_graph(spec: DagSpec) -> list[Problem]:
    """All cross-node problems of a spec, in rule order."""
    index = GraphIndex(spec)
    return [
        *duplicate_node_ids(spec),
        *duplicate_producers(spec),
        *unproduced_ins(spec, index),
        *edge_endpoints(spec, index),
        *reversed_edges(spec, index),
        *cycles(spec, index),
    ]
