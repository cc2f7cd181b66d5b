"""The needs radar counts each item once per need and day, per organisation of every source that carried it,
on both backends (the needs' keys come out of the stored JSON in SQL: SQLite's json_each, PostgreSQL's
json_object_keys)."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import insert

from core.clock import now
from core.db import session_scope
from monitor import services
from monitor.models import Item, Sighting, Story
from monitor.radar import needs_radar
from tests.monitor.test_batch_poll import backend  # noqa: F401 - the fixture: sqlite and postgresql
from tests.support.people import CITY, PROVINCE, Person


def test_the_radar_counts_needs_per_day_and_organisation(backend: str, people: dict[str, Person]) -> None:  # noqa: F811
    with session_scope() as s:
        city = services.add_source(s, people["city"].principal, url="https://rsshub.example/a", organization=CITY).id
        prov = services.add_source(
            s, people["province"].principal, url="https://rsshub.example/b", organization=PROVINCE
        ).id
        story = s.scalar(insert(Story).returning(Story.id), {"title": "t", "item_count": 3})
        t = now()
        rows = [  # (needs, days ago, sources)
            ({"wages": ["欠薪"], "hours": []}, 0, [city, prov]),  # two needs; carried by both organisations
            ({"wages": []}, 1, [city]),
            ({}, 0, [city]),  # no need: counts nowhere
        ]
        for n, (needs, ago, sources) in enumerate(rows):
            item = s.scalar(
                insert(Item).returning(Item.id),
                {"story_id": story, "source_id": sources[0], "link": f"https://e.org/{n}", "link_hash": f"l{n}",
                 "content_hash": f"c{n}", "title": "t", "summary_html": "", "text": "x",
                 "fetched_at": t - timedelta(days=ago), "scores": {"needs": needs}},
            )  # fmt: skip
            s.execute(insert(Sighting), [{"item_id": item, "source_id": src, "entry_key": f"k{n}"} for src in sources])
    with session_scope() as s:
        radar = needs_radar(s, people["province"].principal, days=7)
    counts = {n["key"]: n["counts"] for n in radar["needs"]}
    assert counts["wages"][-2:] == [1, 1] and counts["hours"][-1] == 1  # the first item once, not once a source
    assert sum(sum(c) for c in counts.values()) == 3
    orgs = {o["name"]: o["needs"] for o in radar["organizations"]}
    assert orgs[CITY]["wages"] == 2 and orgs[PROVINCE]["wages"] == 1 and orgs[PROVINCE]["hours"] == 1
    with session_scope() as s:  # the city's monitor sees only its own sources' items
        mine = needs_radar(s, people["city"].principal, days=7)
    assert {o["name"] for o in mine["organizations"]} == {CITY}
