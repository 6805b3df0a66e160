"""deploy/grafana/quantos.json queries only metrics the exporter exposes, and shows all of them.

The exposed names are read from what the collectors actually write (the same registry
`quantos exporter` and the gateway's /metrics serve), parsed with prometheus_client's parser,
so renaming a metric without fixing the dashboard fails here.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from dagster import DagsterInstance
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from quantos_assets.observability.metrics_registry import metrics_registry
from resources.profile import active_profile

DASHBOARD = Path(__file__).resolve().parents[2] / "deploy" / "grafana" / "quantos.json"
SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_count", "_sum"), "gauge": ("",)}
METRIC = re.compile(r"\bquantos_[a-zA-Z0-9_:]*")


def _exposed() -> dict[str, set[str]]:
    """Family name -> the sample names a query can use."""
    with DagsterInstance.ephemeral() as instance:
        text = generate_latest(metrics_registry(instance, active_profile({}))).decode()
    return {
        f.name: {f.name + s for s in SUFFIXES[f.type]} for f in text_string_to_metric_families(text)
    }


def _panels(dashboard: dict) -> list[dict]:
    found = []
    for panel in dashboard["panels"]:
        found.append(panel)
        found.extend(panel.get("panels", []))
    return [p for p in found if p["type"] != "row"]


def test_every_panel_queries_exposed_metrics_and_every_metric_has_a_panel() -> None:
    exposed = _exposed()
    samples = set().union(*exposed.values())
    dashboard = json.loads(DASHBOARD.read_text())
    used: set[str] = set()
    panels = _panels(dashboard)
    assert len(panels) >= 10
    for panel in panels:
        exprs = [t["expr"] for t in panel["targets"]]
        names = {n for e in exprs for n in METRIC.findall(e)}
        assert names, f"panel {panel['title']!r} queries no quantos metric: {exprs}"
        assert names <= samples, (
            f"panel {panel['title']!r} queries {sorted(names - samples)}, not exposed"
        )
        used |= names
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            names = set(METRIC.findall(variable["definition"]))
            assert names and names <= samples, variable
    unused = [family for family, names in exposed.items() if not names & used]
    assert not unused, f"exposed but on no panel: {unused}"


def test_panels_do_not_overlap() -> None:
    cells: dict[tuple[int, int], str] = {}
    for panel in json.loads(DASHBOARD.read_text())["panels"]:
        pos = panel["gridPos"]
        assert pos["x"] + pos["w"] <= 24, panel["title"]
        for x in range(pos["x"], pos["x"] + pos["w"]):
            for y in range(pos["y"], pos["y"] + pos["h"]):
                assert (x, y) not in cells, f"{panel['title']!r} overlaps {cells[(x, y)]!r}"
                cells[(x, y)] = panel["title"]
