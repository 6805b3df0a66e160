"""A pinned run's refs travel with its OpenLineage events (issue 19: refs in lineage)."""

from __future__ import annotations

from openlineage.client.generated.tags_run import TagsRunFacet

from quantos_assets.observability.lineage_events import pipeline_event
from quantos_assets.observability.lineage_facts import LineageNaming, RunFacts
from resources.run_tag_keys import TAG_REFS


def _tags(tags: dict[str, str]) -> dict[str, str]:
    run = RunFacts(
        run_id="5a71b864-9ef0-4dbc-b3db-e02747f9d00c", pipeline_id="p", created_at=0.0, tags=tags
    )
    event = pipeline_event("START", 0.0, run, LineageNaming("file:///lake"))
    facets = event.run.facets or {}
    facet = facets["tags"]
    assert isinstance(facet, TagsRunFacet)
    return {t.key: t.value for t in facet.tags or []}


def test_the_refs_of_a_pinned_run_are_in_its_lineage_tags() -> None:
    refs = '{"prices":"snapshot:3598553199331669190"}'
    assert _tags({TAG_REFS: refs})["refs"] == refs
    assert "refs" not in _tags({})
